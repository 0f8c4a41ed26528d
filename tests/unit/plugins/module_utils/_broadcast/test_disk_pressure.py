# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nodes under DiskPressure (pressure.py): which pod runs there, which node is skipped and why, the critical pod's
room and its dry run. The kubelet's side is tests/integration/test_real_node.py's, under real DiskPressure."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from concurrent.futures import Future

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import options, pods, pressure
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import plan as planner
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.engine import Engine
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.finish import disk_pressure_summary
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.run import BroadcastRun
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import (
    ApiError,
    CriticalPodRefused,
    Forbidden,
    InvalidInput,
)

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
    assert plan["pressure"]["full"]["status"]["allocatable"] == {"cpu": "2", "memory": "4Gi", "pods": "110",
                                                                 "ephemeral-storage": "10Gi"}
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
    busy = [running(cpu="500m", init_cpu="600m"), running(cpu="300m")]
    assert "needs 300m cpu, and 900m of its 1 allocatable" in pressure.room(full, busy, asking)
    assert "memory" in pressure.room(full, [running(memory="950Mi")], asking)
    # A pod that requests no CPU is not refused for CPU, however busy the node is.
    assert pressure.room(full, [running(cpu="1")], ours) is None


class PodsOnNodes(FakeClient):
    """Answers the list of the pods on a node with ``there``; or refuses it."""

    def __init__(self, there=(), refuse=None, **fail):
        super(PodsOnNodes, self).__init__(**fail)
        self.there, self.refuse, self.queries, self.posted = list(there), refuse, [], {}

    def create(self, path, body, dry_run=False, retry_for=0, warnings=None):
        if not dry_run:
            self.posted[body["metadata"]["annotations"]["nodeops.io/node"]] = body
        return super(PodsOnNodes, self).create(path, body, dry_run, retry_for, warnings)

    def get(self, path, query=None, timeout=None, retry_for=None):
        if path == "/api/v1/pods":
            self.queries.append(query)
            if self.refuse:
                raise self.refuse
            return {"metadata": {"resourceVersion": "1"}, "items": self.there}
        return super(PodsOnNodes, self).get(path, query, timeout, retry_for)


def test_no_room_lists_that_nodes_pods_counts_those_being_deleted_and_skips_a_node_it_cannot_check():
    full = planner.slim_node(node("full", pressured=True, allocatable={"pods": "3"}))
    client = PodsOnNodes(there=[running()])
    assert Engine(client).no_room(opts(), "r1", full) is None
    assert client.queries[0]["fieldSelector"] == "spec.nodeName=full,status.phase!=Succeeded,status.phase!=Failed"
    # A pod being deleted holds its place until it is gone, as the scheduler counts it.
    client.there.append(dict(running(), metadata={"name": "going", "deletionTimestamp": "x"}))
    assert "2 of its 3 allocatable" not in (Engine(client).no_room(opts(), "r1", full) or "")
    client.there.append(running())
    assert "3 of its 3 allocatable" in Engine(client).no_room(opts(), "r1", full)
    refused = PodsOnNodes(refuse=Forbidden('pods is forbidden: cannot list resource "pods"', status=403))
    why = Engine(refused).no_room(opts(), "r1", full)
    assert "could not be checked" in why and "list pods, cluster-wide" in why and "forbidden" in why


def test_room_counts_what_the_scheduler_counts_and_every_resource_the_pod_asks_for():
    node_ = planner.slim_node(node("n", pressured=True, allocatable={"cpu": "1", "memory": "1Gi", "pods": "10"}))
    sidecar = {"metadata": {"name": "s"}, "spec": {
        "initContainers": [{"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "400m"}}}],
        "containers": [{"name": "c", "resources": {"requests": {"cpu": "300m"}}}], "overhead": {"cpu": "100m"}}}
    assert pressure.pod_requests(sidecar)["cpu"] == pytest.approx(0.8)
    pod_level = {"metadata": {"name": "l"}, "spec": {"resources": {"requests": {"cpu": "900m"}},
                                                     "containers": [{"name": "c"}]}}
    assert pressure.pod_requests(pod_level)["cpu"] == pytest.approx(0.9)
    asking = pods.build_pod(opts(resources={"requests": {"cpu": "300m"}}), "r1", "n", pressured=True)
    assert "needs 300m cpu, and 800m of its 1 allocatable" in pressure.room(node_, [sidecar], asking)
    # A resource the node does not list as allocatable: it has none.
    storage = pods.build_pod(opts(resources={"requests": {"ephemeral-storage": "1Mi"}}), "r1", "n", pressured=True)
    assert "needs 1Mi ephemeral-storage, and 0Mi of its 0 allocatable" in pressure.room(node_, [], storage)


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
    run = pressured_run(client, ("fine", "full"), under=("full",))
    checked = []

    def preflight(run_opts, run_id, node_name, name=None, pressured=False):
        checked.append((node_name, pressured))
        return Engine(client).preflight(run_opts, run_id, node_name, name=name, pressured=pressured)

    with pytest.raises(InvalidInput, match="critical-pods"):
        run.start(preflight, 1000.0)
    assert checked == [("fine", False), ("full", True)] and len(client.dry_runs) == 2
    assert client.calls == []   # refused before anything was written (no record, no pod)


def test_a_refused_critical_pod_without_a_node_under_pressure_is_noted_not_fatal():
    client = QuotaRefuses('Internal error occurred: insufficient quota to match these scopes: '
                          '[{PriorityClass In [system-node-critical system-cluster-critical]}]')
    run = pressured_run(client, ("a", "b"))

    class Written(Exception):
        pass

    def first_write():
        raise Written()

    run.ensure_record = first_write   # the preflight is all this test runs of start
    with pytest.raises(Written):
        run.start(lambda o, i, n, name=None, pressured=False: Engine(client).preflight(o, i, n, name=name,
                                                                                       pressured=pressured), 1000.0)
    assert len(client.dry_runs) == 2 and "limitedResources" in run.critical_refused
    # A node that comes under DiskPressure during the run is then not started, with that reason.
    run._nodes_changed("event", ("MODIFIED", planner.slim_node(node("b", pressured=True))), 1000.0)
    run.client = PodsOnNodes()
    pod, exc = run.create_pod(run.runs["b"], None, 100)
    assert pod is None and "refuses its critical pod" in exc.msg and "limitedResources" in exc.msg
    assert run.client.calls == []


def test_the_scope_refusal_the_api_server_answers_with_a_500_names_the_admission_rule():
    class Scope500(QuotaRefuses):
        def create(self, path, body, dry_run=False, retry_for=0, warnings=None):
            if dry_run and body["spec"].get("priorityClassName"):
                raise ApiError("POST failed: 500: " + self.message, status=500)
            return body

    with pytest.raises(CriticalPodRefused, match="limitedResources") as caught:
        Engine(Scope500("insufficient quota to match these scopes: [{PriorityClass In [system-node-critical]}]")
               ).preflight(opts(), "r1", "full", pressured=True)
    assert caught.value.param == "disk_pressure"


# ------------------------------------------------------------------ when the pod is made

def pressured_run(client, eligible, under=(), **extra):
    """A run planned with the nodes ``under`` DiskPressure (plan["pressure"], as planner.plan makes it)."""
    run = a_run(client, eligible=eligible, **extra)
    plan = dict(run.plan, pressure=dict((n, planner.slim_node(node(n, pressured=True))) for n in under))
    fresh = BroadcastRun(Engine(client, clock=run.clock), run.opts, "r1", plan)
    fresh.renewer = run.renewer
    return fresh


def made(run, name):
    """Make ``name``'s pod as a batch would, and apply the answer. Returns (the POSTed pod or None, its verdict)."""
    r = run.runs[name]
    if r in run.waiting:
        run.waiting.remove(r)
    r.state = "creating"
    future = Future()
    future.set_result(run.create_pod(r, None, 100))
    run.batch = [(r, future)]
    run.finish_batch(wait=True)
    return run.client.posted.get(name), r.result


def test_a_node_under_pressure_now_gets_a_critical_pod_where_it_fits_and_is_not_started_where_not():
    client = PodsOnNodes(there=[running()])
    run = pressured_run(client, ("calm", "roomy", "crowded", "eased"), under=("eased",))
    start(run)
    # Came under DiskPressure after the plan: judged when the pod is made, not as planned.
    run._nodes_changed("event", ("MODIFIED", planner.slim_node(node("roomy", pressured=True))), 1000.0)
    run._nodes_changed("event", ("MODIFIED", planner.slim_node(
        node("crowded", pressured=True, allocatable={"pods": "1"}))), 1000.0)
    # Under it when planned, not any more: an ordinary pod.
    run._nodes_changed("event", ("MODIFIED", planner.slim_node(node("eased"))), 1000.0)
    calm, verdict = made(run, "calm")
    assert "priorityClassName" not in calm["spec"] and verdict is None
    roomy, verdict = made(run, "roomy")
    assert roomy["spec"]["priorityClassName"] == "system-node-critical" and verdict is None
    crowded, verdict = made(run, "crowded")
    assert crowded is None and verdict["outcome"] == "not_started" and verdict["reason"] == "DiskPressure"
    assert verdict["message"].startswith("under DiskPressure and full") and run.remaining == 3
    eased, verdict = made(run, "eased")
    assert "priorityClassName" not in eased["spec"]
    assert [m for m, _p in client.calls].count("POST") == 3
    for r in list(run.runs.values()):
        if r.state != "done":
            run.set_done(r, {"outcome": "succeeded", "reason": "Completed", "message": None, "exit_code": 0})
    result = run.result(1000.0, run.clock.now(), timed_out=False)
    assert result["disk_pressure"] == {"nodes": ["crowded", "eased", "roomy"], "cleared": ["eased"],
                                       "still": ["crowded", "roomy"]}
    records = dict((rec["node"], rec) for rec in result["nodes"])
    assert records["crowded"]["outcome"] == "not_started" and records["crowded"]["disk_pressure"]["before"] is True
    assert "disk_pressure" not in records["calm"]
    assert result["summary"]["failed"] == 0


def test_a_workload_that_may_not_run_under_pressure_is_not_started_there_rather_than_refused_by_the_kubelet():
    client = PodsOnNodes()
    run = pressured_run(client, ("a",), preset="host_command", host_command={"command": ["true"]}, image_prune=None)
    start(run)
    run._nodes_changed("event", ("MODIFIED", planner.slim_node(node("a", pressured=True))), 1000.0)
    pod, verdict = made(run, "a")
    assert pod is None and verdict["outcome"] == "not_started" and "frees no disk space" in verdict["message"]
    assert client.calls == [] and client.queries == []


def test_a_node_skipped_for_no_room_whose_pressure_clears_is_followed_with_an_ordinary_pod():
    client = PodsOnNodes()
    run = pressured_run(client, ("a",), under=("full",))
    run.plan["skipped"] = {"full": "under DiskPressure and full: ..."}
    start(run)
    run._nodes_changed("event", ("MODIFIED", planner.slim_node(node("full"))), 1000.0)   # room again, no pressure
    assert run.followed == ["full"]
    pod, verdict = made(run, "full")
    assert "priorityClassName" not in pod["spec"] and client.queries == []
    assert run.pressure_seen["full"] is False


# ------------------------------------------------------------------ the result

def test_the_result_says_which_nodes_were_under_pressure_and_which_still_are():
    run = pressured_run(FakeClient(), ("fine", "full", "eased"), under=("full", "eased", "skipped-full"))
    run.plan["skipped"] = {"skipped-full": "cordoned"}
    start(run)
    run._nodes_changed("event", ("MODIFIED", planner.slim_node(node("eased"))), 1000.0)   # DiskPressure False now
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


def test_a_node_that_comes_under_pressure_and_joins_is_followed_and_reported():
    run = pressured_run(PodsOnNodes(), ("a",))
    start(run)
    run._nodes_changed("event", ("ADDED", planner.slim_node(node("joined", pressured=True))), 1000.0)
    assert run.followed == ["joined"] and run.pressure_seen["joined"] is True
    run._nodes_changed("event", ("ADDED", planner.slim_node(node("joined-too", pressured=True))), 1000.0)
    assert run.pressure_seen["joined-too"] is True and "joined-too" in run.pressure_nodes


def test_the_history_keeps_and_the_report_shows_the_nodes_under_pressure():
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.history import history_entry
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._report import html

    seen = {"nodes": ["<full>", "eased"], "cleared": ["eased"], "still": ["<full>"]}
    entry = history_entry("r2", "job", "s", "f", "succeeded",
                          {"summary": {"succeeded": 2}, "nodes": [], "disk_pressure": seen})
    assert entry["disk_pressure"] == seen
    page = html.render([{"name": None, "info": {"cron_broadcasts": [{"name": "prune", "schedule": "0 3 * * *",
                                                                     "history": [entry]}]}}])
    assert '<p class="pressure meta" data-nodes="2" data-still="1">' in page
    assert "during the run: &lt;full&gt;, eased; still under it when the run ended: &lt;full&gt;." in page
    calm = history_entry("r3", "job", "s", "f", "succeeded",
                         {"summary": {}, "nodes": [], "disk_pressure": disk_pressure_summary({})})
    assert "disk_pressure" not in calm
    assert 'class="pressure' not in html.render([{"name": None, "info": {"cron_broadcasts": [
        {"name": "prune", "schedule": "0 3 * * *", "history": [calm]}]}}])


# ------------------------------------------------------------------ after the second review

def test_a_users_critical_class_keeps_host_command_and_templates_on_nodes_under_pressure():
    run_opts = opts("host_command", priority_class_name="system-node-critical",
                    tolerations=[dict(TAINT, operator="Exists")])
    assert planned(run_opts, node("full", pressured=True))["eligible"] == ["full"]
    assert pressure.critical_possible(run_opts) and not pressure.critical_possible(opts("host_command"))
    template = {"spec": {"containers": [{"name": "c", "image": "busybox"}], "priorityClassName": "system-node-critical"}}
    assert pressure.critical_possible(options.validate({"name": "p", "namespace": "ops", "pod_template": template}))
    assert not pressure.critical_possible(opts(disk_pressure=False))


def test_any_refusal_of_the_critical_probe_without_a_node_under_pressure_is_kept_not_fatal():
    class PolicyRefuses(QuotaRefuses):
        def create(self, path, body, dry_run=False, retry_for=0, warnings=None):
            if dry_run and body["spec"].get("priorityClassName"):
                raise Forbidden('admission webhook "policy" denied the request: no critical pods here', status=403)
            return body

    client = PolicyRefuses("")
    run = pressured_run(client, ("a",))

    def first_write():
        raise KeyboardInterrupt()

    run.ensure_record = first_write   # stop at the first write
    with pytest.raises(KeyboardInterrupt):
        run.start(lambda o, i, n, name=None, pressured=False: Engine(client).preflight(o, i, n, name=name,
                                                                                       pressured=pressured), 1000.0)
    assert "no critical pods here" in run.critical_refused
    fatal = pressured_run(PolicyRefuses(""), ("a",), under=("a",))
    with pytest.raises(InvalidInput, match="no critical pods here"):
        fatal.start(lambda o, i, n, name=None, pressured=False: Engine(fatal.client).preflight(
            o, i, n, name=name, pressured=pressured), 1000.0)


def test_a_node_skipped_for_pressure_at_the_plan_is_not_followed_while_still_under_it():
    run = pressured_run(PodsOnNodes(), ("a",), under=("full",))
    run.plan["skipped"] = {"full": "under DiskPressure and full: ..."}
    start(run)
    run._nodes_changed("event", ("MODIFIED", planner.slim_node(node("full", pressured=True))), 1000.0)
    assert run.followed == [] and "full" not in run.runs


def test_a_quota_refusal_at_creation_or_an_unreadable_quantity_is_not_started_not_failed():
    class QuotaFull(PodsOnNodes):
        def create(self, path, body, dry_run=False, retry_for=0, warnings=None):
            raise Forbidden('pods "x" is forbidden: exceeded quota: critical-pods, requested: pods=1', status=403)

    run = pressured_run(QuotaFull(), ("full",), under=("full",))
    start(run)
    _pod, verdict = made(run, "full")
    assert verdict["outcome"] == "not_started" and "exceeded quota: critical-pods" in verdict["message"]
    odd = PodsOnNodes(there=[running(cpu="lots")])
    run = pressured_run(odd, ("full",), under=("full",), resources={"requests": {"cpu": "1m"}})
    start(run)
    _pod, verdict = made(run, "full")
    assert verdict["outcome"] == "not_started" and "could not be judged" in verdict["message"]
    assert run.failures == []
