# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One run of a broadcast: its state, and the loop that drives it (act, observe).

``BroadcastRun`` holds everything of one run once: its options, run id, plan, the per-node
``NodeRun`` states and the counters that keep each loop proportional to what changed. The
decisions the loop makes are pure functions below it (``next_batch``, ``apply_sync``,
``apply_kubelet_event``, ``due_pending_timeouts``, ...), unit-tested with an injected clock.

* act: pods are created in slow-start batches (1, 2, 4, ...) capped by the free parallelism slots,
  by a thread pool while the main thread keeps applying watch events; a pod that exists already is
  adopted.
* observe: watchers on the run's pods, the nodes and the Warning events feed one queue; the main
  thread applies them and asks the pure ``outcomes.classify`` for each changed node's outcome.

Logs are read before any pod is deleted, and no run ends without every node's outcome.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import datetime
import json
import queue
import threading
import time

from concurrent.futures import ThreadPoolExecutor

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import events, history, inputs, limits, naming, outcomes, pods
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import shipping
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.options import resolve_parallelism
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.apply import LABEL_MANAGED_BY, MANAGED_BY
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import (
    ApiError,
    Conflict,
    NodeFailures,
    RunAborted,
    RunTimeout,
    TamperedCode,
    WindowClosed,
)
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.watch import Watcher
from ansible_collections.nodeops.kubernetes.plugins.module_utils._node.main import parse_result
from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets.base import CLUSTER_IMAGES, compact_images

CLEANUP_BASE_SECONDS = 60   # time limit of the pods' delete-collection: this, plus
CLEANUP_PODS_PER_SECOND = 20  # one second per this many pods of the run
CREATE_RETRY_SECONDS = 16   # a pod create is retried this long on retryable errors (the client's policy)
# An abort (SIGTERM, an API error) reads and deletes the active pods within this, in parallel: the runner's
# grace period (RUNNER_GRACE_SECONDS in _cron/manifests.py) leaves room after it for the record and history.
ABORT_SECONDS = 20
PROGRESS_SECONDS = 5        # the run record's progress is written at most this often (one request)


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class NodeRun:
    """One eligible node during a run (mutable, private to the run)."""

    __slots__ = ("node", "pod_name", "pod", "state", "created_at", "confirmed_at", "pending_since", "result",
                 "log", "log_future", "fatal", "message", "fetched")

    def __init__(self, node, pod_name):
        self.node = node
        self.pod_name = pod_name
        self.pod = None
        self.state = "waiting"       # waiting -> creating -> created -> done
        self.created_at = None
        self.confirmed_at = None     # time.monotonic() once the create was answered
        self.pending_since = None
        self.result = None
        self.log = None              # what the result returns as the node's log
        self.log_future = None       # a log read through the API, under way
        self.fatal = None            # (reason, message) of a kubelet event saying the pod can never start
        self.message = None          # the container's termination message, from the watched pod status
        self.fetched = None          # the log text read through the API, if it was read


# ------------------------------------------------------------------ the loop's decisions (pure)


def next_batch(waiting, active, parallelism, batch_size):
    """Take the next slow-start batch from the ``waiting`` deque: at most the free slots and the batch
    size. Node runs no longer waiting (cancelled, or their node left) are dropped."""
    count = min(parallelism - active, batch_size)
    batch = []
    while len(batch) < count and waiting:
        r = waiting.popleft()
        if r.state == "waiting":
            batch.append(r)
    return batch


def next_batch_size(size, errors):
    """Slow start: double after a clean batch, back to one after errors."""
    return 1 if errors else size * 2


def apply_kubelet_event(by_pod, event):
    """A Warning event on a pod: the node run it makes fatal (the pod can never start), or None."""
    r = by_pod.get(event["pod"])
    fatal = outcomes.fatal_event(event)
    if r is not None and fatal and r.state == "created" and r.fatal is None:
        r.fatal = fatal
        return r
    return None


def apply_pod_event(by_pod, event_type, pod):
    """A watch event on one of the run's pods: the node run whose pod changed, or None."""
    r = by_pod.get(pod["metadata"]["name"])
    if r is None or r.state == "waiting":
        return None
    r.pod = None if event_type == "DELETED" else pod
    return r if r.state == "created" else None


def apply_sync(by_pod, items, listed_from):
    """A fresh list of the run's pods, begun at ``listed_from`` (monotonic). Returns the node runs whose
    pod changed. A pod we saw created before the list began and that the list lacks is gone."""
    touched = set()
    seen = dict((p["metadata"]["name"], p) for p in items)
    for name, r in by_pod.items():
        if r.state == "creating" and name in seen:
            r.pod = seen[name]
            continue
        if r.state != "created":
            continue
        if name in seen:
            r.pod = seen[name]
            touched.add(r)
        elif r.pod is not None and (r.confirmed_at is None or listed_from >= r.confirmed_at):
            r.pod = None   # it existed when we created it (or adopted it) and is gone now
            touched.add(r)
    return touched


def track_pending(r, now, pending):
    """Keep ``pending`` (the node runs whose pod is Pending) and their start times current."""
    phase = ((r.pod or {}).get("status") or {}).get("phase")
    if r.pod is not None and phase in (None, "Pending"):
        if r.pending_since is None:
            r.pending_since = now
        pending.add(r)
    else:
        r.pending_since = None
        pending.discard(r)


def progress_counts(node_runs, active):
    """The counts a run in progress shows: outcomes so far, pods active, nodes waiting. Pure."""
    counts = {"desired": 0, "active": active, "waiting": 0}
    for r in node_runs:
        counts["desired"] += 1
        if r.state == "done":
            counts[r.result["outcome"]] = counts.get(r.result["outcome"], 0) + 1
        elif r.state == "waiting":
            counts["waiting"] += 1
    return counts


def trim_log(text, lines, max_bytes):
    """The last ``lines`` lines of ``text``, and at most its last ``max_bytes`` bytes. Pure."""
    if text is None or not lines:
        return None
    kept = "\n".join(text.rstrip("\n").split("\n")[-lines:]) + ("\n" if text.endswith("\n") else "")
    raw = kept.encode("utf-8")
    if len(raw) > max_bytes:
        kept = raw[-max_bytes:].decode("utf-8", "ignore")
    return kept


def finished_log(kind, message, opts, wants_result):
    """For a pod that ended ``kind`` (succeeded or failed) with termination ``message``: the log the
    result returns without any request, and whether to read the log through the API. Pure.

    Results and failure tails travel in the pod status the run already watches: a node script writes
    its result line to the termination message, and the kubelet's FallbackToLogsOnError puts a failed
    container's last log lines there. The log is read through the API only when a wanted result is not
    in the message (it did not fit), when a failed container left no message, or for a succeeded one
    when ``log_on_success`` asks for it.
    """
    lines = opts["log_tail_lines"]
    need_result = wants_result and parse_result(message) is None
    if kind == "failed" and message:
        return trim_log(message, lines, opts["log_max_bytes"]), need_result
    if kind == "failed":
        return None, bool(lines) or need_result
    return None, (bool(lines) and opts["log_on_success"]) or need_result


def last_line(text, limit=300):
    """The last non-empty line of ``text`` that is not a result line, cut at ``limit`` characters. Pure."""
    for line in reversed((text or "").splitlines()):
        line = line.strip()
        if line and parse_result(line) is None:
            return line[:limit]
    return None


# A result read from the log must be found whatever log_tail_lines says: the node script prints a note
# (and the runtime may interleave stderr) after its result line.
RESULT_TAIL_LINES = 20


def log_query(opts, for_result):
    """The query of a log read: the user's tail, or for a result at least RESULT_TAIL_LINES lines and
    64 KiB (a result line lists up to 50 items); ``take_log`` trims it to the log options. None: no read."""
    if not opts["log_tail_lines"] and not for_result:
        return None
    if for_result:
        return {"tailLines": max(opts["log_tail_lines"], RESULT_TAIL_LINES),
                "limitBytes": max(opts["log_max_bytes"], 65536)}
    return {"tailLines": opts["log_tail_lines"], "limitBytes": opts["log_max_bytes"]}


def due_pending_timeouts(pending, now, pending_timeout):
    """The node runs whose pod has been Pending for ``pending_timeout`` seconds by ``now``."""
    return [r for r in pending if now - r.pending_since >= pending_timeout]


def node_result(r, started_wall, started):
    """The result of one eligible node, as the module returns it."""
    res = r.result or outcomes.outcome("timed_out", "RunTimeout", None)
    pod = r.pod or {}

    def wall(mono):
        if mono is None:
            return None
        return iso(started_wall + datetime.timedelta(seconds=mono - started))

    duration = None
    if res.get("started_mono") is not None and res.get("finished_mono") is not None:
        duration = round(res["finished_mono"] - res["started_mono"], 3)
    rec = {"node": r.node, "pod": r.pod_name if r.state != "waiting" and res.get("started_mono") is not None
           else None,
           "outcome": res["outcome"], "exit_code": res.get("exit_code"), "reason": res.get("reason"),
           "message": res.get("message"), "log": r.log, "started_at": wall(res.get("started_mono")),
           "finished_at": wall(res.get("finished_mono")), "duration_s": duration,
           "restarts": outcomes.restarts(pod) if pod else 0}
    parsed = parse_result(r.message)
    if parsed is None:
        parsed = parse_result(r.fetched)
    if parsed is not None:
        rec["result"] = parsed
        if rec["outcome"] in outcomes.FAILURES and parsed.get("errors") and not rec["message"]:
            rec["message"] = "; ".join(parsed["errors"][:3])   # the node script's own words
    if not rec["message"] and rec["outcome"] in ("succeeded", "failed"):
        # A workload's own termination message, or the last line of a failed container's log tail.
        rec["message"] = last_line(r.message)
    return rec


def skipped_result(node, reason):
    return {"node": node, "pod": None, "outcome": "skipped", "exit_code": None, "reason": reason, "message": None,
            "log": None, "started_at": None, "finished_at": None, "duration_s": None, "restarts": 0}


def verified_code_digest(found, code, anchor=None):
    """The digest of an existing code ConfigMap, or TamperedCode. Pure.

    Nothing in a ConfigMap proves who wrote it (labels, annotations, owners and field managers can all be
    copied), so: its code must be exactly ours, its manifest must match its content, and its inputs must be
    either the ones the pods already made for this run check (``anchor``: the digest in their command) or,
    with no pod made yet, exactly what this attempt gathered."""
    data, name = found.get("data") or {}, found["metadata"]["name"]
    files = {}
    for path, ours in code["files"].items():
        theirs = data.get(shipping.config_key(path))
        if theirs is None or (path.endswith(".py") and theirs != ours):
            raise TamperedCode("ConfigMap %s does not hold this collection's %s: refusing to run it" % (name, path))
        files[path] = theirs
    text, digest = shipping.manifest(files)
    if found.get("immutable") is not True or data.get(shipping.MANIFEST_KEY) != text:
        raise TamperedCode("ConfigMap %s is not the immutable code this run wrote: refusing to run it" % name)
    if anchor is not None and digest != anchor:
        raise TamperedCode("ConfigMap %s is not the code this run's pods were made with: refusing to run it" % name)
    if anchor is None and files != code["files"]:
        raise TamperedCode("ConfigMap %s holds inputs this attempt did not gather (%s): refusing to run it. Delete "
                           "it, or start a new run_id" % (name, ", ".join(sorted(p for p in files
                                                                                 if files[p] != code["files"][p]))))
    return digest


def pod_code_digest(pod):
    """The manifest digest a pod of ours checks its code against (the argument after the check's source), or None."""
    for container in ((pod or {}).get("spec") or {}).get("containers") or []:
        argv = container.get("command") or []
        if "-c" in argv and len(argv) > argv.index("-c") + 2:
            return argv[argv.index("-c") + 2]
    return None


def _node_name_only(node):
    """All the run needs of a watched node: that it is there (or gone)."""
    return {"metadata": {"name": (node.get("metadata") or {}).get("name")}}


def _pod_event(event):
    """What the run reads of an Event: which pod, and what the kubelet said."""
    return {"metadata": {"resourceVersion": (event.get("metadata") or {}).get("resourceVersion")},
            "pod": (event.get("involvedObject") or {}).get("name"),
            "reason": event.get("reason"), "message": event.get("message")}


# ------------------------------------------------------------------ one run


class BroadcastRun:
    """One run, from its plan to its result. Made and started by ``Engine.run``."""

    def __init__(self, engine, opts, run_id, plan):
        self.client = engine.client
        self.clock = engine.clock
        self.log = engine.log
        self.phase = engine.phase
        self.create_workers = engine.create_workers
        self.initial_resource_version = engine.initial_resource_version
        self.opts = opts
        self.run_id = run_id
        self.plan = plan
        self.namespace = opts["namespace"]
        self.record_name = naming.record_name(opts["name"], run_id)
        self.warnings = []
        self.stats = {}
        self.runs = dict((n, NodeRun(n, naming.pod_name(opts["name"], run_id, n))) for n in plan["eligible"])
        self.by_pod = dict((r.pod_name, r) for r in self.runs.values())
        # Bookkeeping that keeps each loop proportional to what changed, not to the node count.
        self.remaining = len(self.runs)   # runs not done
        self.active = 0                   # runs with a pod created and not done
        self.failures = []                # nodes with a failure outcome, in the order seen
        self.touched = set()              # runs whose pod changed since the last classification
        self.pending = set()              # runs whose pod is Pending (pending_timeout is time-driven)
        self.waiting = collections.deque()
        self.batch, self.batch_size, self.batch_left = [], 1, 0   # the batch being created: [(run, future)]
        self.batch_lock = threading.Lock()
        self.events = queue.Queue()
        self.pool = None
        # When the run stops starting pods: the window's close and the failure budget, fixed at its start.
        self.closes_at = None
        self.budget = limits.failure_budget(opts.get("max_failures"), len(self.runs),
                                            fail_fast=opts["failure_policy"] == "fail_fast")
        self.stopped = None   # (reason, message) once it stopped starting pods
        self.owner = None     # the run record, once made
        self.code_digest = None   # the digest of the run's code ConfigMap, which its pods check
        self.progress_at, self.progress_sent = None, None

    # ---------------------------------------------------------------- start and end

    def execute(self, preflight):
        """Run to the end. Returns the result dict, or raises with it attached."""
        started = self.clock.monotonic()
        started_wall = self.clock.now()
        deadline = started + self.opts["timeout"]
        self.closes_at = limits.window_closes_at(self.opts.get("window"), started_wall)
        plan = self.plan
        self.log("run %s: %d eligible nodes, %d skipped" % (self.run_id, len(plan["eligible"]), len(plan["skipped"])))
        if not plan["eligible"]:
            return self.result(started, started_wall, timed_out=False)
        fresh = [n for n in plan["eligible"] if n not in plan["existing"]]
        if fresh:
            preflight(self.opts, self.run_id, fresh[0])
        owner = self.owner = self.ensure_record()
        for name in plan["to_delete"]:
            self.client.delete(self.client.core_path("pods", self.namespace, name))
        self.adopt(plan["existing"], started)
        watchers = self.watchers()
        parallelism = resolve_parallelism(self.opts["parallelism"], len(self.runs))
        self.pool = ThreadPoolExecutor(max_workers=min(self.create_workers, max(parallelism, 4)))
        for watcher in watchers:
            watcher.start()
        timed_out = aborted = None
        try:
            self.phase("drive")
            timed_out = self.drive(owner, parallelism, watchers[0], deadline)
        except BaseException as exc:   # noqa: B902 -- an interrupt must not lose the results either
            self.phase("stopping")
            aborted = exc
            self.log("run %s aborted (%s: %s); deleting its active pods" % (
                self.run_id, type(exc).__name__, getattr(exc, "msg", exc)))
            self.abort(exc)
        finally:
            for watcher in watchers:
                watcher.stop()
            self.pool.shutdown(wait=True)
        for r in self.runs.values():
            if r.log_future is not None:
                self.take_log(r, r.log_future.result())
        self.stats = {"relists": watchers[0].relists, "reconnects": watchers[0].reconnects + watchers[1].reconnects}
        self.phase("cleanup")
        try:
            remaining = self.cleanup()
        except ApiError as exc:
            # The results are in hand: a failed clean-up is a warning, never a lost run.
            remaining = None   # the record keeps owning what is left
            self.warnings.append("cleanup of run %s failed: %s; run record %s keeps owning what is left"
                                 % (self.run_id, exc.msg, self.record_name))
        self.finish_record(remaining, aborted)
        return self.result(started, started_wall, timed_out, aborted)

    def adopt(self, existing, started):
        """This run's pods that exist already (a resumed run) are watched, not made again."""
        for node, pod in existing.items():
            r = self.runs[node]
            r.state = "created"
            r.pod = pod
            r.created_at = started
            self.active += 1
            self.touched.add(r)
        self.waiting = collections.deque(self.runs[n] for n in self.plan["eligible"]
                                         if self.runs[n].state == "waiting")

    def watchers(self):
        """The run's pods, the nodes (to notice one that leaves mid-run at once) and the kubelet's
        Warning events (a pod that will never start, such as a missing hostPath)."""
        pods_watch = Watcher(self.client, self.client.core_path("pods", self.namespace),
                             naming.run_selector(self.opts["name"], self.run_id), self.events,
                             self.initial_resource_version, log=self.log, tag="pods", slim=outcomes.slim_pod)
        nodes_watch = Watcher(self.client, "/api/v1/nodes", None, self.events, self.plan.get("nodes_resource_version"),
                              log=self.log, tag="nodes", slim=_node_name_only)
        events_watch = Watcher(self.client, self.client.core_path("events", self.namespace), None, self.events,
                               log=self.log, tag="events", slim=_pod_event,
                               field_selector="involvedObject.kind=Pod,type=Warning")
        return [pods_watch, nodes_watch, events_watch]

    def ensure_record(self):
        """The run record: a ConfigMap that owns the run's pods, so none is ever left unowned. The code the
        node pods run goes beside it (``ensure_code``), never in it: the record is written as the run goes."""
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": self.record_name, "namespace": self.namespace,
                             "labels": {LABEL_MANAGED_BY: MANAGED_BY, naming.LABEL_BROADCAST: self.opts["name"],
                                        naming.LABEL_RUN: self.run_id, naming.LABEL_KIND: naming.KIND_RUN_RECORD}},
                "data": history.record_data("running", started_at=iso(self.clock.now()),
                                            eligible=len(self.plan["eligible"]), timeout=self.opts["timeout"])}
        workload = self.opts["workload"]
        # Gathered before the first write: a right it lacks (keep_images_in_cluster) must stop the run
        # before anything is created.
        cluster_images = None
        if CLUSTER_IMAGES in (workload.get("inputs") or []):
            cluster_images = json.dumps(compact_images(inputs.cluster_images(self.client)), separators=(",", ":"))
        made = True
        try:
            record = self.client.create(self.client.core_path("configmaps", self.namespace), body,
                                        retry_for=CREATE_RETRY_SECONDS)
        except Conflict:
            made = False
            record = self.client.get(self.client.core_path("configmaps", self.namespace, self.record_name))
        owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": record["metadata"]["name"],
                 "uid": record["metadata"]["uid"], "blockOwnerDeletion": False, "controller": False}
        if workload.get("node_script"):
            try:
                self.code_digest = self.ensure_code(owner, cluster_images)
            except TamperedCode:
                if made:   # no pod was made: the record we just wrote would only say "running" forever
                    self.client.delete(self.client.core_path("configmaps", self.namespace, self.record_name))
                raise
        return owner

    def ensure_code(self, owner, cluster_images):
        """The run's code ConfigMap (immutable, owned by the record); returns the digest its pods check.

        A resumed run finds it made: its files must be exactly this collection's node script, or the run
        stops before any pod (someone replaced it). Its inputs are the first attempt's, so that the pods
        of both attempts read the same."""
        code = pods.node_code(self.opts["workload"], cluster_images)
        body = pods.code_config_map(self.opts, self.run_id, code, owner)
        try:
            self.client.create(self.client.core_path("configmaps", self.namespace), body,
                               retry_for=CREATE_RETRY_SECONDS)
            return code["digest"]
        except Conflict:
            found = self.client.get(self.client.core_path("configmaps", self.namespace, body["metadata"]["name"]))
        anchor = None
        for pod_name in (self.runs[n].pod_name for n in self.plan["existing"]):
            anchor = pod_code_digest(self.client.get_or_none(self.client.core_path("pods", self.namespace, pod_name)))
            if anchor:
                break
        return verified_code_digest(found, code, anchor)

    # ---------------------------------------------------------------- act

    def drive(self, owner, parallelism, pods_watch, deadline):
        """The run's loop: create in slow-start batches, apply events; stop starting pods when the
        failure budget (fail_fast: 0) is spent or the window closes; stop at the timeout.

        Returns whether the run timed out.
        """
        synced = False
        while self.remaining:
            now = self.clock.monotonic()
            if now >= deadline:
                self.finish_batch(wait=True)
                self.cancel("not_started", "NotStarted", "not started before the run timeout", active=False)
                self.cancel("timed_out", "RunTimeout",
                            "still running when timeout=%ds was reached" % self.opts["timeout"], active=True,
                            best_effort=True)
                return True
            if self.stopped is None:
                # Checked right before starting pods: none starts after the window closes.
                why = limits.stop_starting(self.clock.now(), self.closes_at, len(self.failures), self.budget)
                if why:
                    self.stop_starting(why)
                elif synced:
                    self.launch(owner, parallelism, max(1, int(deadline - now)))
            self.observe(min(0.5, max(0.01, deadline - now)))
            if not synced and (pods_watch.relists or pods_watch.streaming):
                synced = True
            self.report_progress()
        return False

    def report_progress(self):
        """Write the counts so far to the run record: at most every PROGRESS_SECONDS, and only when they
        changed, so the cost is one request per few seconds whatever the number of nodes or events."""
        now = self.clock.monotonic()
        if self.progress_at is not None and now - self.progress_at < PROGRESS_SECONDS:
            return
        self.progress_at = now
        counts = progress_counts(self.runs.values(), self.active)
        if counts == self.progress_sent:
            return
        self.progress_sent = counts
        try:
            self.client.merge_patch(self.client.core_path("configmaps", self.namespace, self.record_name), {
                "data": history.record_data("running", progress=counts, updated_at=iso(self.clock.now()))})
        except ApiError as exc:
            self.log("could not write the run's progress: %s" % exc.msg)

    def stop_starting(self, why):
        """No new pod from now on: the nodes not started get ``not_started``. Pods running finish,
        unless fail_fast, which deletes them too."""
        self.stopped = why
        self.finish_batch(wait=True)
        if self.opts["failure_policy"] == "fail_fast" and why[0] == limits.BUDGET_EXHAUSTED:
            failure_seen = self.failures[0]
            self.log("fail_fast: %s failed; stopping" % failure_seen)
            self.cancel("not_started", "FailFast", "not started: fail_fast after a failure on %s" % failure_seen,
                        active=False)
            self.cancel("cancelled", "CancelledByFailFast", "deleted by fail_fast after a failure on %s"
                        % failure_seen, active=True, best_effort=True)
            return
        self.log("%s; pods already running finish" % why[1])
        self.cancel("not_started", why[0], why[1], active=False)

    def launch(self, owner, parallelism, deadline_s):
        """Start the next slow-start batch once the previous one is created. Never blocks."""
        if self.batch and not self.finish_batch(wait=False):
            return
        batch = next_batch(self.waiting, self.active, parallelism, self.batch_size)
        if not batch:
            return
        self.batch_left = len(batch)

        def created(_future):
            with self.batch_lock:
                self.batch_left -= 1
            self.events.put(("wake", None, None))   # the main loop collects the batch without waiting for a timeout

        for r in batch:
            r.state = "creating"
            future = self.pool.submit(self.create_pod, r, owner, deadline_s)
            future.add_done_callback(created)
            self.batch.append((r, future))

    def create_pod(self, node_run, owner, deadline_s):
        """Create one node's pod (in a pool thread). Returns (slim pod, None) or (None, the final ApiError).

        An API server that is away, throttling or failing (retryable errors) is retried with backoff, so
        a restart during creation does not fail the node; a pod that exists already is adopted.
        """
        pod = pods.build_pod(self.opts, self.run_id, node_run.node, owner=owner, active_deadline=deadline_s,
                             code_digest=self.code_digest)
        try:
            try:
                # Slimmed here, in the worker: a batch of thousands of full pods is never held at once.
                created = self.client.create(self.client.core_path("pods", self.namespace), pod,
                                             retry_for=CREATE_RETRY_SECONDS)
            except Conflict:
                # The pod of this (run, node) exists already (made by an earlier attempt whose answer
                # was lost, or by an earlier run): adopt it, never make a second one.
                created = self.client.get(self.client.core_path("pods", self.namespace, node_run.pod_name))
        except ApiError as exc:
            return None, exc
        return outcomes.slim_pod(created), None

    def finish_batch(self, wait):
        """Apply the created batch's results. Returns False if it is still being created and ``wait`` is False."""
        if not self.batch:
            return True
        if not wait:
            with self.batch_lock:
                if self.batch_left:
                    return False
        now = self.clock.monotonic()
        errors = created = 0
        for r, future in self.batch:
            pod, exc = future.result()
            if r.state != "creating":
                continue   # its node left meanwhile; a pod made anyway is removed by the run's cleanup
            if exc is not None:
                errors += 1
                verdict = outcomes.outcome("failed", "CreateFailed", exc.msg)
                verdict.update(finished_mono=now, started_mono=now)
                self.set_done(r, verdict)
                continue
            created += 1
            r.state = "created"
            self.active += 1
            r.created_at = now
            r.confirmed_at = time.monotonic()
            if r.pod is None:
                r.pod = pod   # no watch event yet: the create response is the oldest state there is
            self.touched.add(r)
        self.batch = []
        self.log("created %d pods (%d active)" % (created, self.active))
        self.batch_size = next_batch_size(self.batch_size, errors)
        return True

    # ---------------------------------------------------------------- observe

    def observe(self, wait):
        """Apply what the watchers saw (waiting up to ``wait`` seconds for it), then judge what changed."""
        seen = self._drain(wait)
        now = self.clock.monotonic()
        for kind, tag, payload in seen:
            if kind == "wake":
                continue
            if kind == "error" and tag == "events":
                # Without events (RBAC may not grant them) a missing hostPath ends at pending_timeout.
                self.log("not watching events (%s); pods that cannot start end at pending_timeout" % payload.msg)
            elif kind == "error":
                raise payload
            elif tag == "events":
                for event in (payload[0] if kind == "sync" else [payload[1]]):
                    r = apply_kubelet_event(self.by_pod, event)
                    if r is not None:
                        self.touched.add(r)
            elif tag == "nodes":
                self._nodes_changed(kind, payload, now)
            elif kind == "sync":
                items, _list_rv, listed_from = payload
                self.touched |= apply_sync(self.by_pod, items, listed_from)
            else:
                r = apply_pod_event(self.by_pod, *payload)
                if r is not None:
                    self.touched.add(r)
        self.judge(now)

    def _drain(self, wait):
        try:
            batch = [self.events.get(timeout=wait)]
        except queue.Empty:
            batch = []
        while True:
            try:
                batch.append(self.events.get_nowait())
            except queue.Empty:
                return batch

    def _nodes_changed(self, kind, payload, now):
        if kind == "event" and payload[0] == "DELETED":
            self.node_left(payload[1]["metadata"]["name"], now)
        elif kind == "sync":
            present = set(n["metadata"]["name"] for n in payload[0])
            for node in [n for n in self.runs if n not in present]:
                self.node_left(node, now)

    def judge(self, now):
        """Classify the node runs whose pod changed, and those whose pending_timeout has come."""
        touched, self.touched = self.touched, set()
        for r in touched:
            if r.state == "created":
                track_pending(r, now, self.pending)
        expired = due_pending_timeouts(self.pending, now, self.opts["pending_timeout"])
        for r in touched.union(expired):
            if r.state != "created":
                continue
            pending_for = now - r.pending_since if r.pending_since is not None else 0
            verdict = outcomes.classify(r.pod, pending_for, self.opts, r.fatal)
            if verdict is None:
                continue
            if verdict["outcome"] == "unschedulable" and self._node_gone(r.node):
                verdict = outcomes.outcome("lost", "NodeDeleted", "node %s was deleted during the run" % r.node)
            self.finish(r, verdict, now)

    def node_left(self, node, now):
        r = self.runs.get(node)
        if r is None or r.state == "done":
            return
        if r.state in ("created", "creating") and r.pod is not None:
            self.take_log(r, self.read_log(r.pod_name))
            self.client.delete(self.client.core_path("pods", self.namespace, r.pod_name), grace_period=0)
        verdict = outcomes.outcome("lost", "NodeDeleted", "node %s was deleted during the run" % node)
        verdict.update(started_mono=r.created_at, finished_mono=now)
        self.set_done(r, verdict)
        self.log("node %s left during the run: lost" % node)

    def _node_gone(self, node):
        return self.client.get_or_none(self.client.core_path("nodes", name=node)) is None

    def set_done(self, r, verdict):
        """The one place a node run becomes done: keeps the counters the loop relies on."""
        if r.state == "created":
            self.active -= 1
        if r.state != "done":
            self.remaining -= 1
        r.state = "done"
        r.result = verdict
        self.pending.discard(r)
        if verdict["outcome"] in outcomes.FAILURES:
            self.failures.append(r.node)

    def finish(self, r, verdict, now):
        verdict.update(started_mono=r.created_at, finished_mono=now)
        self.set_done(r, verdict)
        if r.pod is not None and verdict["outcome"] in ("succeeded", "failed"):
            r.message = outcomes.termination_message(r.pod)
            r.log, read = finished_log(verdict["outcome"], r.message, self.opts, self.wants_result)
            if read:
                # Read now, while the pod surely exists: before any cleanup or cancellation. The
                # pool finishes every read before the run deletes anything.
                r.log_future = self.pool.submit(self.read_log, r.pod_name, self.wants_result)

    @property
    def wants_result(self):
        return bool(self.opts["workload"].get("node_script"))

    def take_log(self, r, text):
        r.fetched = text
        r.log = trim_log(text, self.opts["log_tail_lines"], self.opts["log_max_bytes"])

    def read_log(self, pod_name, for_result=False, retry_for=None):
        """The tail of a pod's log, through the API. For a result, at least its last line, and up to
        64 KiB (a result line lists up to 50 items); ``take_log`` trims it to the log options."""
        query = log_query(self.opts, for_result)
        if query is None:
            return None
        path = self.client.core_path("pods", self.namespace, pod_name, "log")
        try:
            text = self.client.get(path, query, timeout=30 if retry_for is None else max(1, min(30, retry_for)),
                                   retry_for=retry_for)
        except ApiError as exc:
            return "(log unavailable: %s)" % (exc.reason or exc.status)
        return text if isinstance(text, str) else json.dumps(text)

    # ---------------------------------------------------------------- stop

    def cancel(self, kind, reason, message, active, best_effort=False, within=None):
        """Give every waiting (``active=False``) or created (``active=True``) node run its outcome now.

        Active pods have their log read and are deleted in parallel; ``within`` seconds (a SIGTERM's
        grace period) bound every call's retries, so that the outcomes are in hand before it is over."""
        now = self.clock.monotonic()
        chosen = [r for r in self.runs.values() if r.state == ("created" if active else "waiting")]
        with_pods = [r for r in chosen if active and r.pod is not None]
        if with_pods:
            deadline = time.monotonic() + within if within is not None else None

            def stop(r):
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                log = self.read_log(r.pod_name, retry_for=left)
                return log, self.delete_pod(r.pod_name, best_effort, retry_for=left)

            with ThreadPoolExecutor(max_workers=min(self.create_workers, len(with_pods))) as pool:
                for r, (log, _deleted) in zip(with_pods, pool.map(stop, with_pods)):
                    self.take_log(r, log)
        for r in chosen:
            verdict = outcomes.outcome(kind, reason, message)
            verdict.update(started_mono=r.created_at, finished_mono=now if active else None)
            self.set_done(r, verdict)

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

    def delete_pod(self, name, best_effort, retry_for=None):
        """Delete one pod now (the client retries through a restart). Best effort: a failure is a
        warning, and the pod is left to the run record that owns it."""
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

    def cleanup(self):
        """Delete pods per ``cleanup``; return how many of this run's pods remain (None if unknown).

        * Pods that have not finished (unschedulable, lost) are deleted now,
          whatever ``cleanup`` says: left alone they could start later, unwatched.
        * If no pod is to be kept, that is all: ``finish_record`` deletes the
          run record, and the garbage collector deletes the finished pods it
          owns (one request, however many nodes).
        * Otherwise the pods not kept are deleted as a collection. The apiserver
          deletes a collection one pod at a time, so its time limit grows with
          the run; if it still fails, the results are returned with a warning
          and the run record keeps owning the pods.
        """
        keep_phases = {"always": (), "on_success": ("Failed",), "never": ("Failed", "Succeeded")}[self.opts["cleanup"]]
        kept, undeleted = 0, 0
        for r in self.runs.values():
            phase = ((r.pod or {}).get("status") or {}).get("phase")
            if r.pod is None:
                continue
            if phase not in ("Succeeded", "Failed"):
                # Best effort, each on its own: one that cannot be deleted is a warning, and the record keeps
                # owning it; the others are still deleted, and the results are still returned.
                undeleted += 0 if self.delete_pod(r.pod_name, best_effort=True) else 1
            elif phase in keep_phases:
                kept += 1
        if not kept:
            return None if undeleted else 0
        query = {"labelSelector": naming.run_selector(self.opts["name"], self.run_id),
                 "fieldSelector": ",".join("status.phase!=%s" % phase for phase in keep_phases)}
        timeout = max(self.client.timeout, CLEANUP_BASE_SECONDS + len(self.runs) // CLEANUP_PODS_PER_SECOND)
        error = None
        for attempt in range(3):
            try:
                self.client.request("DELETE", self.client.core_path("pods", self.namespace), query=query,
                                    timeout=timeout)
                return kept
            except ApiError as exc:
                # A timed-out delete-collection stops part way; a new one takes up what is left.
                self.log("deleting the run's pods failed (attempt %d): %s" % (attempt + 1, exc.msg))
                error = exc.msg
        self.warnings.append("the pods of run %s were not all deleted (%s); they stay owned by ConfigMap %s: "
                             "remove them with state=absent and run_id=%s"
                             % (self.run_id, error, self.record_name, self.run_id))
        return None

    def finish_record(self, remaining, aborted=None):
        path = self.client.core_path("configmaps", self.namespace, self.record_name)
        failed = [r.node for r in self.runs.values() if r.result and r.result["outcome"] in outcomes.FAILURES]
        try:
            if remaining == 0:
                # No pod left to own: the results went back to the caller, the record is not needed.
                self.client.delete(path)
                return
            state = "aborted" if aborted is not None else "finished" if remaining is not None else "cleanup-incomplete"
            self.client.merge_patch(path, {"data": history.record_data(
                state, finished_at=iso(self.clock.now()), failed_nodes=failed,
                progress=progress_counts(self.runs.values(), self.active), updated_at=iso(self.clock.now()))})
        except ApiError as exc:
            # The results are in hand: report them, with the record left as it was.
            self.warnings.append("could not update run record %s: %s" % (self.record_name, exc.msg))

    # ---------------------------------------------------------------- report

    def post_events(self, results, summary):
        """Events on the Nodes the run failed on, and one on its run record. Best effort: a cluster that
        refuses them (RBAC) costs a warning, never the results."""
        now = iso(self.clock.now())
        posted = events.node_events(self.opts, self.run_id, results, now)
        if self.owner is not None:
            posted.append(events.run_event(self.opts, self.run_id, summary, self.owner, now))
        if not posted:
            return

        def post(body):
            try:
                self.client.create(self.client.core_path("events", body["metadata"]["namespace"]), body)
                return None
            except ApiError as exc:
                return "%s: %s" % (body["reason"], exc.msg)

        # The run's pool is shut down by now; events get a short-lived one of their own, as many
        # threads as the run's (a run that failed on 500 nodes posts 500 events).
        with ThreadPoolExecutor(max_workers=min(self.create_workers, len(posted))) as pool:
            refused = [why for why in pool.map(post, posted) if why]
        if refused:
            self.warnings.append("could not post %d of %d events (%s)" % (len(refused), len(posted), refused[0]))

    def result(self, started, started_wall, timed_out, aborted=None):
        opts, plan, runs = self.opts, self.plan, self.runs
        results = [node_result(runs[n], started_wall, started) for n in plan["eligible"]]
        results.extend(skipped_result(node, plan["skipped"][node]) for node in sorted(plan["skipped"]))
        results.sort(key=lambda rec: rec["node"])
        summary = outcomes.summarize(results, len(plan["eligible"]), self.clock.monotonic() - started)
        result = {"run_id": self.run_id, "summary": summary, "nodes": results, "changed": bool(plan["eligible"]),
                  "limits": {"window_closes_at": iso(self.closes_at) if self.closes_at else None,
                             "failure_budget": self.budget, "stopped_starting": self.stopped[0] if self.stopped else None}}
        self.phase("events")
        self.post_events(results, summary)
        if self.warnings:
            result["warnings"] = list(self.warnings)
        failed = outcomes.failed_nodes(results)
        if aborted is not None:
            raise RunAborted("broadcast %s run %s aborted by %s: %s; %d of %d nodes finished before it"
                             % (opts["name"], self.run_id, type(aborted).__name__,
                                getattr(aborted, "msg", None) or aborted,
                                sum(1 for rec in results if rec["node"] in runs
                                    and rec["outcome"] not in ("not_started", "cancelled")),
                                summary["desired"]), cause=aborted, **result) from aborted
        if timed_out:
            raise RunTimeout("broadcast %s run %s timed out after %ds: %d of %d nodes did not finish"
                             % (opts["name"], self.run_id, opts["timeout"], summary["timed_out"] + summary["not_started"],
                                summary["desired"]), **result)
        if self.stopped and self.stopped[0] == limits.BUDGET_EXHAUSTED and opts["failure_policy"] != "fail_fast":
            raise NodeFailures("broadcast %s run %s: failure budget of %d exhausted: %d of %d nodes failed (%s), "
                               "%d not started" % (opts["name"], self.run_id, self.budget, len(failed),
                                                   summary["desired"], ", ".join(failed[:10]),
                                                   summary["not_started"]), **result)
        if self.stopped and self.stopped[0] == limits.WINDOW_CLOSED and opts.get("fail_on_window_closed"):
            raise WindowClosed("broadcast %s run %s: %s; %d of %d nodes not started"
                               % (opts["name"], self.run_id, self.stopped[1][len("not started: "):],
                                  summary["not_started"], summary["desired"]), **result)
        if failed and (opts["failure_policy"] == "fail_fast" or opts["fail_on_node_failure"]):
            raise NodeFailures("broadcast %s run %s: %d of %d nodes failed: %s"
                               % (opts["name"], self.run_id, len(failed), summary["desired"],
                                  ", ".join(failed[:10]) + (" ..." if len(failed) > 10 else "")), **result)
        return result
