#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: broadcast_job
short_description: Run a task once on every eligible Kubernetes node and report each node's result
version_added: 0.1.0
description:
  - Puts one pod on each eligible node, pinned to it, watches every pod to the end and returns a
    record per node (outcome, exit code, reason, log tail, duration). No controller is installed in the cluster.
  - Nodes are chosen by name, labels and taints; control-plane, cordoned and NotReady nodes are skipped
    unless asked for, and every skipped node is reported with its reason.
  - Each pod's name comes from the run id and the node, and no two nodes of a run share one (two node names can
    hash alike); each pod also carries its node's name. Running the module again with the same I(run_id) resumes
    a run; each node's existing pod is adopted (by that node's name, never by a name another node could have)
    and only missing ones are created. A pod of that name made for another node or run is never adopted.
  - Each run's pods are owned by a small run-record ConfigMap, so deleting the run (I(state=absent)) removes
    every pod through the garbage collector even if a run was interrupted.
  - In check mode the module reads the cluster and returns the plan and the pod manifest, writing nothing.
  - Pod Security is checked before anything is written, in check mode too. One pod is created as a server-side
    dry run, which stores nothing, so the namespace's Pod Security level (and the rest of admission) judges it.
    A pod the level refuses fails the task, naming the namespace, the level it enforces (its
    C(pod-security.kubernetes.io/enforce) label, or the cluster default), the level the pods need (C(privileged)
    for every preset, as they use the host PID namespace, privileged containers or hostPath volumes) and the
    command that would admit them, C(kubectl label --overwrite namespace <namespace>
    pod-security.kubernetes.io/enforce=<level>).
  - The API server's warnings about that pod, for example those of a C(pod-security.kubernetes.io/warn) label,
    become task warnings.
author:
  - nodeops maintainers (@nodeops)
extends_documentation_fragment:
  - nodeops.kubernetes.tested_versions
  - nodeops.kubernetes.k8s_auth
  - nodeops.kubernetes.broadcast
options:
  name:
    description:
      - Name of the broadcast; part of every pod name. A DNS-1123 label of at most 37 characters.
    type: str
    required: true
  namespace:
    description:
      - Namespace of the pods.
    type: str
    default: default
  run_id:
    description:
      - Identifies one run. Defaults to a new id from the time and a random suffix.
      - Give the id of an interrupted run to resume it. A DNS-1123 label of at most 16 characters.
      - One process drives a run at a time. While the process that holds the run is alive (it renews a lease
        in the run record every 5 seconds), another one given its I(run_id) fails as soon as it sees the holder renew
        (within 5 seconds), naming it, and writes nothing. It takes the run over, adopting its pods, once the holder is gone (its process exited on this
        host, or its lease has been silent for 15 seconds).
    type: str
  state:
    description:
      - C(present) runs the broadcast. C(absent) deletes the pods and run records of I(run_id),
        or of every run of I(name) when I(run_id) is not given.
    type: str
    default: present
    choices: [ present, absent ]
requirements:
  - python >= 3.9
  - kubernetes (Python package), only to read kubeconfig files
notes:
  - Host-access presets run privileged pods; see the README's security notes.
  - What the presets do to a host (images, files and journal files removed, host commands run) and a user's
    I(pod_template) are checked on the real node.
attributes:
  check_mode:
    description:
      - Reads nodes and pods, returns the plan and the pod manifest, writes nothing.
      - The pod is dry-run on the API server first (a dry run stores nothing), so a pod that Pod Security
        would refuse fails check mode as it would fail the run.
    support: full
  diff_mode:
    description: A run creates pods rather than changing a desired state, so there is nothing to diff.
    support: none
"""

EXAMPLES = r"""
- name: See which images would be pruned on every worker
  nodeops.kubernetes.broadcast_job:
    name: image-prune
    namespace: node-maintenance
    preset: image_prune
    image_prune:
      dry_run: true
  register: prune

- name: Print one line per node
  ansible.builtin.debug:
    msg: "{{ item.node }}: {{ item.outcome }} {{ item.result.images_removed_count | default('-') }} images"
  loop: "{{ prune.nodes }}"
  loop_control:
    label: "{{ item.node }}"

- name: Prune images, 25% of the nodes at a time, stopping at the first failure
  nodeops.kubernetes.broadcast_job:
    name: image-prune
    namespace: node-maintenance
    preset: image_prune
    image_prune:
      exclude: ["registry.example.com/base/*"]
    parallelism: 25%
    failure_policy: fail_fast

- name: Prune in waves (1 node, then 2, 4, ... up to 8), ten minutes apart; stop if a pruned node goes NotReady
  nodeops.kubernetes.broadcast_job:
    name: image-prune
    namespace: node-maintenance
    preset: image_prune
    parallelism: 8
    batch_soak: 10m
    health_gate:
      max_not_ready: 2
    timeout: 14400

# follow_nodes is on by default: a node that joins during the run (a cluster autoscaler's), or is uncordoned, gets its pod.
- name: Vacuum the journal while nodes come and go, with at most two nodes NotReady in the cluster
  nodeops.kubernetes.broadcast_job:
    name: journal-vacuum
    namespace: node-maintenance
    preset: journal_vacuum
    journal_vacuum:
      max_age: 2weeks
    follow_nodes: true
    health_gate:
      max_not_ready: 2
  register: followed

- name: Say which nodes joined during the run and got their pod
  ansible.builtin.debug:
    msg: "followed: {{ followed.followed_nodes | default('check mode: follow_nodes=' ~ followed.plan.follow_nodes) }}"

# disk_pressure is on by default: nodes under DiskPressure get a critical pod (system-node-critical) that tolerates
# the disk-pressure taint, where it fits without preempting another pod.
- name: Vacuum the journal on every node, including those under DiskPressure
  nodeops.kubernetes.broadcast_job:
    name: journal-vacuum
    namespace: node-maintenance
    preset: journal_vacuum
    journal_vacuum:
      max_size: 500M
    disk_pressure: true
  register: vacuum

- name: Say which nodes were under DiskPressure, and which still were when the run ended
  ansible.builtin.debug:
    msg: "under DiskPressure: {{ vacuum.plan.disk_pressure | default(vacuum.disk_pressure.nodes) }}"

- name: Remove week-old logs of one application on the GPU nodes
  nodeops.kubernetes.broadcast_job:
    name: app-logs
    namespace: node-maintenance
    preset: path_cleanup
    path_cleanup:
      path: /var/log/myapp
      older_than_days: 7
      patterns: ["*.log", "*.gz"]
    node_label_selector: "accelerator in (nvidia-a100,nvidia-h100)"

- name: Run a host command everywhere, control plane included
  nodeops.kubernetes.broadcast_job:
    name: fstrim
    namespace: node-maintenance
    preset: host_command
    host_command:
      command: ["fstrim", "-av"]
    include_control_plane: true
    tolerate_all_taints: true

- name: Full control with a raw pod template
  nodeops.kubernetes.broadcast_job:
    name: node-check
    namespace: node-maintenance
    pod_template:
      spec:
        containers:
          - name: check
            image: busybox:1.36
            command: ["sh", "-c", "df -h /"]
    cleanup: always

- name: Resume an interrupted run
  nodeops.kubernetes.broadcast_job:
    name: image-prune
    namespace: node-maintenance
    preset: image_prune
    run_id: "{{ prune.run_id }}"

- name: Delete every pod and record of a broadcast
  nodeops.kubernetes.broadcast_job:
    name: image-prune
    namespace: node-maintenance
    state: absent
"""

RETURN = r"""
run_id:
  description: The run's id; pass it back as I(run_id) to resume the run.
  returned: state=present
  type: str
  sample: "1123031500ab12"
summary:
  description: Counts of node outcomes, and the run's duration.
  returned: state=present, also on failure
  type: dict
  sample: {desired: 8, succeeded: 6, failed: 1, skipped: 1, not_started: 1, cancelled: 0, unschedulable: 0, timed_out: 0, lost: 0,
           duration_s: 4.2}
limits:
  description:
    - What could stop the run starting pods or hold them back, and what did. C(window_closes_at) (when the
      maintenance window closed), C(failure_budget), C(batch_soak_s) (0 without I(batch_soak)), C(health_gate)
      (null without one; else C(max_not_ready), the NotReady nodes it allowed, null when not checked, and
      C(finished_nodes)), C(stopped_starting) (C(WindowClosed), C(FailureBudgetExhausted), C(HealthGate), or null)
      and C(stopped_message), the reason in words.
  returned: state=present, when nodes were eligible
  type: dict
  sample: {window_closes_at: "2026-11-24T04:00:00Z", failure_budget: 5, batch_soak_s: 600,
           health_gate: {max_not_ready: 2, finished_nodes: true}, stopped_starting: HealthGate,
           stopped_message: "not started: health gate: node worker-3 went NotReady after its pod finished in this run"}
disk_pressure:
  description:
    - The nodes under DiskPressure when the run planned them, followed them (I(follow_nodes)) or was to make their pod,
      eligible or skipped;
      C(still) those of them under DiskPressure when the run ended, as the nodes' watch last saw them, and C(cleared)
      the others. Each node's record has the same in its own C(disk_pressure).
    - The kubelet keeps the condition for its C(evictionPressureTransitionPeriod) (5 minutes by default) after the
      disk has room again, so a node a prune relieved is often still in C(still) when a short run ends.
  returned: state=present, not in check mode (there, C(plan.disk_pressure))
  type: dict
  sample: {nodes: [worker-3], cleared: [], still: [worker-3]}
followed_nodes:
  description:
    - The nodes that became eligible during the run (joined, uncordoned, a taint removed, Ready again) and got their pod
      in it (I(follow_nodes)), in the order seen. Their records are in I(nodes) like the others.
  returned: state=present
  type: list
  elements: str
  sample: [worker-17]
nodes:
  description: One record per node, eligible or skipped, sorted by node name.
  returned: state=present, also on failure
  type: list
  elements: dict
  contains:
    node:
      description: Node name.
      type: str
    pod:
      description: The pod that ran on the node, if one was created.
      type: str
    outcome:
      description:
        - One of succeeded, failed, skipped (not eligible), not_started (eligible, but the run stopped starting
          pods first), cancelled (its pod was running when fail_fast or an abort deleted it; not a failure of
          that node, and no Warning event is posted for it), unschedulable, timed_out, lost.
      type: str
    exit_code:
      description: Exit code of the (first) container, when it terminated.
      type: int
    reason:
      description:
        - Short reason, for example C(Completed), C(Error), C(untolerated taint dedicated=db:NoSchedule),
          C(ImagePullBackOff), C(HostPathMissing); for not_started C(WindowClosed), C(FailureBudgetExhausted),
          C(HealthGate), C(FailFast), C(NotStarted) (the run's timeout or an abort) or C(DiskPressure) (its node was under
          DiskPressure when its pod was to be made, and the pod may not run there, the API server refuses critical pods,
          or it would not fit beside the node's pods; the message says which); for cancelled C(CancelledByFailFast) or
          C(RunAborted).
      type: str
    message:
      description:
        - Longer explanation, for example the scheduler's message for an unschedulable pod, a preset's errors,
          or the last line of a failed container's log.
        - A container's stdout and stderr reach its log in the order the container runtime copied them, which
          between the two streams is not fixed, so a workload whose message matters writes its last lines to one
          stream.
      type: str
    log:
      description:
        - Tail of the pod's log (I(log_tail_lines), I(log_max_bytes)).
        - For a failed node, the tail the kubelet put in the container's termination message; for a succeeded node,
          only with I(log_on_success=true), read through the API before the pod was deleted.
      type: str
    result:
      description:
        - What a preset did (images or files removed, bytes freed), from the result line the node script wrote to its
          termination message, or from the log when it did not fit there.
      type: dict
      returned: for presets, when the pod printed a result
    started_at:
      description: When the pod was created (UTC).
      type: str
    finished_at:
      description: When the outcome was observed (UTC).
      type: str
    duration_s:
      description: Seconds from pod creation to outcome.
      type: float
    restarts:
      description: Container restarts.
      type: int
    disk_pressure:
      description:
        - For a node under DiskPressure when the run planned it, followed it or was to make its pod, C(before) (true)
          and C(after), whether it still was when the run ended (see the top-level I(disk_pressure)).
      type: dict
      returned: for nodes under DiskPressure
      sample: {before: true, after: false}
  sample:
    - {node: kwok-worker-1, pod: image-prune-1123031500ab12-0c1d2e3f, outcome: succeeded, exit_code: 0,
       reason: Completed, message: null, log: "...", started_at: "2026-11-23T03:15:00Z",
       finished_at: "2026-11-23T03:15:04Z", duration_s: 4.1, restarts: 0}
plan:
  description:
    - In check mode, the nodes it would run on and the skipped ones with their reasons, and what the window, the
      failure budget, the batch soak and the health gate would do to a run starting now, and whether it would follow
      nodes that join (I(follow_nodes)), and the nodes under DiskPressure (C(disk_pressure)). C(health_gate) is null
      without one; else the cluster's node count, its NotReady nodes (at most 50 names, and their count), the number
      it allows and C(would_stop), the reason a run starting now would not start any pod, or null.
  returned: check mode
  type: dict
  sample: {eligible: [kwok-worker-1], skipped: {kwok-control-plane: control plane}, existing_pods: [], to_delete: [],
           window_closes_at: "2026-11-24T04:00:00Z", failure_budget: 0, batch_soak_s: 0, follow_nodes: true,
           disk_pressure: [],
           health_gate: {cluster_nodes: 2, not_ready: [], not_ready_count: 0, max_not_ready: 0, finished_nodes: true,
                         would_stop: null}}
pod:
  description:
    - In check mode, the pod manifest for the first eligible node (a critical one if that node is under DiskPressure).
  returned: check mode, when a node is eligible
  type: dict
deleted:
  description: With state=absent, the pods and run records deleted (or that would be, in check mode).
  returned: state=absent
  type: dict
  sample: {pods: [image-prune-1123031500ab12-0c1d2e3f], records: [nodeops-run-image-prune-1123031500ab12]}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import options
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import pods
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import limits
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.engine import Clock, Engine, new_run_id
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import Forbidden, NamespaceMissing
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
        run_id=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        **options.broadcast_options()
    )


def absent(module, engine):
    p = module.params
    deleted = engine.delete_runs(p["name"], p["namespace"], p.get("run_id"), check_mode=module.check_mode)
    return {"changed": bool(deleted["pods"] or deleted["records"]), "deleted": deleted}


def check_pod(module, engine, opts, run_id, node, pressured=False):
    """The pod check mode shows, once the API server has dry-run it (admission, Pod Security): a pod it
    refuses fails check mode as it would fail the run. A dry run writes nothing. ``pressured``: the node is under
    DiskPressure (its pod may be a critical one)."""
    try:
        pod = engine.preflight(opts, run_id, node, pressured=pressured)
    except NamespaceMissing as exc:
        # Not an error in check mode: an earlier task may be about to create the namespace.
        module.warn("Pod Security not checked: %s" % exc.msg)
        return pods.build_pod(opts, run_id, node, active_deadline=opts["timeout"], pressured=pressured)
    except Forbidden as exc:
        # Check mode with credentials that may read but not create pods (a plan-only account): the plan
        # stands, the pod was not checked, and the run would need the right.
        module.warn("Pod Security not checked: these credentials may not create pods, not even as a dry run (%s)"
                    % exc.msg)
        return pods.build_pod(opts, run_id, node, active_deadline=opts["timeout"], pressured=pressured)
    for warning in engine.preflight_warnings:
        module.warn(warning)
    return pod


def health_gate_plan(gate, ready):
    """The health gate against the cluster as planned (check mode): its NotReady nodes, how many it allows, and
    the stop a run starting now would meet (None: none). Pure."""
    if not gate:
        return None
    not_ready = sorted(n for n, ok in ready.items() if not ok)
    why = limits.health_check(gate, not_ready, len(ready), [])
    return {"cluster_nodes": len(ready), "not_ready": not_ready[:50], "not_ready_count": len(not_ready),
            "max_not_ready": limits.not_ready_allowed(gate, len(ready)), "finished_nodes": gate["finished_nodes"],
            "would_stop": why[1] if why else None}


def present(module, engine, opts):
    run_id = module.params.get("run_id") or new_run_id()
    run_plan = engine.plan(opts, run_id)
    if module.check_mode:
        first = run_plan["eligible"][0] if run_plan["eligible"] else None
        closes_at = limits.window_closes_at(opts["window"], Clock.now())
        result = {"changed": bool(run_plan["eligible"]), "run_id": run_id,
                  "plan": {"eligible": run_plan["eligible"], "skipped": run_plan["skipped"],
                           "existing_pods": sorted(p["metadata"]["name"] for p in run_plan["existing"].values()),
                           "to_delete": run_plan["to_delete"],
                           # What the window and the failure budget would do to a run starting now.
                           "window_closes_at": closes_at.strftime("%Y-%m-%dT%H:%M:%SZ") if closes_at else None,
                           "failure_budget": limits.failure_budget(opts["max_failures"], len(run_plan["eligible"]),
                                                                   fail_fast=opts["failure_policy"] == "fail_fast"),
                           "batch_soak_s": opts["batch_soak"], "follow_nodes": opts["follow_nodes"],
                           # Nodes under DiskPressure: eligible ones get a critical pod, skipped ones say why.
                           "disk_pressure": sorted(run_plan["pressure"]),
                           # What the health gate would say of the cluster as it is now.
                           "health_gate": health_gate_plan(opts["health_gate"], run_plan["ready"])}}
        if first:
            result["pod"] = check_pod(module, engine, opts, run_id, first, pressured=first in run_plan["pressure"])
            critical = [n for n in run_plan["eligible"] if n in run_plan["pressure"]]
            if critical and critical[0] != first:
                # The critical pod a node under DiskPressure gets is dry-run too, as the run would: a ResourceQuota
                # that refuses it fails check mode.
                check_pod(module, engine, opts, run_id, critical[0], pressured=True)
        return result
    try:
        return engine.run(opts, run_id, plan=run_plan)
    finally:
        # The preflight's warnings (Pod Security's warn mode), on success and failure alike.
        for warning in engine.preflight_warnings:
            module.warn(warning)


def main():
    module = AnsibleModule(argument_spec=build_argument_spec(), supports_check_mode=True)

    def action(mod):
        # Everything is validated before the first request, let alone the first write.
        if mod.params["state"] == "absent":
            options.validate_identity(mod.params)
            return absent(mod, Engine(client_from_params(mod.params)))
        opts = options.validate(resolve_preset_options(mod.params))
        return present(mod, Engine(client_from_params(mod.params)), opts)

    run_module(module, action)


if __name__ == "__main__":
    main()
