# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes Events where operators look first: on each Node a run failed on, and one per run. Pure builders.

A Node event carries ``involvedObject.uid`` = the node's name, as the kubelet's own node events do,
so ``kubectl describe node`` lists it. It lives in the ``default`` namespace: the API server accepts
events about cluster-scoped objects there only. The run's own event lives in the run's namespace.
Bounded: one event per node per run, and none for nodes that succeeded unless ``node_events: all``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

COMPONENT = "nodeops.kubernetes"
NODE_EVENTS_NAMESPACE = "default"
NODE_REASONS = {"failed": "NodeopsBroadcastFailed", "timed_out": "NodeopsBroadcastTimedOut",
                "lost": "NodeopsBroadcastLost", "unschedulable": "NodeopsBroadcastUnschedulable",
                "succeeded": "NodeopsBroadcastSucceeded"}
MESSAGE_MAX = 1024


def _event(namespace, involved, reason, message, kind, now):
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": "nodeops-", "namespace": namespace},
            "involvedObject": involved, "reason": reason, "message": message[:MESSAGE_MAX], "type": kind,
            "source": {"component": COMPONENT}, "reportingComponent": COMPONENT, "reportingInstance": COMPONENT,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1}


def node_events(opts, run_id, results, now):
    """One event per node result that ``opts["node_events"]`` asks for (failures by default)."""
    wanted = opts.get("node_events") or "failures"
    if wanted == "none":
        return []
    events = []
    for rec in results:
        outcome = rec["outcome"]
        if outcome not in NODE_REASONS or (outcome == "succeeded" and wanted != "all"):
            continue
        detail = ", ".join(p for p in (
            "exit code %s" % rec["exit_code"] if rec.get("exit_code") is not None else None,
            rec.get("reason"), rec.get("message")) if p)
        message = "broadcast %s/%s run %s: %s%s" % (opts["namespace"], opts["name"], run_id, outcome,
                                                    " (%s)" % detail if detail else "")
        involved = {"apiVersion": "v1", "kind": "Node", "name": rec["node"], "uid": rec["node"]}
        events.append(_event(NODE_EVENTS_NAMESPACE, involved, NODE_REASONS[outcome], message,
                             "Normal" if outcome == "succeeded" else "Warning", now))
    return events


def run_event(opts, run_id, summary, record, now):
    """One Normal event per run, on its run record, with the summary."""
    counts = ", ".join("%d %s" % (summary[k], k) for k in (
        "succeeded", "failed", "not_started", "cancelled", "unschedulable", "timed_out", "lost") if summary.get(k))
    message = "broadcast %s/%s run %s finished in %ss: of %d eligible nodes, %s; %d nodes skipped" % (
        opts["namespace"], opts["name"], run_id, summary.get("duration_s"), summary["desired"], counts or "none ran",
        summary.get("skipped") or 0)
    involved = {"apiVersion": "v1", "kind": "ConfigMap", "namespace": opts["namespace"], "name": record["name"],
                "uid": record["uid"]}
    return _event(opts["namespace"], involved, "NodeopsBroadcastRun", message, "Normal", now)
