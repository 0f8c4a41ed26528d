# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A run's exit paths, each on its own (``BroadcastRun.execute`` lists them; docs/ARCHITECTURE.md has the table).

The pure decisions of how a run ends (``finish.run_error``, ``record.record_state``, ``finish.pods_to_clean``),
then each path's effects on the node outcomes, the pods and the record, through a fake API client.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import (
    finish, lease, limits, naming, options, outcomes, pods, record)
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.engine import Engine
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.run import BroadcastRun, NodeRun
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.api import RestClient
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import (
    ApiError,
    Conflict,
    NodeFailures,
    RunAborted,
    RunTimeout,
    WindowClosed,
)


def opts(**extra):
    return options.validate(dict({"name": "p", "namespace": "ops", "preset": "image_prune", "image_prune": {}},
                                 **extra))


# ---------------------------------------------------------------- which exception the caller gets (pure)

def ended(*outcome_by_node):
    """The result dict ``finish.result`` builds, for nodes with these outcomes."""
    nodes = [{"node": n, "outcome": o} for n, o in outcome_by_node]
    return {"run_id": "r1", "nodes": nodes, "summary": outcomes.summarize(nodes, len(nodes), 1.0)}


BUDGET = (limits.BUDGET_EXHAUSTED, "not started: failure budget of 0 exhausted (1 nodes failed)")
WINDOW = (limits.WINDOW_CLOSED, "not started: maintenance window closed at 2026-11-24T04:00:00Z")


@pytest.mark.parametrize("how, extra, stopped, timed_out, aborted, expected, words", [
    ("completed", {}, None, False, None, None, None),
    ("completed, a node failed", {}, None, False, None, None, None),
    ("completed, fail_on_node_failure", {"fail_on_node_failure": True}, None, False, None, NodeFailures,
     "broadcast p run r1: 1 of 3 nodes failed: b"),
    ("timed out", {"timeout": 600}, None, True, None, RunTimeout, "timed out after 600s: 1 of 3 nodes did not finish"),
    ("budget spent", {"max_failures": 0}, BUDGET, False, None, NodeFailures,
     "failure budget of 0 exhausted: 1 of 3 nodes failed (b), 1 not started"),
    ("window closed", {"window": {"duration": "1h"}}, WINDOW, False, None, None, None),
    ("window closed, fail_on_window_closed", {"window": {"duration": "1h"}, "fail_on_window_closed": True}, WINDOW,
     False, None, WindowClosed, "maintenance window closed at 2026-11-24T04:00:00Z; 1 of 3 nodes not started"),
    ("fail_fast", {"failure_policy": "fail_fast"}, BUDGET, False, None, NodeFailures, "1 of 3 nodes failed: b"),
    ("aborted", {}, None, False, ApiError("watch failed"), RunAborted,
     "aborted by ApiError: watch failed; 2 of 3 nodes finished before it"),
    # The order of precedence: an abort over everything, a timeout over the budget and the window.
    ("aborted at the timeout", {"fail_on_node_failure": True}, BUDGET, True, KeyboardInterrupt(), RunAborted,
     "aborted by KeyboardInterrupt"),
    ("timed out after the budget was spent", {"max_failures": 0}, BUDGET, True, None, RunTimeout, "timed out"),
])
def test_each_way_a_run_ends_gives_the_caller_its_exception_with_the_result(how, extra, stopped, timed_out,
                                                                            aborted, expected, words):
    result = ended(("a", "succeeded"), ("b", "failed"), ("c", "not_started"))
    if how == "completed":
        result = ended(("a", "succeeded"), ("b", "succeeded"), ("c", "succeeded"))
    o = opts(**dict({"fail_on_node_failure": False}, **extra))
    budget = limits.failure_budget(o.get("max_failures"), 3, fail_fast=o["failure_policy"] == "fail_fast")
    error = finish.run_error(o, "r1", result, {"a", "b", "c"}, budget, stopped, timed_out, aborted)
    if expected is None:
        assert error is None, how
        return
    assert isinstance(error, expected), how
    assert words in error.msg and error.msg.startswith("broadcast p run r1"), error.msg
    assert error.result["nodes"] == result["nodes"]          # the caller keeps every node's outcome
    if aborted is not None:
        assert error.cause is aborted


def test_an_aborted_run_counts_only_the_eligible_nodes_that_ended_on_their_own():
    result = ended(("a", "succeeded"), ("b", "cancelled"), ("c", "not_started"), ("d", "skipped"))
    error = finish.run_error(opts(), "r1", result, {"a", "b", "c"}, None, None, False, ApiError("x"))
    assert "1 of 4 nodes finished before it" in error.msg


@pytest.mark.parametrize("remaining, aborted, state", [
    (0, None, None),              # no pod left to own: the record is deleted
    (0, ApiError("x"), None),     # ... even after an abort: the caller has the results
    (2, None, "finished"),        # pods kept by ``cleanup``, owned by the record
    (None, None, "cleanup-incomplete"),
    (None, ApiError("x"), "aborted"),
    (2, ApiError("x"), "aborted"),
])
def test_the_record_says_how_the_run_ended_or_goes_with_its_last_pod(remaining, aborted, state):
    assert record.record_state(remaining, aborted) == state


def node_run(node, phase=None):
    r = NodeRun(node, "p-" + node)
    if phase is not None:
        r.pod = {"metadata": {"name": r.pod_name}, "status": {"phase": phase}}
    return r


@pytest.mark.parametrize("cleanup, kept", [("always", 0), ("on_success", 1), ("never", 2)])
def test_cleanup_deletes_unfinished_pods_whatever_it_keeps(cleanup, kept):
    runs = [node_run("a", "Succeeded"), node_run("b", "Failed"), node_run("c", "Pending"), node_run("d", "Running"),
            node_run("e", None), node_run("f")]
    runs[4].pod = {"metadata": {"name": "p-e"}}   # no status yet: not finished
    assert finish.pods_to_clean(runs, finish.KEEP_PHASES[cleanup]) == (["p-c", "p-d", "p-e"], kept)


# ---------------------------------------------------------------- each path's effects, on a fake API

class FakeClock:
    def __init__(self):
        self.mono = 1000.0

    def monotonic(self):
        return self.mono

    @staticmethod
    def now():
        return datetime.datetime(2026, 11, 24, 2, 0, tzinfo=datetime.timezone.utc)


class FakeClient:
    """Records every call; ``fail`` maps a method ("DELETE", "PATCH", "LOG", "DELETE-COLLECTION") to the
    ApiError it raises."""

    core_path = staticmethod(RestClient.core_path)
    timeout = 30

    def __init__(self, **fail):
        self.fail = fail
        self.calls = []

    def _call(self, method, path):
        self.calls.append((method, path))
        if method in self.fail:
            raise self.fail[method]

    def get(self, path, query=None, timeout=None, retry_for=None):
        self._call("LOG" if path.endswith("/log") else "GET", path)
        return "the last line\n"

    def delete(self, path, propagation="Background", grace_period=None, retry_for=None):
        self._call("DELETE", path)

    def merge_patch(self, path, body):
        self._call("PATCH", path)
        self.patched = body

    def request(self, method, path, query=None, timeout=None, body=None, content_type=None):
        if content_type == "application/json-patch+json":   # the run's conditional writes to its record
            self._call("PATCH", path)
            self.patched = {"data": dict((op["path"].rsplit("/", 1)[1], op["value"]) for op in body
                                         if op["path"].startswith("/data/"))}
            return {"metadata": {"resourceVersion": "2"}}
        self._call("DELETE-COLLECTION", path)

    def create(self, path, body, dry_run=False, retry_for=0, warnings=None):
        self._call("POST", path)
        return body


def a_run(client, eligible=("a", "b", "c"), **extra):
    plan = {"eligible": list(eligible), "skipped": {}, "existing": {}, "to_delete": []}
    run = BroadcastRun(Engine(client, clock=FakeClock()), opts(**extra), "r1", plan)
    # As if it had made its record: it holds the run (the renewer's thread is not started here).
    run.renewer = lease.Renewer(client, client.core_path("configmaps", run.namespace, run.record_name), run.holder,
                                FakeClock())
    return run


def start(run, created=(), phase="Running"):
    """Nodes ``created`` have a pod in ``phase``; the others wait."""
    run.adopt({}, 1000.0)
    for node in created:
        r = run.runs[node]
        run.waiting.remove(r)
        r.state, r.created_at = "created", 1000.0
        r.pod = {"metadata": {"name": r.pod_name}, "status": {"phase": phase}}
        run.active += 1


def outcomes_of(run):
    return dict((n, r.result["outcome"] if r.result else None) for n, r in run.runs.items())


def deleted(client):
    return sorted(path.rsplit("/", 1)[1] for method, path in client.calls if method == "DELETE")


def test_no_eligible_node_ends_at_once_and_writes_nothing():
    client = FakeClient()
    result = a_run(client, eligible=()).execute(preflight=lambda *args: pytest.fail("no preflight without a node"))
    assert client.calls == [] and result["nodes"] == [] and result["changed"] is False


def test_a_timed_out_run_deletes_its_active_pods_after_reading_their_logs():
    client = FakeClient()
    run = a_run(client)
    start(run, created=("a",))
    run.time_out()
    assert outcomes_of(run) == {"a": "timed_out", "b": "not_started", "c": "not_started"}
    assert [m for m, _path in client.calls] == ["LOG", "DELETE"] and deleted(client) == [run.runs["a"].pod_name]
    assert run.runs["a"].log == "the last line\n" and run.remaining == 0 and run.active == 0


def test_a_closed_window_lets_running_pods_finish():
    client = FakeClient()
    run = a_run(client)
    start(run, created=("a",))
    run.stop_starting(WINDOW)
    assert outcomes_of(run) == {"a": None, "b": "not_started", "c": "not_started"}
    assert run.runs["a"].state == "created" and client.calls == [] and run.active == 1 and run.remaining == 1
    assert run.runs["b"].result["reason"] == limits.WINDOW_CLOSED and run.stopped == WINDOW


def test_fail_fast_deletes_the_running_pods_too():
    client = FakeClient()
    run = a_run(client, failure_policy="fail_fast")
    start(run, created=("a", "b"))
    run.set_done(run.runs["a"], outcomes.outcome("failed", "Error", None, 1))
    run.stop_starting(BUDGET)
    assert outcomes_of(run) == {"a": "failed", "b": "cancelled", "c": "not_started"}
    assert run.runs["b"].result["reason"] == "CancelledByFailFast" and deleted(client) == [run.runs["b"].pod_name]


def test_an_abort_gives_every_node_an_outcome_even_when_its_pod_cannot_be_deleted():
    client = FakeClient(DELETE=ApiError("apiserver away"))
    run = a_run(client)
    start(run, created=("a",))
    run.abort(KeyboardInterrupt())
    assert outcomes_of(run) == {"a": "cancelled", "b": "not_started", "c": "not_started"}
    assert "the run was aborted (KeyboardInterrupt" in run.runs["b"].result["message"]
    assert run.warnings == ["could not delete pod %s: apiserver away; it stays owned by run record %s"
                            % (run.runs["a"].pod_name, run.record_name)]


def test_a_failed_clean_up_is_a_warning_and_the_record_says_cleanup_incomplete():
    client = FakeClient(**{"DELETE-COLLECTION": ApiError("timed out")})
    run = a_run(client, cleanup="on_success")
    start(run, created=("a", "b"), phase="Succeeded")
    run.runs["c"].pod = {"metadata": {"name": run.runs["c"].pod_name}, "status": {"phase": "Failed"}}
    remaining = run.clean_up()
    assert remaining is None and "were not all deleted (timed out)" in run.warnings[0]
    assert [m for m, _path in client.calls] == ["DELETE-COLLECTION"] * 3
    run.finish_record(remaining)
    assert client.patched["data"]["state"] == "cleanup-incomplete"


def test_an_unfinished_pod_that_cannot_be_deleted_makes_the_record_say_cleanup_incomplete_even_with_pods_kept():
    client = FakeClient(DELETE=ApiError("apiserver away"))
    run = a_run(client, cleanup="never")
    start(run, created=("a", "b"), phase="Succeeded")
    run.runs["c"].pod = {"metadata": {"name": run.runs["c"].pod_name}, "status": {"phase": "Pending"}}
    remaining = run.clean_up()
    assert remaining is None and deleted(client) == [run.runs["c"].pod_name]
    assert run.warnings == ["could not delete pod %s: apiserver away; it stays owned by run record %s"
                            % (run.runs["c"].pod_name, run.record_name)]
    run.finish_record(remaining)
    assert client.patched["data"]["state"] == "cleanup-incomplete"


def test_a_record_that_cannot_be_updated_is_a_warning_and_the_result_is_still_returned():
    client = FakeClient(PATCH=ApiError("forbidden"))
    run = a_run(client)
    start(run, created=("a", "b", "c"), phase="Succeeded")
    for r in run.runs.values():
        run.set_done(r, outcomes.outcome("succeeded", "Completed", None, 0))
    run.finish_record(remaining=3)
    result = run.result(1000.0, FakeClock.now(), timed_out=False)
    assert result["warnings"] == ["could not update run record %s: forbidden" % run.record_name]
    assert result["summary"]["succeeded"] == 3


# ---------------------------------------------------------------- pod names that collide (the 10,000-node bench)

class TakenName(FakeClient):
    """A client whose every pod create answers 409, and whose GET returns ``existing`` under any name."""

    def __init__(self, existing):
        super(TakenName, self).__init__()
        self.existing = existing

    def create(self, path, body, dry_run=False, retry_for=0, warnings=None):
        self._call("POST", path)
        raise Conflict("pods %r already exists" % body["metadata"]["name"], status=409, reason="AlreadyExists")

    def get(self, path, query=None, timeout=None):
        self._call("GET", path)
        return self.existing


def test_a_pod_of_that_name_for_another_node_is_never_adopted():
    """bench-00528 and bench-09078 once shared a pod name: the second node adopted the first one's pod, never got
    one of its own, and the run waited for it until its timeout. A 409 is adopted only for this run's pod of this
    node; another node's (or run's) pod of that name fails this node, naming both."""
    client = TakenName(pods.build_pod(opts(), "r1", "b"))   # node b's pod, under node a's name
    run = a_run(client)
    pod, exc = run.create_pod(run.runs["a"], None, 300)
    assert pod is None and isinstance(exc, Conflict)
    assert "it is the pod of node b in run r1, not of node a in run r1: not adopted" in exc.msg, exc.msg
    other_run = TakenName(pods.build_pod(opts(), "r0", "a"))   # node a's pod of an earlier run
    run = a_run(other_run)
    pod, exc = run.create_pod(run.runs["a"], None, 300)
    assert pod is None and "in run r0, not of node a in run r1" in exc.msg


def test_this_runs_pod_of_this_node_is_adopted_after_a_409():
    mine = pods.build_pod(opts(), "r1", "a", name="prune-r1-" + naming.node_hash("a"))
    run = a_run(TakenName(mine))
    pod, exc = run.create_pod(run.runs["a"], None, 300)
    assert exc is None and pod["metadata"]["name"] == mine["metadata"]["name"]


def test_a_runs_pods_are_built_with_the_runs_names():
    client = FakeClient()
    run = a_run(client, eligible=("a", "b"))
    run.runs["b"].pod_name = "prune-r1-0000beef"   # as pod_names gives a node whose hash another node has
    built = []
    real_create = client.create

    def create(path, body, **kwargs):
        built.append(body["metadata"]["name"])
        return real_create(path, body, **kwargs)
    client.create = create
    assert run.create_pod(run.runs["b"], None, 300)[1] is None
    assert built == ["prune-r1-0000beef"]
