# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""follow_nodes: a node that joins or becomes eligible during a run gets its pod in it (tests/integration has it on a
cluster with simulated nodes)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import limits, naming, options, outcomes
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import plan as planner
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.engine import Engine
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.run import BroadcastRun

from test_run_exits import FakeClient, FakeClock, a_run, start
from test_waves_health_gate import slim


def event(run, node, kind="MODIFIED"):
    run._nodes_changed("event", (kind, node), 1000.0)


def followed_run(**extra):
    run = a_run(FakeClient(), eligible=("a", "b"), **extra)
    run.plan["skipped"] = {"c": "cordoned"}
    start(run)
    return run


def test_a_node_that_joins_or_becomes_eligible_waits_for_its_pod_and_is_in_the_result():
    run = followed_run()
    event(run, slim("new"), kind="ADDED")
    event(run, slim("c"))                               # uncordoned
    assert run.followed == ["new", "c"] and run.remaining == 4
    assert [r.node for r in run.waiting] == ["a", "b", "new", "c"]
    assert run.plan["eligible"] == ["a", "b", "new", "c"] and "c" not in run.plan["skipped"]
    assert run.runs["new"].state == "waiting" and run.by_pod[run.runs["new"].pod_name] is run.runs["new"]
    event(run, slim("new"))                             # seen again: still one node run
    assert run.followed == ["new", "c"] and run.remaining == 4
    for r in list(run.runs.values()):
        run.set_done(r, outcomes.outcome("succeeded", "Completed", None, 0))
    result = run.result(1000.0, run.clock.now(), timed_out=False)
    assert [rec["node"] for rec in result["nodes"] if rec["outcome"] == "succeeded"] == ["a", "b", "c", "new"]
    assert result["summary"]["desired"] == 4 and result["followed_nodes"] == ["new", "c"]


def test_a_node_not_eligible_is_reported_skipped_with_its_reason_and_gets_nothing():
    run = followed_run()
    event(run, slim("d", unschedulable=True), kind="ADDED")
    event(run, slim("e", ready=False), kind="ADDED")
    event(run, slim("f", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]), kind="ADDED")
    assert run.followed == [] and run.remaining == 2
    assert run.plan["skipped"] == {"c": "cordoned", "d": "cordoned", "e": "NotReady",
                                   "f": "untolerated taint dedicated=db:NoSchedule"}


def test_nothing_is_followed_without_follow_nodes_once_the_run_stopped_starting_or_outside_an_explicit_list():
    fixed = followed_run(follow_nodes=False)
    event(fixed, slim("new"), kind="ADDED")
    assert fixed.followed == [] and "new" not in fixed.runs and "new" not in fixed.plan["skipped"]
    stopped = followed_run()
    stopped.stop_starting((limits.WINDOW_CLOSED, "not started: maintenance window closed at x"))
    event(stopped, slim("new"), kind="ADDED")
    assert stopped.followed == [] and "new" not in stopped.runs
    listed = a_run(FakeClient(), eligible=("a",), nodes=["a", "later"])
    start(listed)
    event(listed, slim("other"), kind="ADDED")
    event(listed, slim("later"), kind="ADDED")
    assert listed.followed == ["later"]


def test_a_node_that_joins_gets_a_pod_name_no_other_pod_of_the_run_has():
    a, b = "bench-00528", "bench-09078"   # the same 8 hex digits
    run = a_run(FakeClient(), eligible=(a,))
    start(run)
    event(run, slim(b), kind="ADDED")
    assert run.runs[a].pod_name == naming.pod_name("p", "r1", a)
    assert run.runs[b].pod_name != run.runs[a].pod_name and len(run.by_pod) == 2


def test_a_relist_follows_the_nodes_it_finds_too():
    run = followed_run()
    run._nodes_changed("sync", ([slim("a"), slim("b"), slim("c"), slim("g")], "9", 0), 1000.0)
    assert sorted(run.followed) == ["c", "g"]


def test_follow_nodes_is_on_by_default():
    assert options.validate({"name": "p", "namespace": "ops", "preset": "image_prune"})["follow_nodes"] is True


def test_a_resumed_run_never_follows_a_node_it_had_a_pod_for():
    """A resumed run deletes the pod of a node not eligible when it planned (plan.to_delete); if that node comes
    back, it must not get a second pod of the run (the first may have run, or be terminating under the name)."""
    nodes = [slim("a"), slim("b", unschedulable=True)]
    o = options.validate({"name": "p", "namespace": "ops", "preset": "image_prune"})
    taken = naming.pod_name("p", "r1", "c")   # a name c would take, had another pod not had it
    mine = {"metadata": {"name": taken, "labels": {naming.LABEL_RUN: "r1"}, "annotations": {naming.ANNOTATION_NODE: "b"}},
            "spec": {"nodeName": "b"}, "status": {"phase": "Succeeded"}}
    plan = planner.plan(nodes, [mine], o, "r1")
    assert plan["to_delete"] == [taken] and plan["had_pod"] == ["b"] and plan["skipped"] == {"b": "cordoned"}
    run = BroadcastRun(Engine(FakeClient(), clock=FakeClock()), o, "r1", plan)
    run.adopt({}, 1000.0)
    event(run, slim("b"))                      # uncordoned
    assert run.followed == [] and run.plan["skipped"]["b"].startswith("had a pod in this run already")
    event(run, slim("c"), kind="ADDED")        # another node: followed, under a name no pod has or had
    assert run.followed == ["c"] and run.runs["c"].pod_name not in (taken, run.runs["a"].pod_name)


def test_no_node_is_followed_while_the_health_gate_is_shut_or_too_close_to_the_timeout():
    run = followed_run(health_gate={"max_not_ready": 0})
    run.node_ready, run.not_ready = {"a": True, "b": True, "x": False}, {"x"}
    start(run, created=("a", "b"))             # nothing waits: the gate has not stopped the run
    event(run, slim("new"), kind="ADDED")
    assert run.followed == [] and run.plan["skipped"]["new"] == "became eligible while the health gate was shut"
    late = followed_run(pending_timeout=60)
    late.deadline = late.clock.monotonic() + 59
    event(late, slim("new"), kind="ADDED")
    assert late.followed == [] and late.plan["skipped"]["new"] == (
        "became eligible less than pending_timeout (60s) before the run's timeout")
    late.deadline = late.clock.monotonic() + 61
    event(late, slim("new"))
    assert late.followed == ["new"] and "new" not in late.plan["skipped"]


def test_a_node_skipped_during_the_run_and_deleted_is_not_reported_but_one_the_plan_skipped_is():
    run = followed_run()
    run.plan_skipped = frozenset(["c"])
    event(run, slim("d", unschedulable=True), kind="ADDED")
    assert run.plan["skipped"]["d"] == "cordoned"
    event(run, slim("d"), kind="DELETED")
    event(run, slim("c", unschedulable=True), kind="DELETED")
    assert run.plan["skipped"] == {"c": "cordoned"}
