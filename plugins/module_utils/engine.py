# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The broadcast engine: plan, act, observe. Shared by broadcast_job and the in-cluster runner.

* plan: read nodes and this broadcast's pods, then ``plan.plan`` (pure).
* act: create pods in slow-start batches (1, 2, 4, ...) capped by the free
  parallelism slots; an existing pod of the same (run, node) is adopted.
  A batch is created by a thread pool while the main thread keeps applying
  watch events, so events never pile up behind a large batch.
* observe: one watcher thread lists this run's pods, then watches from the
  list's resourceVersion, re-listing on 410 Gone and reconnecting when the
  apiserver goes away. The main thread applies its events and asks the pure
  ``outcomes.classify`` for each node's outcome.

Logs are read before any pod is deleted. Nothing here reads ``module.params``
or imports Ansible: the engine takes a RestClient, a spec from
``broadcast_spec.validate`` and, for tests, a clock.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import datetime
import json
import threading
import time
import queue
import uuid

from concurrent.futures import ThreadPoolExecutor

from ansible_collections.nodeops.kubernetes.plugins.module_utils import host_tasks
from ansible_collections.nodeops.kubernetes.plugins.module_utils import outcomes
from ansible_collections.nodeops.kubernetes.plugins.module_utils import plan as planner
from ansible_collections.nodeops.kubernetes.plugins.module_utils import broadcast_spec
from ansible_collections.nodeops.kubernetes.plugins.module_utils.broadcast_spec import resolve_parallelism
from ansible_collections.nodeops.kubernetes.plugins.module_utils.errors import (
    ApiError,
    ApiUnavailable,
    Conflict,
    Forbidden,
    Invalid,
    InvalidInput,
    NodeFailures,
    RunAborted,
    RunTimeout,
    WatchExpired,
)

WATCH_SECONDS = 30          # server-side timeoutSeconds of one watch request
CLEANUP_BASE_SECONDS = 60   # time limit of the pods' delete-collection: this, plus
CLEANUP_PODS_PER_SECOND = 20  # one second per this many pods of the run
LIST_PAGE = 500
CREATE_RETRY_SECONDS = 16   # a pod create is retried this long on retryable errors (the client's policy)


class Clock:
    """Monotonic time for deadlines, wall time for reports. Tests pass their own."""

    monotonic = staticmethod(time.monotonic)

    @staticmethod
    def now():
        return datetime.datetime.now(datetime.timezone.utc)


def new_run_id(clock=Clock):
    return clock.now().strftime("%m%d%H%M%S") + uuid.uuid4().hex[:4]


def _node_name_only(node):
    """All the run needs of a watched node: that it is there (or gone)."""
    return {"metadata": {"name": (node.get("metadata") or {}).get("name")}}


def _pod_event(event):
    """What the engine reads of an Event: which pod, and what the kubelet said."""
    return {"metadata": {"resourceVersion": (event.get("metadata") or {}).get("resourceVersion")},
            "pod": (event.get("involvedObject") or {}).get("name"),
            "reason": event.get("reason"), "message": event.get("message")}


def _iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def list_all(client, path, query=None, timeout=60, slim=None):
    """List every item, page by page. Returns (items, resourceVersion).

    ``slim`` maps each item to the part the caller keeps, page by page, so a
    large list is never held whole.
    """
    query = dict(query or {}, limit=LIST_PAGE, timeoutSeconds=timeout)
    items = []
    while True:
        page = client.get(path, query, timeout=timeout + 10)
        page_items = page.get("items") or []
        items.extend(map(slim, page_items) if slim else page_items)
        cont = (page.get("metadata") or {}).get("continue")
        if not cont:
            return items, page["metadata"].get("resourceVersion")
        query["continue"] = cont


class Watcher(threading.Thread):
    """List-then-watch one resource; put ("sync", (items, rv, listed_from)) and ("event", (type, obj)) on a queue.

    Re-lists on 410 Gone; reconnects with backoff while the apiserver is away.
    Every request carries timeoutSeconds (server) and a socket timeout (client).
    """

    def __init__(self, client, path, selector, events, initial_resource_version=None, log=None, tag="pods",
                 slim=None, field_selector=None):
        super(Watcher, self).__init__(name="nodeops-watch-" + tag)
        self.daemon = True
        self.client = client
        self.path = path
        self.tag = tag
        self.selector = selector
        self.field_selector = field_selector
        self.events = events
        self.stop_event = threading.Event()
        self.stream = None
        self.resource_version = initial_resource_version
        self.relists = 0
        self.reconnects = 0
        self.streaming = False
        self.log = log or (lambda msg: None)
        self.slim = slim or (lambda obj: obj)

    def stop(self):
        self.stop_event.set()
        stream = self.stream
        if stream is not None:
            stream.close()

    def _relist(self):
        # When the list began, on the real monotonic clock: resourceVersions are opaque and
        # may not be compared, but a list begun after a create was answered holds that object.
        listed_from = time.monotonic()
        items, rv = list_all(self.client, self.path, self._selectors(), slim=self.slim)
        self.relists += 1
        self.resource_version = rv
        self.events.put(("sync", self.tag, (items, rv, listed_from)))

    def _selectors(self):
        query = {}
        if self.selector:
            query["labelSelector"] = self.selector
        if self.field_selector:
            query["fieldSelector"] = self.field_selector
        return query

    def run(self):
        backoff = 0.2
        while not self.stop_event.is_set():
            try:
                if self.resource_version is None:
                    self._relist()
                query = dict(self._selectors(), resourceVersion=self.resource_version, allowWatchBookmarks="true",
                             timeoutSeconds=WATCH_SECONDS)
                self.stream = self.client.watch(self.path, query, timeout=WATCH_SECONDS + 15)
                if self.stop_event.is_set():
                    self.stream.close()
                    return
                self.streaming = True
                for event in self.stream:
                    backoff = 0.2
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            raise WatchExpired("watch expired: %s" % obj.get("message"), status=410)
                        raise ApiError("watch error: %s" % obj.get("message"), status=obj.get("code"))
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        self.resource_version = rv
                    if kind != "BOOKMARK":
                        self.events.put(("event", self.tag, (kind, self.slim(obj))))
            except WatchExpired:
                self.log("%s watch expired (410 Gone); listing again" % self.tag)
                self.resource_version = None
            except (ApiUnavailable, ApiError) as exc:
                if self.stop_event.is_set():
                    return
                if isinstance(exc, ApiError) and not exc.retryable and not isinstance(exc, ApiUnavailable):
                    self.events.put(("error", self.tag, exc))
                    return
                self.reconnects += 1
                self.log("API server unavailable (%s); retrying in %.1fs" % (exc.msg, backoff))
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self.stream = None


class NodeRun:
    """The engine's view of one eligible node during a run (mutable, engine-private)."""

    __slots__ = ("node", "pod_name", "pod", "state", "created_at", "confirmed_at", "pending_since", "result",
                 "log", "log_future", "fatal")

    def __init__(self, node, pod_name):
        self.node = node
        self.pod_name = pod_name
        self.pod = None
        self.state = "waiting"       # waiting -> creating -> created -> done
        self.created_at = None
        self.confirmed_at = None     # time.monotonic() once the create was answered
        self.pending_since = None
        self.result = None
        self.log = None
        self.log_future = None
        self.fatal = None            # (reason, message) of a kubelet event saying the pod can never start


class Engine:
    def __init__(self, client, clock=None, log=None, create_workers=16, initial_resource_version=None):
        self.client = client
        self.clock = clock or Clock
        self.log = log or (lambda msg: None)
        self.create_workers = create_workers
        self.initial_resource_version = initial_resource_version
        self.stats = {}
        self.warnings = []

    # ---------------------------------------------------------------- plan

    def read_cluster(self, spec):
        nodes, nodes_rv = list_all(self.client, "/api/v1/nodes", slim=planner.slim_node)
        pods, _rv = list_all(self.client, self.client.core_path("pods", spec["namespace"]),
                             {"labelSelector": planner.run_selector(spec["name"])}, slim=outcomes.slim_pod)
        return nodes, nodes_rv, pods

    def plan(self, spec, run_id):
        nodes, nodes_rv, pods = self.read_cluster(spec)
        result = planner.plan(nodes, pods, spec, run_id)
        result["nodes_resource_version"] = nodes_rv
        return result

    def preflight(self, spec, run_id, node):
        """Server-side dry-run of one pod: the apiserver validates it and admission runs, nothing is stored."""
        pod = planner.build_pod(spec, run_id, node, active_deadline=spec["timeout"])
        try:
            self.client.create(self.client.core_path("pods", spec["namespace"]), pod, dry_run=True)
        except Conflict:
            return pod  # that pod exists already (a resumed run): nothing to check
        except (Invalid, Forbidden) as exc:
            raise InvalidInput("pod_template" if spec["task"]["kind"] == "pod_template" else "preset",
                               "(the pod it makes)", "a pod the API server accepts",
                               why="the API server refused a dry run: %s" % exc.msg)
        return pod

    # ---------------------------------------------------------------- records

    @staticmethod
    def _record_name(spec, run_id):
        return planner.record_name(spec["name"], run_id)

    def _ensure_record(self, spec, run_id, plan):
        """The run record: a ConfigMap that owns the run's pods, so none is ever left unowned."""
        path = self.client.core_path("configmaps", spec["namespace"])
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": self._record_name(spec, run_id), "namespace": spec["namespace"],
                             "labels": {planner.LABEL_MANAGED_BY: planner.MANAGED_BY,
                                        planner.LABEL_BROADCAST: spec["name"], planner.LABEL_RUN: run_id,
                                        "nodeops.io/kind": "run-record"}},
                "data": {"state": "running", "started_at": _iso(self.clock.now()),
                         "eligible": str(len(plan["eligible"]))}}
        if spec["task"].get("script"):
            body["data"][broadcast_spec.SCRIPT_KEY] = broadcast_spec.script_source()
        try:
            record = self.client.create(path, body, retry_for=CREATE_RETRY_SECONDS)
        except Conflict:
            record = self.client.get(self.client.core_path("configmaps", spec["namespace"],
                                                           self._record_name(spec, run_id)))
        return {"apiVersion": "v1", "kind": "ConfigMap", "name": record["metadata"]["name"],
                "uid": record["metadata"]["uid"], "blockOwnerDeletion": False, "controller": False}

    # ---------------------------------------------------------------- act

    def _create(self, spec, run_id, node_run, owner, deadline_s):
        """Create one node's pod. Returns (slim pod, None) or (None, the final ApiError).

        An API server that is away, throttling or failing (retryable errors) is retried with backoff, so
        a restart during creation does not fail the node; a pod that exists already is adopted.
        """
        pod = planner.build_pod(spec, run_id, node_run.node, owner=owner, active_deadline=deadline_s)
        path = self.client.core_path("pods", spec["namespace"])
        try:
            try:
                # Slimmed here, in the worker: a batch of thousands of full pods is never held at once.
                created = self.client.create(path, pod, retry_for=CREATE_RETRY_SECONDS)
            except Conflict:
                # The pod of this (run, node) exists already (made by an earlier attempt whose answer
                # was lost, or by an earlier run): adopt it, never make a second one.
                created = self.client.get(self.client.core_path("pods", spec["namespace"], node_run.pod_name))
        except ApiError as exc:
            return None, exc
        return outcomes.slim_pod(created), None

    def _read_log(self, spec, pod_name):
        if not spec["log_tail_lines"]:
            return None
        path = self.client.core_path("pods", spec["namespace"], pod_name, "log")
        try:
            text = self.client.get(path, {"tailLines": spec["log_tail_lines"], "limitBytes": spec["log_max_bytes"]},
                                   timeout=30)
        except ApiError as exc:
            return "(log unavailable: %s)" % (exc.reason or exc.status)
        return text if isinstance(text, str) else json.dumps(text)

    # ---------------------------------------------------------------- run

    def run(self, spec, run_id, plan=None):
        """Run a broadcast to the end. Returns the result dict, or raises with it attached."""
        started = self.clock.monotonic()
        started_wall = self.clock.now()
        deadline = started + spec["timeout"]
        plan = plan or self.plan(spec, run_id)
        self.log("run %s: %d eligible nodes, %d skipped" % (run_id, len(plan["eligible"]), len(plan["skipped"])))
        if not plan["eligible"]:
            return self._result(spec, run_id, plan, {}, started, started_wall, timed_out=False)
        fresh = [n for n in plan["eligible"] if n not in plan["existing"]]
        if fresh:
            self.preflight(spec, run_id, fresh[0])
        owner = self._ensure_record(spec, run_id, plan)
        for name in plan["to_delete"]:
            self.client.delete(self.client.core_path("pods", spec["namespace"], name))

        runs = dict((n, NodeRun(n, planner.pod_name(spec["name"], run_id, n))) for n in plan["eligible"])
        by_pod = dict((r.pod_name, r) for r in runs.values())
        # Bookkeeping that keeps each loop proportional to what changed, not to the node count.
        self._remaining = len(runs)     # runs not done
        self._active = 0                # runs with a pod created and not done
        self._failures = []             # nodes with a failure outcome, in the order seen
        self._touched = set()           # runs whose pod changed since the last classification
        self._pending = set()           # runs whose pod is Pending (pending_timeout is time-driven)
        for node, pod in plan["existing"].items():
            r = runs[node]
            r.state = "created"
            r.pod = pod
            r.created_at = started
            self._active += 1
            self._touched.add(r)
        self._waiting = collections.deque(runs[n] for n in plan["eligible"] if runs[n].state == "waiting")
        self._batch, self._batch_size = [], 1    # the batch being created: [(run, future)]
        self._batch_left = 0
        self._batch_lock = threading.Lock()
        parallelism = resolve_parallelism(spec["parallelism"], len(runs))
        events = queue.Queue()
        watcher = Watcher(self.client, self.client.core_path("pods", spec["namespace"]),
                          planner.run_selector(spec["name"], run_id), events, self.initial_resource_version,
                          log=self.log, tag="pods", slim=outcomes.slim_pod)
        # Nodes are watched from the plan's list, to notice a node that leaves mid-run at once.
        node_watcher = Watcher(self.client, "/api/v1/nodes", None, events, plan.get("nodes_resource_version"),
                               log=self.log, tag="nodes", slim=_node_name_only)
        # Warning events only: the kubelet's word on a pod that will never start (a missing hostPath).
        event_watcher = Watcher(self.client, self.client.core_path("events", spec["namespace"]), None, events,
                                log=self.log, tag="events", slim=_pod_event,
                                field_selector="involvedObject.kind=Pod,type=Warning")
        pool = ThreadPoolExecutor(max_workers=min(self.create_workers, max(parallelism, 4)))
        self._log_pool = pool
        watcher.start()
        node_watcher.start()
        event_watcher.start()
        timed_out = aborted = None
        try:
            timed_out = self._drive(spec, run_id, runs, by_pod, owner, parallelism, pool, events, watcher, deadline)
        except BaseException as exc:   # noqa: B902 -- an interrupt must not lose the results either
            aborted = exc
            self.log("run %s aborted (%s: %s); deleting its active pods" % (
                run_id, type(exc).__name__, getattr(exc, "msg", exc)))
            self._abort(spec, runs, exc)
        finally:
            watcher.stop()
            node_watcher.stop()
            event_watcher.stop()
            pool.shutdown(wait=True)
        for r in runs.values():
            if r.log_future is not None:
                r.log = r.log_future.result()
        self.stats = {"relists": watcher.relists, "reconnects": watcher.reconnects + node_watcher.reconnects}
        try:
            remaining = self._cleanup(spec, run_id, runs)
        except ApiError as exc:
            if aborted is None:
                raise
            remaining = None   # the record keeps owning what is left
            self.warnings.append("cleanup after the abort failed: %s" % exc.msg)
        self._finish_record(spec, run_id, runs, remaining, aborted)
        return self._result(spec, run_id, plan, runs, started, started_wall, timed_out, aborted)

    def _drive(self, spec, run_id, runs, by_pod, owner, parallelism, pool, events, watcher, deadline):
        """The run's loop: create in slow-start batches, apply events, honour fail_fast and the timeout.

        Returns whether the run timed out.
        """
        stop_creating, timed_out, synced = False, False, False
        while self._remaining:
            now = self.clock.monotonic()
            if now >= deadline:
                timed_out = True
                break
            if synced and not stop_creating:
                self._launch(spec, run_id, owner, parallelism, pool, events, max(1, int(deadline - now)))
            self._observe(spec, runs, by_pod, events, min(0.5, max(0.01, deadline - now)))
            if not synced and (watcher.relists or watcher.streaming):
                synced = True
            if self._failures and spec["failure_policy"] == "fail_fast" and not stop_creating:
                failure_seen = self._failures[0]
                stop_creating = True
                self.log("fail_fast: %s failed; stopping" % failure_seen)
                self._finish_batch(wait=True)
                self._cancel(spec, runs, "skipped", "NotStarted",
                             "not started: fail_fast after a failure on %s" % failure_seen, active=False)
                self._cancel(spec, runs, "failed", "CancelledByFailFast",
                             "deleted by fail_fast after a failure on %s" % failure_seen, active=True)
        if timed_out:
            self._finish_batch(wait=True)
            self._cancel(spec, runs, "skipped", "NotStarted", "not started before the run timeout", active=False)
            self._cancel(spec, runs, "timed_out", "RunTimeout",
                         "still running when timeout=%ds was reached" % spec["timeout"], active=True)
        return timed_out

    def _abort(self, spec, runs, cause):
        """Stop a run an exception broke off: nothing more is created, active pods are deleted
        (best effort, retried), and every node gets an outcome for the result."""
        try:
            self._finish_batch(wait=True)
        except Exception:   # noqa: BLE001 -- a batch that cannot be collected is left to the record's cleanup
            pass
        why = "%s: %s" % (type(cause).__name__, getattr(cause, "msg", None) or cause)
        self._cancel(spec, runs, "skipped", "NotStarted", "not started: the run was aborted (%s)" % why,
                     active=False)
        self._cancel(spec, runs, "failed", "RunAborted", "deleted: the run was aborted (%s)" % why, active=True,
                     best_effort=True)

    def _set_done(self, r, verdict):
        """The one place a run becomes done: keeps the counters the loop relies on."""
        if r.state == "created":
            self._active -= 1
        if r.state != "done":
            self._remaining -= 1
        r.state = "done"
        r.result = verdict
        self._pending.discard(r)
        if verdict["outcome"] in outcomes.FAILURES:
            self._failures.append(r.node)

    def _launch(self, spec, run_id, owner, parallelism, pool, events, deadline_s):
        """Start the next slow-start batch once the previous one is created. Never blocks."""
        if self._batch and not self._finish_batch(wait=False):
            return
        count = min(parallelism - self._active, self._batch_size)
        batch = []
        while len(batch) < count and self._waiting:
            r = self._waiting.popleft()
            if r.state == "waiting":   # runs cancelled or lost while waiting are skipped here
                batch.append(r)
        if not batch:
            return
        self._batch_left = len(batch)

        def created(_future):
            with self._batch_lock:
                self._batch_left -= 1
            events.put(("wake", None, None))   # the main loop collects the batch without waiting for a timeout

        for r in batch:
            r.state = "creating"
            future = pool.submit(self._create, spec, run_id, r, owner, deadline_s)
            future.add_done_callback(created)
            self._batch.append((r, future))

    def _finish_batch(self, wait):
        """Apply the created batch's results. Returns False if it is still being created and ``wait`` is False."""
        if not self._batch:
            return True
        if not wait:
            with self._batch_lock:
                if self._batch_left:
                    return False
        now = self.clock.monotonic()
        errors = created = 0
        for r, future in self._batch:
            pod, exc = future.result()
            if r.state != "creating":
                continue   # its node left meanwhile; a pod made anyway is removed by the run's cleanup
            if exc is not None:
                errors += 1
                verdict = outcomes.outcome("failed", "CreateFailed", exc.msg)
                verdict.update(finished_mono=now, started_mono=now)
                self._set_done(r, verdict)
                continue
            created += 1
            r.state = "created"
            self._active += 1
            r.created_at = now
            r.confirmed_at = time.monotonic()
            if r.pod is None:
                r.pod = pod   # no watch event yet: the create response is the oldest state there is
            self._touched.add(r)
        self._batch = []
        self.log("created %d pods (%d active)" % (created, self._active))
        # Slow start: double after a clean batch, back to one after errors.
        self._batch_size = 1 if errors else self._batch_size * 2
        return True

    def _observe(self, spec, runs, by_pod, events, wait):
        try:
            item = events.get(timeout=wait)
        except queue.Empty:
            item = None
        batch = [item] if item else []
        while True:
            try:
                batch.append(events.get_nowait())
            except queue.Empty:
                break
        now = self.clock.monotonic()
        for kind, tag, payload in batch:
            if kind == "wake":
                continue
            if kind == "error" and tag == "events":
                # Without events (RBAC may not grant them) a missing hostPath ends at pending_timeout.
                self.log("not watching events (%s); pods that cannot start end at pending_timeout" % payload.msg)
                continue
            if kind == "error":
                raise payload
            if tag == "events":
                for event in (payload[0] if kind == "sync" else [payload[1]]):
                    self._apply_event(by_pod, event)
                continue
            if tag == "nodes":
                if kind == "event" and payload[0] == "DELETED":
                    self._node_left(spec, runs, payload[1]["metadata"]["name"], now)
                elif kind == "sync":
                    present = set(n["metadata"]["name"] for n in payload[0])
                    for node in [n for n in runs if n not in present]:
                        self._node_left(spec, runs, node, now)
                continue
            if kind == "sync":
                self._apply_sync(by_pod, *payload)
                continue
            event_type, pod = payload
            r = by_pod.get(pod["metadata"]["name"])
            if r is None or r.state == "waiting":
                continue
            r.pod = None if event_type == "DELETED" else pod
            if r.state == "created":
                self._touched.add(r)
        touched, self._touched = self._touched, set()
        for r in touched:
            if r.state != "created":
                continue
            phase = ((r.pod or {}).get("status") or {}).get("phase")
            if r.pod is not None and phase in (None, "Pending"):
                if r.pending_since is None:
                    r.pending_since = now
                self._pending.add(r)
            else:
                r.pending_since = None
                self._pending.discard(r)
        # Only what changed, plus Pending pods whose pending_timeout has come, need a new verdict.
        expired = [r for r in self._pending if now - r.pending_since >= spec["pending_timeout"]]
        for r in touched.union(expired):
            if r.state != "created":
                continue
            pending_for = now - r.pending_since if r.pending_since is not None else 0
            verdict = outcomes.classify(r.pod, pending_for, spec, r.fatal)
            if verdict is None:
                continue
            if verdict["outcome"] == "unschedulable" and self._node_gone(r.node):
                verdict = outcomes.outcome("lost", "NodeDeleted", "node %s was deleted during the run" % r.node)
            self._finish(spec, r, verdict, now)

    def _apply_event(self, by_pod, event):
        r = by_pod.get(event["pod"])
        fatal = outcomes.fatal_event(event)
        if r is not None and fatal and r.state == "created" and r.fatal is None:
            r.fatal = fatal
            self._touched.add(r)

    def _apply_sync(self, by_pod, items, _list_rv, listed_from):
        seen = dict((p["metadata"]["name"], p) for p in items)
        for name, r in by_pod.items():
            if r.state == "creating" and name in seen:
                r.pod = seen[name]
                continue
            if r.state != "created":
                continue
            if name in seen:
                r.pod = seen[name]
                self._touched.add(r)
            elif r.pod is not None and (r.confirmed_at is None or listed_from >= r.confirmed_at):
                r.pod = None   # it existed when we created it (or adopted it) and is gone now
                self._touched.add(r)

    def _node_left(self, spec, runs, node, now):
        r = runs.get(node)
        if r is None or r.state == "done":
            return
        if r.state in ("created", "creating") and r.pod is not None:
            r.log = self._read_log(spec, r.pod_name)
            self.client.delete(self.client.core_path("pods", spec["namespace"], r.pod_name), grace_period=0)
        verdict = outcomes.outcome("lost", "NodeDeleted", "node %s was deleted during the run" % node)
        verdict.update(started_mono=r.created_at, finished_mono=now)
        self._set_done(r, verdict)
        self.log("node %s left during the run: lost" % node)

    def _node_gone(self, node):
        return self.client.get_or_none(self.client.core_path("nodes", name=node)) is None

    def _finish(self, spec, r, verdict, now):
        verdict.update(started_mono=r.created_at, finished_mono=now)
        self._set_done(r, verdict)
        if r.pod is not None and verdict["outcome"] in ("succeeded", "failed"):
            # Read now, while the pod surely exists: before any cleanup or cancellation. The
            # pool finishes every read before run() deletes anything.
            r.log_future = self._log_pool.submit(self._read_log, spec, r.pod_name)

    def _cancel(self, spec, runs, kind, reason, message, active, best_effort=False):
        now = self.clock.monotonic()
        for r in runs.values():
            if r.state == ("created" if active else "waiting"):
                if active and r.pod is not None:
                    r.log = self._read_log(spec, r.pod_name)
                    self._delete_pod(spec, r.pod_name, best_effort)
                verdict = outcomes.outcome(kind, reason, message)
                verdict.update(started_mono=r.created_at, finished_mono=now if active else None)
                self._set_done(r, verdict)

    def _delete_pod(self, spec, name, best_effort):
        """Delete one pod now (the client retries through a restart). Best effort: a failure is a
        warning, and the pod is left to the run record that owns it."""
        try:
            self.client.delete(self.client.core_path("pods", spec["namespace"], name), grace_period=0)
        except ApiError as exc:
            if not best_effort:
                raise
            self.warnings.append("could not delete pod %s: %s" % (name, exc.msg))

    def _cleanup(self, spec, run_id, runs):
        """Delete pods per ``cleanup``; return how many of this run's pods remain (None if unknown).

        * Pods that have not finished (unschedulable, lost) are deleted now,
          whatever ``cleanup`` says: left alone they could start later, unwatched.
        * If no pod is to be kept, that is all: ``_finish_record`` deletes the
          run record, and the garbage collector deletes the finished pods it
          owns (one request, however many nodes).
        * Otherwise the pods not kept are deleted as a collection. The apiserver
          deletes a collection one pod at a time, so its time limit grows with
          the run; if it still fails, the results are returned with a warning
          and the run record keeps owning the pods.
        """
        keep_phases = {"always": (), "on_success": ("Failed",), "never": ("Failed", "Succeeded")}[spec["cleanup"]]
        kept = 0
        for r in runs.values():
            phase = ((r.pod or {}).get("status") or {}).get("phase")
            if r.pod is None:
                continue
            if phase not in ("Succeeded", "Failed"):
                self.client.delete(self.client.core_path("pods", spec["namespace"], r.pod_name), grace_period=0)
            elif phase in keep_phases:
                kept += 1
        if not kept:
            return 0
        query = {"labelSelector": planner.run_selector(spec["name"], run_id),
                 "fieldSelector": ",".join("status.phase!=%s" % phase for phase in keep_phases)}
        timeout = max(self.client.timeout, CLEANUP_BASE_SECONDS + len(runs) // CLEANUP_PODS_PER_SECOND)
        error = None
        for attempt in range(3):
            try:
                self.client.request("DELETE", self.client.core_path("pods", spec["namespace"]), query=query,
                                    timeout=timeout)
                return kept
            except ApiError as exc:
                # A timed-out delete-collection stops part way; a new one takes up what is left.
                self.log("deleting the run's pods failed (attempt %d): %s" % (attempt + 1, exc.msg))
                error = exc.msg
        self.warnings.append("the pods of run %s were not all deleted (%s); they stay owned by ConfigMap %s: "
                             "remove them with state=absent and run_id=%s"
                             % (run_id, error, self._record_name(spec, run_id), run_id))
        return None

    def _finish_record(self, spec, run_id, runs, remaining, aborted=None):
        path = self.client.core_path("configmaps", spec["namespace"], self._record_name(spec, run_id))
        failed = sorted(r.node for r in runs.values() if r.result and r.result["outcome"] in outcomes.FAILURES)
        try:
            if remaining == 0:
                # No pod left to own: the results went back to the caller, the record is not needed.
                self.client.delete(path)
                return
            self.client.merge_patch(path, {"data": {
                "state": "aborted" if aborted is not None else "finished" if remaining is not None
                else "cleanup-incomplete",
                "finished_at": _iso(self.clock.now()), "failed_nodes": json.dumps(failed)}})
        except ApiError as exc:
            # The results are in hand: report them, with the record left as it was.
            self.warnings.append("could not update run record %s: %s" % (self._record_name(spec, run_id), exc.msg))

    # ---------------------------------------------------------------- report

    def _record(self, spec, r, started_wall, started):
        res = r.result or outcomes.outcome("timed_out", "RunTimeout", None)
        pod = r.pod or {}

        def wall(mono):
            if mono is None:
                return None
            return _iso(started_wall + datetime.timedelta(seconds=mono - started))

        duration = None
        if res.get("started_mono") is not None and res.get("finished_mono") is not None:
            duration = round(res["finished_mono"] - res["started_mono"], 3)
        rec = {"node": r.node, "pod": r.pod_name if r.state != "waiting" and res.get("started_mono") is not None
               else None,
               "outcome": res["outcome"], "exit_code": res.get("exit_code"), "reason": res.get("reason"),
               "message": res.get("message"), "log": r.log, "started_at": wall(res.get("started_mono")),
               "finished_at": wall(res.get("finished_mono")), "duration_s": duration,
               "restarts": outcomes.restarts(pod) if pod else 0}
        parsed = host_tasks.parse_result(r.log)
        if parsed is not None:
            rec["result"] = parsed
            if rec["outcome"] in outcomes.FAILURES and parsed.get("errors") and not rec["message"]:
                rec["message"] = "; ".join(parsed["errors"][:3])   # the node script's own words
        return rec

    def _result(self, spec, run_id, plan, runs, started, started_wall, timed_out, aborted=None):
        records = [self._record(spec, runs[n], started_wall, started) for n in plan["eligible"]]
        for node in sorted(plan["skipped"]):
            records.append({"node": node, "pod": None, "outcome": "skipped", "exit_code": None,
                            "reason": plan["skipped"][node], "message": None, "log": None, "started_at": None,
                            "finished_at": None, "duration_s": None, "restarts": 0})
        records.sort(key=lambda rec: rec["node"])
        summary = outcomes.summarize(records, len(plan["eligible"]), self.clock.monotonic() - started)
        result = {"run_id": run_id, "summary": summary, "nodes": records, "changed": bool(plan["eligible"])}
        if self.warnings:
            result["warnings"] = list(self.warnings)
        failed = outcomes.failed_nodes(records)
        if aborted is not None:
            raise RunAborted("broadcast %s run %s aborted by %s: %s; %d of %d nodes finished before it"
                             % (spec["name"], run_id, type(aborted).__name__,
                                getattr(aborted, "msg", None) or aborted,
                                sum(1 for rec in records if rec["node"] in runs
                                    and rec["reason"] not in ("RunAborted", "NotStarted")),
                                summary["desired"]), cause=aborted, **result) from aborted
        if timed_out:
            raise RunTimeout("broadcast %s run %s timed out after %ds: %d of %d nodes did not finish"
                             % (spec["name"], run_id, spec["timeout"], summary["timed_out"] + summary["skipped"]
                                - len(plan["skipped"]), summary["desired"]), **result)
        if failed and (spec["failure_policy"] == "fail_fast" or spec["fail_on_node_failure"]):
            raise NodeFailures("broadcast %s run %s: %d of %d nodes failed: %s"
                               % (spec["name"], run_id, len(failed), summary["desired"],
                                  ", ".join(failed[:10]) + (" ..." if len(failed) > 10 else "")), **result)
        return result

    # ---------------------------------------------------------------- absent

    def delete_runs(self, name, namespace, run_id=None, check_mode=False):
        """Delete a broadcast's pods and run records (one run, or all). Returns what was (or would be) deleted."""
        selector = planner.run_selector(name, run_id)
        pods, _rv = list_all(self.client, self.client.core_path("pods", namespace), {"labelSelector": selector})
        records, _rv = list_all(self.client, self.client.core_path("configmaps", namespace),
                                {"labelSelector": selector + ",nodeops.io/kind=run-record"})
        deleted = {"pods": sorted(p["metadata"]["name"] for p in pods),
                   "records": sorted(c["metadata"]["name"] for c in records)}
        if not check_mode:
            if pods:
                self.client.request("DELETE", self.client.core_path("pods", namespace),
                                    query={"labelSelector": selector})
            if records:
                self.client.request("DELETE", self.client.core_path("configmaps", namespace),
                                    query={"labelSelector": selector + ",nodeops.io/kind=run-record"})
        return deleted
