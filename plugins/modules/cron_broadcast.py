#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: cron_broadcast
short_description: Schedule a broadcast (one pod per node) in the cluster with a native CronJob
version_added: 0.1.0
description:
  - Installs a Kubernetes CronJob whose Job runs the broadcast_job engine inside the cluster, on a stock
    C(python) image; nothing to build or install. Each run records its per-node results in a history
    ConfigMap that survives the deletion of every pod and Job; read it with M(nodeops.kubernetes.broadcast_info).
  - Installs, each labeled C(app.kubernetes.io/managed-by=nodeops.kubernetes) and
    C(nodeops.io/cron-broadcast=<name>), a ServiceAccount; a Role and RoleBinding for pods, pods/log and
    ConfigMaps in I(namespace); a ClusterRole and binding to get, list and watch nodes only; a ConfigMap with the
    runner's code and task; and the CronJob.
  - The schedule is kept exactly as written and checked by the apiserver (a server-side dry run of every
    object) before anything is written. What Kubernetes accepts is accepted, and a schedule it refuses fails
    with the apiserver's reason and nothing written, in check mode as well. I(next_runs) previews the next
    fire times where croniter knows the syntax.
  - Idempotent; each object is compared with a server-side dry run, so check mode writes nothing and
    diff mode shows only real changes.
  - Pod Security is checked before any write, in check mode too. Its enforce mode judges Pods only, so a
    CronJob whose pods the namespace refuses would install cleanly and fail at its first run. So a node pod
    (built from the broadcast options) and the runner pod are each created as a server-side dry run, which
    stores nothing. A pod the namespace's level refuses fails the task with nothing written, naming the
    namespace, the level it enforces (its C(pod-security.kubernetes.io/enforce) label, or the cluster default),
    the level the pods need (C(privileged) for every preset) and the command that would admit them,
    C(kubectl label --overwrite namespace <namespace> pod-security.kubernetes.io/enforce=<level>).
  - The API server's warnings about those pods, for example those of a C(pod-security.kubernetes.io/warn)
    label, become task warnings.
  - The namespace must exist, in check mode too, as every object is dry-run into it.
author:
  - nodeops maintainers (@nodeops)
extends_documentation_fragment:
  - nodeops.kubernetes.tested_versions
  - nodeops.kubernetes.k8s_auth
  - nodeops.kubernetes.broadcast
options:
  name:
    description:
      - Name of the cron broadcast, its CronJob and its node pods. A DNS-1123 label of at most 37 characters.
    type: str
    required: true
  namespace:
    description:
      - Namespace for the CronJob, its runner and the node pods.
    type: str
    default: default
  schedule:
    description:
      - Cron schedule, for example C(30 2 * * *), C(@daily) or C(@every 6h), as the Kubernetes CronJob takes it.
        Required with I(state=present).
    type: str
  time_zone:
    description:
      - IANA time zone of the schedule, for example C(Europe/Berlin). Defaults to the controller-manager's, usually UTC.
    type: str
  concurrency_policy:
    description:
      - What to do when a run is due while the last one still runs. C(Replace) stops the running one (its
        runner records it as interrupted and deletes its pods).
    type: str
    default: Forbid
    choices: [ Allow, Forbid, Replace ]
  starting_deadline_seconds:
    description:
      - A run that could not start within this many seconds of its time is skipped.
    type: int
  successful_jobs_history_limit:
    description:
      - Finished Jobs the CronJob keeps. The run history does not depend on them.
    type: int
    default: 3
  failed_jobs_history_limit:
    description:
      - Failed Jobs the CronJob keeps.
    type: int
    default: 3
  history_limit:
    description:
      - Runs kept in the history ConfigMap (newest first; logs are trimmed to stay under 512 KiB).
    type: int
    default: 10
  suspend:
    description:
      - Suspend the schedule.
    type: bool
    default: false
  runner_image:
    description:
      - Image of the runner. Any image with Python 3.9 or newer works; the code comes from a ConfigMap.
        A Containerfile for a built runner image is in the collection's C(files/) directory.
    type: str
    default: python:3.13-slim
  runner_node_selector:
    description:
      - Labels a node must have for the runner pod to run there (its C(nodeSelector)), e.g. to keep
        the runner on system nodes. The node pods are placed by the broadcast options, not by this.
    type: dict
    default: {}
  runner_tolerations:
    description:
      - Tolerations of the runner pod, e.g. for tainted system nodes. Same form as a pod's
        C(tolerations).
    type: list
    elements: dict
    default: []
  labels:
    description:
      - Labels added to every object this cron broadcast installs, for example to tell who installed it
        (the C(node_maintenance) role sets C(nodeops.io/installed-by=node_maintenance) and later removes only
        the tasks that carry it).
      - The collection's own labels (C(app.kubernetes.io/managed-by), C(nodeops.io/*)) cannot be set here.
    type: dict
    default: {}
  freeze:
    description:
      - Days on which no run starts pods, for example a change freeze over the holidays. A run that falls due
        inside a freeze (the CronJob's, or one started by I(run_now)) starts no pod and is recorded in the
        history as C(skipped), with the freeze's reason; M(nodeops.kubernetes.broadcast_info) and its report
        show it. I(next_runs) leaves the frozen fire times out, and I(frozen_runs) names them.
      - Each entry is a date C(YYYY-MM-DD), a range of dates C(YYYY-MM-DD..YYYY-MM-DD) with both days included,
        or a dict with C(start), optional C(end) (included; default the start) and optional C(reason) (at most
        200 characters; default C(change freeze)).
      - The days are days of I(time_zone), which is required with a freeze (a CronJob without a time zone fires on
        the controller-manager's clock, whose zone no client can read). A freeze covers from the local midnight
        that starts its first day to the local midnight that ends its last, daylight-saving days whole.
      - The runner judges a run by the time it starts, seconds after the run fell due (longer when its image
        must be pulled). With I(run_now) inside a freeze the module warns that the run will be skipped.
      - Consecutive runs skipped by one freeze are one entry of the history, with C(skipped_runs) (how many) and
        C(first_skipped_at), so that a long freeze does not push the runs that did something out of it.
      - At most 100 entries. An empty list (the default) freezes nothing.
    type: list
    elements: raw
    default: []
  run_now:
    description:
      - Also start a run at once, as a Job created from the CronJob.
    type: bool
    default: false
  state:
    description:
      - C(absent) removes the objects this module installed, the history and any pods of its runs.
    type: str
    default: present
    choices: [ present, absent ]
requirements:
  - python >= 3.9
  - croniter >= 6.1
  - kubernetes (Python package), only to read kubeconfig files
notes:
  - No test waits for the CronJob's schedule. The runner runs in the pod of a Job started by I(run_now), on the
    real node, or as a local process with the CronJob's own command, code and ServiceAccount
    (C(tools/localcluster/run_runner.py)).
attributes:
  check_mode:
    description:
      - Every object is compared by a server-side dry run; nothing is written.
      - A node pod and the runner pod are dry-run too, so a namespace whose Pod Security level would refuse
        them fails check mode as it would fail the install.
    support: full
  diff_mode:
    description: Shows the objects that would change, before and after.
    support: full
"""

EXAMPLES = r"""
- name: Prune unused images every night at 02:30 Berlin time
  nodeops.kubernetes.cron_broadcast:
    name: nightly-prune
    namespace: node-maintenance
    schedule: "30 2 * * *"
    time_zone: Europe/Berlin
    preset: image_prune
    parallelism: 20%
  register: cron

- name: Show when it fires next
  ansible.builtin.debug:
    var: cron.next_runs

- name: Clean week-old application logs every Sunday, and run it once now
  nodeops.kubernetes.cron_broadcast:
    name: weekly-logs
    namespace: node-maintenance
    schedule: "@weekly"
    preset: path_cleanup
    path_cleanup:
      path: /var/log/myapp
      older_than_days: 7
    run_now: true

- name: Prune nightly, but not during the year-end change freeze nor on a release day
  nodeops.kubernetes.cron_broadcast:
    name: nightly-prune
    namespace: node-maintenance
    schedule: "30 2 * * *"
    time_zone: Europe/Berlin
    preset: image_prune
    freeze:
      - start: "2026-12-21"
        end: "2027-01-04"
        reason: year-end change freeze
      - "2027-02-15"
  register: cron

- name: Say which runs the freezes skip
  ansible.builtin.debug:
    msg: "{{ cron.frozen_runs | map(attribute='freeze') | list }}"

- name: Remove it, with its history and any leftover pods
  nodeops.kubernetes.cron_broadcast:
    name: weekly-logs
    namespace: node-maintenance
    state: absent
"""

RETURN = r"""
next_runs:
  description: The next 5 fire times outside every freeze, in I(time_zone) (or UTC) and in UTC.
  returned: state=present
  type: list
  elements: dict
  sample: [{local: "2026-11-24T02:30:00+01:00", utc: "2026-11-24T01:30:00+00:00"}]
frozen_runs:
  description:
    - The fire times I(next_runs) left out because a freeze covers them, before the last of I(next_runs). One
      entry per freeze, with the first fire time it skips, the freeze (its reason, days and time zone) and how
      many fire times it skips (counted up to 1000).
    - Empty without I(freeze), or when no freeze falls before the fifth next run.
  returned: state=present
  type: list
  elements: dict
  sample: [{local: "2026-12-21T02:30:00+01:00", utc: "2026-12-21T01:30:00+00:00",
            freeze: "year-end change freeze (2026-12-21..2027-01-04, Europe/Berlin)", hidden: 15}]
objects:
  description: The objects of this cron broadcast.
  returned: always
  type: list
  elements: dict
  sample: [{kind: CronJob, name: nightly-prune, namespace: node-maintenance}]
changes:
  description: The objects that were (or in check mode would be) created or changed.
  returned: state=present
  type: list
  elements: dict
deleted:
  description: With state=absent, what was (or would be) deleted.
  returned: state=absent
  type: list
  elements: dict
job:
  description: With run_now, the name of the Job started from the CronJob.
  returned: when run_now
  type: str
  sample: nightly-prune-manual-1732330000
"""

import datetime
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import freeze, options
from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron import install, manifests
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube import apply
from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron import schedule as cron_schedule
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import ApiError, InvalidInput
from ansible_collections.nodeops.kubernetes.plugins.module_utils._ansible.edge import (
    argument_spec,
    client_from_params,
    resolve_preset_options,
    run_module,
)


def build_argument_spec():
    return argument_spec(
        name=dict(type="str", required=True),
        namespace=dict(type="str", default="default"),
        schedule=dict(type="str"),
        time_zone=dict(type="str"),
        concurrency_policy=dict(type="str", default="Forbid", choices=["Allow", "Forbid", "Replace"]),
        starting_deadline_seconds=dict(type="int"),
        successful_jobs_history_limit=dict(type="int", default=3),
        failed_jobs_history_limit=dict(type="int", default=3),
        history_limit=dict(type="int", default=10),
        suspend=dict(type="bool", default=False),
        runner_image=dict(type="str", default=options.DEFAULT_IMAGE),
        runner_node_selector=dict(type="dict", default={}),
        runner_tolerations=dict(type="list", elements="dict", default=[]),
        labels=dict(type="dict", default={}),
        freeze=dict(type="list", elements="raw", default=[]),
        run_now=dict(type="bool", default=False),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        **options.broadcast_options()
    )


def validate(params):
    """Everything checked before the first request. Returns (cron options, broadcast options)."""
    if params.get("schedule") is None:
        raise InvalidInput("schedule", None, "a cron schedule such as '30 2 * * *' when state=present")
    expr = cron_schedule.check_schedule(params["schedule"])
    cron_schedule.check_time_zone(params.get("time_zone"))
    image = params.get("runner_image")
    if not image or not image.strip():
        raise InvalidInput("runner_image", image, "an image reference with Python 3.9+, e.g. 'python:3.13-slim'")
    for key in ("starting_deadline_seconds", "successful_jobs_history_limit", "failed_jobs_history_limit"):
        if params.get(key) is not None and params[key] < 0:
            raise InvalidInput(key, params[key], "a number of at least 0")
    if params.get("history_limit") is not None and params["history_limit"] < 1:
        raise InvalidInput("history_limit", params["history_limit"], "a number of runs of at least 1")
    opts = options.validate(dict(params, run_id=None))
    options.check_labels("runner_node_selector", params.get("runner_node_selector"))
    extra = dict((str(k), str(v)) for k, v in (params.get("labels") or {}).items())
    options.check_labels("labels", extra)
    ours = sorted(k for k in extra if k == "app.kubernetes.io/managed-by" or k.startswith("nodeops.io/")
                  and k != manifests.LABEL_INSTALLED_BY)
    if ours:
        raise InvalidInput("labels", params.get("labels"), "labels other than the collection's own (%s)" % ", ".join(ours))
    options.check_tolerations("runner_tolerations", params.get("runner_tolerations"))
    cron = dict((k, params.get(k)) for k in (
        "name", "time_zone", "concurrency_policy", "starting_deadline_seconds", "successful_jobs_history_limit",
        "failed_jobs_history_limit", "history_limit", "suspend"))
    if params.get("freeze") and not params.get("time_zone"):
        # Freeze days are days of a time zone; a CronJob without one fires on the controller-manager's clock,
        # whose zone no client can read.
        raise InvalidInput("time_zone", None, "an IANA time zone such as 'Europe/Berlin' or 'UTC' when freeze is set "
                           "(its days are days of that zone)")
    cron.update(schedule=expr, runner_image=image.strip(), labels=extra,
                freeze=freeze.parse_freeze(params.get("freeze") or [], params.get("time_zone")),
                runner_node_selector=dict(params.get("runner_node_selector") or {}),
                runner_tolerations=list(params.get("runner_tolerations") or []))
    return cron, opts


def present(module, client, cron, opts):
    desired = manifests.build_objects(cron, opts)
    for warning in install.preflight(client, desired, opts):
        module.warn(warning)
    try:
        changed, diff, results = apply.ensure(client, desired, module.check_mode)
    except ApiError as exc:
        raise cron_schedule.refused_by_apiserver(exc, cron)
    stale = install.stale_objects(client, cron["name"], opts["namespace"], desired, module.check_mode)
    changed += stale
    runs, frozen = cron_schedule.preview(cron["schedule"], cron.get("time_zone"), freeze=cron["freeze"])
    result = {"changed": bool(changed), "changes": changed, "objects": [apply.ref(o) for o in desired],
              "next_runs": runs, "frozen_runs": frozen}
    if module._diff and changed:
        result["diff"] = diff
    if module.params["run_now"]:
        now_frozen = freeze.frozen_at(cron["freeze"], datetime.datetime.now(datetime.timezone.utc))
        if now_frozen is not None:
            module.warn("run_now: today is inside the freeze %s; the run will start no pod and be recorded as "
                        "skipped" % freeze.describe(now_frozen))
        job_name = "%s-manual-%d" % (cron["name"], int(time.time()))
        result.update(changed=True, job=job_name)
        if not module.check_mode:
            job = manifests.job_from_cron(results[-1], job_name)
            client.create(apply.path_for(client, "batch/v1", "Job", opts["namespace"]), job)
    return result


def absent(module, client):
    deleted = install.remove(client, module.params["name"], module.params["namespace"], module.check_mode)
    return {"changed": bool(deleted), "deleted": deleted, "objects": deleted}


def main():
    module = AnsibleModule(argument_spec=build_argument_spec(), supports_check_mode=True)

    def action(mod):
        options.validate_identity(mod.params)
        if mod.params["state"] == "absent":
            return absent(mod, client_from_params(mod.params))
        cron, opts = validate(resolve_preset_options(mod.params))
        return present(mod, client_from_params(mod.params), cron, opts)

    run_module(module, action)


if __name__ == "__main__":
    main()
