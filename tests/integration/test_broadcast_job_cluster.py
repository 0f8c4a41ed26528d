# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""broadcast_job and its engine on the real local control plane with kwok nodes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import subprocess
import sys
import threading
import time

import pytest
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import pods
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import naming
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.engine import Engine
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import NodeFailures, RunTimeout, WatchExpired

import kube_helpers as kh

sys.path.insert(0, os.path.join(kh.REPO, "tools", "localcluster"))
import cluster as local_cluster  # noqa: E402  pylint: disable=wrong-import-position

FIXTURES = os.path.join(kh.REPO, "tests", "unit", "fixtures")


def opts(namespace, **overrides):
    return kh.engine_opts(namespace, **overrides)


def by_node(result):
    return dict((rec["node"], rec) for rec in result["nodes"])


@pytest.fixture
def labelled_nodes(sim_nodes):
    """Make N fresh nodes sharing a unique label; return (label selector dict, [names])."""
    def make(count, **kwargs):
        tag = kh.unique("grp")
        names = [sim_nodes.add(name="%s-%d" % (tag, i), labels={"nodeops-test": tag}, **kwargs) for i in range(count)]
        return {"nodeops-test": tag}, names
    return make


@pytest.mark.k8s_compat
def test_module_runs_once_on_every_worker(tmp_path, core, namespace, audit):
    mark = audit.mark()
    result = kh.run_module(tmp_path, "broadcast_job", {
        "name": "all", "namespace": namespace, "preset": "image_prune", "image_prune": {"dry_run": True},
        "node_label_selector": "!nodeops-test", "parallelism": "100%"})
    assert not result.get("failed"), result.get("msg")
    nodes = by_node(result)
    workers = ["kwok-worker-%d" % i for i in range(1, 9)]
    assert result["summary"]["succeeded"] == len(workers) == result["summary"]["desired"]
    assert nodes["kwok-control-plane"]["outcome"] == "skipped"
    assert nodes["kwok-control-plane"]["reason"] == "control plane"
    for name in workers:
        rec = nodes[name]
        assert (rec["outcome"], rec["exit_code"], rec["reason"]) == ("succeeded", 0, "Completed")
        assert rec["pod"] == naming.pod_name("all", result["run_id"], name)
        assert "simulated container done" in rec["log"]
        assert rec["duration_s"] >= 0 and rec["started_at"] <= rec["finished_at"]
    # One pod per node, each pinned by affinity; all cleaned up, the run record too.
    assert len(kh.pod_creates(audit, mark, namespace)) == len(workers)
    assert core.list_namespaced_config_map(namespace, label_selector="nodeops.io/kind=run-record").items == []
    # The record owned the pods: the garbage collector deletes them once it is gone.
    kh.wait_for("the garbage collector to delete the pods", lambda: kh.managed_pods(core, namespace) == [])


@pytest.mark.k8s_compat
def test_results_and_failure_tails_come_from_the_pod_status_with_no_log_read(tmp_path, namespace, labelled_nodes,
                                                                             audit):
    """The simulated kubelet puts a result line in each container's termination message, as the node
    script does on a real node (test_real_node.py shows that), and a failed container's log tail, as
    FallbackToLogsOnError does. Results and tails come back, and the one log read is the failed node's:
    its simulated tail holds no result line (a real node script's does), so its result is looked for in
    the log, as when a result line is longer than the kubelet's 2 KiB tail."""
    selector, names = labelled_nodes(3)
    bad = names[1]
    line = 'NODEOPS_RESULT {"bytes_freed":123,"dry_run":true,"errors":[],"images_removed":["x:1"]}'
    mark = audit.mark()
    result = kh.run_module(tmp_path, "broadcast_job", {
        "name": "tm", "namespace": namespace, "preset": "image_prune", "node_selector": selector,
        "parallelism": "100%", "fail_on_node_failure": False, "cleanup": "always",
        "pod_annotations": {"sim.nodeops.io/message": line, "sim.nodeops.io/exit-code." + bad: "3"}})
    assert not result.get("failed"), result.get("msg")
    nodes = by_node(result)
    for name in set(names) - {bad}:
        assert nodes[name]["result"] == {"bytes_freed": 123, "dry_run": True, "errors": [], "images_removed": ["x:1"]}
        assert nodes[name]["log"] is None and nodes[name]["message"] is None
    assert nodes[bad]["outcome"] == "failed" and "simulated container done" in nodes[bad]["log"]
    assert audit.log_reads_since(mark, namespace=namespace) == [nodes[bad]["pod"]]
    # log_on_success: one log read per succeeded node, and nothing else.
    mark = audit.mark()
    again = kh.run_module(tmp_path, "broadcast_job", {
        "name": "tm", "namespace": namespace, "preset": "image_prune", "node_selector": selector,
        "parallelism": "100%", "log_on_success": True, "pod_annotations": {"sim.nodeops.io/message": line}})
    assert not again.get("failed"), again.get("msg")
    ran = [by_node(again)[name] for name in names]
    assert all("simulated container done" in rec["log"] for rec in ran), ran
    assert audit.log_reads_since(mark, namespace=namespace) == sorted(rec["pod"] for rec in ran)


def test_a_failed_containers_log_tail_is_its_termination_message(tmp_path, namespace, labelled_nodes, audit):
    selector, names = labelled_nodes(2)
    template = {"spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}
    mark = audit.mark()
    result = kh.run_module(tmp_path, "broadcast_job", {
        "name": "tail", "namespace": namespace, "pod_template": template, "node_selector": selector,
        "parallelism": "100%", "fail_on_node_failure": False, "cleanup": "always",
        "pod_annotations": {"sim.nodeops.io/exit-code." + names[0]: "4"}})
    nodes = by_node(result)
    assert (nodes[names[0]]["outcome"], nodes[names[0]]["exit_code"]) == ("failed", 4)
    assert nodes[names[0]]["log"] == "simulated container started\nworking\nsimulated container done\n"
    assert nodes[names[0]]["message"] == "simulated container done"
    assert (nodes[names[1]]["outcome"], nodes[names[1]]["log"]) == ("succeeded", None)
    assert audit.log_reads_since(mark, namespace=namespace) == []


@pytest.mark.k8s_compat
def test_continue_runs_every_node_then_fails_and_keeps_failed_pods(tmp_path, core, namespace, labelled_nodes):
    selector, names = labelled_nodes(4)
    bad = names[2]
    result = kh.run_module(tmp_path, "broadcast_job", {
        "name": "cont", "namespace": namespace, "preset": "image_prune", "node_selector": selector,
        "pod_annotations": {"sim.nodeops.io/exit-code." + bad: "3"}, "failure_policy": "continue"})
    assert result["failed"] is True
    assert bad in result["msg"] and "1 of 4 nodes failed" in result["msg"]
    nodes = by_node(result)
    assert (nodes[bad]["outcome"], nodes[bad]["exit_code"], nodes[bad]["reason"]) == ("failed", 3, "Error")
    assert nodes[bad]["log"]  # read through the API before anything was deleted
    assert sorted(n for n in names if nodes[n]["outcome"] == "succeeded") == sorted(set(names) - {bad})
    # The failed pod is kept for debugging, owned by the run record; the rest are gone.
    kept = kh.managed_pods(core, namespace)
    assert [p.metadata.name for p in kept] == [nodes[bad]["pod"]]
    assert kept[0].metadata.owner_references[0].kind == "ConfigMap"
    # fail_on_node_failure: false reports the same without failing the task.
    relaxed = kh.run_module(tmp_path, "broadcast_job", {
        "name": "cont2", "namespace": namespace, "preset": "image_prune", "node_selector": selector,
        "pod_annotations": {"sim.nodeops.io/exit-code." + bad: "3"}, "fail_on_node_failure": False})
    assert not relaxed.get("failed") and relaxed["summary"]["failed"] == 1


@pytest.mark.k8s_compat
def test_fail_fast_stops_creating_and_deletes_active_pods(tmp_path, core, namespace, labelled_nodes, audit):
    selector, names = labelled_nodes(4)
    first, slow = sorted(names)[0], sorted(names)[1]
    mark = audit.mark()
    result = kh.run_module(tmp_path, "broadcast_job", {
        "name": "ff", "namespace": namespace, "preset": "image_prune", "node_selector": selector,
        "parallelism": 2, "failure_policy": "fail_fast",
        "pod_annotations": {"sim.nodeops.io/exit-code." + first: "9", "sim.nodeops.io/delay." + first: "1s",
                            "sim.nodeops.io/delay." + slow: "1h"}})
    assert result["failed"] is True
    assert "of 4 nodes failed: %s" % first in result["msg"] and "budget" not in result["msg"], result["msg"]
    nodes = by_node(result)
    assert (nodes[first]["outcome"], nodes[first]["exit_code"]) == ("failed", 9)
    assert (nodes[slow]["outcome"], nodes[slow]["reason"]) == ("cancelled", "CancelledByFailFast")
    # A cancelled node did not fail: it is not counted as failed, and no Warning event says it did.
    assert (result["summary"]["failed"], result["summary"]["cancelled"]) == (1, 1)
    warned = [e.involved_object.name for e in core.list_namespaced_event("default").items
              if e.reason == "NodeopsBroadcastFailed" and "run %s" % result["run_id"] in (e.message or "")]
    assert warned == [first], warned
    for other in sorted(names)[2:]:
        assert (nodes[other]["outcome"], nodes[other]["reason"], nodes[other]["pod"]) == ("not_started", "FailFast", None)
    assert len(kh.pod_creates(audit, mark, namespace)) == 2
    kh.wait_for("the cancelled pod to go", lambda: [p.metadata.name for p in kh.managed_pods(core, namespace)]
                == [nodes[first]["pod"]])


# Windows tried in turn: a run on a machine too slow to make its first pod within one window closes it with
# nothing started, and the test tries again with the next, so nothing here assumes the machine's speed.
WINDOWS_S = (10, 20, 40, 80)


def run_with_window(tmp_path, core, namespace, run_args, window):
    """Run broadcast_job ``run_args`` in a thread; end its first pod once ``window`` has surely closed.
    Returns (the result, whether the run ended before any pod of it ran)."""
    box = {}
    thread = threading.Thread(target=lambda: box.update(result=kh.run_module(tmp_path, "broadcast_job", run_args)))
    thread.start()
    try:
        def first_running_or_done():
            running = [p for p in core.list_namespaced_pod(
                namespace, label_selector="nodeops.io/broadcast=%s" % run_args["name"]).items
                if p.status.phase == "Running"]
            return running[0] if running else ("done" if not thread.is_alive() else None)
        first = kh.wait_for("the run's first pod to run, or the run to end", first_running_or_done,
                            timeout=window + 60)
        if first != "done":
            # The run read its clock before it made this pod (creationTimestamp is to the second, truncated).
            closed = first.metadata.creation_timestamp + datetime.timedelta(seconds=window + 1)
            kh.wait_for("the window to close", lambda: datetime.datetime.now(datetime.timezone.utc) > closed,
                        timeout=window + 5, interval=0.1)
            kh.end_pod(core, namespace, first.metadata.name)
    finally:
        thread.join(120)
    assert not thread.is_alive(), "the run did not finish"
    return box["result"], first == "done"


def run_past_the_window(tmp_path, core, namespace, args):
    """Run broadcast_job ``args`` (one pod at a time, each running until ended) with a window. Its first pod
    is ended only once the window has surely closed, so the run's next decision comes after the close.
    Returns (the result, the window it ran with)."""
    for window in WINDOWS_S:
        run_args = dict(args, name="%s-%d" % (args["name"], window), window={"duration": "%ds" % window})
        result, ended_first = run_with_window(tmp_path, core, namespace, run_args, window)
        summary = result.get("summary") or {}
        nothing_started = (ended_first and summary.get("desired", 0) > 0
                           and summary.get("not_started") == summary["desired"]
                           and (result.get("limits") or {}).get("stopped_starting") == "WindowClosed")
        if not nothing_started:
            return result, window   # a run that failed otherwise is returned as it is, for the test to see
        print("the window of %ds closed before the run made its first pod; trying a longer one" % window)
    raise AssertionError("no window up to %ds let the run make its first pod" % WINDOWS_S[-1])


def test_a_window_that_closes_mid_run_starts_no_new_pod(tmp_path, core, namespace, labelled_nodes, audit):
    """One pod at a time in a window; the first pod runs until the window has closed: that node runs to
    its end, the five others never start, whatever the machine's speed."""
    selector, names = labelled_nodes(6)
    args = {"name": "win", "namespace": namespace, "preset": "image_prune", "image_prune": {"dry_run": True},
            "node_selector": selector, "parallelism": 1, "window": {"duration": "%ds" % WINDOWS_S[0]},
            "pod_annotations": {"sim.nodeops.io/delay": "1h"}}
    check = kh.run_module(tmp_path, "broadcast_job", args, check=True)
    assert check["plan"]["window_closes_at"] and check["plan"]["failure_budget"] is None
    mark = audit.mark()
    result, _window = run_past_the_window(tmp_path, core, namespace, args)
    assert not result.get("failed"), result.get("msg")
    nodes = by_node(result)
    first, rest = sorted(names)[0], sorted(names)[1:]
    assert (nodes[first]["outcome"], nodes[first]["exit_code"]) == ("succeeded", 0), nodes[first]
    closes = result["limits"]["window_closes_at"]
    for n in rest:
        assert (nodes[n]["outcome"], nodes[n]["reason"], nodes[n]["pod"]) == ("not_started", "WindowClosed", None)
        assert nodes[n]["message"] == "not started: maintenance window closed at %s" % closes
    summary = result["summary"]
    assert (summary["succeeded"], summary["not_started"], summary["desired"]) == (1, 5, 6)
    assert result["limits"]["stopped_starting"] == "WindowClosed"
    # One pod was created, before the window closed (the audit log's own clock; closes_at is to the second).
    assert len(kh.pod_creates(audit, mark, namespace)) == 1
    created = [e["requestReceivedTimestamp"][:19] for e in audit.events_since(mark)
               if e.get("verb") == "create" and (e.get("objectRef") or {}).get("resource") == "pods"
               and (e.get("objectRef") or {}).get("namespace") == namespace and e.get("stage") == "ResponseComplete"
               and not (e.get("objectRef") or {}).get("subresource") and "dryRun" not in e.get("requestURI", "")]
    assert created and max(created) <= closes[:19], (created, closes)
    strict, _window = run_past_the_window(tmp_path, core, namespace, dict(args, name="win2", fail_on_window_closed=True))
    assert strict["failed"] and "maintenance window closed at" in strict["msg"], strict.get("msg")
    assert (strict["summary"]["succeeded"], strict["summary"]["not_started"]) == (1, 5)


@pytest.mark.k8s_compat
def test_a_spent_failure_budget_starts_no_new_pod_and_fails_the_run(tmp_path, core, namespace, labelled_nodes):
    """max_failures=1: the first two nodes fail (one pod at a time), the rest are never started."""
    selector, names = labelled_nodes(5)
    first, second = sorted(names)[:2]
    args = {"name": "budget", "namespace": namespace, "preset": "image_prune", "image_prune": {"dry_run": True},
            "node_selector": selector, "parallelism": 1, "max_failures": 1,
            "pod_annotations": {"sim.nodeops.io/exit-code." + first: "3", "sim.nodeops.io/exit-code." + second: "4"}}
    check = kh.run_module(tmp_path, "broadcast_job", args, check=True)
    assert check["plan"]["failure_budget"] == 1
    result = kh.run_module(tmp_path, "broadcast_job", args)
    assert result["failed"] and "failure budget of 1 exhausted: 2 of 5 nodes failed" in result["msg"], result["msg"]
    nodes = by_node(result)
    assert [nodes[n]["exit_code"] for n in (first, second)] == [3, 4]
    for n in sorted(names)[2:]:
        assert (nodes[n]["outcome"], nodes[n]["reason"], nodes[n]["pod"]) == ("not_started", "FailureBudgetExhausted",
                                                                              None)
    assert result["summary"]["not_started"] == 3 and result["limits"]["failure_budget"] == 1
    # A percentage of the eligible nodes: 40% of 5 is 2, so two failures are within the budget.
    within = kh.run_module(tmp_path, "broadcast_job", dict(args, name="budget2", max_failures="40%",
                                                           fail_on_node_failure=False))
    assert not within.get("failed") and within["summary"]["not_started"] == 0 and within["summary"]["failed"] == 2


def pod_create_times(audit, mark, namespace):
    """When each pod created in ``namespace`` since ``mark`` was received (the apiserver's clock, to the
    microsecond), in order."""
    return sorted(datetime.datetime.strptime(e["requestReceivedTimestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
                  for e in audit.events_since(mark)
                  if e.get("verb") == "create" and (e.get("objectRef") or {}).get("resource") == "pods"
                  and (e.get("objectRef") or {}).get("namespace") == namespace and e.get("stage") == "ResponseComplete"
                  and not (e.get("objectRef") or {}).get("subresource") and "dryRun" not in e.get("requestURI", "")
                  and (e.get("responseStatus") or {}).get("code") == 201)


def test_batch_soak_starts_the_next_batch_once_the_one_before_has_finished_and_soaked(
        tmp_path, namespace, labelled_nodes, audit):
    """Three nodes, parallelism 3, a 5 s soak: the slow start's batches are 1 then 2 nodes, and the second
    batch's pods are created at least 5 s after the first (whose pod ends at once)."""
    selector, names = labelled_nodes(3)
    args = {"name": "soak", "namespace": namespace, "preset": "image_prune", "image_prune": {"dry_run": True},
            "node_selector": selector, "parallelism": 3, "batch_soak": "5s", "timeout": 120}
    check = kh.run_module(tmp_path, "broadcast_job", args, check=True)
    assert check["plan"]["batch_soak_s"] == 5 and check["plan"]["health_gate"] is None
    mark = audit.mark()
    result = kh.run_module(tmp_path, "broadcast_job", args)
    assert not result.get("failed"), result.get("msg")
    assert result["summary"]["succeeded"] == 3
    assert (result["limits"]["batch_soak_s"], result["limits"]["stopped_starting"]) == (5, None)
    created = pod_create_times(audit, mark, namespace)
    assert len(created) == 3, created
    gap = (created[1] - created[0]).total_seconds()
    assert gap >= 5.0, "the second batch came %.2f s after the first" % gap
    assert (created[2] - created[1]).total_seconds() < 5.0, created   # one batch of two, no soak inside it
    first = min((rec for rec in result["nodes"] if rec["started_at"]), key=lambda rec: rec["started_at"])
    # The soak began when the first batch's pod had finished (finished_at is to the second).
    finished = datetime.datetime.strptime(first["finished_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert (created[1] - finished).total_seconds() >= 4.0, (created, first)


def test_a_node_that_goes_not_ready_after_its_pod_finished_shuts_the_health_gate(
        tmp_path, core, namespace, labelled_nodes, sim_nodes, audit):
    """Waves with a long soak and the health gate: the first batch's one node runs its pod to the end, then goes
    NotReady during the soak. No other pod starts: the rest are not_started with the reason HealthGate, the run
    fails naming the node, and the audit log has one pod create."""
    selector, names = labelled_nodes(4)
    args = {"name": "gate", "namespace": namespace, "preset": "image_prune", "image_prune": {"dry_run": True},
            "node_selector": selector, "parallelism": 4, "batch_soak": "10m", "health_gate": {}, "timeout": 900,
            "pod_annotations": {"sim.nodeops.io/delay": "1h"}}
    mark = audit.mark()
    box = {}
    thread = threading.Thread(target=lambda: box.update(result=kh.run_module(tmp_path, "broadcast_job", args)))
    thread.start()
    try:
        def first_running():
            running = [p for p in core.list_namespaced_pod(namespace, label_selector="nodeops.io/broadcast=gate").items
                       if p.status.phase == "Running"]
            return running[0] if running else None
        first = kh.wait_for("the first batch's pod to run", first_running, timeout=120)
        fell = first.spec.node_name
        kh.end_pod(core, namespace, first.metadata.name)
        kh.wait_for("its end to be seen", lambda: core.read_namespaced_pod(
            first.metadata.name, namespace).status.phase == "Succeeded")
        sim_nodes.set_not_ready(fell)
    finally:
        thread.join(300)
    assert not thread.is_alive(), "the run did not stop at the health gate"
    result = box["result"]
    assert result["failed"] and ("health gate: node %s went NotReady after its pod finished in this run; 3 of 4 nodes "
                                 "not started" % fell) in result["msg"], result.get("msg")
    nodes = by_node(result)
    assert nodes[fell]["outcome"] == "succeeded", nodes[fell]
    for n in [n for n in names if n != fell]:
        assert (nodes[n]["outcome"], nodes[n]["reason"], nodes[n]["pod"]) == ("not_started", "HealthGate", None)
    assert result["limits"]["stopped_starting"] == "HealthGate"
    assert (result["limits"]["batch_soak_s"], result["limits"]["health_gate"]) == (
        600, {"max_not_ready": None, "finished_nodes": True})
    assert len(kh.pod_creates(audit, mark, namespace)) == 1


def test_more_not_ready_nodes_than_the_gate_allows_start_no_pod_and_check_mode_says_so(
        tmp_path, namespace, labelled_nodes, sim_nodes, audit):
    """A NotReady node elsewhere in the cluster and max_not_ready 0: check mode says the run would stop, and the
    run starts no pod; with the cluster's NotReady count allowed the same run goes ahead."""
    selector, names = labelled_nodes(2)
    down = sim_nodes.add()
    sim_nodes.set_not_ready(down)
    args = {"name": "gate0", "namespace": namespace, "preset": "image_prune", "image_prune": {"dry_run": True},
            "node_selector": selector, "parallelism": 2, "health_gate": {"max_not_ready": 0}}
    check = kh.run_module(tmp_path, "broadcast_job", args, check=True)
    planned = check["plan"]["health_gate"]
    assert down in planned["not_ready"] and planned["max_not_ready"] == 0 and planned["finished_nodes"] is True
    assert planned["would_stop"].startswith("not started: health gate: %d of the cluster's %d nodes are NotReady"
                                            % (planned["not_ready_count"], planned["cluster_nodes"])), planned
    mark = audit.mark()
    result = kh.run_module(tmp_path, "broadcast_job", args)
    assert result["failed"] and "more than max_not_ready=0; 2 of 2 nodes not started" in result["msg"], result["msg"]
    assert [(rec["outcome"], rec["reason"]) for rec in result["nodes"] if rec["node"] in names] == [
        ("not_started", "HealthGate")] * 2
    assert kh.pod_creates(audit, mark, namespace) == []
    # As many NotReady nodes allowed as there are: the same run goes ahead.
    allowed = kh.run_module(tmp_path, "broadcast_job", dict(args, name="gatecount",
                                                            health_gate={"max_not_ready": planned["not_ready_count"]}))
    assert not allowed.get("failed") and allowed["summary"]["succeeded"] == 2, allowed.get("msg")


class RunPodsWatch(threading.Thread):
    """The test's own watch of one broadcast's pods, from a list made before the run: every pod it sees, by UID,
    with the node its annotation names and the node it ran on (``pods``). A watch that expires (410) is listed
    again from now, so no pod is missed; its errors are the test's (``error``)."""

    def __init__(self, core, namespace, broadcast):
        super(RunPodsWatch, self).__init__(daemon=True)
        self.core, self.namespace, self.broadcast = core, namespace, broadcast
        self.since = core.list_namespaced_pod(namespace).metadata.resource_version
        self.pods, self.error, self.stopped = {}, None, threading.Event()

    def _see(self, pod):
        if (pod.metadata.labels or {}).get("nodeops.io/broadcast") != self.broadcast:
            return
        node = (pod.metadata.annotations or {}).get("nodeops.io/node")
        seen = self.pods.setdefault(pod.metadata.uid, {"node": node, "ran_on": set()})
        if pod.spec.node_name:
            seen["ran_on"].add(pod.spec.node_name)

    def run(self):
        rv = self.since
        try:
            while not self.stopped.is_set():
                try:
                    for event in k8s_watch.Watch().stream(self.core.list_namespaced_pod, self.namespace,
                                                          resource_version=rv, timeout_seconds=2,
                                                          allow_watch_bookmarks=True):
                        rv = event["object"].metadata.resource_version
                        if event["type"] != "BOOKMARK":
                            self._see(event["object"])
                except k8s.rest.ApiException as exc:
                    if exc.status != 410:
                        raise
                    listed = self.core.list_namespaced_pod(self.namespace)
                    for pod in listed.items:
                        self._see(pod)
                    rv = listed.metadata.resource_version
        except Exception as exc:   # noqa: BLE001 -- handed to the test, which fails with it
            self.error = exc

    def nodes(self):
        return set(p["node"] for p in self.pods.values())

    def finish(self):
        self.stopped.set()
        self.join(30)
        assert self.error is None, "the test's watch failed: %r" % (self.error,)
        return self.pods


def end_running_pods(core, namespace, broadcast, thread, ended):
    """End each pod of ``broadcast`` once it runs (they run until ended), until ``thread`` (the run) ends."""
    while thread.is_alive():
        for pod in core.list_namespaced_pod(namespace, label_selector="nodeops.io/broadcast=%s" % broadcast).items:
            if pod.status.phase == "Running" and pod.metadata.name not in ended:
                ended.add(pod.metadata.name)
                kh.end_pod(core, namespace, pod.metadata.name)
        time.sleep(0.3)


def remove_taint(core, name, key):
    """Remove taint ``key`` from node ``name``, by a JSON patch whose test op makes it apply only to the taints read
    (another writer, the node lifecycle controller, may change them meanwhile: then read and try again)."""
    for _attempt in range(10):
        taints = core.api_client.sanitize_for_serialization(core.read_node(name)).get("spec", {}).get("taints") or []
        kept = [t for t in taints if t.get("key") != key]
        try:
            core.patch_node(name, [{"op": "test", "path": "/spec/taints", "value": taints},
                                   {"op": "replace", "path": "/spec/taints", "value": kept}])
            return
        except k8s.rest.ApiException as exc:
            if exc.status not in (409, 422):
                raise
    raise AssertionError("could not remove taint %s from node %s" % (key, name))


def test_nodes_that_join_or_become_eligible_mid_run_each_get_exactly_one_pod(
        tmp_path, core, namespace, labelled_nodes, sim_nodes, audit):
    """follow_nodes (the default). Two labelled nodes' pods run until the test ends them, which keeps the run
    going; meanwhile two labelled nodes join, a cordoned one is uncordoned and a tainted one loses its taint.
    Each of the six gets exactly one pod, as the test's own watch sees them (by UID, and the node each ran on),
    and the result reports all six. Then with follow_nodes false, a node that joins mid-run gets no pod and is
    not in the result."""
    selector, names = labelled_nodes(2)
    tag = selector["nodeops-test"]
    cordoned = sim_nodes.add(name="%s-cordoned" % tag, labels=selector)
    sim_nodes.cordon(cordoned)
    tainted = sim_nodes.add(name="%s-tainted" % tag, labels=selector)
    sim_nodes.taint(tainted, "nodeops-test/hold", "x")
    args = {"name": "follow", "namespace": namespace, "preset": "image_prune", "image_prune": {"dry_run": True},
            "node_selector": selector, "parallelism": 10, "timeout": 300,
            "pod_annotations": {"sim.nodeops.io/delay": "1h"}}
    check = kh.run_module(tmp_path, "broadcast_job", args, check=True)
    assert sorted(check["plan"]["eligible"]) == sorted(names) and check["plan"]["follow_nodes"] is True
    assert (check["plan"]["skipped"][cordoned], check["plan"]["skipped"][tainted]) == (
        "cordoned", "untolerated taint nodeops-test/hold=x:NoSchedule")
    watch, ended, box = RunPodsWatch(core, namespace, "follow"), set(), {}
    watch.start()
    mark = audit.mark()
    thread = threading.Thread(target=lambda: box.update(result=kh.run_module(tmp_path, "broadcast_job", args)))
    thread.start()
    try:
        kh.wait_for("the two planned nodes' pods", lambda: watch.nodes() >= set(names), timeout=120)
        joined = [sim_nodes.add(name="%s-joined-%d" % (tag, i), labels=selector) for i in range(2)]
        sim_nodes.cordon(cordoned, False)
        remove_taint(core, tainted, "nodeops-test/hold")
        six = set(names + joined + [cordoned, tainted])
        # The pods are ended only once all six exist, so that the run is still going when the last one comes.
        kh.wait_for("a pod for each of %s" % sorted(six), lambda: watch.nodes() >= six, timeout=90)
        end_running_pods(core, namespace, "follow", thread, ended)
    finally:
        thread.join(300)
        pods = watch.finish()
    assert not thread.is_alive()
    result = box["result"]
    assert not result.get("failed"), result.get("msg")
    assert sorted(result["followed_nodes"]) == sorted(joined + [cordoned, tainted])
    assert sorted(rec["node"] for rec in result["nodes"] if rec["outcome"] == "succeeded") == sorted(six)
    assert result["summary"]["desired"] == 6
    per_node = {}
    for seen in pods.values():
        assert seen["ran_on"] <= {seen["node"]}, seen          # each pod ran on the node it was for
        per_node[seen["node"]] = per_node.get(seen["node"], 0) + 1
    assert per_node == dict((node, 1) for node in six), per_node
    assert len(kh.pod_creates(audit, mark, namespace)) == 6

    # follow_nodes false: the plan made at the start is the run's.
    fixed = dict(args, name="fixed", follow_nodes=False)
    watch, ended, box = RunPodsWatch(core, namespace, "fixed"), set(), {}
    watch.start()
    thread = threading.Thread(target=lambda: box.update(result=kh.run_module(tmp_path, "broadcast_job", fixed)))
    thread.start()
    try:
        kh.wait_for("the six nodes' pods", lambda: watch.nodes() >= six, timeout=120)
        late = sim_nodes.add(name="%s-late" % tag, labels=selector)
        time.sleep(3)   # the run's watch has seen it Ready by now (a followed node's pod would be made at once)
        end_running_pods(core, namespace, "fixed", thread, ended)
    finally:
        thread.join(300)
        pods = watch.finish()
    result = box["result"]
    assert not result.get("failed"), result.get("msg")
    assert result["followed_nodes"] == [] and late not in [rec["node"] for rec in result["nodes"]]
    assert set(p["node"] for p in pods.values()) == six and len(pods) == 6


def test_failed_nodes_get_an_event_on_the_node_and_the_run_one_on_its_record(
        tmp_path, core, namespace, labelled_nodes):
    selector, names = labelled_nodes(4)
    bad, other_bad = sorted(names)[1:3]
    result = kh.run_module(tmp_path, "broadcast_job", {
        "name": "ev", "namespace": namespace, "preset": "image_prune", "node_selector": selector,
        "pod_annotations": {"sim.nodeops.io/exit-code." + bad: "7", "sim.nodeops.io/exit-code." + other_bad: "7"}})
    assert result["failed"] and result["summary"]["failed"] == 2
    assert not result.get("warnings"), result["warnings"]   # admin may post events: none refused
    run_id = result["run_id"]

    def node_events(node):
        # What `kubectl get events -A --field-selector involvedObject.kind=Node` lists, for one node.
        return [e for e in core.list_event_for_all_namespaces(
            field_selector="involvedObject.kind=Node,involvedObject.name=%s" % node).items if run_id in e.message]
    events = kh.wait_for("the event on the failed node", lambda: node_events(bad))
    assert len(events) == 1, [e.message for e in events]
    event = events[0]
    assert (event.reason, event.type, event.involved_object.uid) == ("NodeopsBroadcastFailed", "Warning", bad)
    # The last line of the container's log tail (its termination message) says what went wrong.
    assert event.message == "broadcast %s/ev run %s: failed (exit code 7, Error, simulated container done)" % (
        namespace, run_id)
    assert len(kh.wait_for("the event on the other failed node", lambda: node_events(other_bad))) == 1
    for good in set(names) - {bad, other_bad}:
        assert node_events(good) == []   # none for successes unless asked
    record = naming.record_name("ev", run_id)
    summary = [e for e in core.list_namespaced_event(namespace, field_selector="involvedObject.kind=ConfigMap").items
               if e.involved_object.name == record]
    assert len(summary) == 1 and summary[0].type == "Normal"
    assert "of 4 eligible nodes, 2 succeeded, 2 failed;" in summary[0].message


def test_keep_images_in_cluster_without_the_rights_it_needs_names_the_option_and_writes_nothing(
        tmp_path, api_client, namespace, labelled_nodes, audit):
    user = kh.unique("no-list")
    granted = kh.grant(api_client, namespace, user, kh.run_rules(pod_logs=False))
    try:
        selector, _names = labelled_nodes(2)
        mark = audit.mark()
        result = kh.run_module(tmp_path, "broadcast_job", {
            "name": "keep", "namespace": namespace, "preset": "image_prune", "node_selector": selector,
            "image_prune": {"keep_images_in_cluster": True}, "impersonate_user": user})
        assert result["failed"], result
        assert result["msg"].startswith("image_prune.keep_images_in_cluster=true needs the read-only right to list "
                                        "pods, deployments, daemonsets, statefulsets, replicasets, jobs, cronjobs"), \
            result["msg"]
        assert "refused to list pods" in result["msg"] and "keep_images_in_cluster=false" in result["msg"]
        # Impersonated requests are audited under the impersonator (the admin), in the namespace.
        assert audit.writes_since(mark, namespace=namespace) == []
    finally:
        kh.revoke(api_client, namespace, granted)


def test_events_the_cluster_refuses_cost_a_warning_never_the_results(
        tmp_path, api_client, namespace, labelled_nodes):
    """A user who may run broadcasts but not post events: the run's results are whole, and one warning
    says how many events were refused and why."""
    user = kh.unique("no-events")
    granted = kh.grant(api_client, namespace, user, kh.run_rules())   # and no right to post events
    try:
        selector, names = labelled_nodes(3)
        result = kh.run_module(tmp_path, "broadcast_job", {
            "name": "noev", "namespace": namespace, "preset": "image_prune", "node_selector": selector,
            "impersonate_user": user, "fail_on_node_failure": False,
            "pod_annotations": {"sim.nodeops.io/exit-code." + names[0]: "3", "sim.nodeops.io/exit-code." + names[1]: "3"}})
        assert not result.get("failed"), result.get("msg")
        assert (result["summary"]["succeeded"], result["summary"]["failed"]) == (1, 2)
        refused = [w for w in result["warnings"] if "could not post" in w]
        # Two node events and the run's own, all refused.
        assert len(refused) == 1 and refused[0].startswith("could not post 3 of 3 events (NodeopsBroadcast"), refused
        assert "forbidden" in refused[0].lower(), refused
    finally:
        kh.revoke(api_client, namespace, granted)


def test_a_run_in_progress_shows_its_counts_in_broadcast_info(tmp_path, namespace, labelled_nodes, audit):
    """One pod at a time, 2 s each, on 6 nodes: broadcast_info, asked mid-run, sees counts between 0 and
    desired, from the run record the engine updates at most every 5 seconds."""
    selector, names = labelled_nodes(6)
    box = {}
    thread = threading.Thread(target=lambda: box.update(result=Engine(kh.rest_client()).run(opts(
        namespace, name="prog", node_selector=selector, parallelism=1,
        pod_annotations={"sim.nodeops.io/delay": "2s"}), "prog1")))
    mark = audit.mark()
    thread.start()

    def in_progress():
        info = kh.run_module(tmp_path, "broadcast_info", {"namespace": namespace, "name": "prog"})
        runs = [r for r in info["runs"] if r["run_id"] == "prog1" and r["state"] == "running" and r["progress"]]
        done = runs and sum(v for k, v in runs[0]["progress"].items() if k not in ("desired", "active", "waiting"))
        return runs[0] if runs and 0 < done < 6 else None
    seen = kh.wait_for("a run in progress with some nodes done", in_progress, timeout=60, interval=1)
    thread.join(60)
    assert not thread.is_alive() and box["result"]["summary"]["succeeded"] == 6
    progress = seen["progress"]
    assert progress["desired"] == 6 and progress["active"] <= 1
    assert progress["waiting"] + progress["active"] + progress.get("succeeded", 0) == 6, progress
    assert seen["updated_at"]
    # At most one progress write and one lease renewal (lease.RENEW_SECONDS) per 5 seconds, however many
    # nodes, plus the record's last write.
    patches = [w for w in audit.writes_since(mark, namespace=namespace)
               if w["resource"] == "configmaps" and w["verb"] == "patch"]
    periods = int(box["result"]["summary"]["duration_s"] // 5)
    assert 1 <= len(patches) <= (periods + 1) + (periods + 1) + 1, patches


@pytest.mark.k8s_compat
def test_observed_concurrency_never_exceeds_parallelism(api_client, core, namespace, labelled_nodes):
    """parallelism 2 on 6 nodes, each pod running until the test ends it. The test watches the pods from a
    list made before the run (no event is missed, however late its watch connects) and ends one running pod
    only when two are active, or when all six exist: so two run at once whatever the machine's speed, and
    in the watch's order, a third made while two run would be seen."""
    selector, names = labelled_nodes(6)
    since = core.list_namespaced_pod(namespace).metadata.resource_version
    box = {}
    run = threading.Thread(target=lambda: box.update(result=Engine(kh.rest_client()).run(opts(
        namespace, node_selector=selector, parallelism=2, pod_annotations={"sim.nodeops.io/delay": "1h"}), "conc1")))
    seen, active, running, ending, peak = set(), set(), set(), set(), 0
    run.start()
    try:
        w = k8s_watch.Watch()
        for event in w.stream(core.list_namespaced_pod, namespace, resource_version=since, timeout_seconds=120):
            pod = event["object"]
            name = pod.metadata.name
            if event["type"] == "DELETED" or pod.status.phase in ("Succeeded", "Failed"):
                active.discard(name)
                running.discard(name)
                ending.discard(name)
            elif name not in seen or name in active:
                seen.add(name)
                active.add(name)
                if pod.status.phase == "Running":
                    running.add(name)
            peak = max(peak, len(active))
            if len(seen) == len(names) and not active:
                w.stop()
            elif not ending and running and (len(active) >= 2 or len(seen) == len(names)):
                ending.add(sorted(running)[0])
                kh.end_pod(core, namespace, sorted(running)[0])
    finally:
        run.join(60)
    assert not run.is_alive() and box["result"]["summary"]["succeeded"] == 6, box
    assert len(seen) == 6 and peak == 2, "peak concurrency %d with parallelism 2" % peak


@pytest.mark.k8s_compat
def test_skip_reasons_and_tolerate_all_taints(tmp_path, namespace, sim_nodes):
    tainted = sim_nodes.add()
    sim_nodes.taint(tainted, "dedicated", "db", "NoSchedule")
    cordoned = sim_nodes.add()
    sim_nodes.cordon(cordoned)
    not_ready = sim_nodes.add()
    sim_nodes.set_not_ready(not_ready)
    fine = sim_nodes.add()
    args = {"name": "skips", "namespace": namespace, "preset": "image_prune",
            "nodes": [tainted, cordoned, not_ready, fine, "kwok-control-plane"]}
    check = kh.run_module(tmp_path, "broadcast_job", args, check=True)
    assert check["plan"]["eligible"] == [fine]
    assert check["plan"]["skipped"] == {
        tainted: "untolerated taint dedicated=db:NoSchedule", cordoned: "cordoned", not_ready: "NotReady",
        "kwok-control-plane": "control plane"}
    result = kh.run_module(tmp_path, "broadcast_job", args)
    assert not result.get("failed"), result.get("msg")
    assert by_node(result)[tainted]["outcome"] == "skipped"
    assert by_node(result)[fine]["outcome"] == "succeeded"
    result = kh.run_module(tmp_path, "broadcast_job", dict(args, tolerate_all_taints=True))
    assert by_node(result)[tainted]["outcome"] == "succeeded"
    assert by_node(result)[cordoned]["reason"] == "cordoned"


@pytest.mark.k8s_compat
def test_unschedulable_pod_is_reported_with_the_schedulers_reason(core, namespace, sim_nodes):
    small = sim_nodes.add(cpu="1", labels={"nodeops-test": "small"})
    result = None
    started = time.monotonic()
    with pytest.raises(NodeFailures) as info:
        Engine(kh.rest_client()).run(opts(namespace, nodes=[small], pending_timeout=3,
                                          resources={"requests": {"cpu": "2"}}), "unsched")
    result = info.value.result
    rec = by_node(result)[small]
    assert rec["outcome"] == "unschedulable"
    assert "Insufficient cpu" in rec["message"]
    assert time.monotonic() - started < 30
    # A pod that never started is not left behind to start later.
    kh.wait_for("the pending pod to be deleted", lambda: kh.managed_pods(core, namespace) == [])


@pytest.mark.k8s_compat
def test_node_deleted_mid_run_is_reported_lost(core, namespace, labelled_nodes, sim_nodes):
    selector, names = labelled_nodes(2)
    doomed, survivor = names
    box = {}

    def run():
        try:
            box["result"] = Engine(kh.rest_client()).run(opts(namespace, node_selector=selector, pod_annotations={
                "sim.nodeops.io/delay." + doomed: "1h", "sim.nodeops.io/delay." + survivor: "3s"}), "lost1")
        except NodeFailures as exc:
            box["result"] = exc.result

    thread = threading.Thread(target=run)
    thread.start()
    kh.wait_for("the pod on %s to run" % doomed, lambda: any(
        p.spec.node_name == doomed and p.status.phase == "Running" for p in kh.managed_pods(core, namespace)))
    sim_nodes.remove(doomed)
    thread.join(60)
    assert not thread.is_alive()
    nodes = by_node(box["result"])
    assert (nodes[doomed]["outcome"], nodes[doomed]["reason"]) == ("lost", "NodeDeleted")
    assert nodes[survivor]["outcome"] == "succeeded"


@pytest.mark.k8s_compat
def test_killed_module_resumes_with_same_run_id_without_duplicates(tmp_path, core, namespace, labelled_nodes, audit):
    selector, names = labelled_nodes(4)
    args = {"name": "resume", "namespace": namespace, "preset": "image_prune", "node_selector": selector,
            "run_id": "resume1", "parallelism": 4, "pod_annotations": {"sim.nodeops.io/delay": "3s"}}
    mark = audit.mark()
    killed = kh.kill_playbook_mid_run(tmp_path, args, lambda: len(kh.managed_pods(core, namespace)) == 4,
                                      "all four pods")
    assert len(killed) >= 3, "the module's own process was not among those killed: %s" % killed
    assert len(kh.managed_pods(core, namespace)) == 4   # the killed run left its pods, owned by the run record
    result = kh.run_module(tmp_path, "broadcast_job", args)
    assert not result.get("failed"), result.get("msg")
    assert result["summary"]["succeeded"] == 4
    assert sorted(n for n, rec in by_node(result).items() if rec["outcome"] != "skipped") == sorted(names)
    assert len(kh.pod_creates(audit, mark, namespace)) == 4   # the second run created none
    kh.wait_for("the pods to be deleted", lambda: kh.managed_pods(core, namespace) == [])


@pytest.mark.k8s_compat
def test_check_mode_writes_nothing(tmp_path, namespace, audit):
    mark = audit.mark()
    result = kh.run_module(tmp_path, "broadcast_job", {
        "name": "dry", "namespace": namespace, "preset": "host_command",
        "host_command": {"command": ["systemctl", "restart", "containerd"]}}, check=True)
    assert result["changed"] is True
    assert "kwok-worker-1" in result["plan"]["eligible"]
    assert result["pod"]["spec"]["containers"][0]["command"][-3:] == ["systemctl", "restart", "containerd"]
    assert audit.writes_since(mark, namespace=None) == []


@pytest.mark.k8s_compat
def test_bad_input_writes_nothing(tmp_path, namespace, audit):
    mark = audit.mark()
    result = kh.run_module(tmp_path, "broadcast_job", {
        "name": "bad", "namespace": namespace, "preset": "path_cleanup",
        "path_cleanup": {"path": "/var/lib/kubelet", "older_than_days": 1}})
    assert result["failed"] and "path_cleanup.path='/var/lib/kubelet' is invalid" in result["msg"]
    assert audit.writes_since(mark, namespace=None) == []


@pytest.mark.k8s_compat
def test_state_absent_deletes_a_runs_pods_and_record(tmp_path, core, namespace, labelled_nodes):
    selector, names = labelled_nodes(2)
    first = kh.run_module(tmp_path, "broadcast_job", {
        "name": "keep", "namespace": namespace, "preset": "image_prune", "node_selector": selector,
        "cleanup": "never"})
    assert len(kh.managed_pods(core, namespace)) == 2
    info = kh.run_module(tmp_path, "broadcast_info", {"namespace": namespace})
    assert [(r["name"], r["run_id"], r["state"]) for r in info["runs"]] == [("keep", first["run_id"], "finished")]
    assert sorted((p["node"], p["phase"]) for p in info["runs"][0]["pods"]) == [(n, "Succeeded") for n in sorted(names)]
    assert info["cron_broadcasts"] == []
    check = kh.run_module(tmp_path, "broadcast_job", {"name": "keep", "namespace": namespace, "state": "absent"},
                          check=True)
    assert check["changed"] and len(check["deleted"]["pods"]) == 2 and len(kh.managed_pods(core, namespace)) == 2
    gone = kh.run_module(tmp_path, "broadcast_job",
                         {"name": "keep", "namespace": namespace, "state": "absent", "run_id": first["run_id"]})
    assert gone["changed"] is True
    assert gone["deleted"]["records"] == ["nodeops-run-keep-%s" % first["run_id"]]
    kh.wait_for("pods deleted", lambda: kh.managed_pods(core, namespace) == [])
    again = kh.run_module(tmp_path, "broadcast_job", {"name": "keep", "namespace": namespace, "state": "absent"})
    assert again["changed"] is False


def pod_output_on_a_host(pod, tmp_path):
    """Run the preset pod's own command here, with a stand-in ``nsenter`` that answers as crictl would.

    This is the container's real command and environment; only the host's
    crictl is played by canned, real-shaped JSON (tests/unit/fixtures).
    """
    container = pod["spec"]["containers"][0]
    bindir = tmp_path / "host-bin"
    bindir.mkdir()
    nsenter = bindir / "nsenter"
    nsenter.write_text("#!/bin/sh\n"
                       "while [ \"$1\" != crictl ]; do shift; done; shift\n"
                       "case \"$1\" in images) f=crictl_images.json;; ps) f=crictl_ps_a.json;; "
                       "info) f=crictl_info.json;; *) exit 3;; esac\n"
                       "cat \"%s/$f\"\n" % FIXTURES)
    nsenter.chmod(0o755)
    env = dict((e["name"], e["value"]) for e in container["env"])
    env["PATH"] = "%s:%s" % (bindir, os.environ["PATH"])
    # The node script comes from the run's code ConfigMap the pod mounts, laid out by the volume's items;
    # here, the same files from the same source, in a stand-in for the mount, checked by the pod's own argv.
    mount = [m for m in container["volumeMounts"] if m["name"] == "nodeops-node"][0]["mountPath"]
    volume = [v for v in pod["spec"]["volumes"] if v["name"] == "nodeops-node"][0]["configMap"]
    workload = {"preset": json.loads(env["NODEOPS_PRESET"])["preset"], "inputs": []}
    code = pods.node_code(workload)
    data = pods.code_config_map({"name": "x", "namespace": "x"}, "x", code, {})["data"]
    mounted = tmp_path / "mounted"
    for item in volume["items"]:
        target = mounted / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data[item["key"]])
    argv = [str(mounted) if arg == mount else arg for arg in container["command"][1:]]
    env["TMPDIR"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-S"] + argv, env=env, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_logs_and_preset_results_come_through_the_api(api_client, tmp_path, namespace, labelled_nodes):
    selector, names = labelled_nodes(2)
    run_spec = opts(namespace, name="logs", node_selector=selector)
    output = pod_output_on_a_host(pods.build_pod(run_spec, "logs1", names[0]), tmp_path)
    custom = k8s.CustomObjectsApi(api_client)
    for node in names:
        log_file = tmp_path / ("%s.log" % node)
        log_file.write_text("".join("2026-01-01T00:00:00Z stdout F %s\n" % line for line in output.splitlines()))
        custom.create_namespaced_custom_object("kwok.x-k8s.io", "v1alpha1", namespace, "logs", {
            "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs",
            "metadata": {"name": naming.pod_name("logs", "logs1", node)},
            "spec": {"logs": [{"logsFile": str(log_file)}]}})
    result = Engine(kh.rest_client()).run(run_spec, "logs1")
    for node in names:
        rec = by_node(result)[node]
        assert rec["log"].startswith("would remove docker.io/library/nginx:1.25 (70000000 bytes)\n")
        assert rec["result"]["images_removed_count"] == 3
        assert rec["result"]["bytes_freed"] == 232000000
        assert rec["result"]["dry_run"] is True


@pytest.mark.k8s_compat
def test_two_hundred_nodes(core, namespace, sim_nodes, audit):
    tag = kh.unique("big")
    for i in range(200):
        sim_nodes.add(name="%s-%03d" % (tag, i), labels={"nodeops-test": tag}, wait=False)
    kh.wait_for("200 Ready nodes", lambda: len([
        n for n in core.list_node(label_selector="nodeops-test=" + tag).items
        if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
        and not any(t.key == "node.kubernetes.io/not-ready" for t in n.spec.taints or [])]) == 200, timeout=90)
    mark = audit.mark()
    result = Engine(kh.rest_client()).run(opts(namespace, node_selector={"nodeops-test": tag},
                                               parallelism="100%"), "big1")
    assert result["summary"]["succeeded"] == 200 == result["summary"]["desired"]
    assert len({rec["pod"] for rec in result["nodes"] if rec["pod"]}) == 200
    assert len(kh.pod_creates(audit, mark, namespace)) == 200


def test_apiserver_restart_mid_run(core, namespace, labelled_nodes, audit):
    selector, names = labelled_nodes(6)
    mark = audit.mark()
    engine = Engine(kh.rest_client())
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", engine.run(
        # The scheduler can take half a minute to act again after the restart: pending_timeout leaves room.
        opts(namespace, node_selector=selector, parallelism="100%", pod_annotations={"sim.nodeops.io/delay": "12s"},
             pending_timeout=120),
        "restart1")))
    thread.start()
    kh.wait_for("the pods to be created", lambda: len(kh.managed_pods(core, namespace)) == 6)
    local_cluster.stop("kube-apiserver")
    assert thread.is_alive()   # the run is mid-way when the apiserver goes
    time.sleep(2)
    local_cluster.restart("kube-apiserver")
    thread.join(120)
    assert not thread.is_alive()
    result = box["result"]
    assert result["summary"]["succeeded"] == 6
    assert len(kh.pod_creates(audit, mark, namespace)) == 6


def watch_answers_gone(namespace, resource_version):
    """Whether a pod watch from ``resource_version`` is answered 410 Gone (as an ERROR event or a status)."""
    try:
        for event in kh.rest_client().watch("/api/v1/namespaces/%s/pods" % namespace,
                                            {"resourceVersion": resource_version, "timeoutSeconds": 1}, timeout=15):
            if event.get("type") == "ERROR":
                return (event.get("object") or {}).get("code") == 410
    except WatchExpired:
        return True
    return False


@pytest.mark.k8s_compat
def test_watch_expiry_410_is_survived(namespace, labelled_nodes):
    # Start the pod watch from resourceVersion 1: the apiserver answers 410 Gone when its watch cache began
    # after it. On a cluster whose apiserver started on an empty etcd the cache began before it, and the
    # watch would be served: restart the apiserver then, so that the run meets a 410 on every cluster.
    if not watch_answers_gone(namespace, "1"):
        local_cluster.restart("kube-apiserver")
    assert watch_answers_gone(namespace, "1")
    selector, names = labelled_nodes(3)
    engine = Engine(kh.rest_client(), initial_resource_version="1")
    try:
        result = engine.run(opts(namespace, node_selector=selector), "expired1")
    except NodeFailures as exc:   # say why each node failed
        result = exc.result
    assert result["summary"]["succeeded"] == 3, [(r["node"], r["outcome"], r["reason"]) for r in result["nodes"]]
    assert engine.stats["relists"] >= 1


def test_restart_limit_fails_a_crash_looping_pod(core, namespace, labelled_nodes):
    selector, names = labelled_nodes(1)
    with pytest.raises(NodeFailures) as info:
        Engine(kh.rest_client()).run(opts(namespace, node_selector=selector, restart_policy="OnFailure",
                                          restart_limit=2, pod_annotations={"sim.nodeops.io/exit-code": "4",
                                                                            "sim.nodeops.io/delay": "200ms"}), "crash1")
    rec = by_node(info.value.result)[names[0]]
    assert (rec["outcome"], rec["reason"], rec["exit_code"]) == ("failed", "RestartLimitExceeded", 4)
    assert rec["restarts"] == 3


@pytest.mark.k8s_compat
def test_run_timeout_reports_timed_out_nodes_and_removes_their_pods(core, namespace, labelled_nodes):
    selector, names = labelled_nodes(2)
    started = time.monotonic()
    with pytest.raises(RunTimeout) as info:
        Engine(kh.rest_client()).run(opts(namespace, node_selector=selector, timeout=3,
                                          pod_annotations={"sim.nodeops.io/delay": "1h"}), "slow1")
    assert time.monotonic() - started < 20
    assert "timed out after 3s" in info.value.msg
    assert sorted(r["node"] for r in info.value.result["nodes"] if r["outcome"] == "timed_out") == sorted(names)
    kh.wait_for("the timed-out pods to go", lambda: kh.managed_pods(core, namespace) == [])


def test_pods_that_cannot_be_deleted_cost_a_warning_never_the_results(tmp_path, api_client, core, namespace,
                                                                      labelled_nodes):
    """A user who may create pods but not delete them one by one, and a run that times out with its pods
    running: the run still ends as a timeout with every node's result, the pods stay owned by the run record
    (which says so), and a warning names them. The delete of an unfinished pod once made the module fail
    with no results, or turned the timeout into an abort."""
    user = kh.unique("no-delete")
    granted = kh.grant(api_client, namespace, user, kh.run_rules(
        pod_verbs=[v for v in kh.RUN_POD_VERBS if v != "delete"]))
    try:
        selector, names = labelled_nodes(2)
        result = kh.run_module(tmp_path, "broadcast_job", {
            "name": "nodel1", "namespace": namespace, "preset": "image_prune", "node_selector": selector,
            "parallelism": "100%", "impersonate_user": user, "timeout": 5,
            "pod_annotations": {"sim.nodeops.io/delay": "1h"}})
        assert result["failed"] and "timed out after 5s" in result["msg"], result.get("msg")
        assert sorted(r["node"] for r in result["nodes"] if r["outcome"] == "timed_out") == sorted(names)
        assert [w for w in result["warnings"] if w.startswith("could not delete pod")], result.get("warnings")
        record = core.read_namespaced_config_map("nodeops-run-nodel1-" + result["run_id"], namespace)
        assert record.data["state"] == "cleanup-incomplete"
        assert len(kh.managed_pods(core, namespace)) == 2
    finally:
        kh.revoke(api_client, namespace, granted)


def test_cleanup_that_fails_keeps_the_results_and_the_pods_owned(tmp_path, api_client, core, namespace,
                                                                 labelled_nodes):
    """A user who may create pods but not delete them as a collection: the run's results still come back."""
    user = kh.unique("no-deletecollection")
    granted = kh.grant(api_client, namespace, user, kh.run_rules(
        pod_verbs=[v for v in kh.RUN_POD_VERBS if v != "deletecollection"]))
    try:
        selector, names = labelled_nodes(3)
        # One node fails, so its pod is kept and the others are deleted as a collection, which this user may not.
        result = kh.run_module(tmp_path, "broadcast_job", {
            "name": "nodel", "namespace": namespace, "preset": "image_prune", "node_selector": selector,
            "parallelism": "100%", "impersonate_user": user, "fail_on_node_failure": False,
            "pod_annotations": {"sim.nodeops.io/exit-code." + names[0]: "3"}})
        assert not result.get("failed"), result.get("msg")
        assert (result["summary"]["succeeded"], result["summary"]["failed"]) == (2, 1)
        assert all(by_node(result)[n]["log"] for n in names)
        warning = [w for w in result["warnings"] if "were not all deleted" in w]
        assert warning and "state=absent and run_id=%s" % result["run_id"] in warning[0]
        # The pods stay, owned by the run record, which says what happened.
        record = core.read_namespaced_config_map("nodeops-run-nodel-" + result["run_id"], namespace)
        assert record.data["state"] == "cleanup-incomplete"
        pods = kh.managed_pods(core, namespace)
        assert len(pods) == 3
        assert all(p.metadata.owner_references[0].uid == record.metadata.uid for p in pods)
        # state=absent (as the admin) removes them, as the warning says.
        gone = kh.run_module(tmp_path, "broadcast_job", {"name": "nodel", "namespace": namespace,
                                                         "run_id": result["run_id"], "state": "absent"})
        assert gone["changed"] and len(gone["deleted"]["pods"]) == 3
    finally:
        kh.revoke(api_client, namespace, granted)


@pytest.mark.k8s_compat
def test_a_templates_tolerations_node_selector_and_affinity_decide_where_it_runs(
        tmp_path, core, namespace, sim_nodes):
    tainted = sim_nodes.add(labels={"disktype": "ssd"})
    sim_nodes.taint(tainted, "dedicated", "batch", "NoSchedule")
    ssd = sim_nodes.add(labels={"disktype": "ssd"})
    hdd = sim_nodes.add(labels={"disktype": "hdd"})
    anti = {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "podAffinityTerm": {
        "labelSelector": {"matchLabels": {"app": "mine"}}, "topologyKey": "kubernetes.io/hostname"}}]}
    template = {"metadata": {"labels": {"app": "mine"}}, "spec": {
        "containers": [{"name": "c", "image": "busybox:1.36"}],
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "nodeSelector": {"disktype": "ssd"}, "affinity": {"podAntiAffinity": anti}}}
    args = {"name": "tpl", "namespace": namespace, "pod_template": template, "nodes": [tainted, ssd, hdd],
            "cleanup": "never", "pending_timeout": 300}
    started = time.monotonic()
    result = kh.run_module(tmp_path, "broadcast_job", args)
    assert not result.get("failed"), result.get("msg")
    assert time.monotonic() - started < 60
    outcomes_ = dict((rec["node"], (rec["outcome"], rec["reason"])) for rec in result["nodes"])
    assert outcomes_ == {tainted: ("succeeded", "Completed"), ssd: ("succeeded", "Completed"),
                         hdd: ("skipped", "template nodeSelector disktype=ssd not matched")}
    pod = core.read_namespaced_pod([r["pod"] for r in result["nodes"] if r["node"] == ssd][0], namespace)
    affinity = core.api_client.sanitize_for_serialization(pod.spec.affinity)
    assert affinity["podAntiAffinity"] == anti
    assert affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] == [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [ssd]}]}]


def test_rights_revoked_mid_run_end_it_with_every_nodes_result(
        tmp_path, api_client, core, namespace, labelled_nodes):
    """The watch's next reconnect is refused (403): the run stops, keeps what it saw, and says so."""
    user = kh.unique("revoked")
    granted = kh.grant(api_client, namespace, user, kh.run_rules(extra=[
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "watch"]}]))

    def revoke():
        kh.wait_for("the run's pods", lambda: len(kh.managed_pods(core, namespace)) == 3, timeout=60)
        kh.revoke(api_client, namespace, granted, cluster_role=False)

    revoker = threading.Thread(target=revoke)
    try:
        selector, names = labelled_nodes(3)
        revoker.start()
        started = time.monotonic()
        result = kh.run_module(tmp_path, "broadcast_job", {
            "name": "revoked", "namespace": namespace, "preset": "image_prune", "node_selector": selector,
            "parallelism": "100%", "impersonate_user": user, "timeout": 300,
            "pod_annotations": {"sim.nodeops.io/delay": "120s"}})
        revoker.join(10)
        assert result.get("failed")
        assert "aborted by" in result["msg"] and "forbidden" in result["msg"].lower(), result["msg"]
        assert time.monotonic() - started < 100, "the run waited for its pods instead of stopping"
        assert set(names) <= set(by_node(result))
        for name in names:
            assert (by_node(result)[name]["outcome"], by_node(result)[name]["reason"]) == ("cancelled", "RunAborted")
        # The pods it could no longer delete stay owned by the run record: none is left unowned.
        record = core.read_namespaced_config_map("nodeops-run-revoked-" + result["run_id"], namespace)
        assert all(p.metadata.owner_references[0].uid == record.metadata.uid for p in kh.managed_pods(core, namespace))
    finally:
        kh.revoke(api_client, namespace, granted)


def test_broadcast_info_tells_an_abandoned_run_from_a_running_one(tmp_path, core, namespace):
    """A run whose process died (a killed playbook) leaves its record at "running": broadcast_info says it is
    abandoned once nothing has written it for longer than the run's timeout, and leaves a live one alone."""
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import history, naming

    now = datetime.datetime.now(datetime.timezone.utc)
    for run_id, written in (("dead1", now - datetime.timedelta(hours=2)), ("live1", now)):
        stamp = written.strftime("%Y-%m-%dT%H:%M:%SZ")
        data = history.record_data("running", started_at=stamp, eligible=3, timeout=600, updated_at=stamp)
        core.create_namespaced_config_map(namespace, {"metadata": {
            "name": naming.record_name("job", run_id), "labels": {
                "app.kubernetes.io/managed-by": "nodeops.kubernetes", naming.LABEL_BROADCAST: "job",
                naming.LABEL_RUN: run_id, naming.LABEL_KIND: naming.KIND_RUN_RECORD}}, "data": data})
    info = kh.run_module(tmp_path, "broadcast_info", {"name": "job", "namespace": namespace})
    assert not info.get("failed"), info.get("msg")
    states = dict((r["run_id"], r["state"]) for r in info["runs"])
    assert states == {"dead1": "abandoned", "live1": "running"}
    dead = [r for r in info["runs"] if r["run_id"] == "dead1"][0]
    assert "longer than its timeout of 600s" in dead["abandoned_reason"]


# ---------------------------------------------------------------- nodes under DiskPressure (simulated)

def test_a_quota_that_refuses_critical_pods_stops_the_run_before_any_write_and_says_which(
        tmp_path, core, namespace, sim_nodes, audit):
    """A node under DiskPressure gets a critical pod, and the server-side dry run before the first write asks the
    API server about that pod too: a ResourceQuota scoped to system-node-critical with no room fails the run,
    naming the quota, the option and the way out; nothing is written. disk_pressure=false skips the node saying
    why; with room in the quota the node gets its pod, at system-node-critical, and the result says it was under
    DiskPressure."""
    full, fine = sim_nodes.add(), sim_nodes.add()
    sim_nodes.set_disk_pressure(full)
    core.create_namespaced_resource_quota(namespace, k8s.V1ResourceQuota(
        metadata=k8s.V1ObjectMeta(name="no-critical-pods"),
        spec=k8s.V1ResourceQuotaSpec(hard={"pods": "0"}, scope_selector=k8s.V1ScopeSelector(match_expressions=[
            k8s.V1ScopedResourceSelectorRequirement(operator="In", scope_name="PriorityClass",
                                                    values=["system-node-critical"])]))))
    kh.wait_for("the quota's status", lambda: core.read_namespaced_resource_quota(
        "no-critical-pods", namespace).status.hard)
    args = {"name": "relief", "namespace": namespace, "preset": "image_prune", "image_prune": {"dry_run": True},
            "nodes": [full, fine]}
    mark = audit.mark()
    refused = kh.run_module(tmp_path, "broadcast_job", args)
    assert refused.get("failed") and refused.get("invalid_parameter") == "disk_pressure", refused
    for words in ("ResourceQuota no-critical-pods in namespace %s has no room" % namespace, "system-node-critical",
                  "disk_pressure: false", "exceeded quota: no-critical-pods"):
        assert words in refused["msg"], (words, refused["msg"])
    assert audit.writes_since(mark, namespace=namespace) == [], "a refused run wrote something"

    off = kh.run_module(tmp_path, "broadcast_job", dict(args, disk_pressure=False))
    assert not off.get("failed"), off.get("msg")
    records = dict((rec["node"], rec) for rec in off["nodes"])
    assert records[full]["outcome"] == "skipped" and "disk_pressure=false" in records[full]["reason"]
    assert records[fine]["outcome"] == "succeeded" and off["disk_pressure"]["nodes"] == [full]

    core.delete_namespaced_resource_quota("no-critical-pods", namespace)
    kh.wait_for("the quota gone", lambda: not core.list_namespaced_resource_quota(namespace).items)
    mark = audit.mark()
    ran = kh.run_module(tmp_path, "broadcast_job", dict(args, cleanup="never"))
    assert not ran.get("failed"), ran.get("msg")
    records = dict((rec["node"], rec) for rec in ran["nodes"])
    assert records[full]["outcome"] == "succeeded" and records[full]["disk_pressure"] == {"before": True,
                                                                                          "after": True}
    assert "disk_pressure" not in records[fine]
    classes = dict((rec["node"], core.read_namespaced_pod(rec["pod"], namespace).spec.priority_class_name)
                   for rec in ran["nodes"])
    assert classes == {full: "system-node-critical", fine: None}, classes
    assert len(kh.pod_creates(audit, mark, namespace)) == 2


def test_a_critical_pod_that_would_not_fit_is_never_made_so_it_cannot_preempt(
        tmp_path, core, namespace, sim_nodes, audit):
    """A node under DiskPressure that holds as many pods as it may (allocatable pods 1) keeps them: the run skips it
    with the numbers instead of making a critical pod the scheduler would make room for by preempting the
    bystander, a lower-priority (system-cluster-critical) pod. Once room is made, the same run reaches it."""
    small = sim_nodes.add(pods="1")
    sim_nodes.set_disk_pressure(small)
    core.create_namespaced_pod(namespace, k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="bystander", annotations={"sim.nodeops.io/delay": "1h"}),
        spec=k8s.V1PodSpec(node_name=small, priority_class_name="system-cluster-critical",
                           tolerations=[k8s.V1Toleration(operator="Exists")],
                           containers=[k8s.V1Container(name="c", image="busybox")])))
    kh.wait_for("the bystander Running", lambda: core.read_namespaced_pod("bystander", namespace).status.phase
                == "Running")
    args = {"name": "relief", "namespace": namespace, "preset": "image_prune", "image_prune": {"dry_run": True},
            "nodes": [small], "follow_nodes": False}
    mark = audit.mark()
    result = kh.run_module(tmp_path, "broadcast_job", args)
    assert not result.get("failed"), result.get("msg")
    rec = result["nodes"][0]
    assert rec["outcome"] == "skipped" and rec["reason"].startswith("under DiskPressure and full"), rec
    assert "needs 1 pods, and 1 of its 1 allocatable are taken" in rec["reason"], rec
    assert kh.pod_creates(audit, mark, namespace) == []
    bystander = core.read_namespaced_pod("bystander", namespace)
    assert bystander.status.phase == "Running" and bystander.metadata.deletion_timestamp is None
    assert not [c for c in bystander.status.conditions or [] if c.type == "DisruptionTarget"]

    core.delete_namespaced_pod("bystander", namespace, grace_period_seconds=0)
    kh.wait_for("the bystander gone", lambda: not core.list_namespaced_pod(namespace).items)
    again = kh.run_module(tmp_path, "broadcast_job", args)
    assert not again.get("failed"), again.get("msg")
    assert again["nodes"][0]["outcome"] == "succeeded", again["nodes"][0]
