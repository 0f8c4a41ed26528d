# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The in-cluster runner of dangling_job_ttl's scheduled sweep (``sweep_schedule``).

It is shipped as cron_broadcast's runner is: this module and what it imports (``shipping.closure``,
standard library only) in an immutable ConfigMap named after its digest, checked against the digest in
the CronJob before it runs, on a stock ``python`` image. Its input is ``runner.json``: the sweep's
validated options, its action and limits, and where its history goes.

It runs ``sweep.Sweep`` once with the pod's ServiceAccount (which may list Jobs and delete or patch
them, and read and replace its history ConfigMap, nothing else), records the sweep in the history
ConfigMap (the same bounded format as the cron broadcasts'), prints one JSON summary line (also the
pod's termination message) and exits 1 when a Job could not be written. On SIGTERM it stops before the
next Job, lets the writes in flight finish, and records what it did as ``interrupted``: nothing is lost.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import signal
import sys
import uuid

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import history
from ansible_collections.nodeops.kubernetes.plugins.module_utils._dangling import sweep
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.api import ConnectionConfig, RestClient
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import NodeopsError
from ansible_collections.nodeops.kubernetes.plugins.module_utils._node.main import (
    TERMINATION_ENV, TERMINATION_LOG, write_termination_message)

INPUT_FILE = "/opt/nodeops/runner.json"
# A test hook: the runner sends itself SIGTERM after it has examined this many Jobs.
FAULT_ENV = "NODEOPS_TEST_SIGTERM_AFTER_JOBS"


# Seconds between progress lines in the log (30 by default).
PROGRESS_ENV = "NODEOPS_SWEEP_PROGRESS_SECONDS"


# At most this many Job names per sweep in the history (``sweep_max_names`` may allow more in the module's
# result): the history stays far below a ConfigMap's 1 MiB whatever the options.
HISTORY_NAMES_MAX = 100


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _say(text):
    sys.stdout.write("%s %s\n" % (_now(), text))
    sys.stdout.flush()


def new_run_id():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%m%d%H%M%S") + uuid.uuid4().hex[:4]


def history_entry(run_id, job, started, finished, state, result, error=None):
    """One sweep as the history keeps it: when, what it took and what it spared (with why), its errors. Pure."""
    failed_writes = result.get("errors_total", len(result.get("errors") or []))
    # The error that ended the sweep comes first: it is never the one cut off.
    errors = ([error] if error else []) + list(result.get("errors") or [])
    names = list(result["names"])[:HISTORY_NAMES_MAX]
    summary = {"action": result["action"], "taken": result["total"], "examined": result["stats"]["examined"],
               "spared": sum(result["spared"].values()), "errors": failed_writes + (1 if error else 0),
               "jobs_per_s": result["stats"].get("jobs_per_s"), "throttled": (result.get("pacing") or {}).get("throttled", 0),
               "stopped_throttled": bool(result["stats"].get("stopped_throttled")),
               "left_for_next": result["stats"].get("left_for_next", 0)}
    return {"run_id": run_id, "job": job, "started_at": started, "finished_at": finished, "state": state,
            "summary": summary, "removed": {"jobs": result["total"] if result["action"] == "delete" else 0,
                                            "ttl_set": result["total"] if result["action"] == "set_ttl" else 0},
            "per_namespace": result["per_namespace"], "spared_by_reason": result["spared"],
            "names": names, "names_truncated": result["total"] > len(names), "errors": errors[:20]}


def main(environ=None):
    environ = os.environ if environ is None else environ
    input_file = environ.get("NODEOPS_RUNNER_INPUT") or (
        # In the pod: the copy _node/boot.py checked against the CronJob's digest, never the mount.
        os.path.join(environ["NODEOPS_CODE_ROOT"], "runner.json") if environ.get("NODEOPS_CODE_ROOT") else INPUT_FILE)
    with open(input_file) as f:
        runner_input = json.load(f)
    config = ConnectionConfig.in_cluster()
    if environ.get("NODEOPS_SA_DIR"):   # a local run with a copied token
        config.ca_file = os.path.join(environ["NODEOPS_SA_DIR"], "ca.crt")
        config.token_file = os.path.join(environ["NODEOPS_SA_DIR"], "token")
    client = RestClient(config)
    run_id, job, started = new_run_id(), environ.get("NODEOPS_JOB_NAME"), _now()
    kept = runner_input["history"]
    # SIGTERM only sets a flag: the sweep asks it before each Job and page, so it never cuts a write short or
    # lands between a write and its count, and the history is always written.
    signalled = []
    signal.signal(signal.SIGTERM, lambda signum, frame: signalled.append(signum))
    fault_after = int(environ.get(FAULT_ENV) or 0)
    sweeper = None

    def should_stop():
        if fault_after and sweeper.stats["examined"] == fault_after and not signalled:
            os.kill(os.getpid(), signal.SIGTERM)   # the test hook: a real signal, through the real handler
        return bool(signalled)
    sweeper = sweep.Sweep(client, runner_input["options"], runner_input["action"], False,
                          page_size=runner_input["page_size"], concurrency=runner_input["concurrency"],
                          max_names=runner_input["max_names"], should_stop=should_stop,
                          rate=runner_input.get("rate"), progress=lambda snap: _say(sweep.progress_line(snap)),
                          progress_every_s=float(environ.get(PROGRESS_ENV) or 30))
    _say("sweep %s of %s/%s starts (job %s): %s finished ownerless Jobs older than %ds" % (
        run_id, kept["namespace"], runner_input["sweep"], job, runner_input["action"],
        runner_input["options"]["ttl_seconds"]))
    state, error, code = "succeeded", None, 0
    try:
        sweeper.run()
    except sweep.Stopped:
        state, code = "interrupted", 143
        _say("SIGTERM: stopped listing; the writes in flight finished")
    except NodeopsError as exc:
        state, error, code = "failed", exc.msg, 1
        _say("sweep failed: %s" % exc.msg)
    # SIGTERM after the last Job: the sweep is whole, recorded and reported as succeeded, exit 0.
    result = sweeper.result()
    _say("%s: %s" % (state, sweep.progress_line(sweeper.progress_snapshot())))
    if result["errors"] and state == "succeeded":
        state, code = "failed", 1
    entry = history_entry(run_id, job, started, _now(), state, result, error)
    history.record_history(client, kept["namespace"], kept["configmap"], entry, kept["keep"], kept["labels"])
    summary = {"run_id": run_id, "state": state, "summary": entry["summary"]}
    sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
    sys.stdout.flush()
    write_termination_message(summary, environ.get(TERMINATION_ENV, TERMINATION_LOG))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
