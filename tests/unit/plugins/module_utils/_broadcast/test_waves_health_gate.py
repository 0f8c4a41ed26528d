# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waves with a soak (``batch_soak``) and the health gate (``health_gate``): their options, the pure decisions,
and the run's bookkeeping of NotReady nodes, on a fake API client (tests/integration has them on a cluster)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from concurrent.futures import ThreadPoolExecutor

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import finish, limits, observe, options, outcomes
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import plan as planner
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.engine import Engine
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.run import BroadcastRun, NodeRun
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import (
    HealthGateStopped,
    InvalidInput,
    NodeFailures,
)
from ansible_collections.nodeops.kubernetes.plugins.module_utils._report import html
from ansible_collections.nodeops.kubernetes.plugins.modules.broadcast_job import health_gate_plan

from test_run_exits import FakeClient, FakeClock, a_run, ended, outcomes_of, start


def opts(**extra):
    return options.validate(dict({"name": "p", "namespace": "ops", "preset": "image_prune", "image_prune": {}},
                                 **extra))


# ---------------------------------------------------------------- options

@pytest.mark.parametrize("value, seconds", [
    (None, 0), (0, 0), ("0", 0), (90, 90), ("90", 90), ("90s", 90), ("10m", 600), ("2h", 7200), ("1h30m", 5400),
    (" 5m ", 300),
])
def test_batch_soak_takes_a_duration(value, seconds):
    assert opts(batch_soak=value)["batch_soak"] == seconds


@pytest.mark.parametrize("value", ["soon", "-5", -5, "5d", "", "m", True, 1.5, ["10m"]])
def test_a_bad_batch_soak_is_refused_naming_it_the_value_and_what_is_accepted(value):
    with pytest.raises(InvalidInput) as err:
        opts(batch_soak=value)
    assert err.value.param == "batch_soak" and err.value.value == value
    assert "a duration such as 90s, 10m, 2h, 1h30m or a number of seconds" in err.value.msg


def test_window_duration_keeps_its_own_name_and_its_minimum():
    with pytest.raises(InvalidInput) as err:
        opts(window={"duration": "0m"})
    assert err.value.param == "window.duration"
    assert opts(window={"duration": "1h30m"})["window"] == {"duration_s": 5400}


@pytest.mark.parametrize("given, parsed", [
    (None, None),
    ({}, {"max_not_ready": None, "finished_nodes": True}),
    ({"max_not_ready": 2}, {"max_not_ready": ("count", 2), "finished_nodes": True}),
    ({"max_not_ready": "10%", "finished_nodes": False}, {"max_not_ready": ("percent", 10), "finished_nodes": False}),
    ({"max_not_ready": "0", "finished_nodes": None}, {"max_not_ready": ("count", 0), "finished_nodes": True}),
])
def test_health_gate_options(given, parsed):
    assert opts(health_gate=given)["health_gate"] == parsed


@pytest.mark.parametrize("given, param", [
    ({"max_not_ready": -1}, "health_gate.max_not_ready"), ({"max_not_ready": "101%"}, "health_gate.max_not_ready"),
    ({"max_not_ready": "two"}, "health_gate.max_not_ready"), ({"max_not_ready": True}, "health_gate.max_not_ready"),
    ({"finished_nodes": "yes"}, "health_gate.finished_nodes"), ({"max_ready": 1}, "health_gate"),
    ("strict", "health_gate"),
])
def test_a_bad_health_gate_is_refused_naming_the_option(given, param):
    with pytest.raises(InvalidInput) as err:
        opts(health_gate=given)
    assert err.value.param == param, err.value.msg


# ---------------------------------------------------------------- the gate's decision (pure)

GATE = {"max_not_ready": ("count", 1), "finished_nodes": True}


@pytest.mark.parametrize("gate, not_ready, cluster, fallen, stops", [
    (None, {"a", "b", "c"}, 3, ["a"], None),                                  # no gate: nothing stops
    (GATE, set(), 10, [], None),
    (GATE, {"x"}, 10, [], None),                                              # 1 allowed
    (GATE, {"x", "y"}, 10, [], "2 of the cluster's 10 nodes are NotReady (x, y), more than max_not_ready=1"),
    (GATE, {"x"}, 10, ["x"], "node x went NotReady after its pod finished in this run"),
    (dict(GATE, finished_nodes=False), {"x"}, 10, ["x"], None),
    ({"max_not_ready": ("percent", 10), "finished_nodes": True}, {"x"}, 9, [],
     "1 of the cluster's 9 nodes are NotReady (x), more than max_not_ready=0"),   # 10% of 9, rounded down
    ({"max_not_ready": ("percent", 10), "finished_nodes": True}, {"x", "y"}, 20, [], None),
    ({"max_not_ready": None, "finished_nodes": True}, {"x", "y", "z"}, 3, [], None),   # the count not checked
])
def test_the_health_gate_stops_on_too_many_not_ready_nodes_or_a_finished_node_that_fell(
        gate, not_ready, cluster, fallen, stops):
    why = limits.health_check(gate, not_ready, cluster, fallen)
    if stops is None:
        assert why is None
    else:
        assert why == (limits.HEALTH_GATE, "not started: health gate: " + stops)


def test_the_gate_names_at_most_five_not_ready_nodes():
    why = limits.health_check(GATE, set("n%d" % i for i in range(8)), 20, [])
    assert why[1].endswith("(n0, n1, n2, n3, n4 ...), more than max_not_ready=1")


def node_run(state, outcome=None):
    r = NodeRun("a", "p-a")
    r.state = state
    if outcome:
        r.result = outcomes.outcome(outcome, "x", None)
    return r


@pytest.mark.parametrize("was, ready, r, fell", [
    (True, False, node_run("done", "succeeded"), True),
    (None, False, node_run("done", "failed"), True),          # not known before: it is NotReady now
    (False, False, node_run("done", "succeeded"), False),     # NotReady already: no change
    (True, True, node_run("done", "succeeded"), False),
    (True, False, node_run("created"), False),                # its pod has not finished
    (True, False, node_run("waiting"), False),
    (True, False, node_run("done", "not_started"), False),    # no pod of ours ran there
    (True, False, node_run("done", "cancelled"), False),
    (True, False, None, False),                               # not one of the run's nodes
])
def test_a_node_went_not_ready_after_its_pod_only_if_its_pod_ran_to_its_end(was, ready, r, fell):
    assert observe.went_not_ready(was, ready, r) is fell


def test_a_resumed_runs_plan_counts_nodes_its_finished_pods_left_not_ready():
    nodes = [{"metadata": {"name": n}, "status": {"conditions": [{"type": "Ready", "status": s}]}}
             for n, s in (("a", "True"), ("b", "False"), ("c", "False"))]
    o = opts(nodes=["a", "b", "c"])

    def pod(node, phase, run_id="r1"):
        return {"metadata": {"name": "p-%s-%s" % (run_id, node), "labels": {"nodeops.io/run-id": run_id},
                             "annotations": {"nodeops.io/node": node}},
                "spec": {"nodeName": node}, "status": {"phase": phase}}

    plan = planner.plan([planner.slim_node(n) for n in nodes],
                        [pod("a", "Succeeded"), pod("b", "Succeeded"), pod("c", "Running"), pod("c", "Failed", "r0")],
                        o, "r1")
    assert plan["fallen"] == ["b"]     # a is Ready; c's pod of this run has not finished; r0 is another run
    resumed = BroadcastRun(Engine(FakeClient(), clock=FakeClock()), opts(health_gate={}), "r1",
                           dict(plan, eligible=["a"], existing={}, to_delete=[], skipped={}))
    resumed.adopt({}, 1000.0)
    assert resumed.fallen == ["b"] and resumed.health_stop()[1].startswith("not started: health gate: node b went")


def test_the_plan_knows_every_nodes_readiness():
    nodes = [{"metadata": {"name": n}, "status": {"conditions": [{"type": "Ready", "status": s}]}}
             for n, s in (("a", "True"), ("b", "False"), ("c", "Unknown"))]
    plan = planner.plan([planner.slim_node(n) for n in nodes], [], opts(nodes=["a"]), "r1")
    assert plan["ready"] == {"a": True, "b": False, "c": False} and plan["eligible"] == ["a"]


# ---------------------------------------------------------------- in a run (fake API)

def gated_run(client, eligible=("a", "b", "c", "d"), ready=None, **extra):
    extra.setdefault("follow_nodes", False)   # the nodes these tests flip are not to join the run
    run = a_run(client, eligible=eligible, **extra)
    run.node_ready = dict(ready or dict((n, True) for n in eligible))
    run.not_ready = set(n for n, ok in run.node_ready.items() if not ok)
    run.plan["ready"] = dict(run.node_ready)
    run.pool = ThreadPoolExecutor(max_workers=1)   # a finished pod's log may be read
    return run


def slim(name, ready=True, **spec):
    """A node as the nodes' watch gives it (plan.slim_node)."""
    return {"metadata": {"name": name, "labels": {}}, "spec": dict({"unschedulable": None, "taints": []}, **spec),
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def node_event(run, name, ready, kind="MODIFIED", **spec):
    run._nodes_changed("event", (kind, slim(name, ready, **spec)), 1000.0)


def test_a_finished_node_that_goes_not_ready_shuts_the_gate_and_the_rest_are_not_started():
    client = FakeClient()
    run = gated_run(client, health_gate={})
    start(run, created=("a",))
    run.finish(run.runs["a"], outcomes.outcome("succeeded", "Completed", None, 0), 1001.0)
    assert run.health_stop() is None
    node_event(run, "b", False)            # a node still waiting: counted, not fallen
    assert run.fallen == [] and run.health_stop() is None
    node_event(run, "a", False)
    assert run.fallen == ["a"]
    why = run.health_stop()
    assert why[0] == limits.HEALTH_GATE and "node a went NotReady after its pod finished" in why[1]
    run.stop_starting(why)
    assert outcomes_of(run) == {"a": "succeeded", "b": "not_started", "c": "not_started", "d": "not_started"}
    assert run.runs["c"].result["reason"] == "HealthGate"
    assert [m for m, _path in client.calls if m != "LOG"] == []   # the running pods finish: none deleted


def test_a_node_seen_not_ready_when_its_pod_ends_counts_as_fallen_unless_it_was_at_the_plan():
    client = FakeClient()
    run = gated_run(client, ready={"a": True, "b": False, "c": True}, eligible=("a", "b", "c"),
                    health_gate={}, include_not_ready=True)
    start(run, created=("a", "b"))
    node_event(run, "a", False)            # both events in one batch: the node's applied first
    assert run.fallen == []
    run.finish(run.runs["a"], outcomes.outcome("succeeded", "Completed", None, 0), 1001.0)
    run.finish(run.runs["b"], outcomes.outcome("succeeded", "Completed", None, 0), 1001.0)
    assert run.fallen == ["a"]             # b was NotReady when planned (include_not_ready): not ours


def test_the_gate_does_not_stop_a_run_with_nothing_left_to_start():
    client = FakeClient()
    run = gated_run(client, eligible=("a", "b"), health_gate={})
    start(run, created=("a", "b"))
    run.finish(run.runs["a"], outcomes.outcome("succeeded", "Completed", None, 0), 1001.0)
    node_event(run, "a", False)
    assert run.fallen == ["a"] and run.health_stop() is None


def test_the_not_ready_count_follows_the_nodes_watch_its_deletes_and_relists():
    client = FakeClient()
    run = gated_run(client, ready={"a": True, "b": True, "x": False}, eligible=("a", "b"),
                    health_gate={"max_not_ready": 1})
    start(run)
    assert run.health_stop() is None and run.not_ready == {"x"}
    node_event(run, "y", False, kind="ADDED")      # joining: not counted until it has been Ready
    assert run.health_stop() is None and run.not_ready == {"x"} and run.joining == {"y"}
    node_event(run, "y", True)
    node_event(run, "y", False)
    assert run.health_stop()[1].endswith("2 of the cluster's 4 nodes are NotReady (x, y), more than max_not_ready=1")
    node_event(run, "y", None, kind="DELETED")
    assert run.health_stop() is None and "y" not in run.node_ready
    run._nodes_changed("sync", ([slim(n, n == "a") for n in ("a", "b", "z")], "9", 0), 1000.0)
    assert run.not_ready == {"b"} and run.joining == {"z"} and set(run.node_ready) == {"a", "b", "z"}
    assert run.health_stop() is None               # b only: one allowed
    node_event(run, "a", False)
    assert run.health_stop() is not None


def test_with_batch_soak_the_next_batch_waits_for_the_one_before_to_finish_and_then_the_soak():
    client = FakeClient()
    run = gated_run(client, batch_soak="30s")
    start(run)
    assert run.soaked(1000.0)                  # the first batch at once
    run.batches, run.active = 1, 1
    assert not run.soaked(1001.0) and run.soak_until is None
    run.active = 0                             # its pod finished at 1002
    assert not run.soaked(1002.0) and run.soak_until == 1032.0
    assert not run.soaked(1031.9)
    assert run.soaked(1032.0)


def test_without_batch_soak_a_free_slot_starts_a_pod_at_once():
    run = gated_run(FakeClient())
    start(run, created=("a",))
    run.batches = 3
    assert run.soaked(1000.0) and run.opts["batch_soak"] == 0


def test_a_health_gate_stop_fails_the_run_naming_why():
    o = opts(health_gate={"max_not_ready": 0})
    result = ended(("a", "succeeded"), ("b", "not_started"), ("c", "not_started"))
    why = (limits.HEALTH_GATE, "not started: health gate: node a went NotReady after its pod finished in this run")
    error = finish.run_error(o, "r1", result, {"a", "b", "c"}, None, why, False)
    assert isinstance(error, HealthGateStopped)
    assert error.msg == ("broadcast p run r1: health gate: node a went NotReady after its pod finished in this run; "
                         "2 of 3 nodes not started")
    # Over failed nodes (fail_on_node_failure): the gate is why the rest did not run.
    failed = ended(("a", "failed"), ("b", "not_started"))
    assert isinstance(finish.run_error(dict(o, fail_on_node_failure=True), "r1", failed, {"a", "b"}, None, why, False),
                      HealthGateStopped)
    # A budget stop stays the budget's.
    budget = finish.run_error(opts(max_failures=0), "r1", failed, {"a", "b"}, 0, (limits.BUDGET_EXHAUSTED, "x"), False)
    assert isinstance(budget, NodeFailures) and not isinstance(budget, HealthGateStopped)


def test_the_results_limits_say_what_the_soak_and_the_gate_were_and_what_stopped_it():
    o = opts(batch_soak="10m", health_gate={"max_not_ready": "10%"})
    why = (limits.HEALTH_GATE, "not started: health gate: 3 of ...")
    assert finish.run_limits(o, None, None, why, 25) == {
        "window_closes_at": None, "failure_budget": None, "batch_soak_s": 600,
        "health_gate": {"max_not_ready": 2, "finished_nodes": True},
        "stopped_starting": "HealthGate", "stopped_message": why[1]}
    assert finish.run_limits(opts(), None, 1, None, 25)["health_gate"] is None


def test_check_mode_says_what_the_gate_would_do_to_a_run_starting_now():
    gate = limits.parse_health_gate({"max_not_ready": 0})
    planned = health_gate_plan(gate, {"a": True, "b": False})
    assert planned == {"cluster_nodes": 2, "not_ready": ["b"], "not_ready_count": 1, "max_not_ready": 0,
                       "finished_nodes": True, "would_stop": "not started: health gate: 1 of the cluster's 2 nodes "
                       "are NotReady (b), more than max_not_ready=0"}
    assert health_gate_plan(None, {"a": True}) is None
    assert health_gate_plan(gate, {"a": True})["would_stop"] is None


def test_the_report_shows_why_the_newest_run_stopped_starting_pods():
    newest = {"run_id": "r2", "state": "failed", "summary": {"succeeded": 1, "not_started": 3}, "nodes": [],
              "limits": {"window_closes_at": None, "failure_budget": None, "batch_soak_s": 600,
                         "health_gate": {"max_not_ready": 2, "finished_nodes": True}, "stopped_starting": "HealthGate",
                         "stopped_message": "not started: health gate: node <a> went NotReady"}}
    page = html.render([{"name": None, "info": {"cron_broadcasts": [{"name": "prune", "schedule": "0 3 * * *",
                                                                     "history": [newest]}]}}])
    assert '<p class="limits meta" data-stopped="HealthGate">' in page
    assert "stopped starting pods: HealthGate</b> (not started: health gate: node &lt;a&gt; went NotReady)" in page
    assert "batch soak 600 s" in page and "at most 2 NotReady nodes, finished nodes must stay Ready" in page
    older = dict(newest, limits=None)
    assert 'class="limits' not in html.render([{"name": None, "info": {"cron_broadcasts": [
        {"name": "prune", "schedule": "0 3 * * *", "history": [older]}]}}])


class Watched:
    relists, streaming = 1, True


def drive(run, script, until=1200.0):
    """``run.drive`` on a fake clock: each pass's observe advances it by a second and plays ``script`` (clock ->
    what happens then); launch takes one waiting node per batch and records when. Returns the launches."""
    launched = []

    def launch(owner, parallelism, deadline_s):
        r = run.waiting.popleft()
        r.state, r.created_at = "created", run.clock.mono
        run.active += 1
        run.batches += 1
        run.soak_until = None
        launched.append((run.clock.mono, r.node))

    def observe(wait):
        run.clock.mono += 1.0
        action = script.get(run.clock.mono)
        if action:
            action(run)
        assert run.clock.mono < until, "the run did not end"

    run.launch, run.observe, run.report_progress = launch, observe, lambda: None
    assert run.drive(None, 3, Watched(), deadline=5000.0) is False
    return launched


def ends(node):
    return lambda run: run.set_done(run.runs[node], outcomes.outcome("succeeded", "Completed", None, 0))


def test_drive_starts_the_next_batch_only_after_the_soak():
    run = gated_run(FakeClient(), eligible=("a", "b"), batch_soak="30s")
    start(run)
    # The first pass syncs the pods' watch; a starts at the second, ends at 1005, and b starts 30 s later.
    assert drive(run, {1005.0: ends("a"), 1040.0: ends("b")}) == [(1001.0, "a"), (1035.0, "b")]


def test_drive_starts_nothing_once_a_finished_node_fell_during_the_soak():
    run = gated_run(FakeClient(), eligible=("a", "b", "c"), batch_soak="30s", health_gate={})
    start(run)
    launched = drive(run, {1005.0: ends("a"), 1020.0: lambda run: node_event(run, "a", False)})
    assert launched == [(1001.0, "a")]
    assert outcomes_of(run) == {"a": "succeeded", "b": "not_started", "c": "not_started"}
    assert run.stopped[0] == "HealthGate" and run.clock.mono == 1021.0   # the pass after, not at the soak's end (1035)


def test_drive_judges_the_gate_before_it_launches_in_the_same_pass():
    run = gated_run(FakeClient(), eligible=("a", "b"), health_gate={"max_not_ready": 0})
    start(run)
    # a ends and another node goes NotReady in the same pass: the next pass stops, it does not launch b first.
    launched = drive(run, {1002.0: lambda run: (ends("a")(run), node_event(run, "x", True), node_event(run, "x", False))})
    assert launched == [(1001.0, "a")] and run.runs["b"].result["reason"] == "HealthGate"
