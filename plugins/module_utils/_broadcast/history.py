# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A cron broadcast's run history, and a broadcast's run record: their one writer and their one reader.

* The history is a ConfigMap per cron broadcast (``data.runs``: the last N runs, newest first,
  size-capped; ``data.last_run``: the newest without its nodes). The runner writes it after each
  run; broadcast_info reads it.
* The run record is the ConfigMap that owns one run's pods (see run.py); its ``data`` holds the
  run's state, and broadcast_info reads that too.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import Conflict, NodeopsError

HISTORY_MAX_BYTES = 512 * 1024     # a ConfigMap holds 1 MiB; stay well below
LOG_CHARS_IN_HISTORY = 2000


def history_entry(run_id, job, started, finished, state, result):
    """One run as it is kept in the history. Logs are trimmed so that many runs fit."""
    nodes = []
    for rec in (result or {}).get("nodes") or []:
        rec = dict(rec)
        if rec.get("log") and len(rec["log"]) > LOG_CHARS_IN_HISTORY:
            rec["log"] = rec["log"][-LOG_CHARS_IN_HISTORY:]
        nodes.append(rec)
    return {"run_id": run_id, "job": job, "started_at": started, "finished_at": finished, "state": state,
            "summary": (result or {}).get("summary"), "nodes": nodes}


def cap_history(runs, keep, max_bytes=HISTORY_MAX_BYTES):
    """Newest first: keep at most ``keep`` runs, then drop node logs, then old runs, to fit ``max_bytes``. Pure."""
    runs = list(runs)[:keep]

    def size():
        return len(json.dumps(runs))

    if size() > max_bytes:
        for run in runs[1:]:
            for rec in run.get("nodes") or []:
                rec["log"] = None
    while len(runs) > 1 and size() > max_bytes:
        runs.pop()
    if size() > max_bytes and runs:
        for rec in runs[0].get("nodes") or []:
            rec["log"] = None
    return runs


def record_history(client, namespace, name, entry, keep, labels):
    """Prepend ``entry`` to the history ConfigMap, with optimistic concurrency."""
    path = client.core_path("configmaps", namespace, name)
    for _attempt in range(5):
        current = client.get_or_none(path)
        runs = json.loads((current or {}).get("data", {}).get("runs") or "[]")
        runs = [r for r in runs if r.get("run_id") != entry["run_id"]]
        runs = cap_history([entry] + runs, keep)
        data = {"runs": json.dumps(runs, sort_keys=True), "last_run": json.dumps(
            {k: entry[k] for k in ("run_id", "job", "started_at", "finished_at", "state", "summary")},
            sort_keys=True)}
        try:
            if current is None:
                client.create(client.core_path("configmaps", namespace), {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": namespace, "labels": labels}, "data": data})
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
                updated_at=None):
    """The ``data`` of a run record (only the fields given). ``progress``: the counts so far, while it runs."""
    data = {"state": state}
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


def read_record(configmap):
    """What a run record says: state, started_at, finished_at, failed_nodes, and while it runs its progress
    (counts per outcome so far, active and waiting nodes) and when that was last updated."""
    data = configmap.get("data") or {}
    return {"state": data.get("state"), "started_at": data.get("started_at"), "finished_at": data.get("finished_at"),
            "failed_nodes": json.loads(data.get("failed_nodes") or "[]"),
            "progress": json.loads(data["progress"]) if data.get("progress") else None,
            "updated_at": data.get("updated_at")}
