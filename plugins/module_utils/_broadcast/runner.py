# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The in-cluster runner that a cron_broadcast CronJob starts.

How the code gets there, and why: cron_broadcast writes this module and
everything it imports (``shipping.closure``: ``_broadcast``, ``_kube``, ``_node``
and ``_presets``, all standard-library only) into an immutable ConfigMap named
after its digest, and the CronJob mounts it under ``/opt/nodeops``. The pod's
command (``_node/boot.py``, inline in the CronJob) checks every file against the
digest in the CronJob, copies the checked files and runs this from the copy. So the runner is *the same engine* as
broadcast_job, imported by the same names, on a stock ``python`` image:
nothing to build, nothing to pip install. It talks to the API with ``_kube.api``
(http.client + ssl) and the pod's ServiceAccount token, re-read on every
request because it is rotated. Its input is ``runner.json``: the cron
broadcast's name, its validated options and where its history goes.

It logs progress lines for ``kubectl logs -f``, then one JSON summary line,
which it also writes as the pod's termination message (``kubectl get pod`` shows
it, and no log read is needed to see how the run ended); records the run in a history ConfigMap (last N runs, size-capped), which
outlives every pod and Job; exits 1 when the run failed under its failure
policy; and on SIGTERM records the run as interrupted and deletes its pods. A run due inside one of the
cron broadcast's freezes (``runner.json``'s ``freeze``, in UTC instants) starts no pod and is recorded as
``skipped`` with the freeze's reason.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import signal
import sys

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import freeze, history, limits
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.engine import Engine, new_run_id
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.naming import KIND_HISTORY, LABEL_CRON, LABEL_KIND
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.api import ConnectionConfig, RestClient
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.apply import LABEL_MANAGED_BY, MANAGED_BY
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import NodeopsError, RunAborted
from ansible_collections.nodeops.kubernetes.plugins.module_utils._node.main import (
    TERMINATION_ENV, TERMINATION_LOG, write_termination_message)

INPUT_FILE = "/opt/nodeops/runner.json"
# Next to the input: the rules of the window's time zone, which cron_broadcast ships, so that the
# runner's image needs no time zone database.
ZONE_FILE = "time-zone.tzif"


class Interrupted(Exception):
    """SIGTERM arrived (a deleted Job, or concurrencyPolicy Replace)."""


# A test hook: the runner sends itself SIGTERM as it enters this phase ("start", "drive", "stopping",
# "cleanup", "events", "history"), so that tests deliver the signal at each seam without relying on timing.
FAULT_ENV = "NODEOPS_TEST_SIGTERM_AT"
# Until the run's pods are being driven, and while they are, SIGTERM interrupts: the engine stops the run
# and keeps every node's outcome. From then on the run is being finished (clean-up, events, the history):
# SIGTERM is noted and the work goes on, so that the history gets the run and its results, whole.
INTERRUPTIBLE = ("start", "drive")


class Termination:
    """Where the run is, and whether SIGTERM came: the SIGTERM handler's state."""

    def __init__(self, fault_at=None, log=None):
        self.phase = "start"
        self.received_in = None
        self.fault_at = fault_at
        self.log = log or (lambda text: None)

    def enter(self, phase):
        self.phase = phase
        if phase == self.fault_at:
            self.fault_at = None
            os.kill(os.getpid(), signal.SIGTERM)

    def on_sigterm(self, signum, frame):
        if self.received_in is None:
            self.received_in = self.phase
        if self.phase in INTERRUPTIBLE:
            self.phase = "stopping"
            raise Interrupted()
        self.log("SIGTERM during %s: finishing the run's record and history first" % self.phase)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _say(text):
    sys.stdout.write("%s %s\n" % (_now(), text))
    sys.stdout.flush()


def run_to_the_end(engine, opts, run_id, term):
    """(state, result, exit code) of one run, whenever SIGTERM comes (see ``Termination``)."""
    state, result, code = "succeeded", None, 0
    try:
        term.enter("start")
        result = engine.run(opts, run_id)
    except RunAborted as exc:
        # The engine deleted the run's active pods and kept every node's outcome so far.
        interrupted = isinstance(exc.cause, Interrupted)
        state, result, code = ("interrupted", exc.result or None, 143) if interrupted else \
            ("failed", exc.result or None, 1)
        _say(("SIGTERM: " if interrupted else "run failed: ") + exc.msg)
    except Interrupted:
        # Before the run's first pod: nothing of it is in the cluster but what delete_runs finds, if this
        # process holds the run (a run another process holds is not this one's to delete).
        state, code = "interrupted", 143
        if engine.held:
            _say("SIGTERM: deleting this run's pods")
            engine.delete_runs(opts["name"], opts["namespace"], run_id)
        else:
            _say("SIGTERM before this process held the run: nothing of it to delete")
    except NodeopsError as exc:
        state, result, code = "failed", exc.result or None, 1
        _say("run failed: %s" % exc.msg)
    return state, result, code


def main(environ=None):
    environ = os.environ if environ is None else environ
    input_file = environ.get("NODEOPS_RUNNER_INPUT") or (
        # In the pod: the copy _node/boot.py checked against the CronJob's digest, never the mount.
        os.path.join(environ["NODEOPS_CODE_ROOT"], "runner.json") if environ.get("NODEOPS_CODE_ROOT") else INPUT_FILE)
    with open(input_file) as f:
        runner_input = json.load(f)
    opts, kept = runner_input["options"], runner_input["history"]
    if runner_input.get("time_zone_file"):
        limits.use_zone_file(opts["window"]["time_zone"],
                             os.path.join(os.path.dirname(input_file), runner_input["time_zone_file"]))
    sa_dir = environ.get("NODEOPS_SA_DIR")
    config = ConnectionConfig.in_cluster()
    if sa_dir:  # a local run with a copied token, as the tests do
        config.ca_file = os.path.join(sa_dir, "ca.crt")
        config.token_file = os.path.join(sa_dir, "token")
    client = RestClient(config)
    run_id = environ.get("NODEOPS_RUN_ID") or new_run_id()
    job = environ.get("NODEOPS_JOB_NAME")
    started = _now()
    labels = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_CRON: runner_input["cron"], LABEL_KIND: KIND_HISTORY}

    term = Termination(environ.get(FAULT_ENV), log=_say)
    frozen = freeze.frozen_at(runner_input.get("freeze"), datetime.datetime.now(datetime.timezone.utc))
    if frozen is not None:
        term.phase = "history"   # nothing to interrupt: a SIGTERM is noted, and the skip recorded
    signal.signal(signal.SIGTERM, term.on_sigterm)
    reason = None
    if frozen is not None:
        # Due inside a freeze: no pod is started; the history says so, and why.
        reason = "inside the freeze %s" % freeze.describe(frozen)
        _say("run %s of %s/%s skipped (job %s): %s; no pod started"
             % (run_id, opts["namespace"], opts["name"], job, reason))
        state, result, code = "skipped", None, 0
    else:
        _say("run %s of %s/%s starts (job %s)" % (run_id, opts["namespace"], opts["name"], job))
        engine = Engine(client, log=_say, phase=term.enter)
        state, result, code = run_to_the_end(engine, opts, run_id, term)
    term.enter("history")
    if term.received_in is not None and state not in ("interrupted", "skipped"):
        # SIGTERM came while the run was being finished: its results are whole, and it was interrupted.
        state, code = "interrupted", 143
    finished = _now()
    entry = history.history_entry(run_id, job, started, finished, state, result, reason=reason)
    history.record_history(client, opts["namespace"], kept["configmap"], entry, kept["keep"], labels)
    for rec in entry["nodes"]:
        _say("node %s: %s%s" % (rec["node"], rec["outcome"], " (%s)" % rec["reason"] if rec.get("reason") else ""))
    summary = {"run_id": run_id, "state": state, "summary": entry["summary"]}
    if reason:
        summary["reason"] = reason
    sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
    sys.stdout.flush()
    write_termination_message(summary, environ.get(TERMINATION_ENV, TERMINATION_LOG))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
