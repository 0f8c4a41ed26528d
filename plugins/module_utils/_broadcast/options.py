# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A broadcast's options: their argument spec, their validation, and the workload they describe.

``BROADCAST_OPTIONS`` is the one argument spec for the workload (a preset from the registry, or a
pod template), node selection and policy options; broadcast_job and cron_broadcast both use it, and
its defaults are the only ones. ``validate(params)`` is pure: it checks everything a user can get
wrong and returns the plain ``opts`` dict the planner, the pod builder and the engine use, or raises
InvalidInput naming the option, the value and what would be accepted, before anything is written.

Words: *options* are what the user gives (``opts`` once validated); the *workload* is what runs in
each node pod (a preset's container, or the user's pod template); a pod's ``spec`` is only ever the
Kubernetes PodSpec.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import limits, pods
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import InvalidInput
from ansible_collections.nodeops.kubernetes.plugins.module_utils._node.main import ENV as NODE_ENV
from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets.registry import REGISTRY
from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets.base import OptionError
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.selectors import (
    DNS_LABEL,
    SelectorError,
    parse_label_selector,
)

DEFAULT_IMAGE = "python:3.13-slim"
NAME_MAX = 37          # pod name = <name>-<run_id>-<8 hex>, within 63 characters
RUN_ID_MAX = 16


def _preset_options():
    """The ``preset`` choice and one dict option per preset, from the registry."""
    argspec = {"preset": dict(type="str", choices=list(REGISTRY))}
    for name, preset in REGISTRY.items():
        argspec[name] = dict(type="dict", options=copy.deepcopy(preset.OPTIONS))
    return argspec


BROADCAST_OPTIONS = dict(
    _preset_options(),
    preset_options=dict(type="dict"),
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
    follow_nodes=dict(type="bool", default=True),
    pin=dict(type="str", default="affinity", choices=["affinity", "node_name"]),
    parallelism=dict(type="raw", default=10),
    failure_policy=dict(type="str", default="continue", choices=["continue", "fail_fast"]),
    max_failures=dict(type="raw"),
    window=dict(type="dict", options=dict(
        end=dict(type="str"),
        time_zone=dict(type="str"),
        duration=dict(type="str"),
    )),
    fail_on_window_closed=dict(type="bool", default=False),
    batch_soak=dict(type="raw"),
    health_gate=dict(type="dict", options=dict(
        max_not_ready=dict(type="raw"),
        finished_nodes=dict(type="bool", default=True),
    )),
    node_events=dict(type="str", default="failures", choices=["failures", "all", "none"]),
    fail_on_node_failure=dict(type="bool", default=True),
    restart_policy=dict(type="str", default="Never", choices=["Never", "OnFailure"]),
    restart_limit=dict(type="int", default=3),
    timeout=dict(type="int", default=600),
    pending_timeout=dict(type="int", default=120),
    cleanup=dict(type="str", default="on_success", choices=["on_success", "always", "never"]),
    log_tail_lines=dict(type="int", default=20),
    log_max_bytes=dict(type="int", default=8192),
    log_on_success=dict(type="bool", default=False),
    pod_labels=dict(type="dict", default={}),
    pod_annotations=dict(type="dict", default={}),
    resources=dict(type="dict"),
    priority_class_name=dict(type="str"),
    disk_pressure=dict(type="bool", default=True),
    service_account=dict(type="str"),
)


def broadcast_options():
    return copy.deepcopy(BROADCAST_OPTIONS)


def parse_parallelism(value):
    """Return ("count", n) or ("percent", p). Raises InvalidInput."""
    return limits.parse_count_or_percent(
        "parallelism", value, 1,
        "a whole number of pods of at least 1, or a percentage of the eligible nodes from 1% to 100%")


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
    """Label keys and values, as Kubernetes takes them: a map of strings. A YAML boolean, number or null
    is refused, not turned into text: ``gpu: true`` would become "True", which no node's "true" label
    equals, so every node would be skipped; ``version: 1.10`` would become "1.1"."""
    for key, value in (labels or {}).items():
        if not isinstance(value, str):
            raise InvalidInput(param, {key: value}, "label values as strings; quote them in YAML, such as "
                               "%s: \"%s\"" % (key, _yaml_text(value)),
                               why="the value of %s is %s, and label values are strings" % (key, _yaml_kind(value)))
        try:
            parse_label_selector("%s=%s" % (key, value))
        except SelectorError as exc:
            raise InvalidInput(param, {key: value}, "valid Kubernetes label keys and values", why=str(exc))


def _yaml_text(value):
    """How YAML wrote ``value`` (a bool as true/false, null as nothing): what the user should quote."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _yaml_kind(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a %s" % type(value).__name__


def check_tolerations(param, tolerations):
    for i, tol in enumerate(tolerations or []):
        if not isinstance(tol, dict) or tol.get("operator", "Equal") not in ("Equal", "Exists") or \
                tol.get("effect") not in (None, "", "NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise InvalidInput("%s[%d]" % (param, i), tol,
                               "operator Equal or Exists and effect NoSchedule, PreferNoSchedule or NoExecute")


def workload(params):
    """What runs in each node pod: a preset's container (and its node script), or the user's pod template."""
    preset = params.get("preset")
    template = params.get("pod_template")
    if preset and template:
        raise InvalidInput("pod_template", "(given together with preset=%s)" % preset,
                           "either preset or pod_template, not both")
    if not preset and not template:
        raise InvalidInput("preset", None, "one of %s, or a pod_template" % ", ".join(REGISTRY))
    for other in REGISTRY:
        if other != preset and params.get(other):
            raise InvalidInput(other, params.get(other), "options for the chosen preset only (preset=%s)" % preset)
    if template:
        pod_spec = template.get("spec") if isinstance(template, dict) else None
        if not isinstance(pod_spec, dict) or not pod_spec.get("containers"):
            raise InvalidInput("pod_template", template, "a pod template with spec.containers")
        return {"kind": "pod_template", "template": copy.deepcopy(template)}
    if preset not in REGISTRY:
        raise InvalidInput("preset", preset, "one of %s, or a pod_template" % ", ".join(REGISTRY))
    try:
        part = REGISTRY[preset].pod(params.get(preset) or {})
    except OptionError as exc:
        raise InvalidInput(exc.param, exc.value, exc.accepted, why=exc.why)
    image = params.get("image") or DEFAULT_IMAGE
    container = dict(part["container"], image=image)
    node_script = part["params"] is not None
    init = []
    if node_script:
        # The node script runs from the run's code ConfigMap, which the pod mounts; build_pod sets the
        # command that checks it against the digest in the pod spec first (see _node/boot.py).
        _runs_node_script(container, preset, part["params"])
        for stage in part.get("init") or []:
            init.append(_runs_node_script({"name": stage["name"], "image": image,
                                           "securityContext": dict(stage.get("security") or {}),
                                           "volumeMounts": list(stage.get("mounts") or [])}, preset, stage["params"]))
    return {"kind": "preset", "preset": preset, "container": container, "volumes": part["volumes"],
            "host_pid": part["host_pid"], "node_script": node_script, "inputs": list(part.get("inputs") or []),
            "init_containers": init, "disk_relief": bool(part.get("disk_relief"))}


def _runs_node_script(container, preset, node_params):
    container["env"] = [{"name": NODE_ENV, "value": json.dumps({"preset": preset, "params": node_params},
                                                               sort_keys=True, separators=(",", ":"))},
                        dict(pods.CODE_TMP_ENV)]
    container["volumeMounts"] = list(container.get("volumeMounts") or []) + [dict(pods.NODE_MOUNT),
                                                                             dict(pods.CODE_TMP_MOUNT)]
    return container


def validate_identity(params):
    """Check name, run_id and namespace, which every state needs."""
    _check_name("name", params.get("name"), NAME_MAX)
    if params.get("run_id") is not None:
        _check_name("run_id", params.get("run_id"), RUN_ID_MAX)
    if params.get("namespace") is not None:
        _check_name("namespace", params.get("namespace"), 63)


DEFAULTS = dict((name, argspec.get("default")) for name, argspec in BROADCAST_OPTIONS.items())


def _with_defaults(params):
    """``params`` with every broadcast option that is unset (None) at its argument-spec default."""
    merged = dict(params)
    for name, default in DEFAULTS.items():
        if merged.get(name) is None:
            merged[name] = copy.deepcopy(default)
    return merged


def validate(params):
    """Check broadcast options and return the plain ``opts`` the planner, pod builder and engine use. Pure."""
    validate_identity(params)
    params = _with_defaults(params)
    for name in ("timeout", "pending_timeout"):
        _non_negative(params, name, minimum=1)
    for name in ("restart_limit", "log_tail_lines", "log_max_bytes"):
        _non_negative(params, name)
    parallelism = parse_parallelism(params["parallelism"])
    max_failures = limits.parse_max_failures(params.get("max_failures"))
    if max_failures is not None and params["failure_policy"] == "fail_fast":
        raise InvalidInput("max_failures", params.get("max_failures"),
                           "no max_failures with failure_policy=fail_fast, which is the budget 0 (and also deletes "
                           "the active pods)")
    try:
        requirements = parse_label_selector(params.get("node_label_selector"))
    except SelectorError as exc:
        raise InvalidInput("node_label_selector", params.get("node_label_selector"),
                           "a label selector such as 'zone in (a,b),!gpu,tier=web'", why=str(exc))
    check_labels("node_selector", params["node_selector"])
    check_labels("pod_labels", params["pod_labels"])
    check_tolerations("tolerations", params["tolerations"])
    if params.get("nodes") is not None and not params.get("nodes"):
        raise InvalidInput("nodes", params.get("nodes"), "a non-empty list of node names, or no 'nodes' at all")
    work = workload(params)
    return {
        "name": params["name"],
        "namespace": params.get("namespace") or "default",
        "run_id": params.get("run_id"),
        "workload": work,
        "node_selector": dict(params["node_selector"]),
        "label_requirements": requirements,
        "nodes": list(params["nodes"]) if params.get("nodes") else None,
        "tolerations": list(params["tolerations"]),
        "tolerate_all_taints": bool(params["tolerate_all_taints"]),
        "include_control_plane": bool(params["include_control_plane"]),
        "include_not_ready": bool(params["include_not_ready"]),
        "include_cordoned": bool(params["include_cordoned"]),
        "follow_nodes": params["follow_nodes"] is not False,
        "pin": params["pin"],
        "parallelism": parallelism,
        "failure_policy": params["failure_policy"],
        "max_failures": max_failures,
        "window": limits.parse_window(params.get("window")),
        "fail_on_window_closed": bool(params["fail_on_window_closed"]),
        "batch_soak": limits.parse_duration("batch_soak", params["batch_soak"]) if params.get("batch_soak") is not None else 0,
        "health_gate": limits.parse_health_gate(params.get("health_gate")),
        "node_events": params["node_events"],
        "fail_on_node_failure": params["fail_on_node_failure"] is not False,
        "restart_policy": params["restart_policy"],
        "restart_limit": params["restart_limit"],
        "timeout": params["timeout"],
        "pending_timeout": params["pending_timeout"],
        "cleanup": params["cleanup"],
        "log_tail_lines": params["log_tail_lines"],
        "log_max_bytes": params["log_max_bytes"],
        "log_on_success": bool(params["log_on_success"]),
        "pod_labels": dict(params["pod_labels"]),
        "pod_annotations": dict(params["pod_annotations"]),
        "resources": params.get("resources"),
        "priority_class_name": params.get("priority_class_name"),
        # Whether the pods free disk space and run on nodes under DiskPressure too (pressure.py).
        "disk_pressure": params["disk_pressure"] is not False and bool(work.get("disk_relief")),
        "service_account": params.get("service_account"),
    }
