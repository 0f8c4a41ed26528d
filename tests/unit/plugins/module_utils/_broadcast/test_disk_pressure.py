# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nodes under DiskPressure (pressure.py): which pod runs there, which node is skipped and why, the critical pod's
room and its dry run. The kubelet's side is tests/integration/test_real_node.py's, under real DiskPressure."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import options, pods, pressure
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import plan as planner
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.engine import Engine
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.finish import disk_pressure_summary
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import Forbidden, InvalidInput

from test_run_exits import FakeClient, a_run, start

TAINT = {"key": pressure.TAINT, "effect": "NoSchedule"}


def opts(preset="image_prune", **extra):
    params = {"name": "p", "namespace": "ops", "preset": preset}
    params[preset] = {"command": ["true"]} if preset == "host_command" else (
        {"max_size": "1G"} if preset == "journal_vacuum" else ({"path": "/var/tmp/x", "older_than_days": 7}
                                                               if preset == "path_cleanup" else {}))
    params.update(extra)
    return options.validate(params)


def node(name, pressured=False, taint=None, allocatable=None):
    """A Node as the API server gives it (planner.slim_node reads it)."""
    conditions = [{"type": "Ready", "status": "True"},
                  {"type": "DiskPressure", "status": "True" if pressured else "False"}]
    taints = [dict(TAINT)] if (pressured if taint is None else taint) else []
    return {"metadata": {"name": name, "labels": {}}, "spec": {"taints": taints},
            "status": {"conditions": conditions,
                       "allocatable": allocatable or {"cpu": "2", "memory": "4Gi", "pods": "110",
                                                      "ephemeral-storage": "10Gi"}}}


def planned(run_opts, *nodes):
    return planner.plan([planner.slim_node(n) for n in nodes], [], run_opts, "r1")


# ------------------------------------------------------------------ the pod

@pytest.mark.parametrize("preset", ["image_prune", "path_cleanup", "journal_vacuum"])
def test_a_preset_that_frees_disk_space_is_critical_on_a_node_under_pressure_only(preset):
    run_opts = opts(preset)
    assert run_opts["disk_pressure"] is True
    there = pods.build_pod(run_opts, "r1", "full", pressured=True)
    elsewhere = pods.build_pod(run_opts, "r1", "fine")
    assert there["spec"]["priorityClassName"] == "system-node-critical"
    assert "priorityClassName" not in elsewhere["spec"]     # a critical pod may preempt: only where it must be
    for pod in (there, elsewhere):
        # The disk-pressure taint's NoSchedule is tolerated, once; nothing tolerates NoExecute for it, or all taints.
        about = [t for t in pod["spec"]["tolerations"] if t.get("key") == pressure.TAINT or not t.get("key")]
        assert about == [{"key": pressure.TAINT, "operator": "Exists", "effect": "NoSchedule"}]


def test_other_workloads_and_disk_pressure_false_get_neither_the_toleration_nor_the_priority():
    for run_opts in (opts("host_command"), opts(disk_pressure=False),
                     options.validate({"name": "p", "namespace": "ops", "pod_template": {
                         "spec": {"containers": [{"name": "c", "image": "busybox"}]}}})):
        assert run_opts["disk_pressure"] is False
        pod = pods.build_pod(run_opts, "r1", "full", pressured=True)
        assert "priorityClassName" not in pod["spec"]
        assert not [t for t in pod["spec"]["tolerations"] if t.get("key") == pressure.TAINT]


def test_a_priority_class_name_given_is_kept_everywhere():
    run_opts = opts(priority_class_name="system-cluster-critical")
    assert pods.build_pod(run_opts, "r1", "full", pressured=True)["spec"]["priorityClassName"] == "system-cluster-critical"
    assert pods.build_pod(run_opts, "r1", "fine")["spec"]["priorityClassName"] == "system-cluster-critical"


# ------------------------------------------------------------------ the plan

def test_the_plan_lists_nodes_under_pressure_and_a_prune_runs_there():
    plan = planned(opts(), node("full", pressured=True), node("fine"), node("tainted-only", taint=True))
    assert plan["eligible"] == ["fine", "full", "tainted-only"]
    assert sorted(plan["pressure"]) == ["full", "tainted-only"]
    # What the plan keeps of a node under pressure is what room() reads; of others, nothing more than before.
    assert plan["pressure"]["full"]["status"]["allocatable"] == {"cpu": "2", "memory": "4Gi", "pods": "110"}
    assert "allocatable" not in planner.slim_node(node("fine"))["status"]


@pytest.mark.parametrize("run_opts, words", [
    (lambda: opts("host_command"), "preset host_command frees no disk space"),
    (lambda: opts(disk_pressure=False), "disk_pressure=false"),
    (lambda: opts(priority_class_name="batch-high"), "priority_class_name=batch-high is not one"),
    (lambda: options.validate({"name": "p", "namespace": "ops", "pod_template": {
        "spec": {"containers": [{"name": "c", "image": "busybox"}], "tolerations": [dict(TAINT, operator="Exists")]}}}),
     "this pod_template's is not set"),
])
def test_a_node_under_pressure_that_gets_no_pod_is_skipped_saying_why(run_opts, words):
    plan = planned(run_opts(), node("full", pressured=True), node("fine"))
    assert plan["eligible"] == ["fine"] and list(plan["pressure"]) == ["full"]
    assert plan["skipped"]["full"].startswith("under DiskPressure") and words in plan["skipped"]["full"], plan["skipped"]


def test_a_critical_pod_template_that_tolerates_the_taint_runs_there():
    template = {"spec": {"containers": [{"name": "c", "image": "busybox"}], "priorityClassName": "system-node-critical",
                         "tolerations": [dict(TAINT, operator="Exists")]}}
    plan = planned(options.validate({"name": "p", "namespace": "ops", "pod_template": template}),
                   node("full", pressured=True))
    assert plan["eligible"] == ["full"]
    untolerated = {"spec": dict(template["spec"], tolerations=[])}
    plan = planned(options.validate({"name": "p", "namespace": "ops", "pod_template": untolerated}),
                   node("full", pressured=True))
    assert plan["skipped"] == {"full": "untolerated taint node.kubernetes.io/disk-pressure:NoSchedule"}


def test_cordoned_or_not_ready_wins_but_the_node_is_still_listed_under_pressure():
    cordoned = node("full", pressured=True)
    cordoned["spec"]["unschedulable"] = True
    plan = planned(opts(), cordoned)
    assert plan["skipped"] == {"full": "cordoned"} and list(plan["pressure"]) == ["full"]


# ------------------------------------------------------------------ room for the critical pod

def running(cpu=None, memory=None, init_cpu=None):
    spec = {"containers": [{"name": "c", "resources": {"requests": dict(
        ([("cpu", cpu)] if cpu else []) + ([("memory", memory)] if memory else []))}}]}
    if init_cpu:
        spec["initContainers"] = [{"name": "i", "resources": {"requests": {"cpu": init_cpu}}}]
    return {"metadata": {"name": "x"}, "spec": spec}


def test_quantities_are_read_as_the_api_server_writes_them():
    assert pressure.quantity("250m") == 0.25 and pressure.quantity("2") == 2 and pressure.quantity("1.5") == 1.5
    assert pressure.quantity("128Mi") == 128 * 2 ** 20 and pressure.quantity("1G") == 1e9
    assert pressure.quantity("1e3") == 1000 and pressure.quantity("100k") == 1e5
    with pytest.raises(InvalidInput, match="a quantity such as"):
        pressure.quantity("lots")


def test_room_counts_pods_cpu_and_memory_and_says_what_is_taken():
    full = planner.slim_node(node("full", pressured=True, allocatable={"cpu": "1", "memory": "1Gi", "pods": "3"}))
    ours = pods.build_pod(opts(), "r1", "full", pressured=True)
    assert pressure.room(full, [running(), running()], ours) is None
    why = pressure.room(full, [running(), running(), running()], ours)
    assert why.startswith("under DiskPressure and full") and "needs 1 pods, and 3 of its 3 allocatable" in why
    asking = pods.build_pod(opts(resources={"requests": {"cpu": "300m", "memory": "100Mi"}}), "r1", "full",
                            pressured=True)
    assert pressure.room(full, [running(cpu="500m")], asking) is None
    # An init container counts as the scheduler counts it: the larger of it and the containers together.
    assert "needs 300m cpu, and 900m of its 1 allocatable" in pressure.room(full, [running(cpu="500m", init_cpu="600m"),
                                                                               running(cpu="300m")], asking)
    assert "memory" in pressure.room(full, [running(memory="950Mi")], asking)
    # A pod that requests no CPU is not refused for CPU, however busy the node is.
    assert pressure.room(full, [running(cpu="1")], ours) is None


class PodsOnNodes(FakeClient):
    """Answers the list of the pods on a node with ``there``; or refuses it."""

    def __init__(self, there=(), refuse=None, **fail):
        super(PodsOnNodes, self).__init__(**fail)
        self.there, self.refuse, self.queries = list(there), refuse, []

    def get(self, path, query=None, timeout=None, retry_for=None):
        if path == "/api/v1/pods":
            self.queries.append(query)
            if self.refuse:
                raise self.refuse
            return {"metadata": {"resourceVersion": "1"}, "items": self.there}
        return super(PodsOnNodes, self).get(path, query, timeout, retry_for)


def test_no_room_lists_only_that_nodes_live_pods_and_skips_a_node_it_cannot_check():
    full = planner.slim_node(node("full", pressured=True, allocatable={"pods": "2"}))
    client = PodsOnNodes(there=[running(), dict(running(), metadata={"name": "going", "deletionTimestamp": "x"})])
    assert Engine(client).no_room(opts(), "r1", full) is None   # the pod being deleted does not count
    assert client.queries[0]["fieldSelector"] == "spec.nodeName=full,status.phase!=Succeeded,status.phase!=Failed"
    client.there.append(running())
    assert "2 of its 2 allocatable" in Engine(client).no_room(opts(), "r1", full)
    refused = PodsOnNodes(refuse=Forbidden('pods is forbidden: cannot list resource "pods"', status=403))
    why = Engine(refused).no_room(opts(), "r1", full)
    assert "could not be checked" in why and "list pods, cluster-wide" in why and "forbidden" in why


# ------------------------------------------------------------------ the dry run of the critical pod

class QuotaRefuses(FakeClient):
    """Refuses the dry run of a critical pod as the ResourceQuota admission plugin does."""

    def __init__(self, message):
        super(QuotaRefuses, self).__init__()
        self.message, self.dry_runs = message, []

    def create(self, path, body, dry_run=False, retry_for=0, warnings=None):
        if dry_run:
            self.dry_runs.append(body)
            if body["spec"].get("priorityClassName") in pressure.CRITICAL_CLASSES:
                raise Forbidden(self.message, status=403, body={"message": self.message})
            return body   # a dry run writes nothing (and is not a call the tests count as one)
        return super(QuotaRefuses, self).create(path, body, dry_run, retry_for, warnings)


@pytest.mark.parametrize("message, words", [
    ('pods "p-r1-0" is forbidden: exceeded quota: critical-pods, requested: pods=1, used: pods=0, limited: pods=0',
     "ResourceQuota critical-pods in namespace ops has no room for it"),
    ('pods "p-r1-0" is forbidden: insufficient quota to match these scopes: '
     '[{PriorityClass In [system-node-critical system-cluster-critical]}]',
     "limitedResources"),
])
def test_a_quota_that_refuses_the_critical_pod_names_itself_and_the_option(message, words):
    client = QuotaRefuses(message)
    engine = Engine(client)
    engine.preflight(opts(), "r1", "fine")      # the pod of a node not under pressure is not critical: admitted
    with pytest.raises(InvalidInput) as caught:
        engine.preflight(opts(), "r1", "full", pressured=True)
    text = str(caught.value)
    assert caught.value.param == "disk_pressure" and words in text and "disk_pressure: false" in text
    assert "system-node-critical" in text and message in text
    named = Engine(QuotaRefuses(message))
    with pytest.raises(InvalidInput) as caught:
        named.preflight(opts(priority_class_name="system-cluster-critical"), "r1", "full", pressured=True)
    assert caught.value.param == "priority_class_name" and caught.value.value == "system-cluster-critical"


def test_a_run_dry_runs_the_critical_pod_too_before_its_first_write():
    client = QuotaRefuses('pods "x" is forbidden: exceeded quota: critical-pods, requested: pods=1')
    run = a_run(client, eligible=("fine", "full"))
    run.pressured.add("full")
    checked = []

    def preflight(run_opts, run_id, node_name, name=None, pressured=False):
        checked.append((node_name, pressured))
        return Engine(client).preflight(run_opts, run_id, node_name, name=name, pressured=pressured)

    with pytest.raises(InvalidInput, match="critical-pods"):
        run.start(preflight, 1000.0)
    assert checked == [("fine", False), ("full", True)] and len(client.dry_runs) == 2
    assert client.calls == []   # refused before anything was written (no record, no pod)


# ------------------------------------------------------------------ the result

def test_the_result_says_which_nodes_were_under_pressure_and_which_still_are():
    client = FakeClient()
    run = a_run(client, eligible=("fine", "full", "eased"))
    run.plan["pressure"] = {}
    run.pressured.update(["full", "eased"])
    run.pressure_seen.update({"full": True, "eased": True, "skipped-full": True})
    run.plan["skipped"] = {"skipped-full": "cordoned"}
    start(run)
    eased = node("eased")
    run._nodes_changed("event", ("MODIFIED", planner.slim_node(eased)), 1000.0)   # DiskPressure False now
    for r in list(run.runs.values()):
        run.set_done(r, {"outcome": "succeeded", "reason": "Completed", "message": None, "exit_code": 0})
    result = run.result(1000.0, run.clock.now(), timed_out=False)
    assert result["disk_pressure"] == {"nodes": ["eased", "full", "skipped-full"], "cleared": ["eased"],
                                       "still": ["full", "skipped-full"]}
    records = dict((rec["node"], rec) for rec in result["nodes"])
    assert records["eased"]["disk_pressure"] == {"before": True, "after": False}
    assert records["skipped-full"]["disk_pressure"] == {"before": True, "after": True}
    assert "disk_pressure" not in records["fine"]
    assert disk_pressure_summary({}) == {"nodes": [], "cleared": [], "still": []}


def test_a_node_that_comes_under_pressure_and_joins_gets_a_critical_pod_only_if_it_fits():
    client = PodsOnNodes(there=[running()])
    run = a_run(client, eligible=("a",))
    start(run)
    roomy = node("joined", pressured=True)
    run._nodes_changed("event", ("ADDED", planner.slim_node(roomy)), 1000.0)
    assert run.followed == ["joined"] and "joined" in run.pressured and run.pressure_seen["joined"] is True
    crowded = node("crowded", pressured=True, allocatable={"pods": "1"})
    run._nodes_changed("event", ("ADDED", planner.slim_node(crowded)), 1000.0)
    run._nodes_changed("event", ("MODIFIED", planner.slim_node(crowded)), 1001.0)
    assert "crowded" not in run.runs and run.plan["skipped"]["crowded"].startswith("under DiskPressure and full")
    assert len(client.queries) == 2     # the crowded node's pods were listed once, not on every change


def test_the_history_keeps_and_the_report_shows_the_nodes_under_pressure():
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.history import history_entry
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._report import html

    seen = {"nodes": ["<full>", "eased"], "cleared": ["eased"], "still": ["<full>"]}
    entry = history_entry("r2", "job", "s", "f", "succeeded", {"summary": {"succeeded": 2}, "nodes": [],
                                                                "disk_pressure": seen})
    assert entry["disk_pressure"] == seen
    page = html.render([{"name": None, "info": {"cron_broadcasts": [{"name": "prune", "schedule": "0 3 * * *",
                                                                     "history": [entry]}]}}])
    assert '<p class="pressure meta" data-nodes="2" data-still="1">' in page
    assert "planned them: &lt;full&gt;, eased; still under it when the run ended: &lt;full&gt;." in page
    calm = history_entry("r3", "job", "s", "f", "succeeded", {"summary": {}, "nodes": [],
                                                               "disk_pressure": disk_pressure_summary({})})
    assert "disk_pressure" not in calm
    assert 'class="pressure' not in html.render([{"name": None, "info": {"cron_broadcasts": [
        {"name": "prune", "schedule": "0 3 * * *", "history": [calm]}]}}])
