# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who drives a run: a lease kept in the annotations of its run record.

Two processes can be given one run_id: a resume while the first attempt still runs, two playbooks,
a retried runner. Deterministic pod names already keep it to one pod per node. But if both drove the
run, the first to finish would delete the record, and with it (the garbage collector) the pods the
other still watches: that one would report wrong outcomes, and a pod it made afterwards could run
with nobody watching it.

So one process drives a run at a time. The one that creates the record holds it, and renews it every
RENEW_SECONDS with a JSON patch whose ``test`` op makes the write conditional on still being the
holder; its progress and its last write to the record are conditional the same way. Another process
that finds the record:

* takes it over when the record no longer says ``running`` (finished, aborted, cleanup-incomplete),
  or when its holder is gone: it ran on this host, in this pid namespace since this boot, and its
  process has exited, or nothing has written the record for LEASE_SECONDS as this process observes
  it (its resourceVersion unchanged, on this process's own monotonic clock, as Kubernetes' leader
  election observes a Lease, so that no two hosts' clocks are ever compared; a read that fails, or
  reads far apart, start the observation again);
* fails with RunHeld, naming the holder, as soon as it sees the holder write: it is alive.

Taking over is a compare-and-swap on the record's resourceVersion, so of two takers one wins.

A holder fences itself by its own clock: it deletes nothing (pods, the record) unless a renewal that
it sent less than LEASE_SECONDS - FENCE_MARGIN_SECONDS ago succeeded, or one made right then does.
Otherwise it may have been taken over without knowing it, and it hands the run over (run.py).

``judge`` is pure; ``acquire`` and ``Renewer`` make the requests.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import socket
import threading
import time
import uuid

from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import ApiError, Conflict, Invalid, NotFound, RunHeld

ANNOTATION_HOLDER = "nodeops.io/run-holder"
ANNOTATION_RENEWED = "nodeops.io/run-renewed-at"
LEASE_SECONDS = 15    # a holder that has not written the record for this long is gone
RENEW_SECONDS = 5     # how often the holder renews; also a renewal's time limit
FENCE_MARGIN_SECONDS = 4   # a holder stops deleting this long before its last renewal could have run out
POLL_SECONDS = 1      # how often a waiting process reads the record


def _json_pointer(key):
    return key.replace("~", "~0").replace("/", "~1")


HOLDER_POINTER = "/metadata/annotations/" + _json_pointer(ANNOTATION_HOLDER)
RENEWED_POINTER = "/metadata/annotations/" + _json_pointer(ANNOTATION_RENEWED)


def _local_marks():
    """What tells this host's processes apart from another's with the same hostname: the boot and the pid
    namespace (containers with the host's network share its name, not its pids)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()[:8]
        pidns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return "unknown"
    return "%s-%d" % (boot, pidns)


def this_process():
    """The identity a process holds runs under: host (a pod's name, in the runner), pid, a random token and
    the marks (``_local_marks``) that make the pid meaningful on this host."""
    return "%s/%d/%s/%s" % (socket.gethostname(), os.getpid(), uuid.uuid4().hex[:6], _local_marks())


def _holder_parts(holder):
    """(host, pid or None, marks or None) of a holder's identity."""
    parts = (holder or "").split("/")
    pid = parts[1] if len(parts) > 1 else ""
    return parts[0], int(pid) if pid.isdigit() else None, parts[3] if len(parts) > 3 else None


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:   # PermissionError: it exists, as someone else's
        return True
    return True


def annotations(holder, now):
    return {ANNOTATION_HOLDER: holder, ANNOTATION_RENEWED: now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}


def _parse_time(text):
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return None


def judge(record, me, now, alive=pid_alive):
    """Whether this process (``me``) may drive the run whose ``record`` it read at wall time ``now``. Pure,
    but for ``alive`` (is a pid of this host running). Returns ``(verdict, holder, age_s)``: ``mine``,
    ``free`` (take it over) or ``held`` (observe it; see ``acquire``)."""
    meta = record.get("metadata") or {}
    notes = meta.get("annotations") or {}
    holder = notes.get(ANNOTATION_HOLDER)
    renewed = _parse_time(notes.get(ANNOTATION_RENEWED))
    age = (now - renewed).total_seconds() if renewed else None
    if holder == me:
        return "mine", holder, age
    if not holder or (record.get("data") or {}).get("state") != "running":
        return "free", holder, age
    my_host, _my_pid, my_marks = _holder_parts(me)
    host, pid, marks = _holder_parts(holder)
    if (host, marks) == (my_host, my_marks) and my_marks not in (None, "unknown") and pid is not None \
            and not alive(pid):
        return "free", holder, age
    return "held", holder, age


def held_message(name, run_id, holder, age):
    when = "%.0f s" % age if age is not None else "a moment"
    return ("broadcast %s run %s is being driven by %s (it renewed its lease %s ago): one process drives a run at a "
            "time. Wait for it to end, or give a new run_id" % (name, run_id, holder, when))


def gone_message(name, run_id):
    return ("broadcast %s run %s: its run record was deleted while this process started it (the run finished in "
            "another process, which has its results, or was removed): nothing was made. Give a new run_id to run it "
            "again" % (name, run_id))


def takeover_patch(record, me, now, timeout):
    """The merge patch that takes ``record`` over: conditional on its resourceVersion, and the run's data
    reset to a run that starts now (no finished_at or failed_nodes of an earlier attempt). Pure."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"metadata": {"resourceVersion": record["metadata"]["resourceVersion"], "annotations": annotations(me, now)},
            "data": {"state": "running", "updated_at": stamp, "timeout_s": str(int(timeout)), "finished_at": None,
                     "failed_nodes": None, "progress": None}}


def acquire(client, path, me, name, run_id, clock, timeout, sleep=time.sleep, log=None):
    """Hold the run whose record is at ``path`` (it exists: its create answered Conflict). Returns the record.

    Raises RunHeld naming the holder once it is seen alive (it wrote the record), or when the record is gone."""
    observed, since, last_read = None, None, None
    while True:
        try:
            record = client.get(path)
        except NotFound:
            raise RunHeld(gone_message(name, run_id)) from None
        verdict, holder, age = judge(record, me, clock.now())
        version = record["metadata"].get("resourceVersion")
        now = clock.monotonic()
        if last_read is not None and now - last_read > 2 * POLL_SECONDS + 1:
            observed = None   # reads far apart (an outage, retried): silence seen through it proves nothing
        last_read = now
        if verdict == "mine":
            return record
        if verdict == "held":
            if observed is None:
                observed, since = version, now   # from now on, this process's own clock measures its silence
            elif version != observed:
                raise RunHeld(held_message(name, run_id, holder, age), holder=holder)   # it wrote: alive
            if now - since < LEASE_SECONDS:
                sleep(POLL_SECONDS)
                continue
        # Free, or held by one that has not written for a whole lease: take it, if nobody else did meanwhile.
        if log is not None:
            log("taking run %s over from %s" % (run_id, holder or "nobody"))
        try:
            return client.merge_patch(path, takeover_patch(record, me, clock.now(), timeout))
        except Conflict:
            observed, since = None, None   # it changed under us: judge it again
        except NotFound:
            raise RunHeld(gone_message(name, run_id)) from None


def conditional(me, ops):
    """A JSON patch applied only while ``me`` holds the run: its ``test`` op fails (422) otherwise. Pure."""
    return [{"op": "test", "path": HOLDER_POINTER, "value": me}] + list(ops)


def data_ops(data):
    """JSON patch ops that set these keys of a ConfigMap's ``data``. Pure."""
    return [{"op": "add", "path": "/data/" + _json_pointer(key), "value": value} for key, value in sorted(data.items())]


class Renewer:
    """Renews a held run's lease every RENEW_SECONDS, in a daemon thread, until ``stop``.

    ``valid_until`` (this process's monotonic clock) is how long the last successful renewal proves the
    lease ours. ``lost`` becomes the new holder's name (or "nobody: ...") when a renewal finds the run
    held by someone else or its record gone."""

    def __init__(self, client, path, me, clock, log=None, every=RENEW_SECONDS, sent=None):
        self.client, self.path, self.me, self.clock = client, path, me, clock
        self.log = log or (lambda msg: None)
        self.every = every
        self.lost = None
        # Proved by the write that made or took the record: from when it was sent, not answered.
        self.valid_until = (clock.monotonic() if sent is None else sent) + LEASE_SECONDS - FENCE_MARGIN_SECONDS
        self.last_error = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nodeops-lease", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=RENEW_SECONDS + 1)

    def _loop(self):
        while not self._stop.wait(self.every):
            try:
                if self.renew() is False:
                    return
            except Exception as exc:   # noqa: BLE001 -- a renewer that dies silently would let the lease lapse unseen
                self.last_error = str(exc)
                self.log("could not renew the run's lease: %s" % exc)

    def holds(self):
        """Whether this process may delete now: a renewal proves the lease for long enough, or one made now
        does. False once it is lost, or when it cannot be proved (the caller hands the run over)."""
        if self.lost is not None:
            return False
        if self.clock.monotonic() < self.valid_until:
            return True
        try:
            return self.renew() is True and self.clock.monotonic() < self.valid_until
        except ApiError as exc:   # unprovable is not held (never an interrupt: that must reach the caller)
            self.last_error = exc.msg
            return False

    def write(self, ops):
        """A conditional JSON patch of the record (``conditional``); returns the record, or raises Invalid
        when this process no longer holds the run."""
        return self.client.request("PATCH", self.path, body=conditional(self.me, ops),
                                   content_type="application/json-patch+json", timeout=self.every)

    def renew(self):
        """One conditional renewal. True when it went through, False once the lease is lost, None when it
        could not be made (an API error: ``holds`` then decides by the clock)."""
        with self._lock:
            sent = self.clock.monotonic()
            stamp = annotations(self.me, self.clock.now())[ANNOTATION_RENEWED]
            try:
                self.write([{"op": "add", "path": RENEWED_POINTER, "value": stamp}])
            except (Invalid, NotFound):
                return self._find_holder()
            except ApiError as exc:
                self.last_error = exc.msg
                self.log("could not renew the run's lease: %s" % exc.msg)
                return None
            self.valid_until = max(self.valid_until, sent + LEASE_SECONDS - FENCE_MARGIN_SECONDS)
            return True

    def _find_holder(self):
        """The test failed (another holder) or the record is gone: say who has the run now."""
        try:
            record = self.client.get(self.path, timeout=self.every, retry_for=0)
        except NotFound:
            self.lost = "nobody: the run record was deleted (state=absent, or by hand)"
        except ApiError:
            return None   # not known yet
        else:
            holder = ((record.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_HOLDER)
            if holder == self.me:
                return None   # still ours: the patch failed for another reason
            self.lost = holder or "nobody: the record's lease was removed"
        self.log("lost the run to %s" % self.lost)
        return False
