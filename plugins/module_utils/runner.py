# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The in-cluster runner that a cron_broadcast CronJob starts.

How the code gets there, and why: cron_broadcast writes the engine's source
files (this one, engine.py and what it imports, all standard-library only)
into a ConfigMap, and the CronJob mounts them under
``/opt/nodeops/ansible_collections/nodeops/kubernetes/plugins/module_utils/``
with ``PYTHONPATH=/opt/nodeops``. So the runner is *the same engine* as
broadcast_job, imported by the same names, on a stock ``python`` image:
nothing to build, nothing to pip install. It talks to the API with rest.py
(http.client + ssl) and the pod's ServiceAccount token, re-read on every
request because it is rotated.

It logs progress lines for ``kubectl logs -f``, then one JSON summary line;
records the run in a history ConfigMap (last N runs, size-capped), which
outlives every pod and Job; exits 1 when the run failed under its failure
policy; and on SIGTERM records the run as interrupted and deletes its pods.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import signal
import sys

from ansible_collections.nodeops.kubernetes.plugins.module_utils import plan as planner
from ansible_collections.nodeops.kubernetes.plugins.module_utils.engine import Engine, new_run_id
from ansible_collections.nodeops.kubernetes.plugins.module_utils.errors import Conflict, NodeopsError, RunAborted
from ansible_collections.nodeops.kubernetes.plugins.module_utils.rest import ConnectionConfig, RestClient

HISTORY_MAX_BYTES = 512 * 1024     # a ConfigMap holds 1 MiB; stay well below
LOG_CHARS_IN_HISTORY = 2000


class Interrupted(Exception):
    """SIGTERM arrived (a deleted Job, or concurrencyPolicy Replace)."""


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _say(text):
    sys.stdout.write("%s %s\n" % (_now(), text))
    sys.stdout.flush()


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


def main(environ=None):
    environ = os.environ if environ is None else environ
    with open(environ.get("NODEOPS_TASK_FILE", "/opt/nodeops/task.json")) as f:
        task = json.load(f)
    spec, history = task["spec"], task["history"]
    sa_dir = environ.get("NODEOPS_SA_DIR")
    config = ConnectionConfig.in_cluster()
    if sa_dir:  # a local run with a copied token, as the tests do
        config.ca_file = os.path.join(sa_dir, "ca.crt")
        config.token_file = os.path.join(sa_dir, "token")
    client = RestClient(config)
    run_id = environ.get("NODEOPS_RUN_ID") or new_run_id()
    job = environ.get("NODEOPS_JOB_NAME")
    started = _now()
    labels = {planner.LABEL_MANAGED_BY: planner.MANAGED_BY, "nodeops.io/cron-broadcast": task["cron"],
              "nodeops.io/kind": "history"}

    def on_sigterm(signum, frame):
        raise Interrupted()

    signal.signal(signal.SIGTERM, on_sigterm)
    _say("run %s of %s/%s starts (job %s)" % (run_id, spec["namespace"], spec["name"], job))
    engine = Engine(client, log=_say)
    state, result, code = "succeeded", None, 0
    try:
        result = engine.run(spec, run_id)
    except RunAborted as exc:
        # The engine deleted the run's active pods and kept every node's outcome so far.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        interrupted = isinstance(exc.cause, Interrupted)
        state, result, code = ("interrupted", exc.result or None, 143) if interrupted else \
            ("failed", exc.result or None, 1)
        _say(("SIGTERM: " if interrupted else "run failed: ") + exc.msg)
    except Interrupted:
        # Before the run's first pod: nothing of it is in the cluster but what delete_runs finds.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        state, code = "interrupted", 143
        _say("SIGTERM: deleting this run's pods")
        engine.delete_runs(spec["name"], spec["namespace"], run_id)
    except NodeopsError as exc:
        state, result, code = "failed", exc.result or None, 1
        _say("run failed: %s" % exc.msg)
    finished = _now()
    entry = history_entry(run_id, job, started, finished, state, result)
    record_history(client, spec["namespace"], history["configmap"], entry, history["keep"], labels)
    for rec in entry["nodes"]:
        _say("node %s: %s%s" % (rec["node"], rec["outcome"], " (%s)" % rec["reason"] if rec.get("reason") else ""))
    sys.stdout.write(json.dumps({"run_id": run_id, "state": state, "summary": entry["summary"]},
                                sort_keys=True) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
