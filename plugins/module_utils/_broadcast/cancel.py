# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a run stops before its pods have all ended, each node keeping an outcome (see run.py).

* ``time_out``: the run's timeout came. Waiting nodes are not_started, active pods read, deleted, timed_out.
* ``stop_starting``: the window closed, the failure budget is spent or the health gate shut. Waiting nodes are
  not_started; running pods finish, but with fail_fast (``fail_fast``), which deletes them too (cancelled).
* ``abort``: an exception (an API error, SIGTERM) broke the run off. Waiting nodes are not_started,
  active pods read and deleted (cancelled) within ABORT_SECONDS.

Every active pod's log is read before it is deleted (``cancel``). ``Cancel`` is a part of
``run.BroadcastRun``: its methods use the run's state.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from concurrent.futures import ThreadPoolExecutor

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import limits, outcomes
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import ApiError

# An abort (SIGTERM, an API error) reads and deletes the active pods within this, in parallel: the runner's
# grace period (RUNNER_GRACE_SECONDS in _cron/manifests.py) leaves room after it for the record and history.
ABORT_SECONDS = 20


class Cancel:
    """Nodes given their outcome before their pod ended (a part of ``run.BroadcastRun``)."""

    def time_out(self):
        """The run's timeout came: nothing more starts, and every node not done gets its outcome now."""
        self.finish_batch(wait=True)
        if self.lost() is not None:
            self.hand_over(self.lost())   # the pods are another holder's: delete none
            return
        self.cancel("not_started", "NotStarted", "not started before the run timeout", active=False)
        self.cancel("timed_out", "RunTimeout",
                    "still running when timeout=%ds was reached" % self.opts["timeout"], active=True,
                    best_effort=True)

    def stop_starting(self, why):
        """No new pod from now on (the window, the failure budget, the health gate): the nodes not started get
        ``not_started``. Pods running finish,
        unless fail_fast, which deletes them too."""
        self.stopped = why
        self.finish_batch(wait=True)
        if self.opts["failure_policy"] == "fail_fast" and why[0] == limits.BUDGET_EXHAUSTED:
            if self.lost() is not None:
                self.hand_over(self.lost())   # the pods are another holder's: delete none
                return
            self.fail_fast()
            return
        self.log("%s; pods already running finish" % why[1])
        self.cancel("not_started", why[0], why[1], active=False)

    def fail_fast(self):
        """A node failed under fail_fast: the others not started are not_started, the running ones cancelled."""
        failure_seen = self.failures[0]
        self.log("fail_fast: %s failed; stopping" % failure_seen)
        self.cancel("not_started", "FailFast", "not started: fail_fast after a failure on %s" % failure_seen,
                    active=False)
        self.cancel("cancelled", "CancelledByFailFast", "deleted by fail_fast after a failure on %s"
                    % failure_seen, active=True, best_effort=True)

    def abort(self, cause):
        """Stop a run an exception broke off: nothing more is created, active pods are deleted
        (best effort, retried), and every node gets an outcome for the result."""
        try:
            self.finish_batch(wait=True)
        except Exception:   # noqa: BLE001 -- a batch that cannot be collected is left to the record's cleanup
            pass
        why = "%s: %s" % (type(cause).__name__, getattr(cause, "msg", None) or cause)
        self.cancel("not_started", "NotStarted", "not started: the run was aborted (%s)" % why, active=False)
        self.cancel("cancelled", "RunAborted", "deleted: the run was aborted (%s)" % why, active=True, best_effort=True,
                    within=ABORT_SECONDS)

    def hand_over(self, holder):
        """Another process took the run over (this one could not renew its lease for longer than a lease):
        nothing more is created and nothing is deleted; the nodes not done are the new holder's to finish
        and record (``cancelled``, reason HandedOver, here)."""
        self.handed_over = holder
        self.log("run %s was taken over by %s: stopping, deleting nothing" % (self.run_id, holder))
        try:
            self.finish_batch(wait=True)
        except Exception:   # noqa: BLE001 -- the new holder adopts whatever was made
            pass
        message = "handed over to %s, which drives the run from here and records this node's result" % holder
        for r in [r for r in self.runs.values() if r.state != "done"]:
            verdict = outcomes.outcome("cancelled", "HandedOver", message)
            verdict.update(started_mono=r.created_at, finished_mono=None)
            self.set_done(r, verdict)

    def cancel(self, kind, reason, message, active, best_effort=False, within=None):
        """Give every waiting (``active=False``) or created (``active=True``) node run its outcome now.

        Active pods have their log read and are deleted in parallel; ``within`` seconds (a SIGTERM's
        grace period) bound every call's retries, so that the outcomes are in hand before it is over."""
        now = self.clock.monotonic()
        chosen = [r for r in self.runs.values() if r.state == ("created" if active else "waiting")]
        with_pods = [r for r in chosen if active and r.pod is not None]
        if with_pods:
            self.read_and_delete(with_pods, best_effort, within, delete=not self.fenced())
        for r in chosen:
            verdict = outcomes.outcome(kind, reason, message)
            verdict.update(started_mono=r.created_at, finished_mono=now if active else None)
            self.set_done(r, verdict)

    def read_and_delete(self, node_runs, best_effort, within, delete=True):
        """Read each node run's pod log, then delete the pod, all in parallel, each within ``within`` seconds.

        ``delete`` False (this process cannot prove it still holds the run, ``record.fenced``): the logs are
        read, no pod is deleted, and the run record keeps owning them."""
        deadline = time.monotonic() + within if within is not None else None
        if not delete:
            self.warnings.append("this process could not prove it still holds run %s (%s): it deleted none of its "
                                 "%d active pods; run record %s keeps owning them"
                                 % (self.run_id, self.renewer.last_error, len(node_runs), self.record_name))

        def stop(r):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            log = self.read_log(r.pod_name, retry_for=left)
            return log, delete and self.delete_pod(r.pod_name, best_effort, retry_for=left)

        with ThreadPoolExecutor(max_workers=min(self.create_workers, len(node_runs))) as pool:
            for r, (log, _deleted) in zip(node_runs, pool.map(stop, node_runs)):
                self.take_log(r, log)

    def delete_pod(self, name, best_effort, retry_for=None):
        """Delete one pod now (the client retries through a restart). Best effort: a failure is a
        warning, and the pod is left to the run record that owns it. Never while this process cannot
        prove it holds the run (``record.fenced``, checked for each pod: deletes can take long)."""
        if self.fenced():
            self.warnings.append("did not delete pod %s: this process could not prove it still holds run %s (%s); "
                                 "it stays owned by run record %s" % (name, self.run_id, self.renewer.last_error,
                                                                      self.record_name))
            return False
        try:
            self.client.delete(self.client.core_path("pods", self.namespace, name), grace_period=0,
                               retry_for=retry_for)
            return True
        except ApiError as exc:
            if not best_effort:
                raise
            self.warnings.append("could not delete pod %s: %s; it stays owned by run record %s"
                                 % (name, exc.msg, self.record_name))
            return False
