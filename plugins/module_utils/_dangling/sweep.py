# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sweep of ownerless Jobs that exist already: which Jobs it takes (pure), and the sweep.

It lists a page at a time, so memory does not grow with the number of Jobs, and writes gently: with a
concurrency that adapts to the apiserver's latency up to a ceiling, pausing for a 429's Retry-After, and
at most a given rate if one is set (``_kube/pacing.py``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import concurrent.futures
import datetime
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube import pacing
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import (
    ApiError, NotFound, TooManyRequests, WatchExpired)
from ansible_collections.nodeops.kubernetes.plugins.module_utils._dangling.policy import GITOPS_ANNOTATIONS, GITOPS_LABELS


def _parse_time(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def finished_at(job):
    """When the Job reached Complete or Failed, or None while it runs."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            stamp = cond.get("lastTransitionTime") or (job.get("status") or {}).get("completionTime")
            return _parse_time(stamp) if stamp else None
    return None


def sweep_verdict(job, now, opts):
    """Why a Job is spared, or None if the sweep takes it. Pure."""
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    ns = meta.get("namespace")
    if meta.get("ownerReferences"):
        return "owned"
    if meta.get("deletionTimestamp"):
        return "being deleted"
    if (job.get("spec") or {}).get("ttlSecondsAfterFinished") is not None:
        return "has a TTL"   # not dangling: the TTL controller will remove it
    if opts["include_namespaces"] and ns not in opts["include_namespaces"]:
        return "namespace not included"
    if ns in opts["exclude_namespaces"]:
        return "namespace excluded"
    if opts["opt_out_label"] in labels:
        return "opted out"
    if opts["skip_gitops_managed"] and (any(a in annotations for a in GITOPS_ANNOTATIONS)
                                        or any(label in labels for label in GITOPS_LABELS)):
        return "gitops-managed"
    done = finished_at(job)
    if done is None:
        return "not finished"
    if (now - done).total_seconds() <= opts["ttl_seconds"]:
        return "finished recently"
    return None


class Stopped(Exception):
    """The sweep was asked to stop (``should_stop``): it listed no further, and its writes in flight finished."""


# At most this many error messages in the result (``errors_total`` counts them all): a sweep of 100,000 Jobs
# that cannot write any keeps a result of a few KiB.
MAX_ERRORS = 20
# A Job whose writes are refused with 429 for this long in a row is given up (an error): the apiserver is
# saturated, or this client's priority level has no seats at all. The sweep then stops (it lists no further and
# sends no other write): every other Job would wait as long, one after the other.
THROTTLED_GIVE_UP_S = 300.0
# A 5xx or a broken connection is tried again this many times (after a pause, as a 429 without Retry-After).
SERVER_ERROR_RETRIES = 3
# At most this many progress snapshots are kept in the result (older ones are thinned out, every other one).
MAX_PROGRESS = 20


class Sweep:
    """One sweep over the cluster's Jobs. Counters are kept, Jobs are not: memory stays flat.

    A Job counts as taken once its write succeeded (in check mode, once it was found): a write that failed is
    in ``errors``, and one cut short was never counted. ``should_stop`` (a callable) is asked before each Job
    and each page; when it says yes the sweep lists no further, lets the writes in flight finish and raises
    Stopped, its counts whole.

    Writes go through a ``pacing.Pacer``: at most ``concurrency`` in flight (the ceiling), fewer when the
    apiserver's latency rises or it answers 429, and at most ``rate`` per second if given. ``progress`` (a
    callable) receives a snapshot (so far, rate, time left) every ``progress_every_s`` seconds."""

    def __init__(self, client, opts, action, check_mode, page_size=500, concurrency=10, max_names=100, now=None,
                 should_stop=None, rate=None, progress=None, progress_every_s=10.0, clock=time.monotonic,
                 pacer=None):
        self.client = client
        self.opts = opts
        self.action = action
        self.check_mode = check_mode
        self.page_size = page_size
        self.concurrency = concurrency
        self.max_names = max_names
        self.now = now or datetime.datetime.now(datetime.timezone.utc)
        self.counts, self.spared, self.names, self.errors = {}, {}, [], []
        self.errors_total = 0
        self.stats = {"pages": 0, "restarts": 0, "examined": 0}
        self._lock = threading.Lock()
        self._pending = []
        self.should_stop = should_stop or (lambda: False)
        self._stopping = False
        self.clock = clock
        self.pacer = pacer or pacing.Pacer(ceiling=concurrency, rate=rate, clock=clock)
        self.progress_cb = progress
        self.progress_every_s = progress_every_s
        self.progress = []
        self._left_for_next = 0
        self._throttled_out = False
        self._stop_requested = False   # should_stop() said yes (SIGTERM): that stop wins over a throttled one
        self._started = clock()
        self._next_progress = self._started + progress_every_s
        self._remaining = None
        self._last_path = False

    def run(self):
        # With include_namespaces only those namespaces are listed (less to read, less RBAC needed).
        paths = ([self.client.group_path("batch/v1", "jobs", ns) for ns in self.opts["include_namespaces"]]
                 or ["/apis/batch/v1/jobs"])
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            for i, path in enumerate(paths):
                self._last_path = i == len(paths) - 1
                self._list(path)
            self._drain()
        except Stopped:
            if self._stop_requested or not self._throttled_out:
                raise
            # Given up on 429s: not a stop somebody asked for. The result says so (an error, and the Jobs left).
        finally:
            # Every write submitted is done (counted, or in errors) before this returns or raises. On the way out
            # of an error, the writes not sent yet are not sent.
            if sys.exc_info()[0] is not None:
                self._stopping = True
            self._pool.shutdown(wait=True)
        if self._left_for_next and (self._stop_requested or not self._throttled_out):
            raise Stopped()   # the stop came while the last writes waited for a slot: those were not sent
        return self.result()

    def result(self):
        """What the sweep took and spared so far (all of it once ``run`` returned)."""
        total = sum(self.counts.values())
        elapsed = self.clock() - self._started
        return {"action": self.action, "total": total, "per_namespace": dict(self.counts), "names": sorted(self.names),
                "names_truncated": total > len(self.names), "spared": dict(self.spared), "errors": list(self.errors),
                "errors_total": self.errors_total, "stats": dict(self.stats, wall_s=round(elapsed, 2),
                                                                 jobs_per_s=round(total / elapsed, 1) if elapsed else None,
                                                                 stopped_throttled=self._throttled_out,
                                                                 left_for_next=self._left_for_next),
                "pacing": self.pacer.snapshot(), "progress": list(self.progress)}

    # ---------------------------------------------------------------- progress

    def progress_snapshot(self):
        """How far the sweep is: examined and taken so far, the rate, and (when the apiserver said how many
        Jobs are left to list) the time left. Pure arithmetic on the counters."""
        elapsed = max(self.clock() - self._started, 1e-9)
        examined, taken = self.stats["examined"], sum(self.counts.values())
        snap = {"elapsed_s": round(elapsed, 1), "examined": examined, "taken": taken, "errors": self.errors_total,
                "jobs_per_s": round(taken / elapsed, 1), "in_flight_limit": int(self.pacer.limit),
                "remaining_to_examine": None, "eta_s": None}
        if self._remaining is not None and self._last_path and examined:
            snap["remaining_to_examine"] = self._remaining
            snap["eta_s"] = round(self._remaining * elapsed / examined, 1)
        return snap

    def _tick(self):
        if self.clock() < self._next_progress:
            return
        self._next_progress = self.clock() + self.progress_every_s
        snap = self.progress_snapshot()
        self.progress.append(snap)
        if len(self.progress) > MAX_PROGRESS:
            self.progress = self.progress[::2]   # thinned: the run's shape stays, the size does not grow
            self.progress_every_s *= 2
        if self.progress_cb is not None:
            self.progress_cb(snap)

    # ---------------------------------------------------------------- listing

    def _list(self, path):
        query = {"limit": self.page_size}
        while True:
            self._check_stop()
            try:
                # Retried for at most 10 s: a stop (SIGTERM, 90 s of grace) is not kept waiting behind a list.
                page = self.client.get(path, query, timeout=60, retry_for=10)
            except WatchExpired:
                # The continue token expired (410): finish the writes in flight, then list again. The
                # Jobs already handled are gone (or carry a TTL) and are not taken twice.
                self._drain()
                self.stats["restarts"] += 1
                query = {"limit": self.page_size}
                continue
            self.stats["pages"] += 1
            meta = page.get("metadata") or {}
            items = page.get("items") or []
            # The apiserver says how many items are left after this page (without a selector it does).
            left = meta.get("remainingItemCount") if meta.get("continue") else 0
            self._remaining = None if left is None else left + len(items)
            for job in items:
                self._consider(job)
                if self._remaining is not None:
                    self._remaining -= 1
            self._tick()
            cont = meta.get("continue")
            if not cont:
                return
            query = {"limit": self.page_size, "continue": cont}

    def _check_stop(self):
        if self._stopping or self._asked():
            self._stopping = True   # pool threads waiting for a slot send nothing more
            self._drain()
            raise Stopped()

    def _taken(self, ns, name):
        with self._lock:
            self.counts[ns] = self.counts.get(ns, 0) + 1
            if len(self.names) < self.max_names:
                self.names.append("%s/%s" % (ns, name))

    def _error(self, ns, name, msg):
        with self._lock:
            self.errors_total += 1
            if len(self.errors) < MAX_ERRORS:
                self.errors.append("%s/%s: %s" % (ns, name, msg))

    def _consider(self, job):
        self._check_stop()
        self._tick()
        self.stats["examined"] += 1
        why = sweep_verdict(job, self.now, self.opts)
        if why:
            self.spared[why] = self.spared.get(why, 0) + 1
            return
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        if self.check_mode:
            self._taken(ns, name)
            return
        # Queued writes are bounded (a few per pool thread): the list stays pages ahead of the writes at most.
        # Each write takes its slot from the pacer in its pool thread: a thread waiting for a slot holds
        # none, so the writes in flight always finish and free one.
        while len(self._pending) >= self.concurrency * 2:
            done, waiting = concurrent.futures.wait(self._pending, timeout=0.5,
                                                    return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                future.result()   # a bug in _write surfaces here, not silently
            self._pending = list(waiting)
            self._tick()
            self._check_stop()
        self._pending.append(self._pool.submit(self._write, ns, name))

    def _drain(self):
        """Wait for the writes submitted; a stop asked meanwhile reaches the ones still waiting for a slot."""
        while self._pending:
            done, waiting = concurrent.futures.wait(self._pending, timeout=0.5)
            self._pending = list(waiting)
            self._stop_asked()
            for future in done:
                future.result()   # a bug in _write surfaces here, not silently

    def _stop_asked(self):
        if not self._stopping and self._asked():
            self._stopping = True
        return self._stopping

    def _asked(self):
        if self.should_stop():
            self._stop_requested = True
        return self._stop_requested

    # ---------------------------------------------------------------- writing (pool threads)

    def _write(self, ns, name):
        """One Job's write, its slot acquired. 429: the pacer pauses every write for its Retry-After and the
        write is tried again (given up after THROTTLED_GIVE_UP_S); a 5xx or a broken connection is tried
        again SERVER_ERROR_RETRIES times. Once the sweep is stopping, a write not yet sent is left for the
        next sweep (not counted, not an error)."""
        path = self.client.group_path("batch/v1", "jobs", ns, name)
        first_throttle, server_errors = None, 0
        while True:
            if not self.pacer.acquire(stop=self._stop_asked):
                with self._lock:
                    self._left_for_next += 1
                return
            started = self.clock()
            released = False
            try:
                if self.action == "delete":
                    self.client.delete(path, propagation="Background", retry_for=0, missing_ok=False)
                else:
                    self.client.merge_patch(path, {"spec": {"ttlSecondsAfterFinished": self.opts["ttl_seconds"]}})
                self.pacer.release(self.clock() - started)
                released = True
                self._taken(ns, name)
                return
            except NotFound:
                self.pacer.release(self.clock() - started)
                released = True
                return   # gone already (someone else took it): not counted
            except TooManyRequests as exc:
                self.pacer.release(self.clock() - started, throttled_for=exc.retry_after or 0)
                released = True
                first_throttle = started if first_throttle is None else first_throttle
                if self.clock() - first_throttle > THROTTLED_GIVE_UP_S:
                    self._error(ns, name, "still refused with 429 after %ds, so the sweep stopped (the Jobs it had not "
                                "written yet are left for the next sweep): %s" % (THROTTLED_GIVE_UP_S, exc.msg))
                    with self._lock:
                        if not self._stopping:   # a sweep already stopping (SIGTERM) stays that kind of stop
                            self._throttled_out = True
                    self._stopping = True
                    return
            except ApiError as exc:
                retry = exc.retryable and server_errors < SERVER_ERROR_RETRIES
                self.pacer.release(self.clock() - started, server_error=retry)
                released = True
                if not retry:
                    self._error(ns, name, exc.msg)
                    return
                server_errors += 1
            finally:
                if not released:   # anything else (a credential refresh that failed, a bug): the slot is freed
                    self.pacer.release(self.clock() - started)


def progress_line(snap):
    """One progress snapshot as a log line. Pure."""
    line = "swept %d of %d examined, %.1f Jobs/s, %d in flight at most, %d errors" % (
        snap["taken"], snap["examined"], snap["jobs_per_s"], snap["in_flight_limit"], snap["errors"])
    if snap["eta_s"] is not None:
        line += ", about %ds left (%d Jobs to examine)" % (snap["eta_s"], snap["remaining_to_examine"])
    return line


def run(client, opts, action, check_mode, **settings):
    """Delete (or set the TTL of) finished ownerless Jobs. Returns counts per namespace and a capped name list."""
    return Sweep(client, opts, action, check_mode, **settings).run()
