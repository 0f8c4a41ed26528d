# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Classify a pod into a node outcome, and summarise a run. Pure.

Outcomes: succeeded, failed, skipped (not eligible), not_started (eligible, but the run stopped
starting pods first: fail_fast, the failure budget, the maintenance window, the run timeout or an
abort), cancelled (its pod was running and the run deleted it: fail_fast or an abort; no failure of
that node's), unschedulable, timed_out, lost.
``classify`` returns None while a pod is still pending or running within its
limits; the engine keeps watching it then.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.naming import ANNOTATION_NODE

OUTCOMES = ("succeeded", "failed", "skipped", "not_started", "cancelled", "unschedulable", "timed_out", "lost")
FAILURES = ("failed", "unschedulable", "timed_out", "lost")


def _main_status(pod):
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return statuses[0] if statuses else {}


def restarts(pod):
    return sum(s.get("restartCount") or 0 for s in (pod.get("status") or {}).get("containerStatuses") or [])


def _terminated(pod):
    status = _main_status(pod)
    return (status.get("state") or {}).get("terminated") or (status.get("lastState") or {}).get("terminated") or {}


def termination_message(pod):
    """The (first) container's termination message: what it wrote to its terminationMessagePath, or
    with FallbackToLogsOnError the last lines of its log when it failed and wrote nothing. None if empty."""
    return _terminated(pod).get("message") or None


def _condition(pod, kind):
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def scheduler_reason(pod):
    """Why the scheduler cannot place the pod, from its PodScheduled condition."""
    cond = _condition(pod, "PodScheduled")
    if cond and cond.get("status") == "False" and cond.get("message"):
        return cond.get("reason") or "Unschedulable", cond["message"]
    return "Unschedulable", "the pod was not scheduled in time"


def slim_pod(pod):
    """The part of a Pod that ``classify``, ``restarts`` and the planner read (its node annotation among it); the
    rest is dropped.

    The engine keeps one pod per node for the whole run, so at thousands of
    nodes this is most of its memory.
    """
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    slim_meta = {"name": meta.get("name"), "labels": meta.get("labels") or {}}
    for key in ("resourceVersion", "deletionTimestamp"):
        if meta.get(key):
            slim_meta[key] = meta[key]
    node = (meta.get("annotations") or {}).get(ANNOTATION_NODE)
    if node:
        slim_meta["annotations"] = {ANNOTATION_NODE: node}   # whose pod it is: a resumed run's plan goes by it
    slim_status = dict((k, status[k]) for k in ("phase", "reason", "message") if k in status)
    if status.get("conditions"):
        slim_status["conditions"] = [dict((k, c[k]) for k in ("type", "status", "reason", "message") if k in c)
                                     for c in status["conditions"]]
    if status.get("containerStatuses"):
        slim_status["containerStatuses"] = [
            dict((k, s[k]) for k in ("restartCount", "state", "lastState") if k in s)
            for s in status["containerStatuses"]]
    return {"metadata": slim_meta, "spec": {"nodeName": (pod.get("spec") or {}).get("nodeName")},
            "status": slim_status}


# Container waiting reasons that the kubelet will not get past by itself: the node fails at
# once instead of after pending_timeout. ErrImagePull alone is not here: the kubelet retries it
# once before ImagePullBackOff, and a registry hiccup should get that retry.
FATAL_WAITING_REASONS = ("ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError",
                         "CreateContainerError", "RunContainerError")


def fatal_event(event):
    """(reason, message) if a Warning event says the pod can never start, else None. Pure.

    A hostPath volume of type Directory whose path does not exist keeps the pod in
    ContainerCreating forever; only the kubelet's FailedMount event says why.
    """
    message = event.get("message") or ""
    if event.get("reason") == "FailedMount" and "hostPath type check failed" in message:
        return "HostPathMissing", message
    return None


def outcome(kind, reason=None, message=None, exit_code=None):
    return {"outcome": kind, "reason": reason, "message": message, "exit_code": exit_code}


def classify(pod, pending_for, opts, fatal=None):
    """Decide a node's outcome from its pod, or None while it is still going.

    pod: the latest Pod dict, or None if it vanished. pending_for: seconds the
    pod has been Pending as the engine observed it. opts: the run opts.
    fatal: (reason, message) from ``fatal_event`` for this pod, if any.
    """
    if pod is None:
        return outcome("lost", "PodDisappeared",
                       "the pod was deleted before it finished (node removed, evicted, or deleted by someone else)")
    status = pod.get("status") or {}
    phase = status.get("phase")
    term = _terminated(pod)
    # The termination message is not the outcome's message: it carries a result or a log tail
    # (see ``termination_message``), which the engine reads on its own.
    if phase == "Succeeded":
        return outcome("succeeded", term.get("reason") or "Completed", None, term.get("exitCode", 0))
    if phase == "Failed":
        reason = status.get("reason") or term.get("reason") or "Failed"
        return outcome("failed", reason, status.get("message"), term.get("exitCode"))
    if phase == "Running" and opts["restart_policy"] == "OnFailure" and restarts(pod) > opts["restart_limit"]:
        return outcome("failed", "RestartLimitExceeded",
                       "restarted %d times, more than restart_limit=%d" % (restarts(pod), opts["restart_limit"]),
                       term.get("exitCode"))
    if phase in (None, "Pending"):
        waiting = (_main_status(pod).get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in FATAL_WAITING_REASONS:
            return outcome("failed", waiting["reason"], waiting.get("message"))
        if fatal:
            return outcome("failed", fatal[0], fatal[1])
    if phase in (None, "Pending") and pending_for >= opts["pending_timeout"]:
        scheduled = _condition(pod, "PodScheduled")
        if not pod.get("spec", {}).get("nodeName") and not (scheduled and scheduled.get("status") == "True"):
            reason, message = scheduler_reason(pod)
            return outcome("unschedulable", reason, message)
        waiting = (_main_status(pod).get("state") or {}).get("waiting") or {}
        return outcome("failed", waiting.get("reason") or "PendingTimeout",
                       waiting.get("message") or "still Pending after pending_timeout=%ds" % opts["pending_timeout"])
    return None


def summarize(records, desired, duration):
    """Counts per outcome. ``desired`` is the number of eligible nodes (fail_fast may skip some of them)."""
    counts = dict((k, 0) for k in OUTCOMES)
    for rec in records:
        counts[rec["outcome"]] = counts.get(rec["outcome"], 0) + 1
    counts["desired"] = desired
    counts["duration_s"] = round(duration, 3)
    return counts


def failed_nodes(records):
    return [rec["node"] for rec in records if rec["outcome"] in FAILURES]
