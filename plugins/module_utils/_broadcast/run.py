# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One run of a broadcast: its state, the loop that drives it, and every way it ends (``execute``).

``BroadcastRun`` holds everything of one run once: its options, run id, plan, the per-node
``NodeRun`` states and the counters that keep each loop proportional to what changed. What it does
lives beside it, one seam a module, each with its pure decisions (unit-tested with an injected clock)
and the methods that act on the cluster:

* ``record.py``: the run record (the owner of every pod) and the run's code ConfigMap: made, checked,
  its progress and its final state written.
* ``launch.py``: pods created in slow-start batches (1, 2, 4, ...) capped by the free parallelism
  slots, by a thread pool while the main thread keeps applying watch events; a pod that exists
  already is adopted.
* ``observe.py``: watchers on the run's pods, the nodes and the Warning events feed one queue; the
  main thread applies them and asks the pure ``outcomes.classify`` for each changed node's outcome.
* ``logs.py``: whether a finished pod's log must be read at all, and the read.
* ``cancel.py``: nodes given an outcome before their pod ended (timeout, window, failure budget,
  fail_fast, abort), their pods read and deleted.
* ``finish.py``: the clean-up, the events, the result, and the exception the caller gets.

Logs are read before any pod is deleted, and no run ends without every node's outcome.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import queue
import threading

from concurrent.futures import ThreadPoolExecutor

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import limits, naming, outcomes, pressure
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.cancel import Cancel
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.finish import Finish
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.launch import Launch
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.logs import Logs
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.observe import Observe
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.options import resolve_parallelism
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.pods import pod_tolerations, template_constraints
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.record import Record
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import ApiError, InvalidInput


class NodeRun:
    """One eligible node during a run (mutable, private to the run)."""

    __slots__ = ("node", "pod_name", "pod", "state", "created_at", "confirmed_at", "pending_since", "result",
                 "log", "log_future", "fatal", "message", "fetched", "pressured")

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
        self.pressured = False       # its node was under DiskPressure when its pod was to be made


class BroadcastRun(Record, Launch, Observe, Logs, Cancel, Finish):
    """One run, from its plan to its result. Made and started by ``Engine.run``."""

    def __init__(self, engine, opts, run_id, plan):
        self.client = engine.client
        self.clock = engine.clock
        self.log = engine.log
        self.phase = engine.phase
        self.holder = engine.holder       # who this process is, in the run's lease (lease.py)
        self.create_workers = engine.create_workers
        self.initial_resource_version = engine.initial_resource_version
        self.opts = opts
        self.run_id = run_id
        self.plan = plan
        self.namespace = opts["namespace"]
        self.record_name = naming.record_name(opts["name"], run_id)
        self.warnings = []
        self.stats = {}
        names = plan.get("pod_names") or naming.pod_names(opts["name"], run_id, plan["eligible"])
        self.runs = dict((n, NodeRun(n, names[n])) for n in plan["eligible"])
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
        # The health gate (limits.health_check): every node of the cluster and whether it is Ready, kept
        # current by the nodes' watch; the NotReady ones; the nodes that went NotReady after their pod finished.
        # A node that joins during the run counts once it has been Ready (``joining`` until then): a cluster
        # autoscaler adding nodes does not shut the gate.
        self.node_ready = dict(plan.get("ready") or {})
        self.not_ready = set(n for n, ok in self.node_ready.items() if not ok)
        self.joining = set()
        self.fallen = list(plan.get("fallen") or [])   # a resumed run: what its finished pods left NotReady
        self.batches = 0          # batches of pods started
        # follow_nodes: what a node must be to get a pod (plan.skip_reason), and the nodes that became eligible
        # during the run, in the order seen.
        self.tolerations, self.constraints = pod_tolerations(opts), template_constraints(opts)
        self.followed = []
        self.node_list = frozenset(opts["nodes"]) if opts.get("nodes") is not None else None
        self.had_pod = frozenset(plan.get("had_pod") or ())   # nodes this run had a pod for before (a resume)
        # DiskPressure (pressure.py): the nodes under it now, as last seen ({name: slim node}), whose pod is made a
        # critical one where it fits (launch.create_pod); those the run found under it when it planned, followed or
        # started their pod, and whether they still are, for the result's ``disk_pressure`` (``pressure_seen``).
        self.pressure_nodes = dict(plan.get("pressure") or {})
        self.pressure_seen = dict((n, True) for n in plan.get("pressure") or ())
        self.no_room = engine.no_room   # whether a critical pod fits on a node (engine.py)
        self.critical_refused = None    # why the API server refuses this run's critical pods, if it does
        self.plan_skipped = frozenset(plan["skipped"])         # what the plan skipped (the rest: skipped since)
        self.deadline = None                                    # monotonic, once the run begins
        self.soak_until = None    # with batch_soak: when the next batch may start (monotonic)
        self.owner = None     # the run record, once made
        self.code_digest = None   # the digest of the run's code ConfigMap, which its pods check
        self.progress_at, self.progress_sent = None, None
        self.renewer = None       # renews the run's lease once this process holds it
        self.holding = False      # whether this process made or took over the run's record
        self.handed_over = None   # the process that took the run over from this one, if one did

    # ---------------------------------------------------------------- start and end

    def execute(self, preflight):
        """Run to the end. Returns the result dict, or raises with it attached.

        How a run ends (docs/ARCHITECTURE.md, "Exit paths of a run"); ``finish.run_error`` picks the
        exception, in this order of precedence: aborted, timed out, failure budget, health gate, window, failed
        nodes.

        1. No eligible node: the result at once; nothing is written.
        2. Tampered code before any pod: ``start`` raises TamperedCode (``record.ensure_record`` deletes the
           record it has just made), as it raises any error before the loop: no result.
        3. Completed: ``drive`` returns once every node has its outcome.
        4. Timed out: ``cancel.time_out``: waiting nodes not_started, active pods read and deleted
           (timed_out); RunTimeout.
        5. Stopped starting, the window closed, the failure budget spent or the health gate shut
           (``health_stop``): ``cancel.stop_starting``: waiting nodes not_started, running pods finish;
           WindowClosed (fail_on_window_closed), NodeFailures (the budget) or HealthGateStopped.
        6. fail_fast: ``cancel.fail_fast``: waiting nodes not_started, active pods deleted (cancelled);
           NodeFailures.
        7. Aborted by an exception or SIGTERM: ``cancel.abort``: nothing more is created, waiting nodes
           not_started, active pods read and deleted (cancelled); RunAborted.
        8. Clean-up failed: ``finish.clean_up`` warns; the record says cleanup-incomplete.
        9. Record update failed: ``record.finish_record`` warns; the result is returned (or raised) still.
        10. Held by another process (``lease.py``): ``record.ensure_record`` raises RunHeld before this
            process writes anything (2). Taken over from this one, which could not renew its lease for
            longer than a lease: ``cancel.hand_over``: the nodes not done are cancelled (HandedOver), no pod
            is deleted, no clean-up, the record is left to the new holder; RunHeld.
        """
        started, started_wall, deadline = self.begin()
        if not self.plan["eligible"]:
            return self.result(started, started_wall, timed_out=False)                   # 1
        try:
            owner, watchers, parallelism = self.start(preflight, started)                # 2, 10 raise here
            timed_out, aborted = self.drive_or_abort(owner, parallelism, watchers, deadline)  # 3 to 7, 10
            self.collect(watchers)
            if self.handed_over is None and self.lost() is not None:
                self.hand_over(self.lost())                                              # 10, before any delete
            if self.handed_over is None:
                remaining = self.clean_up()                                              # 8, fenced
                self.release()
                self.finish_record(remaining, aborted)                                   # 9
        finally:
            self.release()
        return self.result(started, started_wall, timed_out, aborted)

    def begin(self):
        """The run's clocks: (started, monotonic; started, wall time; the deadline, monotonic)."""
        started = self.clock.monotonic()
        started_wall = self.clock.now()
        deadline = self.deadline = started + self.opts["timeout"]
        self.closes_at = limits.window_closes_at(self.opts.get("window"), started_wall)
        plan = self.plan
        self.log("run %s: %d eligible nodes, %d skipped" % (self.run_id, len(plan["eligible"]), len(plan["skipped"])))
        return started, started_wall, deadline

    def start(self, preflight, started):
        """Everything before the loop: the preflight, the run record and its code (TamperedCode: before
        any pod), the pods to replace deleted, the existing ones adopted, the watchers started.
        Returns (the record as owner, the watchers, the parallelism)."""
        plan = self.plan
        fresh = [n for n in plan["eligible"] if n not in plan["existing"]]
        if fresh:
            preflight(self.opts, self.run_id, fresh[0], name=self.runs[fresh[0]].pod_name)
        if fresh and pressure.priority_class(self.opts, True) != pressure.priority_class(self.opts, False):
            # A node under DiskPressure gets a critical pod, which admission (a ResourceQuota) may refuse on its own.
            # Refused for a node under pressure now: the run fails before its first write. Else the run goes on, and
            # a node that comes under pressure during it is not started, with that reason (launch.create_pod).
            critical = [n for n in fresh if n in self.pressure_nodes] or fresh
            try:
                preflight(self.opts, self.run_id, critical[0], name=self.runs[critical[0]].pod_name, pressured=True)
            except (InvalidInput, ApiError) as exc:
                # Refused (a ResourceQuota, a policy engine's rule, ...): fatal only for a node under pressure now.
                if critical[0] in self.pressure_nodes:
                    raise
                self.critical_refused = pressure.refused_critical(exc.msg)
                self.log("critical pods are refused here; a node that comes under DiskPressure will not be started "
                         "(%s)" % exc.msg)
        owner = self.owner = self.ensure_record()
        for name in plan["to_delete"]:
            self.client.delete(self.client.core_path("pods", self.namespace, name))
        self.adopt(plan["existing"], started)
        watchers = self.watchers()
        parallelism = resolve_parallelism(self.opts["parallelism"], len(self.runs))
        self.pool = ThreadPoolExecutor(max_workers=min(self.create_workers, max(parallelism, 4)))
        for watcher in watchers:
            watcher.start()
        return owner, watchers, parallelism

    def drive_or_abort(self, owner, parallelism, watchers, deadline):
        """``drive``, or ``abort`` when anything (an API error, SIGTERM) breaks it off; then the watchers
        and the pool are stopped. Returns (whether it timed out, the exception that aborted it or None)."""
        timed_out = aborted = None
        try:
            self.phase("drive")
            timed_out = self.drive(owner, parallelism, watchers[0], deadline)
            self.phase("finishing")   # every node has its outcome: a SIGTERM from here is noted, not raised
        except BaseException as exc:   # noqa: B902 -- an interrupt must not lose the results either
            self.phase("stopping")
            if self.lost() is not None:
                self.hand_over(self.lost())   # the pods are another holder's: delete none
                return False, None
            aborted = exc
            self.log("run %s aborted (%s: %s); deleting its active pods" % (
                self.run_id, type(exc).__name__, getattr(exc, "msg", exc)))
            self.abort(exc)
        finally:
            for watcher in watchers:
                watcher.stop()
            self.pool.shutdown(wait=True)
        return timed_out, aborted

    def drive(self, owner, parallelism, pods_watch, deadline):
        """The run's loop: create in slow-start batches, apply events; stop starting pods when the
        failure budget (fail_fast: 0) is spent or the window closes; stop at the timeout.

        Returns whether the run timed out.
        """
        synced = False
        while self.remaining:
            if self.renewer is not None and self.renewer.lost:
                self.hand_over(self.renewer.lost)
                return False
            now = self.clock.monotonic()
            if now >= deadline:
                self.time_out()
                return True
            if self.stopped is None:
                # Checked right before starting pods: none starts after the window closes.
                why = limits.stop_starting(self.clock.now(), self.closes_at, len(self.failures),
                                           self.budget) or self.health_stop()
                if why:
                    self.stop_starting(why)
                elif synced and self.soaked(now):
                    self.launch(owner, parallelism, max(1, int(deadline - now)))
            self.observe(min(0.5, max(0.01, deadline - now)))
            if not synced and (pods_watch.relists or pods_watch.streaming):
                synced = True
            self.report_progress()
        return False

    def health_stop(self):
        """The health gate's (reason, message) while nodes are still to start, or None."""
        gate = self.opts.get("health_gate")
        if not gate or not self.waiting:
            return None
        why = limits.health_check(gate, self.not_ready, len(self.node_ready), self.fallen)
        if why and any(r.state == "waiting" for r in self.waiting):
            return why
        return None

    def soaked(self, now):
        """With batch_soak: whether the next batch may start now. It starts once every pod of the batch before
        has finished and batch_soak seconds have passed since (the health gate is judged again right before)."""
        soak = self.opts.get("batch_soak") or 0
        if not soak:
            return True
        if self.batch and not self.finish_batch(wait=False):
            return False
        if self.active:
            self.soak_until = None
            return False
        if not self.batches:
            return True
        if self.soak_until is None:
            self.soak_until = now + soak
            self.log("batch %d finished; soaking %d s before the next" % (self.batches, soak))
        return now >= self.soak_until

    def collect(self, watchers):
        """The log reads still under way (the pool has finished them), and the watchers' counts."""
        for r in self.runs.values():
            if r.log_future is not None:
                self.take_log(r, r.log_future.result())
        self.stats = {"relists": watchers[0].relists, "reconnects": watchers[0].reconnects + watchers[1].reconnects}

    def add_node(self, node):
        """A node that became eligible during the run (``observe.follow``): waiting for its pod, under a name no
        other pod of the run has, and in the result like the others."""
        taken = set(self.by_pod).union(self.plan.get("to_delete") or ())   # the names being deleted too
        r = NodeRun(node, naming.next_pod_name(self.opts["name"], self.run_id, node, taken))
        self.runs[node], self.by_pod[r.pod_name] = r, r
        self.plan["eligible"].append(node)
        self.followed.append(node)
        self.remaining += 1
        self.waiting.append(r)
        return r

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
