# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a run ends, once every node has its outcome: clean-up, events, and the result (see run.py).

* ``cleanup``: pods not finished are deleted; the finished ones ``cleanup`` does not keep are deleted as
  one collection (``pods_to_clean`` decides, pure). A failure is a warning (``clean_up``), never a lost run.
* ``post_events``: an Event on each Node the run failed on, and one on the run record (best effort).
* ``result``: every node's result (``node_result``, ``skipped_result``, pure) and the summary, returned,
  or raised inside the exception ``run_error`` (pure) picks for how the run ended.

``Finish`` is a part of ``run.BroadcastRun``: its methods use the run's state.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from concurrent.futures import ThreadPoolExecutor

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import events, limits, naming, outcomes
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.record import iso
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import (
    ApiError,
    HealthGateStopped,
    NodeFailures,
    RunAborted,
    RunHeld,
    RunTimeout,
    WindowClosed,
)
from ansible_collections.nodeops.kubernetes.plugins.module_utils._node.main import parse_result

CLEANUP_BASE_SECONDS = 60   # time limit of the pods' delete-collection: this, plus
CLEANUP_PODS_PER_SECOND = 20  # one second per this many pods of the run
# The phases of the finished pods each value of the ``cleanup`` option keeps.
KEEP_PHASES = {"always": (), "on_success": ("Failed",), "never": ("Failed", "Succeeded")}


def pods_to_clean(node_runs, keep_phases):
    """(the names of the pods that have not finished, to delete whatever ``cleanup`` says; how many
    finished pods are kept: those in ``keep_phases``). Node runs without a pod are left out. Pure."""
    unfinished, kept = [], 0
    for r in node_runs:
        if r.pod is None:
            continue
        phase = (r.pod.get("status") or {}).get("phase")
        if phase not in ("Succeeded", "Failed"):
            unfinished.append(r.pod_name)
        elif phase in keep_phases:
            kept += 1
    return unfinished, kept


def last_line(text, limit=300):
    """The last non-empty line of ``text`` that is not a result line, cut at ``limit`` characters. Pure."""
    for line in reversed((text or "").splitlines()):
        line = line.strip()
        if line and parse_result(line) is None:
            return line[:limit]
    return None


def node_result(r, started_wall, started):
    """The result of one eligible node, as the module returns it."""
    res = r.result or outcomes.outcome("timed_out", "RunTimeout", None)
    pod = r.pod or {}

    def wall(mono):
        if mono is None:
            return None
        return iso(started_wall + datetime.timedelta(seconds=mono - started))

    duration = None
    if res.get("started_mono") is not None and res.get("finished_mono") is not None:
        duration = round(res["finished_mono"] - res["started_mono"], 3)
    rec = {"node": r.node, "pod": r.pod_name if r.state != "waiting" and res.get("started_mono") is not None
           else None,
           "outcome": res["outcome"], "exit_code": res.get("exit_code"), "reason": res.get("reason"),
           "message": res.get("message"), "log": r.log, "started_at": wall(res.get("started_mono")),
           "finished_at": wall(res.get("finished_mono")), "duration_s": duration,
           "restarts": outcomes.restarts(pod) if pod else 0}
    parsed = parse_result(r.message)
    if parsed is None:
        parsed = parse_result(r.fetched)
    if parsed is not None:
        rec["result"] = parsed
        if rec["outcome"] in outcomes.FAILURES and parsed.get("errors") and not rec["message"]:
            rec["message"] = "; ".join(parsed["errors"][:3])   # the node script's own words
    if not rec["message"] and rec["outcome"] in ("succeeded", "failed"):
        # A workload's own termination message, or the last line of a failed container's log tail.
        rec["message"] = last_line(r.message)
    return rec


def skipped_result(node, reason):
    return {"node": node, "pod": None, "outcome": "skipped", "exit_code": None, "reason": reason, "message": None,
            "log": None, "started_at": None, "finished_at": None, "duration_s": None, "restarts": 0}


def disk_pressure_summary(seen):
    """The nodes under DiskPressure when the run planned or followed them, and which of them still were when it
    ended (``still``) or no longer (``cleared``). Pure."""
    return {"nodes": sorted(seen), "cleared": sorted(n for n, now in seen.items() if not now),
            "still": sorted(n for n, now in seen.items() if now)}


def run_limits(opts, closes_at, budget, stopped, cluster_nodes):
    """The run's ``limits`` in its result: what could stop it starting pods or hold them back, and what did. Pure."""
    gate = opts.get("health_gate")
    return {"window_closes_at": iso(closes_at) if closes_at else None, "failure_budget": budget,
            "batch_soak_s": opts.get("batch_soak") or 0,
            "health_gate": None if not gate else {
                "max_not_ready": limits.not_ready_allowed(gate, cluster_nodes), "finished_nodes": gate["finished_nodes"]},
            "stopped_starting": stopped[0] if stopped else None,
            "stopped_message": stopped[1] if stopped else None}


def run_error(opts, run_id, result, eligible, budget, stopped, timed_out, aborted=None, handed_over=None):
    """The exception, ``result`` attached, for how a run ended, or None: the caller gets ``result``. Pure.

    In this order: taken over by another process, ``handed_over`` (RunHeld), aborted by ``aborted``
    (RunAborted), ``timed_out`` (RunTimeout), ``stopped`` starting by the failure ``budget`` without
    fail_fast (NodeFailures), by the health gate (HealthGateStopped), by the window with fail_on_window_closed
    (WindowClosed), failed nodes with
    fail_fast or fail_on_node_failure (NodeFailures). ``eligible``: the
    eligible nodes (a container of names), whose outcomes say how many finished before an abort."""
    name, summary, results = opts["name"], result["summary"], result["nodes"]
    failed = outcomes.failed_nodes(results)
    stopped_by = stopped[0] if stopped else None
    if handed_over is not None:
        handed = sum(1 for rec in results if rec["reason"] == "HandedOver")
        return RunHeld("broadcast %s run %s: this process stopped driving it, deleting nothing, as it no longer "
                       "holds its lease (held now by %s); %d of %d nodes were left unfinished to whoever drives it"
                       % (name, run_id, handed_over, handed, summary["desired"]), holder=handed_over, **result)
    if aborted is not None:
        finished = sum(1 for rec in results if rec["node"] in eligible and rec["outcome"] not in ("not_started", "cancelled"))
        return RunAborted("broadcast %s run %s aborted by %s: %s; %d of %d nodes finished before it"
                          % (name, run_id, type(aborted).__name__, getattr(aborted, "msg", None) or aborted,
                             finished, summary["desired"]), cause=aborted, **result)
    if timed_out:
        return RunTimeout("broadcast %s run %s timed out after %ds: %d of %d nodes did not finish"
                          % (name, run_id, opts["timeout"], summary["timed_out"] + summary["not_started"],
                             summary["desired"]), **result)
    if stopped_by == limits.BUDGET_EXHAUSTED and opts["failure_policy"] != "fail_fast":
        return NodeFailures("broadcast %s run %s: failure budget of %d exhausted: %d of %d nodes failed (%s), "
                            "%d not started" % (name, run_id, budget, len(failed), summary["desired"],
                                                ", ".join(failed[:10]), summary["not_started"]), **result)
    if stopped_by == limits.HEALTH_GATE:
        return HealthGateStopped("broadcast %s run %s: %s; %d of %d nodes not started"
                                 % (name, run_id, stopped[1][len("not started: "):], summary["not_started"],
                                    summary["desired"]), **result)
    if stopped_by == limits.WINDOW_CLOSED and opts.get("fail_on_window_closed"):
        return WindowClosed("broadcast %s run %s: %s; %d of %d nodes not started"
                            % (name, run_id, stopped[1][len("not started: "):], summary["not_started"],
                               summary["desired"]), **result)
    if failed and (opts["failure_policy"] == "fail_fast" or opts["fail_on_node_failure"]):
        return NodeFailures("broadcast %s run %s: %d of %d nodes failed: %s"
                            % (name, run_id, len(failed), summary["desired"],
                               ", ".join(failed[:10]) + (" ..." if len(failed) > 10 else "")), **result)
    return None


class Finish:
    """Clean-up, events and the result (a part of ``run.BroadcastRun``)."""

    def clean_up(self):
        """``cleanup``, whose failure is a warning, never a lost run: then None, and the record keeps
        owning what is left (its state: cleanup-incomplete)."""
        self.phase("cleanup")
        if self.fenced():
            why = self.renewer.last_error
            self.warnings.append("this process could not prove it still holds run %s (%s): it deleted none of its "
                                 "pods; run record %s keeps owning them" % (self.run_id, why, self.record_name))
            return None
        try:
            return self.cleanup()
        except ApiError as exc:
            self.warnings.append("cleanup of run %s failed: %s; run record %s keeps owning what is left"
                                 % (self.run_id, exc.msg, self.record_name))
            return None

    def cleanup(self):
        """Delete pods per ``cleanup``; return how many of this run's pods remain (None if unknown).

        * Pods that have not finished (unschedulable, lost) are deleted now,
          whatever ``cleanup`` says: left alone they could start later, unwatched.
        * If no pod is to be kept, that is all: ``finish_record`` deletes the
          run record, and the garbage collector deletes the finished pods it
          owns (one request, however many nodes).
        * Otherwise the pods not kept are deleted as a collection (``delete_finished``).
        """
        keep_phases = KEEP_PHASES[self.opts["cleanup"]]
        unfinished, kept = pods_to_clean(self.runs.values(), keep_phases)
        # Best effort, each on its own: one that cannot be deleted is a warning, and the record keeps
        # owning it; the others are still deleted, and the results are still returned.
        undeleted = sum(0 if self.delete_pod(name, best_effort=True) else 1 for name in unfinished)
        if not kept:
            return None if undeleted else 0
        left = self.delete_finished(keep_phases, kept)
        return None if undeleted else left   # a pod that could not be deleted: the record says cleanup-incomplete

    def delete_finished(self, keep_phases, kept):
        """Delete the run's pods but those in ``keep_phases`` as a collection; returns ``kept``, or None.

        The apiserver deletes a collection one pod at a time, so its time limit grows with the run; if it
        still fails, the results are returned with a warning and the run record keeps owning the pods."""
        query = {"labelSelector": naming.run_selector(self.opts["name"], self.run_id),
                 "fieldSelector": ",".join("status.phase!=%s" % phase for phase in keep_phases)}
        timeout = max(self.client.timeout, CLEANUP_BASE_SECONDS + len(self.runs) // CLEANUP_PODS_PER_SECOND)
        error = None
        for attempt in range(3):
            if self.fenced():
                error = "this process could not prove it still holds the run (%s)" % self.renewer.last_error
                break
            try:
                self.client.request("DELETE", self.client.core_path("pods", self.namespace), query=query,
                                    timeout=timeout)
                return kept
            except ApiError as exc:
                # A timed-out delete-collection stops part way; a new one takes up what is left.
                self.log("deleting the run's pods failed (attempt %d): %s" % (attempt + 1, exc.msg))
                error = exc.msg
        self.warnings.append("the pods of run %s were not all deleted (%s); they stay owned by ConfigMap %s: "
                             "remove them with state=absent and run_id=%s"
                             % (self.run_id, error, self.record_name, self.run_id))
        return None

    def post_events(self, results, summary):
        """Events on the Nodes the run failed on, and one on its run record. Best effort: a cluster that
        refuses them (RBAC) costs a warning, never the results."""
        now = iso(self.clock.now())
        posted = events.node_events(self.opts, self.run_id, results, now)
        if self.owner is not None:
            posted.append(events.run_event(self.opts, self.run_id, summary, self.owner, now))
        if not posted:
            return

        def post(body):
            try:
                self.client.create(self.client.core_path("events", body["metadata"]["namespace"]), body)
                return None
            except ApiError as exc:
                return "%s: %s" % (body["reason"], exc.msg)

        # The run's pool is shut down by now; events get a short-lived one of their own, as many
        # threads as the run's (a run that failed on 500 nodes posts 500 events).
        with ThreadPoolExecutor(max_workers=min(self.create_workers, len(posted))) as pool:
            refused = [why for why in pool.map(post, posted) if why]
        if refused:
            self.warnings.append("could not post %d of %d events (%s)" % (len(refused), len(posted), refused[0]))

    def result(self, started, started_wall, timed_out, aborted=None):
        """Every node's result and the summary, events posted: returned, or raised inside ``run_error``'s
        exception (from ``aborted``, the exception that aborted the run)."""
        plan, runs = self.plan, self.runs
        results = [node_result(runs[n], started_wall, started) for n in plan["eligible"]]
        results.extend(skipped_result(node, plan["skipped"][node]) for node in sorted(plan["skipped"]))
        results.sort(key=lambda rec: rec["node"])
        for rec in results:
            if rec["node"] in self.pressure_seen:
                # Under DiskPressure when planned (or followed): and when the run ended, as the nodes' watch last saw it.
                rec["disk_pressure"] = {"before": True, "after": self.pressure_seen[rec["node"]]}
        summary = outcomes.summarize(results, len(plan["eligible"]), self.clock.monotonic() - started)
        result = {"run_id": self.run_id, "summary": summary, "nodes": results, "changed": bool(plan["eligible"]),
                  "limits": run_limits(self.opts, self.closes_at, self.budget, self.stopped, len(self.node_ready)),
                  "followed_nodes": list(self.followed), "disk_pressure": disk_pressure_summary(self.pressure_seen)}
        self.phase("events")
        if self.handed_over is None:   # else the new holder posts them, once
            self.post_events(results, summary)
        if self.warnings:
            result["warnings"] = list(self.warnings)
        error = run_error(self.opts, self.run_id, result, runs, self.budget, self.stopped, timed_out, aborted,
                          self.handed_over)
        if error is not None and aborted is not None:
            raise error from aborted
        if error is not None:
            raise error
        return result
