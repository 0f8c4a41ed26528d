#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: broadcast_info
short_description: Read the run history of cron broadcasts and the state of broadcast_job runs
version_added: 0.1.0
description:
  - For each cron broadcast (M(nodeops.kubernetes.cron_broadcast)) in I(namespace), returns its schedule,
    whether it is suspended, the next fire times, the last run and the recorded history with per-node
    outcomes. The history lives in a ConfigMap, so it is there after every pod and Job is gone.
  - For each scheduled sweep of M(nodeops.kubernetes.dangling_job_ttl) (I(sweep_schedule)) in I(namespace),
    returns its schedule and its recorded sweeps (C(sweeps)).
  - For one-off M(nodeops.kubernetes.broadcast_job) runs that still have pods or a run record in the cluster,
    returns their state and the phase of each pod.
author:
  - nodeops maintainers (@nodeops)
extends_documentation_fragment:
  - nodeops.kubernetes.tested_versions
  - nodeops.kubernetes.k8s_auth
options:
  name:
    description:
      - Only the broadcast of this name. All of the namespace's when not given.
    type: str
  namespace:
    description:
      - Namespace to read.
    type: str
    default: default
  runs:
    description:
      - How many of the most recent runs of each cron broadcast to return.
    type: int
    default: 5
requirements:
  - python >= 3.9
  - croniter >= 6.1, for next_runs
notes:
  - The histories it reads were written in these tests by cron_broadcast's runner, in its pod on the real node
    and as a local process.
attributes:
  check_mode:
    description: Reads only.
    support: full
  diff_mode:
    description: Reads only.
    support: none
"""

EXAMPLES = r"""
- name: Read the history of the nightly prune
  nodeops.kubernetes.broadcast_info:
    name: nightly-prune
    namespace: node-maintenance
  register: info

- name: Per-node outcomes of the last run
  ansible.builtin.debug:
    msg: "{{ item.node }}: {{ item.outcome }}"
  loop: "{{ info.cron_broadcasts[0].last_run.nodes | default([]) }}"
  loop_control:
    label: "{{ item.node }}"
"""

RETURN = r"""
cron_broadcasts:
  description: One entry per cron broadcast.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the cron broadcast.
      type: str
    schedule:
      description: Its schedule.
      type: str
    time_zone:
      description: Its time zone, if set.
      type: str
    suspended:
      description: Whether the schedule is suspended.
      type: bool
    last_schedule_time:
      description: When the CronJob last started a Job.
      type: str
    next_runs:
      description: The next fire times outside its freezes (local and UTC); empty when suspended.
      type: list
      elements: dict
    frozen_runs:
      description:
        - The fire times I(next_runs) left out because a freeze covers them (before the last of I(next_runs)). One
          entry per freeze, with the first fire time it skips, C(freeze) (its reason, days and time zone) and
          C(hidden) (how many fire times it skips, counted up to 1000).
      type: list
      elements: dict
    freeze:
      description:
        - The cron broadcast's freezes (its I(freeze) option, checked), each with C(start), C(end), C(reason),
          C(time_zone) and the UTC instants it covers (C(from_utc), C(until_utc), the latter excluded).
      type: list
      elements: dict
    last_run:
      description: The newest recorded run, with its per-node outcomes.
      type: dict
    history:
      description:
        - The newest I(runs) runs, each with run_id, job, started_at, finished_at, state, summary, removed and nodes.
        - C(state) is C(succeeded), C(failed), C(interrupted) or C(skipped). A C(skipped) run fell due inside one of
          the cron broadcast's freezes and started no pod; its C(reason) names the freeze. Consecutive runs skipped by
          one freeze are one entry, with C(skipped_runs) (how many) and C(first_skipped_at).
        - This is the record of what was removed. Each node's C(result) is its preset's result. It lists what was
          removed (C(images_removed) or C(files_removed), at most 50 names) and gives the full count and
          C(bytes_freed). Each run's C(removed) holds the totals over its nodes (C(bytes_freed), C(items),
          C(nodes_reporting)); a dry run's figures are counted apart (C(dry_run_nodes), C(would_free_bytes),
          C(would_remove_items)), never as freed.
        - "How it is bounded: at most the cron broadcast's I(history_limit) runs, in one ConfigMap of at most 512 KiB.
          When the runs do not fit, detail goes in this order: the older runs' logs (oldest first); their skipped
          nodes, folded into a count per reason (C(skipped_by_reason)); their lists of names (counts and bytes stay,
          with C(lists_dropped=true)); the newest run's skipped nodes, folded; its logs; the oldest runs; the newest
          run's lists; and last its succeeded nodes, then its others (C(nodes_dropped) counts them). Every run that
          is kept keeps its summary and C(removed)."
      type: list
      elements: dict
  sample:
    - name: nightly-prune
      schedule: "30 2 * * *"
      suspended: false
      history: [{run_id: "1123023000ab12", state: succeeded, summary: {desired: 8, succeeded: 8},
                 removed: {bytes_freed: 1856000000, items: 24, nodes_reporting: 8},
                 nodes: [{node: node-1, outcome: succeeded, result: {images_removed: ["docker.io/library/nginx:1.25"],
                                                                    images_removed_count: 3, bytes_freed: 232000000}}]}]
sweeps:
  description:
    - One entry per scheduled sweep of ownerless Jobs (M(nodeops.kubernetes.dangling_job_ttl) with
      I(sweep_schedule)) whose CronJob runs in I(namespace) (its I(sweep_namespace)); with I(name), only the one
      of that I(policy_name).
    - Each sweep in C(history) (newest first, at most I(runs)) has run_id, job, started_at, finished_at,
      C(state) (succeeded, failed or interrupted), C(summary) (action, taken, examined, spared, errors),
      C(per_namespace) (Jobs taken per namespace), C(spared_by_reason), C(names) (at most the sweep's
      I(sweep_max_names)) and C(errors).
  returned: always
  type: list
  elements: dict
  sample:
    - name: nodeops-dangling-job-ttl
      schedule: "0 3 * * *"
      installed: true
      last_run: {run_id: "1205030000ab12", state: succeeded, summary: {action: delete, taken: 12, examined: 40,
                 spared: 28, errors: 0}}
runs:
  description:
    - Runs still in the cluster (their run record exists), from broadcast_job or a cron broadcast's runner.
    - A run in progress has C(state=running) and C(progress), the counts so far (outcomes, C(active) pods,
      C(waiting) nodes, C(desired)), written at most every 5 seconds; C(updated_at) says when.
    - A record that says running but that nothing has written for longer than the run's own timeout (and
      2 minutes) is C(state=abandoned), with C(abandoned_reason), because the process that ran it died (a killed
      playbook, a node lost under the runner). Its pods, if any, stay owned by the record; remove them with
      broadcast_job C(state=absent) and its C(run_id).
  returned: always
  type: list
  elements: dict
  sample: [{name: image-prune, run_id: "1123031500ab12", state: running, failed_nodes: [],
            progress: {desired: 500, succeeded: 120, failed: 1, active: 25, waiting: 354},
            updated_at: "2026-11-23T03:16:05Z", pods: []},
           {name: image-prune, run_id: "1123021500ab12", state: finished, failed_nodes: [node-3],
            pods: [{name: image-prune-1123031500ab12-0c1d2e3f, node: node-3, phase: Failed}]}]
"""

import datetime

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import freeze, history, naming
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.apply import LABEL_MANAGED_BY, MANAGED_BY
from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron import schedule as cron_schedule
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.options import validate_identity
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.watch import list_all
from ansible_collections.nodeops.kubernetes.plugins.module_utils._dangling.scheduled import (
    KIND_SWEEP_HISTORY, LABEL_SWEEP, object_names)
from ansible_collections.nodeops.kubernetes.plugins.module_utils._ansible.edge import (
    argument_spec,
    client_from_params,
    run_module,
)


def cron_info(client, namespace, name, history_cm, runs):
    cron = client.get_or_none(client.group_path("batch/v1", "cronjobs", namespace, name))
    runs_recorded = history.read_runs(history_cm)
    entry = {"name": name, "installed": cron is not None, "history": runs_recorded[:runs],
             "last_run": runs_recorded[0] if runs_recorded else None}
    if cron is not None:
        spec = cron["spec"]
        frozen = freeze.freeze_of(cron)
        runs, hidden = ([], []) if spec.get("suspend") else cron_schedule.preview(spec["schedule"], spec.get("timeZone"),
                                                                                  freeze=frozen)
        entry.update(schedule=spec["schedule"], time_zone=spec.get("timeZone"), suspended=bool(spec.get("suspend")),
                     last_schedule_time=(cron.get("status") or {}).get("lastScheduleTime"),
                     next_runs=runs, frozen_runs=hidden, freeze=frozen)
    return entry


def gather(client, namespace, name, runs):
    selector = LABEL_MANAGED_BY + "=" + MANAGED_BY
    cron_names = set()
    histories, records, sweep_histories = {}, [], {}
    # One listing of our ConfigMaps serves the histories, the sweeps' histories and the run records.
    for cm in list_all(client, client.core_path("configmaps", namespace), {"labelSelector": selector})[0]:
        labels = cm["metadata"].get("labels") or {}
        if labels.get(naming.LABEL_KIND) == KIND_SWEEP_HISTORY and labels.get(LABEL_SWEEP) and (
                not name or labels.get(LABEL_SWEEP) == name):
            sweep_histories[labels[LABEL_SWEEP]] = cm
        elif labels.get(naming.LABEL_KIND) == naming.KIND_HISTORY:
            histories[labels.get(naming.LABEL_CRON)] = cm
        elif labels.get(naming.LABEL_KIND) == naming.KIND_RUN_RECORD and (
                not name or labels.get(naming.LABEL_BROADCAST) == name):
            records.append(cm)
    for cj in list_all(client, client.group_path("batch/v1", "cronjobs", namespace), {"labelSelector": selector})[0]:
        if LABEL_SWEEP not in (cj["metadata"].get("labels") or {}):   # a scheduled sweep's is in sweeps
            cron_names.add(cj["metadata"]["name"])
    cron_names.update(n for n in histories if n)
    if name:
        cron_names &= {name}
    crons = [cron_info(client, namespace, n, histories.get(n), runs) for n in sorted(cron_names)]

    pods = list_all(client, client.core_path("pods", namespace), {"labelSelector": selector})[0]
    one_off = []
    for rec in records:
        labels = rec["metadata"]["labels"]
        run_id = labels.get(naming.LABEL_RUN)
        entry = {"name": labels.get(naming.LABEL_BROADCAST), "run_id": run_id}
        entry.update(history.read_record(rec, now=datetime.datetime.now(datetime.timezone.utc)))
        one_off.append(dict(entry, **{
            "pods": sorted(({"name": p["metadata"]["name"],
                             "node": (p["metadata"].get("annotations") or {}).get(naming.ANNOTATION_NODE),
                             "phase": (p.get("status") or {}).get("phase")}
                            for p in pods if (p["metadata"].get("labels") or {}).get(naming.LABEL_RUN) == run_id),
                           key=lambda p: p["name"])}))
    sweeps = [sweep_info(client, namespace, n, sweep_histories[n], runs) for n in sorted(sweep_histories)]
    return {"changed": False, "cron_broadcasts": crons, "sweeps": sweeps, "runs": one_off}


def sweep_info(client, namespace, policy_name, history_cm, runs):
    """One scheduled sweep: its CronJob's schedule and its recorded sweeps, newest first."""
    entry = cron_info(client, namespace, object_names(policy_name, namespace)["cron_job"], history_cm, runs)
    entry["name"] = policy_name
    return entry


def main():
    module = AnsibleModule(argument_spec=argument_spec(
        name=dict(type="str"), namespace=dict(type="str", default="default"), runs=dict(type="int", default=5)),
        supports_check_mode=True)

    def action(mod):
        p = mod.params
        validate_identity({"name": p["name"] or "x", "namespace": p["namespace"]})
        return gather(client_from_params(p), p["namespace"], p["name"], max(1, p["runs"]))

    run_module(module, action)


if __name__ == "__main__":
    main()
