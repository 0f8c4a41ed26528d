# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The broadcast engine, as a service: plan, preflight, run, delete runs.

Shared by broadcast_job (on the controller) and the in-cluster runner. One run's state and loop
live in ``run.BroadcastRun``; this object holds what outlives a run: the client, the clock and the
log. Nothing here reads ``module.params`` or imports Ansible: the engine takes a RestClient, the
``opts`` from ``options.validate`` and, for tests, a clock.

* plan: read the nodes and this broadcast's pods, then ``plan.plan`` (pure).
* preflight: a server-side dry run of one pod, before anything is written.
* run: ``BroadcastRun(...).execute()`` (act and observe, see run.py).
* delete_runs: state=absent, and the runner's SIGTERM before its first pod.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import time
import uuid

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import naming, outcomes, pods
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import plan as planner
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.run import BroadcastRun
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import (
    Conflict,
    Forbidden,
    Invalid,
    InvalidInput,
)
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
    def __init__(self, client, clock=None, log=None, create_workers=16, initial_resource_version=None):
        self.client = client
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
        return result

    def preflight(self, opts, run_id, node):
        """Server-side dry-run of one pod: the apiserver validates it and admission runs, nothing is stored."""
        pod = pods.build_pod(opts, run_id, node, active_deadline=opts["timeout"])
        try:
            self.client.create(self.client.core_path("pods", opts["namespace"]), pod, dry_run=True)
        except Conflict:
            return pod  # that pod exists already (a resumed run): nothing to check
        except (Invalid, Forbidden) as exc:
            raise InvalidInput("pod_template" if opts["workload"]["kind"] == "pod_template" else "preset",
                               "(the pod it makes)", "a pod the API server accepts",
                               why="the API server refused a dry run: %s" % exc.msg)
        return pod

    def run(self, opts, run_id, plan=None):
        """Run a broadcast to the end. Returns the result dict, or raises with it attached."""
        run = BroadcastRun(self, opts, run_id, plan or self.plan(opts, run_id))
        try:
            return run.execute(self.preflight)
        finally:
            self.stats = run.stats

    def delete_runs(self, name, namespace, run_id=None, check_mode=False):
        """Delete a broadcast's pods and run records (one run, or all). Returns what was (or would be) deleted."""
        selector = naming.run_selector(name, run_id)
        record_selector = "%s,%s=%s" % (selector, naming.LABEL_KIND, naming.KIND_RUN_RECORD)
        found, _rv = list_all(self.client, self.client.core_path("pods", namespace), {"labelSelector": selector})
        records, _rv = list_all(self.client, self.client.core_path("configmaps", namespace),
                                {"labelSelector": record_selector})
        deleted = {"pods": sorted(p["metadata"]["name"] for p in found),
                   "records": sorted(c["metadata"]["name"] for c in records)}
        if not check_mode:
            if found:
                self.client.request("DELETE", self.client.core_path("pods", namespace),
                                    query={"labelSelector": selector})
            if records:
                self.client.request("DELETE", self.client.core_path("configmaps", namespace),
                                    query={"labelSelector": record_selector})
        return deleted
