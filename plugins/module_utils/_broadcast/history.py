# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A cron broadcast's run history, and a broadcast's run record: their one writer and their one reader.

* The history is a ConfigMap per cron broadcast (``data.runs``: the last N runs, newest first,
  size-capped; ``data.last_run``: the newest without its nodes). The runner writes it after each
  run; broadcast_info reads it.
* It is also the record of what was removed. Each node keeps its preset's ``result``: what it
  removed (``images_removed`` or ``files_removed``, at most 50 names, the node script's bound) with the
  count and ``bytes_freed``; each run keeps ``removed``, the totals over its nodes (a dry run's figures are
  counted apart, as what it would have freed). How it stays under
  ``HISTORY_MAX_BYTES`` is ``cap_history``'s order: the totals and the counts are the last to go.
* The run record is the ConfigMap that owns one run's pods (see record.py); its ``data`` holds the
  run's state, and broadcast_info reads that too.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import datetime
import json

from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.apply import ANNOTATION_CREATED_BY, MANAGED_BY
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import Conflict, NodeopsError

HISTORY_MAX_BYTES = 512 * 1024     # a ConfigMap holds 1 MiB; stay well below
LOG_CHARS_IN_HISTORY = 2000
# The lists of removed things in the presets' results, and their counts.
REMOVED_LISTS = (("images_removed", "images_removed_count"), ("files_removed", "files_removed_count"))


def removed_totals(nodes):
    """What a run removed over all its nodes: items and bytes, and the nodes that reported it. Pure.

    A dry run removes nothing: its nodes' figures are what it would have removed, counted apart
    (``dry_run_nodes``, ``would_free_bytes``, ``would_remove_items``), never as freed.
    """
    totals = {"bytes_freed": 0, "items": 0, "nodes_reporting": 0,
              "dry_run_nodes": 0, "would_free_bytes": 0, "would_remove_items": 0}
    for rec in nodes:
        res = rec.get("result") or {}
        if "bytes_freed" not in res:
            continue
        items = sum(res.get(count) or len(res.get(names) or []) for names, count in REMOVED_LISTS
                    if names in res or count in res)
        if res.get("dry_run"):
            totals["dry_run_nodes"] += 1
            totals["would_free_bytes"] += res.get("bytes_freed") or 0
            totals["would_remove_items"] += items
            continue
        totals["nodes_reporting"] += 1
        totals["bytes_freed"] += res.get("bytes_freed") or 0
        totals["items"] += items
    return totals


def history_entry(run_id, job, started, finished, state, result, reason=None):
    """One run as it is kept in the history, with its ``removed`` totals. Logs are trimmed so that many runs fit.
    ``reason``: why a run started no pod (state ``skipped``: a freeze)."""
    nodes = []
    for rec in (result or {}).get("nodes") or []:
        rec = dict(rec)
        if rec.get("log") and len(rec["log"]) > LOG_CHARS_IN_HISTORY:
            rec["log"] = rec["log"][-LOG_CHARS_IN_HISTORY:]
        nodes.append(rec)
    entry = {"run_id": run_id, "job": job, "started_at": started, "finished_at": finished, "state": state,
             "summary": (result or {}).get("summary"), "limits": (result or {}).get("limits"),
             "removed": removed_totals(nodes), "nodes": nodes}
    if (result or {}).get("disk_pressure", {}).get("nodes"):
        entry["disk_pressure"] = result["disk_pressure"]   # which nodes were under DiskPressure, which still are
    if reason:
        entry["reason"] = reason
    return entry


def _drop_logs(run):
    for rec in run.get("nodes") or []:
        rec["log"] = None


def _drop_lists(run):
    """Keep each node's counts and bytes, drop the names (``lists_dropped`` says so)."""
    for rec in run.get("nodes") or []:
        res = rec.get("result")
        if res and any(res.get(items) for items, _count in REMOVED_LISTS):
            rec["result"] = dict(res, lists_dropped=True, **dict((items, None) for items, _count in REMOVED_LISTS
                                                                 if items in res))


def _fold_skipped(run):
    """Skipped nodes become a count per reason (``skipped_by_reason``): a selector may skip thousands."""
    nodes = run.get("nodes") or []
    skipped = [rec for rec in nodes if rec.get("outcome") == "skipped"]
    if not skipped:
        return
    counts = dict(run.get("skipped_by_reason") or {})
    for rec in skipped:
        counts[rec.get("reason") or ""] = counts.get(rec.get("reason") or "", 0) + 1
    run["skipped_by_reason"] = counts
    run["nodes"] = [rec for rec in nodes if rec.get("outcome") != "skipped"]


def _drop_nodes(run, fits):
    """The last resort for one huge run: its succeeded nodes go, then (while still too big) the others,
    the last first; ``nodes_dropped`` says how many. Its summary and totals still count them all."""
    nodes = run.get("nodes") or []
    run["nodes"] = [rec for rec in nodes if rec.get("outcome") != "succeeded"]
    while run["nodes"] and not fits():
        del run["nodes"][-max(1, len(run["nodes"]) // 10):]
    run["nodes_dropped"] = run.get("nodes_dropped", 0) + len(nodes) - len(run["nodes"])


def cap_history(runs, keep, max_bytes=HISTORY_MAX_BYTES):
    """Newest first: keep at most ``keep`` runs, then shed detail until they fit in ``max_bytes``. Pure: the
    runs given are not changed.

    The order, each step only while still too big: the older runs' logs, oldest first; the older runs'
    skipped nodes, folded into a count per reason (``skipped_by_reason``); the older runs' lists of removed
    names (their counts and bytes stay, ``lists_dropped``), oldest first; the newest run's skipped nodes,
    folded; its logs; the oldest runs, one by one; the newest run's lists; its succeeded nodes, then its
    other nodes (``nodes_dropped``). Every run kept keeps its summary and ``removed`` totals.
    """
    runs = copy.deepcopy(list(runs)[:keep])

    def fits():
        return len(json.dumps(runs)) <= max_bytes

    for step in (_drop_logs, _fold_skipped, _drop_lists):
        for run in reversed(runs[1:]):
            if fits():
                return runs
            step(run)
    for step in (_fold_skipped, _drop_logs):
        if runs and not fits():
            step(runs[0])
    while len(runs) > 1 and not fits():
        runs.pop()
    if runs and not fits():
        _drop_lists(runs[0])
    if runs and not fits():
        _drop_nodes(runs[0], fits)
    return runs


LAST_RUN_KEYS = ("run_id", "job", "started_at", "finished_at", "state", "summary", "removed", "reason", "skipped_runs",
                 "first_skipped_at")


def with_run(runs, entry):
    """``runs`` (newest first) with ``entry`` first. Pure. A skipped run right after another skipped for the same
    reason (one freeze) is folded into it: one entry with ``skipped_runs`` (how many) and ``first_skipped_at``,
    so that a freeze over many fire times does not push the runs that did something out of the history."""
    if entry.get("state") == "skipped" and runs and runs[0].get("state") == "skipped" and \
            runs[0].get("reason") == entry.get("reason"):
        folded = dict(entry, skipped_runs=(runs[0].get("skipped_runs") or 1) + 1,
                      first_skipped_at=runs[0].get("first_skipped_at") or runs[0].get("started_at"))
        return [folded] + runs[1:]
    return [entry] + runs


def record_history(client, namespace, name, entry, keep, labels):
    """Prepend ``entry`` to the history ConfigMap, with optimistic concurrency."""
    path = client.core_path("configmaps", namespace, name)
    for _attempt in range(5):
        current = client.get_or_none(path)
        runs = json.loads((current or {}).get("data", {}).get("runs") or "[]")
        runs = [r for r in runs if r.get("run_id") != entry["run_id"]]
        runs = cap_history(with_run(runs, entry), keep)
        data = {"runs": json.dumps(runs, sort_keys=True), "last_run": json.dumps(
            {k: runs[0][k] for k in LAST_RUN_KEYS if k in runs[0]}, sort_keys=True)}
        try:
            if current is None:
                client.create(client.core_path("configmaps", namespace), {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": namespace, "labels": labels,
                                 "annotations": {ANNOTATION_CREATED_BY: MANAGED_BY}}, "data": data})
            else:
                current["data"] = data
                client.request("PUT", path, body=current)
            return
        except Conflict:
            continue   # it changed since it was read: read it again
    raise NodeopsError("could not update history %s/%s: it kept changing" % (namespace, name))


def read_runs(configmap):
    """The recorded runs of a history ConfigMap (or None), newest first."""
    return json.loads(((configmap or {}).get("data") or {}).get("runs") or "[]")


def record_data(state, started_at=None, finished_at=None, eligible=None, failed_nodes=None, progress=None,
                updated_at=None, timeout=None):
    """The ``data`` of a run record (only the fields given). ``progress``: the counts so far, while it runs;
    ``timeout``: the run's own, by which a record nobody writes to any more is known to be abandoned."""
    data = {"state": state}
    if timeout is not None:
        data["timeout_s"] = str(int(timeout))
    if progress is not None:
        data["progress"] = json.dumps(progress, sort_keys=True)
    if updated_at is not None:
        data["updated_at"] = updated_at
    if started_at is not None:
        data["started_at"] = started_at
    if finished_at is not None:
        data["finished_at"] = finished_at
    if eligible is not None:
        data["eligible"] = str(eligible)
    if failed_nodes is not None:
        data["failed_nodes"] = json.dumps(sorted(failed_nodes))
    return data


# How long past a run's own timeout a record that still says "running" may go unwritten: its process is gone.
ABANDONED_GRACE_SECONDS = 120


def read_record(configmap, now=None):
    """What a run record says: state, started_at, finished_at, failed_nodes, and while it runs its progress
    (counts per outcome so far, active and waiting nodes) and when that was last updated. A record that
    says "running" but that nothing has written for longer than the run's own timeout (and a grace) is
    ``abandoned``: the process that ran it died (``now``: a datetime, when known). Pure."""
    data = configmap.get("data") or {}
    out = {"state": data.get("state"), "started_at": data.get("started_at"), "finished_at": data.get("finished_at"),
           "failed_nodes": json.loads(data.get("failed_nodes") or "[]"),
           "progress": json.loads(data["progress"]) if data.get("progress") else None,
           "updated_at": data.get("updated_at")}
    last = _parse_time(data.get("updated_at") or data.get("started_at"))
    timeout = int(data["timeout_s"]) if (data.get("timeout_s") or "").isdigit() else None
    if out["state"] == "running" and now is not None and last is not None and timeout is not None:
        silent = (now - last).total_seconds()
        if silent > timeout + ABANDONED_GRACE_SECONDS:
            out.update(state="abandoned", abandoned_reason="nothing has written this run's progress for %ds, longer "
                       "than its timeout of %ds: the process that ran it is gone" % (silent, timeout))
    return out


def _parse_time(text):
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return None
