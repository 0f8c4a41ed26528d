# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of a broadcast, their validation, and the pod template they make.

``BROADCAST_OPTIONS`` is the one argument spec for the task, node selection
and policy options; broadcast_job and cron_broadcast both use it.
``validate(params)`` is pure: it checks everything a user can get wrong and
returns a plain ``spec`` dict, or raises InvalidInput naming the option, the
value and what would be accepted, before anything is written.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import re

from ansible_collections.nodeops.kubernetes.plugins.module_utils import host_tasks
from ansible_collections.nodeops.kubernetes.plugins.module_utils.errors import InvalidInput
from ansible_collections.nodeops.kubernetes.plugins.module_utils.selectors import (
    SelectorError,
    parse_label_selector,
)

DEFAULT_IMAGE = "python:3.13-slim"
PRESETS = ("image_prune", "path_cleanup", "host_command")
NAME_MAX = 37          # pod name = <name>-<run_id>-<8 hex>, within 63 characters
RUN_ID_MAX = 16
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# The preset pods run the node script from their run record (a ConfigMap), mounted here; their
# argv stays small (a pod carrying 11 KB of script counts against etcd at thousands of nodes).
SCRIPT_DIR = "/opt/nodeops-task"
SCRIPT_KEY = "host_tasks.py"
SCRIPT_COMMAND = ("python3", SCRIPT_DIR + "/" + SCRIPT_KEY)
SCRIPT_MOUNT = {"name": "nodeops-script", "mountPath": SCRIPT_DIR, "readOnly": True}

BROADCAST_OPTIONS = dict(
    preset=dict(type="str", choices=list(PRESETS)),
    image_prune=dict(type="dict", options=dict(
        include=dict(type="list", elements="str", default=[]),
        exclude=dict(type="list", elements="str", default=[]),
        dry_run=dict(type="bool", default=False),
    )),
    path_cleanup=dict(type="dict", options=dict(
        path=dict(type="str", required=True),
        older_than_days=dict(type="int"),
        patterns=dict(type="list", elements="str", default=[]),
        dry_run=dict(type="bool", default=False),
    )),
    host_command=dict(type="dict", options=dict(
        command=dict(type="raw", required=True),
        shell=dict(type="bool", default=False),
    )),
    image=dict(type="str", default=DEFAULT_IMAGE),
    pod_template=dict(type="dict"),
    node_selector=dict(type="dict", default={}),
    node_label_selector=dict(type="str"),
    nodes=dict(type="list", elements="str"),
    tolerations=dict(type="list", elements="dict", default=[]),
    tolerate_all_taints=dict(type="bool", default=False),
    include_control_plane=dict(type="bool", default=False),
    include_not_ready=dict(type="bool", default=False),
    include_cordoned=dict(type="bool", default=False),
    pin=dict(type="str", default="affinity", choices=["affinity", "node_name"]),
    parallelism=dict(type="raw", default=10),
    failure_policy=dict(type="str", default="continue", choices=["continue", "fail_fast"]),
    fail_on_node_failure=dict(type="bool", default=True),
    restart_policy=dict(type="str", default="Never", choices=["Never", "OnFailure"]),
    restart_limit=dict(type="int", default=3),
    timeout=dict(type="int", default=600),
    pending_timeout=dict(type="int", default=120),
    cleanup=dict(type="str", default="on_success", choices=["on_success", "always", "never"]),
    log_tail_lines=dict(type="int", default=20),
    log_max_bytes=dict(type="int", default=8192),
    pod_labels=dict(type="dict", default={}),
    pod_annotations=dict(type="dict", default={}),
    resources=dict(type="dict"),
    priority_class_name=dict(type="str"),
    service_account=dict(type="str"),
)


def broadcast_options():
    return copy.deepcopy(BROADCAST_OPTIONS)


def parse_parallelism(value):
    """Return ("count", n) or ("percent", p). Raises InvalidInput."""
    accepted = "a whole number of pods of at least 1, or a percentage of the eligible nodes from 1% to 100%"
    if isinstance(value, bool):
        raise InvalidInput("parallelism", value, accepted)
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        n = int(value)
        if n < 1:
            raise InvalidInput("parallelism", value, accepted)
        return ("count", n)
    if isinstance(value, str) and re.match(r"^\s*\d+\s*%\s*$", value):
        p = int(value.strip().rstrip("%").strip())
        if not 1 <= p <= 100:
            raise InvalidInput("parallelism", value, accepted)
        return ("percent", p)
    raise InvalidInput("parallelism", value, accepted)


def resolve_parallelism(parallelism, eligible):
    kind, n = parallelism
    if kind == "count":
        return n
    return max(1, (eligible * n + 99) // 100)


def _check_name(param, value, max_len):
    accepted = "a DNS-1123 label (lowercase letters, digits and '-') of at most %d characters" % max_len
    if not isinstance(value, str) or not value:
        raise InvalidInput(param, value, accepted)
    if len(value) > max_len:
        raise InvalidInput(param, value, accepted, why="%d characters" % len(value))
    if not DNS_LABEL.match(value):
        raise InvalidInput(param, value, accepted)


def _non_negative(params, name, minimum=0):
    value = params.get(name)
    if value is not None and value < minimum:
        raise InvalidInput(name, value, "a number of at least %d" % minimum)


def check_labels(param, labels):
    for key, value in (labels or {}).items():
        try:
            parse_label_selector("%s=%s" % (key, "" if value is None else value))
        except SelectorError as exc:
            raise InvalidInput(param, {key: value}, "valid Kubernetes label keys and values", why=str(exc))


def check_tolerations(param, tolerations):
    for i, tol in enumerate(tolerations or []):
        if not isinstance(tol, dict) or tol.get("operator", "Equal") not in ("Equal", "Exists") or \
                tol.get("effect") not in (None, "", "NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise InvalidInput("%s[%d]" % (param, i), tol,
                               "operator Equal or Exists and effect NoSchedule, PreferNoSchedule or NoExecute")


def _task(params):
    """The container (and pod-level host access) for the chosen preset or template."""
    preset = params.get("preset")
    template = params.get("pod_template")
    if preset and template:
        raise InvalidInput("pod_template", "(given together with preset=%s)" % preset,
                           "either preset or pod_template, not both")
    if not preset and not template:
        raise InvalidInput("preset", None, "one of %s, or a pod_template" % ", ".join(PRESETS))
    for other in PRESETS:
        if other != preset and params.get(other):
            raise InvalidInput(other, params.get(other), "options for the chosen preset only (preset=%s)" % preset)
    if template:
        spec = template.get("spec") if isinstance(template, dict) else None
        if not isinstance(spec, dict) or not spec.get("containers"):
            raise InvalidInput("pod_template", template, "a pod template with spec.containers")
        return {"kind": "pod_template", "template": copy.deepcopy(template), "host_access": False}

    image = params.get("image") or DEFAULT_IMAGE
    host_security = {"privileged": True}
    if preset == "image_prune":
        opts = params.get("image_prune") or {}
        task = {"preset": "image_prune", "include": opts.get("include") or [], "exclude": opts.get("exclude") or [],
                "dry_run": bool(opts.get("dry_run"))}
        container = {"name": "image-prune", "image": image, "command": list(SCRIPT_COMMAND),
                     "env": [{"name": "NODEOPS_TASK", "value": json.dumps(task, sort_keys=True)}],
                     "volumeMounts": [dict(SCRIPT_MOUNT)], "securityContext": host_security}
        return {"kind": "preset", "preset": preset, "host_access": True, "host_pid": True,
                "container": container, "volumes": [], "script": True}
    if preset == "path_cleanup":
        opts = params.get("path_cleanup") or {}
        path = opts.get("path")
        refusal = host_tasks.path_cleanup_refusal(path)
        if refusal:
            raise InvalidInput("path_cleanup.path", path,
                               "an absolute host path outside the protected system paths", why=refusal)
        if opts.get("older_than_days") is not None and opts["older_than_days"] < 0:
            raise InvalidInput("path_cleanup.older_than_days", opts["older_than_days"], "a number of days >= 0")
        if opts.get("older_than_days") is None and not opts.get("patterns"):
            raise InvalidInput("path_cleanup", opts, "older_than_days and/or patterns, so that not every file goes")
        task = {"preset": "path_cleanup", "path": path, "mount": "/host-target",
                "older_than_days": opts.get("older_than_days"), "patterns": opts.get("patterns") or [],
                "dry_run": bool(opts.get("dry_run"))}
        container = {"name": "path-cleanup", "image": image, "command": list(SCRIPT_COMMAND),
                     "env": [{"name": "NODEOPS_TASK", "value": json.dumps(task, sort_keys=True)}],
                     "volumeMounts": [{"name": "target", "mountPath": "/host-target",
                                       "readOnly": bool(opts.get("dry_run"))}, dict(SCRIPT_MOUNT)]}
        # Only the one directory is mounted; no host namespaces, no privilege.
        return {"kind": "preset", "preset": preset, "host_access": True, "host_pid": False, "container": container,
                "volumes": [{"name": "target", "hostPath": {"path": path, "type": "Directory"}}], "script": True}
    opts = params.get("host_command") or {}
    command = opts.get("command")
    if opts.get("shell"):
        if not isinstance(command, str) or not command.strip():
            raise InvalidInput("host_command.command", command, "a non-empty shell string when shell=true")
        argv = ["/bin/sh", "-c", command]
    else:
        if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
            raise InvalidInput("host_command.command", command,
                               "a list of strings (argv); a shell string needs shell=true")
        argv = list(command)
    container = {"name": "host-command", "image": image,
                 "command": ["nsenter", "--target", "1", "--mount", "--uts", "--ipc", "--net", "--pid", "--"] + argv,
                 "securityContext": host_security}
    return {"kind": "preset", "preset": "host_command", "host_access": True, "host_pid": True,
            "container": container, "volumes": []}


def script_source():
    """The node script (host_tasks) as the preset pods run it, from the run record they mount."""
    import inspect

    return inspect.getsource(host_tasks)


def validate_identity(params):
    """Check name, run_id and namespace, which every state needs."""
    _check_name("name", params.get("name"), NAME_MAX)
    if params.get("run_id") is not None:
        _check_name("run_id", params.get("run_id"), RUN_ID_MAX)
    if params.get("namespace") is not None:
        _check_name("namespace", params.get("namespace"), 63)


def validate(params):
    """Check broadcast options and return the plain spec the planner and builders use. Pure."""
    validate_identity(params)
    namespace = params.get("namespace")
    for name in ("timeout", "pending_timeout"):
        _non_negative(params, name, minimum=1)
    for name in ("restart_limit", "log_tail_lines", "log_max_bytes"):
        _non_negative(params, name)
    parallelism = parse_parallelism(params.get("parallelism", 10))
    try:
        requirements = parse_label_selector(params.get("node_label_selector"))
    except SelectorError as exc:
        raise InvalidInput("node_label_selector", params.get("node_label_selector"),
                           "a label selector such as 'zone in (a,b),!gpu,tier=web'", why=str(exc))
    node_selector = params.get("node_selector") or {}
    check_labels("node_selector", node_selector)
    check_labels("pod_labels", params.get("pod_labels"))
    check_tolerations("tolerations", params.get("tolerations"))
    if params.get("nodes") is not None and not params.get("nodes"):
        raise InvalidInput("nodes", params.get("nodes"), "a non-empty list of node names, or no 'nodes' at all")
    task = _task(params)
    return {
        "name": params["name"],
        "namespace": namespace or "default",
        "run_id": params.get("run_id"),
        "task": task,
        "node_selector": dict(node_selector),
        "label_requirements": requirements,
        "nodes": list(params["nodes"]) if params.get("nodes") else None,
        "tolerations": list(params.get("tolerations") or []),
        "tolerate_all_taints": bool(params.get("tolerate_all_taints")),
        "include_control_plane": bool(params.get("include_control_plane")),
        "include_not_ready": bool(params.get("include_not_ready")),
        "include_cordoned": bool(params.get("include_cordoned")),
        "pin": params.get("pin") or "affinity",
        "parallelism": parallelism,
        "failure_policy": params.get("failure_policy") or "continue",
        "fail_on_node_failure": params.get("fail_on_node_failure", True) is not False,
        "restart_policy": params.get("restart_policy") or "Never",
        "restart_limit": params.get("restart_limit", 3),
        "timeout": params.get("timeout") or 600,
        "pending_timeout": params.get("pending_timeout") or 120,
        "cleanup": params.get("cleanup") or "on_success",
        "log_tail_lines": params.get("log_tail_lines", 20),
        "log_max_bytes": params.get("log_max_bytes", 8192),
        "pod_labels": dict(params.get("pod_labels") or {}),
        "pod_annotations": dict(params.get("pod_annotations") or {}),
        "resources": params.get("resources"),
        "priority_class_name": params.get("priority_class_name"),
        "service_account": params.get("service_account"),
    }
