# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run loop's decisions, pure, driven by an injected clock: launch.py, observe.py, logs.py, record.py,
finish.py (the state they act on, ``NodeRun``, is run.py's)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import datetime

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import finish, launch, logs, observe, outcomes, record, run


class FakeClock:
    """The engine's Clock seam: monotonic seconds and wall time that move only when told."""

    def __init__(self, start=1000.0):
        self.mono = start
        self.wall = datetime.datetime(2026, 11, 23, 2, 30, tzinfo=datetime.timezone.utc)

    def monotonic(self):
        return self.mono

    def now(self):
        return self.wall

    def advance(self, seconds):
        self.mono += seconds
        self.wall += datetime.timedelta(seconds=seconds)


def node_runs(*names, **state):
    runs = [run.NodeRun(n, "p-" + n) for n in names]
    for r in runs:
        r.state = state.get("state", "waiting")
    return runs


def pod(name, phase="Pending", **extra):
    return dict({"metadata": {"name": name}, "status": {"phase": phase}}, **extra)


def test_next_batch_takes_the_free_slots_up_to_the_slow_start_size_and_drops_cancelled_runs():
    a, b, c, d = node_runs("a", "b", "c", "d")
    b.state = "done"   # cancelled while waiting
    waiting = collections.deque([a, b, c, d])
    assert launch.next_batch(waiting, active=0, parallelism=10, batch_size=2) == [a, c]
    assert list(waiting) == [d]
    assert launch.next_batch(waiting, active=10, parallelism=10, batch_size=4) == []   # no free slot
    assert launch.next_batch(waiting, active=9, parallelism=10, batch_size=4) == [d]
    assert [launch.next_batch_size(s, e) for s, e in ((1, 0), (4, 0), (8, 2))] == [2, 8, 1]


def test_pending_timeouts_come_due_on_the_clock_not_before():
    clock = FakeClock()
    [r] = node_runs("a", state="created")
    r.pod = pod("p-a")
    pending = set()
    observe.track_pending(r, clock.monotonic(), pending)
    assert pending == {r} and r.pending_since == 1000.0
    clock.advance(119.9)
    assert observe.due_pending_timeouts(pending, clock.monotonic(), 120) == []
    observe.track_pending(r, clock.monotonic(), pending)   # still Pending: the start time is kept
    assert r.pending_since == 1000.0
    clock.advance(0.1)
    assert observe.due_pending_timeouts(pending, clock.monotonic(), 120) == [r]
    r.pod = pod("p-a", "Running")
    observe.track_pending(r, clock.monotonic(), pending)
    assert pending == set() and r.pending_since is None


def test_a_list_begun_after_the_create_was_answered_proves_the_pod_gone():
    clock = FakeClock()
    gone, young, creating = node_runs("gone", "young", "creating", state="created")
    creating.state = "creating"
    for r in (gone, young):
        r.pod = pod(r.pod_name, "Running")
    gone.confirmed_at = clock.monotonic()
    clock.advance(5)
    young.confirmed_at = clock.monotonic()
    by_pod = dict((r.pod_name, r) for r in (gone, young, creating))
    # A list begun between the two creates: it may predate "young", but not "gone".
    touched = observe.apply_sync(by_pod, [pod("p-creating")], listed_from=clock.monotonic() - 1)
    assert touched == {gone} and gone.pod is None
    assert young.pod is not None and creating.pod == pod("p-creating")


def test_pod_events_touch_created_runs_only():
    created, waiting = node_runs("c", "w")
    created.state = "created"
    by_pod = {"p-c": created, "p-w": waiting}
    assert observe.apply_pod_event(by_pod, "MODIFIED", pod("p-c", "Running")) is created
    assert observe.apply_pod_event(by_pod, "DELETED", pod("p-c", "Running")) is created and created.pod is None
    assert observe.apply_pod_event(by_pod, "ADDED", pod("p-w")) is None and waiting.pod is None
    assert observe.apply_pod_event(by_pod, "ADDED", pod("someone-else")) is None


def test_a_kubelet_warning_that_the_pod_can_never_start_is_kept_once():
    [r] = node_runs("a", state="created")
    by_pod = {"p-a": r}
    missing = {"pod": "p-a", "reason": "FailedMount",
               "message": 'MountVolume.SetUp failed for volume "target" : hostPath type check failed: '
                          '/var/log/app is not a directory'}
    assert observe.apply_kubelet_event(by_pod, missing) is r
    assert r.fatal == outcomes.fatal_event(missing)
    assert observe.apply_kubelet_event(by_pod, missing) is None   # already known
    assert observe.apply_kubelet_event(by_pod, {"pod": "p-a", "reason": "Pulling", "message": "x"}) is None


def test_node_result_reports_wall_times_from_the_clock():
    clock = FakeClock()
    started, started_wall = clock.monotonic(), clock.now()
    [r] = node_runs("a", state="done")
    verdict = outcomes.outcome("succeeded", None, None)
    clock.advance(2)
    verdict["started_mono"] = clock.monotonic()
    clock.advance(1.5)
    verdict["finished_mono"] = clock.monotonic()
    r.result = verdict
    r.message = 'NODEOPS_RESULT {"bytes_freed":7,"errors":[]}'
    rec = finish.node_result(r, started_wall, started)
    assert (rec["started_at"], rec["finished_at"], rec["duration_s"]) == (
        "2026-11-23T02:30:02Z", "2026-11-23T02:30:03Z", 1.5)
    assert rec["pod"] == "p-a" and rec["result"] == {"bytes_freed": 7, "errors": []}
    assert rec["message"] is None and rec["log"] is None     # the result line is not a message


# ---------------------------------------------------------------- results from the termination message

LOG_OPTS = {"log_tail_lines": 20, "log_max_bytes": 8192, "log_on_success": False}
RESULT = 'NODEOPS_RESULT {"bytes_freed":7,"errors":[]}'
TAIL = 'removing x\nerror: disk full\nNODEOPS_RESULT {"errors":["disk full"]}\n'


@pytest.mark.parametrize("kind, message, opts, wants_result, expected", [
    # A preset that succeeded: its result is in the status, nothing to read.
    ("succeeded", RESULT, LOG_OPTS, True, (None, False)),
    # Its result did not fit in the message: read the log for it, even with no log lines asked for.
    ("succeeded", None, LOG_OPTS, True, (None, True)),
    ("succeeded", None, dict(LOG_OPTS, log_tail_lines=0), True, (None, True)),
    # A workload with no result: a succeeded node's log only when asked.
    ("succeeded", None, LOG_OPTS, False, (None, False)),
    ("succeeded", None, dict(LOG_OPTS, log_on_success=True), False, (None, True)),
    ("succeeded", None, dict(LOG_OPTS, log_on_success=True, log_tail_lines=0), False, (None, False)),
    # A failure: the kubelet's fallback tail is the log, result line and all.
    ("failed", TAIL, LOG_OPTS, True, (TAIL, False)),
    ("failed", TAIL, dict(LOG_OPTS, log_tail_lines=1), True, ('NODEOPS_RESULT {"errors":["disk full"]}\n', False)),
    ("failed", TAIL, dict(LOG_OPTS, log_tail_lines=0), True, (None, False)),
    # A tail whose result line was cut (longer than the kubelet's 2 KiB): read the log for it.
    ("failed", "error: x\n", LOG_OPTS, True, ("error: x\n", True)),
    # A failed container with no message at all (another terminationMessagePolicy): read its log.
    ("failed", None, LOG_OPTS, False, (None, True)),
    ("failed", None, dict(LOG_OPTS, log_tail_lines=0), False, (None, False)),
])
def test_finished_log_reads_the_api_only_when_the_status_lacks_it(kind, message, opts, wants_result, expected):
    assert logs.finished_log(kind, message, opts, wants_result) == expected


def test_trim_log_keeps_the_last_lines_and_bytes():
    text = "".join("line %d\n" % i for i in range(30))
    assert logs.trim_log(text, 2, 8192) == "line 28\nline 29\n"
    assert logs.trim_log(text, 20, 8) == "line 29\n"
    assert logs.trim_log("no newline", 5, 100) == "no newline"
    assert logs.trim_log(text, 0, 100) is None and logs.trim_log(None, 5, 100) is None
    assert logs.trim_log("\u00e9" * 10, 1, 5) == "\u00e9\u00e9"       # never half a character


def test_a_failed_nodes_message_is_the_scripts_errors_or_the_last_line_it_printed():
    [r, s] = node_runs("a", "b", state="done")
    r.result = outcomes.outcome("failed", "Error", None, 1)
    r.message, r.log = TAIL, TAIL
    rec = finish.node_result(r, datetime.datetime(2026, 1, 1), 0)
    assert rec["message"] == "disk full" and rec["result"] == {"errors": ["disk full"]} and rec["log"] == TAIL
    s.result = outcomes.outcome("failed", "Error", None, 3)
    s.message = "starting\ncannot open /data: permission denied\n\n"
    assert finish.node_result(s, datetime.datetime(2026, 1, 1), 0)["message"] == "cannot open /data: permission denied"


def test_the_last_line_is_the_last_words_printed_that_are_not_the_result():
    assert finish.last_line('a\nb\n\nNODEOPS_RESULT {"errors": []}\n  \n') == "b"
    assert finish.last_line('NODEOPS_RESULT {"x": 1}') is None and finish.last_line(None) is None
    assert finish.last_line("x" * 500) == "x" * 300 and finish.last_line("  padded  \n", limit=3) == "pad"


def test_a_result_the_message_could_not_hold_is_parsed_from_the_log_read():
    [r] = node_runs("a", state="done")
    r.result = outcomes.outcome("succeeded", "Completed", None, 0)
    r.fetched = 'x\nNODEOPS_RESULT {"bytes_freed": 9}\n'
    assert finish.node_result(r, datetime.datetime(2026, 1, 1), 0)["result"] == {"bytes_freed": 9}


def test_events_are_one_per_failed_node_and_one_per_run():
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import events

    opts = {"name": "prune", "namespace": "ops", "node_events": "failures"}
    results = [{"node": "a", "outcome": "succeeded", "exit_code": 0, "reason": "Completed", "message": None},
               {"node": "b", "outcome": "failed", "exit_code": 3, "reason": "Error", "message": None},
               {"node": "c", "outcome": "unschedulable", "exit_code": None, "reason": "Unschedulable",
                "message": "0/1 nodes are available"},
               {"node": "d", "outcome": "skipped", "exit_code": None, "reason": "cordoned", "message": None},
               {"node": "e", "outcome": "not_started", "exit_code": None, "reason": "WindowClosed", "message": "x"}]
    posted = events.node_events(opts, "r1", results, "2026-11-24T02:00:00Z")
    assert [(e["involvedObject"]["name"], e["reason"], e["type"]) for e in posted] == [
        ("b", "NodeopsBroadcastFailed", "Warning"), ("c", "NodeopsBroadcastUnschedulable", "Warning")]
    assert posted[0]["message"] == "broadcast ops/prune run r1: failed (exit code 3, Error)"
    assert posted[0]["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": "b", "uid": "b"}
    assert len(events.node_events(dict(opts, node_events="all"), "r1", results, "t")) == 3
    assert events.node_events(dict(opts, node_events="none"), "r1", results, "t") == []
    summary = {"desired": 4, "succeeded": 1, "failed": 1, "unschedulable": 1, "not_started": 1, "duration_s": 9.5}
    run_event = events.run_event(opts, "r1", summary, {"name": "nodeops-run-prune-r1", "uid": "u1"}, "t")
    assert run_event["involvedObject"]["kind"] == "ConfigMap" and run_event["type"] == "Normal"
    assert run_event["message"] == ("broadcast ops/prune run r1 finished in 9.5s: of 4 eligible nodes, 1 succeeded, "
                                    "1 failed, 1 not_started, 1 unschedulable; 0 nodes skipped")


def test_a_cancelled_node_is_no_failure_and_gets_no_warning_event():
    """fail_fast or an abort deleted its running pod: the node itself did not fail."""
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import events

    opts = {"name": "prune", "namespace": "ops"}
    results = [{"node": "a", "outcome": "failed", "exit_code": 9, "reason": "Error", "message": None},
               {"node": "b", "outcome": "cancelled", "exit_code": None, "reason": "CancelledByFailFast",
                "message": "deleted by fail_fast after a failure on a"}]
    for wanted in ("failures", "all"):
        assert [e["involvedObject"]["name"] for e in events.node_events(dict(opts, node_events=wanted), "r1",
                                                                        results, "t")] == ["a"]
    assert outcomes.failed_nodes(results) == ["a"]
    assert "cancelled" in outcomes.OUTCOMES and "cancelled" not in outcomes.FAILURES


def test_progress_counts_what_is_done_running_and_waiting():
    a, b, c, d = node_runs("a", "b", "c", "d")
    a.state, a.result = "done", outcomes.outcome("succeeded", None, None)
    b.state, b.result = "done", outcomes.outcome("failed", "Error", None)
    c.state = "created"
    assert record.progress_counts([a, b, c, d], active=1) == {"desired": 4, "succeeded": 1, "failed": 1, "active": 1,
                                                              "waiting": 1}


def test_the_images_a_workload_refers_to():
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import inputs

    deployment = {"spec": {"replicas": 0, "template": {"spec": {
        "initContainers": [{"image": "busybox:1.36"}], "containers": [{"image": "nginx:1.25"}, {"image": "nginx:1.25"}]}}}}
    cron_job = {"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"image": "app:2"}]}}}}}}
    pod = {"spec": {"containers": [{"image": "pause"}], "ephemeralContainers": [{"image": "debug:1"}]}}
    assert inputs.images_of(deployment, ("spec", "template")) == ["busybox:1.36", "nginx:1.25"]
    assert inputs.images_of(cron_job, ("spec", "jobTemplate", "spec", "template")) == ["app:2"]
    assert inputs.images_of(pod, ()) == ["debug:1", "pause"]
    assert inputs.images_of({}, ("spec", "template")) == []


@pytest.mark.parametrize("tail", [0, 1, 2])
def test_a_result_read_from_the_log_is_found_whatever_log_tail_lines_says(tail):
    """A result too long for the termination message is read from the log, where the node script prints a
    note after it: with log_tail_lines 0 or 1 the read once took only that note, and the node's result was lost."""
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._node.main import parse_result

    opts = {"log_tail_lines": tail, "log_max_bytes": 4096}
    query = logs.log_query(opts, for_result=True)
    log = 'progress\nNODEOPS_RESULT {"images_removed_count": 50}\nthe result is longer than a termination message\n'
    tail_read = "".join(log.splitlines(True)[-query["tailLines"]:])
    assert parse_result(tail_read) == {"images_removed_count": 50}
    assert query["limitBytes"] >= 65536
    assert logs.log_query(opts, for_result=False) == (None if tail == 0 else {"tailLines": tail, "limitBytes": 4096})


def test_a_running_record_nobody_writes_any_more_is_abandoned():
    """A run whose process died leaves its record saying "running" forever: broadcast_info tells it apart."""
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import history

    data = history.record_data("running", started_at="2026-11-24T02:00:00Z", eligible=3, timeout=600)
    data.update(history.record_data("running", updated_at="2026-11-24T02:01:00Z"))
    record = {"data": data}
    utc = datetime.timezone.utc
    assert history.read_record(record, now=datetime.datetime(2026, 11, 24, 2, 5, tzinfo=utc))["state"] == "running"
    late = history.read_record(record, now=datetime.datetime(2026, 11, 24, 2, 14, tzinfo=utc))
    assert late["state"] == "abandoned" and "longer than its timeout of 600s" in late["abandoned_reason"]
    # Without a clock, or a finished record, nothing is judged.
    assert history.read_record(record)["state"] == "running"
    done = {"data": dict(data, state="finished")}
    assert history.read_record(done, now=datetime.datetime(2027, 1, 1, tzinfo=utc))["state"] == "finished"
