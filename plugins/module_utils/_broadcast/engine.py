# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The broadcast engine, as a service: plan, preflight, run, delete runs.

Shared by broadcast_job (on the controller) and the in-cluster runner. One run's state and loop
live in ``run.BroadcastRun``; this object holds what outlives a run: the client, the clock and the
log. Nothing here reads ``module.params`` or imports Ansible: the engine takes a RestClient, the
``opts`` from ``options.validate`` and, for tests, a clock.

* plan: read the nodes and this broadcast's pods, then ``plan.plan`` (pure).
* preflight: a server-side dry run of one pod, before anything is written (Pod Security among
  what it checks: a refusal says the namespace's level, the level needed and the label to set).
* run: ``BroadcastRun(...).execute()`` (act and observe, see run.py).
* delete_runs: state=absent, and the runner's SIGTERM before its first pod.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import time
import uuid

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import lease, naming, outcomes, pods, pressure
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import plan as planner
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import refusal
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.run import BroadcastRun
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube import podsecurity
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import (
    ApiError,
    Conflict,
    CriticalPodRefused,
    Forbidden,
    Invalid,
    InvalidInput,
    NamespaceMissing,
    NotFound,
    PodSecurityRefused,
)
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.apply import created_by_us
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.watch import list_all


class Clock:
    """Monotonic time for deadlines, wall time for reports. Tests pass their own."""

    monotonic = staticmethod(time.monotonic)

    @staticmethod
    def now():
        return datetime.datetime.now(datetime.timezone.utc)


def new_run_id(clock=Clock):
    return clock.now().strftime("%m%d%H%M%S") + uuid.uuid4().hex[:4]


class Engine:
    def __init__(self, client, clock=None, log=None, create_workers=16, initial_resource_version=None, phase=None,
                 holder=None):
        self.client = client
        # This process in a run's lease (lease.py): host, pid and a token.
        self.holder = holder or lease.this_process()
        self.held = False   # whether the last run was held by this process (it made or took over its record)
        # Told each phase a run enters ("drive", "stopping", "cleanup", "events"): the runner's SIGTERM
        # handler interrupts a run only while it drives it, and lets the rest finish (see runner.py).
        self.phase = phase or (lambda name: None)
        self.clock = clock or Clock
        self.log = log or (lambda msg: None)
        self.create_workers = create_workers
        self.initial_resource_version = initial_resource_version
        self.stats = {}   # of the last run: watch re-lists and reconnects

    def read_cluster(self, opts):
        nodes, nodes_rv = list_all(self.client, "/api/v1/nodes", slim=planner.slim_node)
        found, _rv = list_all(self.client, self.client.core_path("pods", opts["namespace"]),
                              {"labelSelector": naming.run_selector(opts["name"])}, slim=outcomes.slim_pod)
        return nodes, nodes_rv, found

    def plan(self, opts, run_id):
        nodes, nodes_rv, found = self.read_cluster(opts)
        result = planner.plan(nodes, found, opts, run_id)
        result["nodes_resource_version"] = nodes_rv
        for name in [n for n in result["eligible"] if n in result["pressure"] and n not in result["existing"]]:
            why = self.no_room(opts, run_id, result["pressure"][name], result["pod_names"].get(name))
            if why:
                result["eligible"].remove(name)
                result["skipped"][name] = why
        # Whether the run's record existed when planned: a run that then has to make it finds that the
        # record was deleted meanwhile (finished in another process), and stops (record.ensure_record).
        try:
            record = self.client.get_or_none(self.client.core_path(
                "configmaps", opts["namespace"], naming.record_name(opts["name"], run_id)))
        except ApiError:
            record = None   # a plan-only account may not read ConfigMaps
        result["record_uid"] = ((record or {}).get("metadata") or {}).get("uid")
        return result

    def no_room(self, opts, run_id, node, name=None):
        """Why the critical pod a node under DiskPressure would get does not fit beside its pods (and would
        preempt one), or None (``pressure.room``). One list of the pods on that node; without the right to make
        it, the node gets no pod, and the reason says so."""
        node_name = node["metadata"]["name"]
        pod = pods.build_pod(opts, run_id, node_name, name=name, pressured=True)
        try:
            there, _rv = list_all(self.client, "/api/v1/pods", {
                "fieldSelector": "spec.nodeName=%s,status.phase!=Succeeded,status.phase!=Failed" % node_name})
        except ApiError as exc:
            return ("under DiskPressure, and whether its pod fits there could not be checked (%s): a critical pod that "
                    "does not fit would preempt another, so it gets none; the check lists the node's pods (list pods, "
                    "cluster-wide)" % exc.msg)
        try:
            return pressure.room(node, there, pod)
        except InvalidInput as exc:   # a quantity this reading does not know, in another pod or the node
            return pressure.room_unknown(exc.msg)

    # The API server's warnings on the last preflight's dry run (Pod Security's warn mode, deprecations).
    preflight_warnings = ()

    def preflight(self, opts, run_id, node, name=None, pressured=False):
        """Server-side dry-run of one pod: the apiserver validates it and admission runs (Pod Security
        among it), nothing is stored. Keeps the apiserver's warnings in ``preflight_warnings``. ``name``: the
        pod's name in the run's plan (``naming.pod_names``). ``pressured``: the node is under DiskPressure (its pod
        may be a critical one, which a ResourceQuota can refuse)."""
        pod = pods.build_pod(opts, run_id, node, active_deadline=opts["timeout"], name=name, pressured=pressured)
        workload = opts["workload"]
        if workload["kind"] == "pod_template":
            param, value, what = "pod_template", "(the pod it makes)", "the pods of this pod_template"
        else:
            param, value, what = "preset", workload["preset"], "the pods of preset %s" % workload["preset"]
        self.preflight_warnings = self.dry_run_pod(pod, param, value, what, opts=opts)
        return pod

    def dry_run_pod(self, pod, param, value, what, opts=None):
        """Create ``pod`` as a server-side dry run; return the apiserver's warnings about it.

        A refusal names ``param`` (the option that made the pod, its ``value``): PodSecurityRefused
        when Pod Security refused it, NamespaceMissing on 404, else InvalidInput. With the ``opts`` the pod
        was built from, an InvalidInput names the option that set the refused field instead, where one did
        (``refusal.blame``: service_account, priority_class_name, image, resources, ...).
        """
        namespace = pod["metadata"]["namespace"]
        warnings = []
        try:
            self.client.create(self.client.core_path("pods", namespace), pod, dry_run=True, warnings=warnings)
        except Conflict:
            pass  # that pod exists already (a resumed run): nothing to check
        except NotFound as exc:
            # POST to a namespace's pods answers 404 only when the namespace is missing.
            raise NamespaceMissing("namespace", namespace, "an existing namespace, labelled for the Pod Security "
                                   "level its pods need (the node_maintenance role creates it so)",
                                   why="it does not exist, so its pods could not be checked") from exc
        except (Invalid, Forbidden) as exc:
            if podsecurity.is_refusal(exc.status, exc.msg):
                raise self.pod_security_refusal(pod, param, value, what, exc) from exc
            if isinstance(exc, Forbidden) and "cannot create resource" in exc.msg:
                raise   # RBAC, not admission: the credentials may not create pods (a read-only plan account)
            self.refuse_critical(pod, opts, exc)
            blamed = refusal.blame(exc.body, opts, what, pod) if opts else None
            if blamed is not None:
                raise blamed from exc
            raise InvalidInput(param, value, "a pod the API server accepts",
                               why="the API server refused a dry run: %s" % exc.msg) from exc
        except ApiError as exc:
            # The ResourceQuota plugin's "insufficient quota to match these scopes" (limitedResources) is not an
            # API status: the API server answers it with a 500.
            self.refuse_critical(pod, opts, exc)
            raise
        return ["API server warning for %s in namespace %s: %s" % (what, namespace, text)
                for text in podsecurity.warning_texts(warnings)]

    def refuse_critical(self, pod, opts, exc):
        """Raise CriticalPodRefused if ``exc`` is a ResourceQuota's refusal of ``pod``, a critical pod."""
        quota = pressure.quota_refusal(exc.msg) if opts else None
        if quota and (pod.get("spec") or {}).get("priorityClassName") in pressure.CRITICAL_CLASSES:
            raise self.critical_refusal(pod, opts, quota, exc) from exc

    @staticmethod
    def critical_refusal(pod, opts, quota, exc):
        """The InvalidInput for a critical pod (a node under DiskPressure) that a ResourceQuota refused: the option
        that made it critical, the quota or the admission rule, and the ways out."""
        namespace, klass = pod["metadata"]["namespace"], pod["spec"]["priorityClassName"]
        if opts.get("priority_class_name"):
            param, value = "priority_class_name", klass
        elif opts["workload"]["kind"] == "pod_template":
            param, value = "pod_template", "(priorityClassName %s)" % klass
        else:
            param, value = "disk_pressure", True
        if quota[0] == "quota":
            rule = "ResourceQuota %s in namespace %s has no room for it" % (quota[1], namespace)
        else:
            rule = ("the API server's ResourceQuota admission configuration (limitedResources) admits priority class %s "
                    "only in namespaces with a ResourceQuota whose scopeSelector matches it, and namespace %s has none"
                    % (klass, namespace))
        accepted = ("a namespace where pods of priority class %s are admitted (a ResourceQuota with scopeSelector "
                    "PriorityClass In [%s] and room for the run's pods), or disk_pressure: false (nodes under DiskPressure "
                    "are then skipped, with that reason)" % (klass, klass))
        why = ("the run's pod for a node under DiskPressure is a critical one (priority class %s, the only kind the kubelet "
               "admits there), and the API server refused a dry run of it: %s (%s)" % (klass, rule, exc.msg))
        return CriticalPodRefused(param, value, accepted, why=why)

    def pod_security_refusal(self, pod, param, value, what, exc):
        """The PodSecurityRefused for a dry run Pod Security refused: the namespace's level and where it
        comes from (its label, read here), the level ``pod`` needs and the label that admits it."""
        namespace = pod["metadata"]["namespace"]
        try:
            label = podsecurity.enforced_label(self.client.get(self.client.core_path("namespaces", name=namespace)))
            source = podsecurity.level_source(label)
        except ApiError as read_exc:
            # Reading a Namespace takes a cluster-scoped grant the caller may lack; the refusal names the level.
            source = podsecurity.level_source(None, read_error=read_exc.msg)
        refused_at = podsecurity.refused_level(exc.msg)
        spec, annotations = pod["spec"], pod["metadata"].get("annotations")
        needed = podsecurity.needed_level(spec, annotations, refused_at)
        detail = exc.body.get("message") if isinstance(exc.body, dict) and exc.body.get("message") else exc.msg
        why = podsecurity.refusal_why(namespace, refused_at, source, what, needed,
                                      podsecurity.violations(spec, annotations, refused_at), detail)
        command = podsecurity.label_command(namespace, needed)
        return PodSecurityRefused(param, value, "a namespace whose level admits them: " + command, why=why,
                                  pod_security={"namespace": namespace, "enforced": refused_at, "required": needed,
                                                "command": command})

    def run(self, opts, run_id, plan=None):
        """Run a broadcast to the end. Returns the result dict, or raises with it attached."""
        run = BroadcastRun(self, opts, run_id, plan or self.plan(opts, run_id))
        try:
            return run.execute(self.preflight)
        finally:
            self.stats = run.stats
            self.held = run.holding and run.handed_over is None

    def delete_runs(self, name, namespace, run_id=None, check_mode=False):
        """Delete a broadcast's pods and run records (one run, or all) that we created: a label alone is
        not enough (``apply.created_by_us``). Returns what was (or would be) deleted."""
        selector = naming.run_selector(name, run_id)
        record_selector = "%s,%s=%s" % (selector, naming.LABEL_KIND, naming.KIND_RUN_RECORD)
        found, _rv = list_all(self.client, self.client.core_path("pods", namespace), {"labelSelector": selector})
        records, _rv = list_all(self.client, self.client.core_path("configmaps", namespace),
                                {"labelSelector": record_selector})
        found = [p for p in found if created_by_us(p)]
        records = [c for c in records if created_by_us(c)]
        deleted = {"pods": sorted(p["metadata"]["name"] for p in found),
                   "records": sorted(c["metadata"]["name"] for c in records)}
        if not check_mode:
            # One by one, never a collection by label: a foreign object with our labels must survive.
            for kind, names in (("pods", deleted["pods"]), ("configmaps", deleted["records"])):
                for obj_name in names:
                    self.client.delete(self.client.core_path(kind, namespace, obj_name))
        return deleted
