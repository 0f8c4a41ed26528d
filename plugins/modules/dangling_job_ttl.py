#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: dangling_job_ttl
short_description: Give ownerless Jobs a TTL at admission, and sweep the finished ones already there
version_added: 0.1.0
description:
  - Jobs created without C(ownerReferences) (not by a CronJob or another controller) are never cleaned up.
    This module installs an admission policy that adds C(spec.ttlSecondsAfterFinished) to such Jobs
    when they are created without it. It acts on CREATE only, and with C(failurePolicy=Ignore) a policy
    that cannot run never blocks a Job.
  - The policy engine is chosen with I(policy_engine). C(native) needs no policy engine at all, since
    the API server itself applies a C(MutatingAdmissionPolicy) (Kubernetes 1.36 or newer, or 1.34 and 1.35 with
    its feature gate on, as C(v1beta1)). C(kyverno) writes
    Kyverno's C(MutatingPolicy) (C(policies.kyverno.io/v1)). C(kyverno_legacy) writes the deprecated
    C(kyverno.io/v1) C(ClusterPolicy) for Kyverno releases without MutatingPolicy.
  - Installing with one engine removes what this module wrote for the same I(policy_name) with another engine,
    found by the labels C(app.kubernetes.io/managed-by=nodeops.kubernetes) and C(nodeops.io/dangling-job-ttl).
    The new objects are written first, so new Jobs are never without a policy.
  - With I(sweep=true) it also handles the Jobs that exist already. It takes only Jobs with no ownerReferences,
    finished (Complete or Failed) more than I(ttl_seconds) ago, in an included and not excluded namespace,
    without the opt-out label, and, with I(skip_gitops_managed), without Argo CD tracking or Helm hook markers.
    It never touches running Jobs. It lists a page at a time, so its memory does not grow with the Jobs.
  - The sweep writes gently, so the apiserver stays usable for everyone else while it removes 100,000 Jobs. At
    most I(sweep_rate_limit) writes per second (150 by default; one per Job, and a write tried again counts
    again). It starts with 2 writes in flight and adds one per round while the median latency of a round stays
    within twice the lowest round median seen (or within 5 ms of it, when that is more), up to
    I(sweep_concurrency); a slower round shrinks it to three quarters. A 429 from API Priority and Fairness
    halves it and holds every write for the server's C(Retry-After) (at most 30 s; 1 s if none is given), and
    for 30 s it grows back at most to one below where the 429 came; the Job is tried again. After 5 minutes of
    429s for one Job the sweep stops (an error; the Jobs not yet written are left for the next sweep). A 5xx
    or a broken connection is backed off from the same way (1 s) and the Job tried again three times before it
    is an error. A Job someone else deleted meanwhile is not counted.
  - Why 150 Jobs per second. In the collection's benchmark (C(make bench-scale) of 2026-12-05 on 42bf3ef,
    C(benchmarks/results/NOTES.md) in the source; 2 cores shared by the apiserver, etcd, 1,000 simulated nodes
    and the sweep) another client,
    timing a GET and a small LIST every 100 ms, saw its p99 at 1.2 (10,000 Jobs) and 1.65 (100,000 Jobs) times
    its idle p99 at 150 Jobs/s; its GETs alone at 2.4 and 3.4 times, and at 3.0 times with 300 Jobs/s. Without a
    cap the latency alone held the sweep to about 390 Jobs/s. 150 Jobs/s is 100,000 Jobs in 12 minutes, where
    the one-Job-per-kubectl pipeline of the write-up takes over 3 hours (9 Jobs/s). A control plane with more
    headroom can take more. Raise I(sweep_rate_limit), or set C(0) to let latency and 429s alone pace the sweep.
  - The sweep needs no policy engine; set I(policy=false) to only sweep.
author:
  - nodeops maintainers (@nodeops)
extends_documentation_fragment:
  - nodeops.kubernetes.tested_versions
  - nodeops.kubernetes.k8s_auth
options:
  state:
    description:
      - Whether the policy should exist. C(absent) removes the objects of every engine this module wrote for
        I(policy_name), and its scheduled sweep in I(sweep_namespace) (the one-off sweep still runs if asked for).
        With I(policy=false), C(absent) removes only the scheduled sweep.
    type: str
    default: present
    choices: [ present, absent ]
  policy:
    description:
      - Manage the admission policy. With C(false) only the sweep runs, and no policy engine is needed.
    type: bool
    default: true
  policy_engine:
    description:
      - Which admission engine adds the TTL.
      - C(native) writes a C(MutatingAdmissionPolicy) and its C(MutatingAdmissionPolicyBinding), applied by the
        API server itself. It uses C(admissionregistration.k8s.io/v1) where served (Kubernetes 1.36 or newer),
        else C(admissionregistration.k8s.io/v1beta1), served by Kubernetes 1.34 and 1.35 when the API server runs
        with C(--feature-gates=MutatingAdmissionPolicy=true) and
        C(--runtime-config=admissionregistration.k8s.io/v1beta1=true). The result's C(policy_api_version) says
        which.
      - C(kyverno) writes a Kyverno C(MutatingPolicy) (C(policies.kyverno.io/v1)) with the same CEL conditions.
      - C(kyverno_legacy) writes a Kyverno C(ClusterPolicy) (C(kyverno.io/v1)), deprecated since Kyverno 1.17.
      - C(auto) takes the first of these the cluster serves, in that order, found by API discovery.
        The result's C(policy_engine) and C(policy_engine_reason) say which and why.
      - An engine the cluster does not serve is an error before anything is written.
    type: str
    default: auto
    choices: [ auto, native, kyverno, kyverno_legacy ]
  policy_name:
    description:
      - Name of the policy objects (the policy and, for C(native), its binding).
      - A DNS-1123 label of at most 63 characters, since it is also the value of the
        C(nodeops.io/dangling-job-ttl) label.
    type: str
    default: nodeops-dangling-job-ttl
  ttl_seconds:
    description:
      - TTL the policy adds; the sweep takes Jobs finished longer ago than this.
    type: int
    default: 900
  include_namespaces:
    description:
      - Only Jobs in these namespaces. All namespaces when empty.
    type: list
    elements: str
    default: []
  exclude_namespaces:
    description:
      - Never Jobs in these namespaces.
    type: list
    elements: str
    default: [kube-system, kyverno]
  opt_out_label:
    description:
      - A Job carrying this label (any value) is left alone by the policy and the sweep.
    type: str
    default: nodeops.io/keep-job
  skip_gitops_managed:
    description:
      - Leave alone Jobs with Argo CD tracking (annotation C(argocd.argoproj.io/tracking-id), label
        C(argocd.argoproj.io/instance) or C(app.kubernetes.io/instance)) or a Helm hook annotation
        (C(helm.sh/hook)). Argo CD re-creates or flags Jobs deleted under it.
    type: bool
    default: true
  sweep:
    description:
      - Also sweep the finished ownerless Jobs that exist now.
    type: bool
    default: false
  sweep_action:
    description:
      - C(delete) deletes them with background propagation, so their pods go too.
      - C(set_ttl) sets their C(ttlSecondsAfterFinished) to I(ttl_seconds) and lets the TTL controller delete them.
    type: str
    default: delete
    choices: [ delete, set_ttl ]
  sweep_page_size:
    description:
      - Jobs per list page.
    type: int
    default: 500
  sweep_concurrency:
    description:
      - The most writes in flight at once. The sweep starts with 2 (or this, when it is smaller) and adapts to
        the apiserver's latency up to this ceiling (see the description above).
    type: int
    default: 10
  sweep_rate_limit:
    description:
      - At most this many writes per second (one per Job; a write tried again counts again), whatever the latency.
        C(0) sets no cap (the latency and 429s still pace the sweep).
      - Also applies to the scheduled sweep (I(sweep_schedule)).
    type: float
    default: 150
  sweep_max_names:
    description:
      - At most this many Job names in the result.
    type: int
    default: 100
  sweep_schedule:
    description:
      - Install a scheduled sweep in the cluster, a CronJob on this schedule (Kubernetes cron syntax, such as
        C(0 3 * * *), checked by the API server with a server-side dry run before anything is written). Its
        runner is the collection's standard-library runner on a stock Python image (I(runner_image)); it sweeps
        with I(ttl_seconds), the namespaces, I(opt_out_label), I(skip_gitops_managed), I(sweep_action),
        I(sweep_concurrency), I(sweep_rate_limit), I(sweep_page_size) and I(sweep_max_names), and records each sweep in the
        ConfigMap C(<policy_name>-sweep-history) (the last I(sweep_history_limit) sweeps).
      - It needs no policy engine, so it keeps ownerless Jobs bounded on clusters with none (Kubernetes 1.33 to
        1.35 without Kyverno). With I(policy_engine=auto) and no engine served, it is installed alone and
        C(policy_engine_reason) says so.
      - Its ServiceAccount may list Jobs and delete them (or, with I(sweep_action=set_ttl), patch them), only in
        I(include_namespaces) when given (a Role in each), cluster-wide otherwise; and get and update its own
        history ConfigMap. Nothing else.
      - Left unset, a scheduled sweep installed earlier is left as it is. C(state=absent) removes the one of
        I(policy_name) in I(sweep_namespace), and with I(policy=false) only it.
      - The account that installs it needs, besides what the policy needs, to create and change ServiceAccounts,
        Roles, RoleBindings, ConfigMaps and CronJobs in I(sweep_namespace) (and Jobs, for I(run_now)), Roles and
        RoleBindings in the included namespaces (or a ClusterRole and ClusterRoleBinding), to list Roles
        cluster-wide (to find the rights an earlier install left), and to hold the rights it grants (RBAC allows
        granting only those).
    type: str
  sweep_namespace:
    description:
      - The namespace of the scheduled sweep's CronJob, ServiceAccount, code and history. It must exist.
    type: str
    default: default
  time_zone:
    description:
      - The IANA time zone of I(sweep_schedule) (the CronJob's C(timeZone)). The controller's zone when unset.
    type: str
  run_now:
    description:
      - Also start a sweep now, as a Job made from the CronJob (as C(kubectl create job --from=cronjob/...) does).
    type: bool
    default: false
  sweep_history_limit:
    description:
      - How many sweeps the history ConfigMap keeps.
    type: int
    default: 10
  runner_image:
    description:
      - The image of the scheduled sweep's runner; any image with Python 3.9 or newer.
    type: str
    default: python:3.13-slim
  runner_node_selector:
    description:
      - Node labels the runner's pod must match.
    type: dict
    default: {}
  runner_tolerations:
    description:
      - Tolerations of the runner's pod.
    type: list
    elements: dict
    default: []
requirements:
  - python >= 3.9
  - kubernetes (Python package), only to read kubeconfig files
notes:
  - The native engine's MutatingAdmissionPolicy (v1, and v1beta1 on the compatibility suite's Kubernetes with the
    feature gate on) is applied by that API server to real Jobs, and its TTL controller deletes them. The kyverno
    engines' policies are applied to real Jobs by the admission controller of Kyverno v1.19.1, run against the
    test cluster, and the Kyverno CLI v1.19.1 checks them on sample Jobs for five option combinations.
  - The scheduled sweep's runner is tested in its pod on a real kubelet and containerd node.
attributes:
  check_mode:
    description:
      - The policy is compared with a server-side dry run, the other engines' objects are listed, and the sweep
        lists what it would take. Nothing is written.
    support: full
  diff_mode:
    description:
      - Shows each policy object before and after, keyed by C(Kind/name); removed objects have C(after=null).
    support: full
"""

EXAMPLES = r"""
- name: TTL of 15 minutes for new ownerless Jobs, with whatever engine the cluster has
  nodeops.kubernetes.dangling_job_ttl:
    ttl_seconds: 900
  register: ttl_policy

- name: Say which engine was chosen
  ansible.builtin.debug:
    msg: "{{ ttl_policy.policy_engine }}: {{ ttl_policy.policy_engine_reason }}"

- name: On Kubernetes 1.36 or newer, let the API server add the TTL (no policy engine needed)
  nodeops.kubernetes.dangling_job_ttl:
    policy_engine: native

- name: Where Kyverno is the policy tool, use its MutatingPolicy (this removes an older ClusterPolicy of ours)
  nodeops.kubernetes.dangling_job_ttl:
    policy_engine: kyverno

- name: See which finished ownerless Jobs a sweep would delete
  nodeops.kubernetes.dangling_job_ttl:
    policy: false
    sweep: true
  check_mode: true
  register: preview

- name: Delete them, at most 20 at a time and 50 per second
  nodeops.kubernetes.dangling_job_ttl:
    policy: false
    sweep: true
    sweep_concurrency: 20
    sweep_rate_limit: 50

- name: Let the TTL controller remove old Jobs, except in the batch namespace
  nodeops.kubernetes.dangling_job_ttl:
    ttl_seconds: 3600
    exclude_namespaces: [kube-system, kyverno, batch]
    sweep: true
    sweep_action: set_ttl

- name: On Kubernetes 1.33 to 1.35 without Kyverno, sweep in the cluster every night at 03:00 Berlin time
  nodeops.kubernetes.dangling_job_ttl:
    sweep_schedule: "0 3 * * *"
    time_zone: Europe/Berlin
    sweep_namespace: ops
    run_now: true
  register: nightly_sweep

- name: Say when it runs, and where each sweep is recorded
  ansible.builtin.debug:
    msg: "next at {{ nightly_sweep.scheduled_sweep.next_runs[0].local }}; history in {{ nightly_sweep.scheduled_sweep.history }}"

- name: Remove the policy
  nodeops.kubernetes.dangling_job_ttl:
    state: absent
"""

RETURN = r"""
policy_engine:
  description:
    - The engine used, one of native, kyverno, kyverno_legacy; or none, when I(policy_engine=auto) found no
      engine and I(sweep_schedule) installed the scheduled sweep alone.
  returned: when policy=true and state=present
  type: str
  sample: native
policy_engine_reason:
  description: Why that engine was used.
  returned: when policy=true and state=present
  type: str
  sample: "auto: the apiserver serves admissionregistration.k8s.io/v1 mutatingadmissionpolicies (Kubernetes 1.36 or newer)"
policy_api_version:
  description:
    - The apiVersion of the policy objects written, found by discovery. For native,
      C(admissionregistration.k8s.io/v1) or, on Kubernetes 1.34 and 1.35 with the feature gate on, C(v1beta1).
  returned: when policy=true and state=present, and an engine is used (not with policy_engine none)
  type: str
  sample: admissionregistration.k8s.io/v1
policy:
  description: The policy object (MutatingAdmissionPolicy, MutatingPolicy or ClusterPolicy) as it is, or would be, in the cluster.
  returned: when policy=true and state=present, and an engine is used (not with policy_engine none)
  type: dict
policy_objects:
  description: Every object the engine needs (for native the policy and its binding).
  returned: when policy=true and state=present
  type: list
  elements: dict
  sample: [{kind: MutatingAdmissionPolicy, name: nodeops-dangling-job-ttl, namespace: null},
           {kind: MutatingAdmissionPolicyBinding, name: nodeops-dangling-job-ttl, namespace: null}]
scheduled_sweep:
  description: The scheduled sweep (I(sweep_schedule)) as installed, or what was removed.
  returned: when sweep_schedule is set, or a scheduled sweep was removed
  type: dict
  contains:
    objects:
      description: Every object it needs.
      type: list
      elements: dict
    changes:
      description: The objects created, changed or deleted (or that would be, in check mode).
      type: list
      elements: dict
    next_runs:
      description: The next five times it runs, each with C(local) (in I(time_zone)) and C(utc).
      type: list
      elements: dict
    job:
      description: The Job started by I(run_now) (the CronJob's name and the time in hex).
      type: str
    history:
      description: The ConfigMap that records each sweep, as C(namespace/name).
      type: str
  sample: {objects: [{kind: CronJob, name: nodeops-dangling-job-ttl-sweep, namespace: default}],
           changes: [], next_runs: [{local: "2026-12-06T03:00:00+00:00", utc: "2026-12-06T03:00:00+00:00"}],
           history: default/nodeops-dangling-job-ttl-sweep-history}
removed:
  description: Objects of other engines (or, with state=absent, of every engine) that were or would be deleted.
  returned: when policy=true
  type: list
  elements: dict
  sample: [{kind: ClusterPolicy, name: nodeops-dangling-job-ttl, namespace: null}]
sweep:
  description: What the sweep did, or would do in check mode.
  returned: when sweep=true
  type: dict
  contains:
    action:
      description: The I(sweep_action) taken, delete or set_ttl.
      type: str
      choices: [ delete, set_ttl ]
    total:
      description: Jobs taken.
      type: int
    per_namespace:
      description: Jobs taken per namespace.
      type: dict
    names:
      description: C(namespace/name) of the Jobs taken, at most I(sweep_max_names).
      type: list
      elements: str
    names_truncated:
      description: Whether more Jobs were taken than listed.
      type: bool
    spared:
      description: Jobs left alone, counted by reason (owned, not finished, finished recently, namespace excluded, ...).
      type: dict
    errors:
      description: Writes that failed, the first 20 (I(errors_total) counts them all).
      type: list
      elements: str
    errors_total:
      description: How many writes failed.
      type: int
    stats:
      description: Pages listed, list restarts (an expired continue token), Jobs examined, wall time in seconds and
        Jobs taken per second. C(stopped_throttled) is true when a Job's writes were refused with 429 for 5 minutes
        and the sweep stopped there (an error; the task fails), and C(left_for_next) counts the Jobs it had found
        but not written, which the next sweep takes.
      type: dict
    pacing:
      description: How the writes were paced. C(limit), C(limit_min) and C(limit_max) are the writes in flight
        allowed at the end, the fewest and the most; C(ceiling) is I(sweep_concurrency); C(baseline_ms) the
        lowest round median latency; C(throttled) the writes refused with 429 and C(throttled_wait_s) the time
        spent waiting for their Retry-After (and the 1 s pauses after server errors); C(server_errors) the writes
        that got a 5xx or no answer; C(decreases) and C(increases) the limit's changes; C(writes) the writes
        sent, retries included; C(rate_cap) is I(sweep_rate_limit).
      type: dict
    progress:
      description: Snapshots taken every 10 seconds or so (at most 20; a long sweep keeps every other one), each
        with C(elapsed_s), C(examined), C(taken), C(errors), C(jobs_per_s), C(in_flight_limit), and, when the
        apiserver says how many Jobs are left to list, C(remaining_to_examine) and C(eta_s), the time left
        (with I(include_namespaces), only while the last of them is listed).
      type: list
      elements: dict
  sample: {action: delete, total: 2, per_namespace: {ci: 2}, names: [ci/build-1, ci/build-2], names_truncated: false,
           spared: {owned: 12, "not finished": 1}, errors: [], errors_total: 0,
           stats: {pages: 1, restarts: 0, examined: 15, wall_s: 0.1, jobs_per_s: 20.0, stopped_throttled: false,
                   left_for_next: 0},
           pacing: {limit: 3, limit_min: 2, limit_max: 3, ceiling: 10, baseline_ms: 6.1, throttled: 0,
                    server_errors: 0, throttled_wait_s: 0.0, decreases: 0, increases: 1, writes: 2, rate_cap: 150.0},
           progress: []}
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import options as broadcast_options
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.engine import Engine
from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron import manifests as cron_manifests
from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron import schedule as cron_schedule
from ansible_collections.nodeops.kubernetes.plugins.module_utils._dangling import options, policy, scheduled, sweep
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube import apply
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import (
    ApiError, Forbidden, ForeignObject, InvalidInput, NodeopsError, NotFound, PolicyEngineUnavailable)
from ansible_collections.nodeops.kubernetes.plugins.module_utils._ansible.edge import (
    argument_spec,
    client_from_params,
    run_module,
)
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.apply import LABEL_MANAGED_BY, MANAGED_BY


def build_argument_spec():
    return argument_spec(
        state=dict(type="str", default="present", choices=["present", "absent"]),
        policy=dict(type="bool", default=True),
        policy_engine=dict(type="str", default="auto", choices=list(policy.ENGINE_CHOICES)),
        policy_name=dict(type="str", default=options.DEFAULT_POLICY_NAME),
        ttl_seconds=dict(type="int", default=options.DEFAULT_TTL_SECONDS),
        include_namespaces=dict(type="list", elements="str", default=[]),
        exclude_namespaces=dict(type="list", elements="str", default=list(options.DEFAULT_EXCLUDED_NAMESPACES)),
        opt_out_label=dict(type="str", default=options.DEFAULT_OPT_OUT_LABEL),
        skip_gitops_managed=dict(type="bool", default=True),
        sweep=dict(type="bool", default=False),
        sweep_action=dict(type="str", default="delete", choices=["delete", "set_ttl"]),
        sweep_page_size=dict(type="int", default=500),
        sweep_concurrency=dict(type="int", default=10),
        sweep_rate_limit=dict(type="float", default=options.DEFAULT_SWEEP_RATE),
        sweep_max_names=dict(type="int", default=100),
        sweep_schedule=dict(type="str"),
        sweep_namespace=dict(type="str", default="default"),
        time_zone=dict(type="str"),
        run_now=dict(type="bool", default=False),
        sweep_history_limit=dict(type="int", default=10),
        runner_image=dict(type="str", default=broadcast_options.DEFAULT_IMAGE),
        runner_node_selector=dict(type="dict", default={}),
        runner_tolerations=dict(type="list", elements="dict", default=[]),
    )


def validate_schedule(p, opts):
    """The scheduled sweep's options (None without sweep_schedule), checked before any request."""
    if p.get("sweep_schedule") is None:
        for key in ("time_zone",):
            if p.get(key) is not None:
                raise InvalidInput(key, p[key], "no value without sweep_schedule (it is the schedule's time zone)")
        if p.get("run_now"):
            raise InvalidInput("run_now", True, "false without sweep_schedule (it starts the scheduled sweep now)")
        return None
    expr = p["sweep_schedule"]
    if not isinstance(expr, str) or not expr.strip():
        raise InvalidInput("sweep_schedule", expr, cron_schedule.ACCEPTED, why="it is empty")
    cron_schedule.check_time_zone(p.get("time_zone"))
    if len(opts["policy_name"]) > scheduled.POLICY_NAME_MAX:
        raise InvalidInput("policy_name", opts["policy_name"], "at most %d characters with sweep_schedule (the "
                           "CronJob is <policy_name>-sweep, at most 52)" % scheduled.POLICY_NAME_MAX)
    ns = p.get("sweep_namespace")
    if not ns or len(ns) > 63 or not options.DNS_LABEL.match(ns):
        raise InvalidInput("sweep_namespace", ns, "a namespace name (a DNS-1123 label)")
    image = p.get("runner_image")
    if not image or not image.strip():
        raise InvalidInput("runner_image", image, "an image reference with Python 3.9+, e.g. 'python:3.13-slim'")
    if p.get("sweep_history_limit") is None or p["sweep_history_limit"] < 1:
        raise InvalidInput("sweep_history_limit", p.get("sweep_history_limit"), "a number of sweeps of at least 1")
    broadcast_options.check_labels("runner_node_selector", p.get("runner_node_selector"))
    broadcast_options.check_tolerations("runner_tolerations", p.get("runner_tolerations"))
    return {"schedule": expr, "time_zone": p.get("time_zone"), "namespace": ns, "runner_image": image.strip(),
            "action": p["sweep_action"], "page_size": p["sweep_page_size"], "concurrency": p["sweep_concurrency"],
            "rate": p["sweep_rate_limit"] or None, "max_names": p["sweep_max_names"], "history_limit": p["sweep_history_limit"],
            "runner_node_selector": dict(p.get("runner_node_selector") or {}),
            "runner_tolerations": list(p.get("runner_tolerations") or []),
            # A sweep of many Jobs at a gentle pace still ends: a stuck one is stopped before the next.
            "deadline_seconds": 3600}


def plan_schedule(module, client, sched, opts):
    """Everything the scheduled sweep needs checked, before any write (of the policy too): the runner's pod
    and every object dry-run by the apiserver (the schedule and time zone are its to judge), no object of the
    same name that is not this sweep's, and the next fire times. Returns the objects to apply."""
    desired = scheduled.build_objects(sched, opts)
    for obj in desired:
        current = client.get_or_none(apply.object_path(client, obj))
        owner = ((current or {}).get("metadata", {}).get("labels") or {}).get(scheduled.LABEL_SWEEP)
        if current is None:
            continue
        if not apply.created_by_us(current):
            raise apply.foreign(obj)
        if owner != opts["policy_name"]:
            # Another of this collection's objects (a cron broadcast's ServiceAccount, say): never taken over,
            # so never removed with this sweep either.
            raise ForeignObject("%s %s exists and is not this scheduled sweep's (its label %s is %r, not %r): "
                                "refusing to change it; nothing was changed. Choose another policy_name or "
                                "sweep_namespace" % (obj["kind"], apply.object_path(client, obj).rsplit("/", 1)[-1],
                                                     scheduled.LABEL_SWEEP, owner, opts["policy_name"]),
                                object=apply.ref(obj))
    runner = scheduled.runner_pod(desired)
    warnings = Engine(client).dry_run_pod(runner, "runner_image", runner["spec"]["containers"][0]["image"],
                                          "the scheduled sweep's runner pods")
    try:
        apply.ensure(client, desired, check_mode=True)
    except ApiError as exc:
        refused = cron_schedule.refused_by_apiserver(exc, {"schedule": sched["schedule"],
                                                           "time_zone": sched["time_zone"]})
        if isinstance(refused, InvalidInput) and refused.param in ("schedule", "time_zone"):
            param = "sweep_schedule" if refused.param == "schedule" else "time_zone"
            raise InvalidInput(param, refused.value, refused.accepted, why=refused.msg.split(": ", 1)[-1].split(
                "; expected", 1)[0]) from exc
        raise refused
    return {"desired": desired, "warnings": warnings,
            "next_runs": cron_schedule.next_runs(sched["schedule"], sched["time_zone"])}


def install_schedule(module, client, sched, opts, planned):
    """Install (or update) the scheduled sweep planned by ``plan_schedule``, then remove the old code and the
    rights the options no longer need. Returns (its result, its diff entries)."""
    desired = planned["desired"]
    for warning in planned["warnings"]:
        module.warn(warning)
    changed, diff, results = apply.ensure(client, desired, module.check_mode)
    stale = scheduled.stale(client, opts["policy_name"], sched["namespace"], desired, module.check_mode)
    names = scheduled.object_names(opts["policy_name"], sched["namespace"])
    result = {"objects": [apply.ref(o) for o in desired], "changes": changed + stale,
              "next_runs": planned["next_runs"], "history": "%s/%s" % (sched["namespace"], names["history"])}
    entries = list(zip(changed, diff["before"], diff["after"]))
    entries += [(ref, {"kind": ref["kind"], "name": ref["name"]}, None) for ref in stale]
    if module.params["run_now"]:
        # Within 63 characters (the job-name label): the CronJob's name (at most 52) and the time in hex.
        job_name = "%s-%x" % (names["cron_job"], int(time.time()))
        result["job"] = job_name
        result["changes"] = result["changes"] + [{"kind": "Job", "name": job_name, "namespace": sched["namespace"]}]
        if not module.check_mode:
            job = cron_manifests.job_from_cron(results[-1], job_name)
            client.create(apply.path_for(client, "batch/v1", "Job", sched["namespace"]), job)
    return result, entries


def served_engines(client):
    """Which engines' APIs this cluster serves, from discovery (no CRD read rights needed): each engine's
    apiVersion, or False. Native is the first of v1 and v1beta1 that lists mutatingadmissionpolicies."""
    served = {}
    for engine, (api_version, _kinds, resource) in policy.ENGINES.items():
        served[engine] = False
        for version in (policy.NATIVE_API_VERSIONS if engine == "native" else (api_version,)):
            listing = client.get_or_none("/apis/" + version)
            if any(r.get("name") == resource for r in (listing or {}).get("resources") or []):
                served[engine] = version
                break
    return served


def _key(ref):
    return "%s/%s" % (ref["kind"], ref["name"])


def our_objects(client, served, policy_name, engines):
    """This policy name's objects of ``engines`` (those served), found by our labels."""
    found = []
    for engine in engines:
        if not served.get(engine):
            continue
        _api_version, kinds, _resource = policy.ENGINES[engine]
        api_version = served[engine]
        for kind in kinds:
            listing = client.get(apply.path_for(client, api_version, kind),
                                 {"labelSelector": "%s=%s" % (LABEL_MANAGED_BY, MANAGED_BY)})
            for item in listing.get("items") or []:
                if policy.ours(item, policy_name):
                    item.update(apiVersion=api_version, kind=kind)
                    found.append(item)
    return found


def manage_policy(module, client, opts, result, scheduled_sweep=False):
    served = served_engines(client)
    name = opts["policy_name"]
    before, after = {}, {}
    if module.params["state"] == "absent":
        stale = our_objects(client, served, name, policy.ENGINE_ORDER)
    else:
        try:
            engine, why = policy.choose_engine(opts["policy_engine"], served)
        except PolicyEngineUnavailable:
            if not (scheduled_sweep and opts["policy_engine"] == "auto"):
                raise
            # No admission engine, and a scheduled sweep asked for: it alone keeps the Jobs bounded.
            result.update(policy_engine="none", policy_engine_reason=(
                "auto: no admission engine is served (no MutatingAdmissionPolicy in admissionregistration.k8s.io/v1 "
                "or v1beta1, no Kyverno MutatingPolicy or ClusterPolicy CRD); the scheduled sweep (sweep_schedule) "
                "is installed alone, and takes finished ownerless Jobs on its schedule"),
                policy_objects=[], removed=[])
            return
        result.update(policy_engine=engine, policy_engine_reason=why, policy_api_version=served[engine])
        others = [e for e in policy.ENGINE_ORDER if e != engine]
        stale = our_objects(client, served, name, others)
        # Every object is dry-run by the apiserver before the first write; the old engine's objects
        # go only after the new ones are in, so new Jobs are never left without a policy.
        objects = policy.build_policy(opts, engine, served[engine])
        changed, diff, stored = apply.ensure(client, objects, module.check_mode)
        result["policy"] = stored[0]
        result["policy_objects"] = [apply.ref(o) for o in stored]
        for obj, old, new in zip(changed, diff["before"], diff["after"]):
            before[_key(obj)], after[_key(obj)] = old, new
    removed = []
    for item in stale:
        removed.append(apply.ref(item))
        before[_key(removed[-1])], after[_key(removed[-1])] = apply.normalize(item), None
        if not module.check_mode:
            try:
                client.delete(apply.object_path(client, item))
            except NotFound:
                pass
    result["removed"] = removed
    if before:
        result["changed"] = True
        if module._diff:
            result["diff"] = {"before": before, "after": after}


def _sweep_installed(module, client, opts, p):
    """Whether state=absent has a scheduled sweep to remove. Removing only it (policy=false) and not being allowed
    to look is an error; removing the policy too, a warning (the account may never have installed one)."""
    try:
        return scheduled.installed(client, opts["policy_name"], p["sweep_namespace"], strict=True)
    except Forbidden as exc:
        if not p["policy"]:
            raise
        module.warn("could not look for a scheduled sweep of %s in sweep_namespace=%s (%s): if one was installed "
                    "there, it is still there" % (opts["policy_name"], p["sweep_namespace"], exc.msg))
        return False


def _sweep_key(ref):
    return "%s/%s/%s" % (ref["kind"], ref.get("namespace") or "", ref["name"])


def action(module):
    p = module.params
    opts = options.validate(p)
    client = client_from_params(p)
    sched = validate_schedule(p, opts) if p["state"] == "present" else None
    # The scheduled sweep is checked whole before the policy's first write: a schedule the apiserver refuses
    # leaves nothing written.
    planned = plan_schedule(module, client, sched, opts) if sched is not None else None
    result = {"changed": False}
    if p["policy"]:
        manage_policy(module, client, opts, result, scheduled_sweep=sched is not None)
    entries = []
    if sched is not None:
        result["scheduled_sweep"], entries = install_schedule(module, client, sched, opts, planned)
    elif p["state"] == "absent" and _sweep_installed(module, client, opts, p):
        removed = scheduled.remove(client, opts["policy_name"], p["sweep_namespace"], module.check_mode)
        if removed:
            result["scheduled_sweep"] = {"objects": [], "changes": removed}
            entries = [(ref, {"kind": ref["kind"], "name": ref["name"]}, None) for ref in removed]
    if result.get("scheduled_sweep", {}).get("changes"):
        result["changed"] = True
    if entries and module._diff:
        diff = result.setdefault("diff", {"before": {}, "after": {}})
        for ref, before, after in entries:
            diff["before"][_sweep_key(ref)], diff["after"][_sweep_key(ref)] = before, after
    if p["sweep"]:
        swept = sweep.run(client, opts, p["sweep_action"], module.check_mode, page_size=p["sweep_page_size"],
                          concurrency=p["sweep_concurrency"], max_names=p["sweep_max_names"],
                          rate=p["sweep_rate_limit"] or None)
        result["sweep"] = swept
        result["changed"] = result["changed"] or swept["total"] > 0
        if swept["errors"]:
            left = swept["stats"].get("left_for_next")
            raise NodeopsError("the sweep could not write %d Jobs%s: %s" % (
                swept["errors_total"], "; it stopped, leaving %d Jobs it had found (and any it had not listed yet) for "
                "the next sweep" % left if swept["stats"].get("stopped_throttled") else "", swept["errors"][0]),
                **result)
    return result


def main():
    module = AnsibleModule(argument_spec=build_argument_spec(), supports_check_mode=True)
    run_module(module, action)


if __name__ == "__main__":
    main()
