# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a run's pods are made: in slow-start batches, by a pool, while the run keeps observing (see run.py).

A batch is 1, 2, 4, ... pods (back to one after an error), capped by the free parallelism slots
(``next_batch``, ``next_batch_size``, pure). Its pods are created by the run's thread pool while the main
thread keeps applying watch events; the next batch starts once the previous one is answered
(``finish_batch``). A pod that exists already (an earlier attempt, a lost answer) is adopted, never made
twice.

``Launch`` is a part of ``run.BroadcastRun``: its methods use the run's state.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import time

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import naming, outcomes, pods, pressure
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import ApiError, Conflict

CREATE_RETRY_SECONDS = 16   # a pod create is retried this long on retryable errors (the client's policy)
# The reason of a node not started because it is under DiskPressure and its pod may not or cannot run there now.
DISK_PRESSURE = "DiskPressure"


class NotStarted(Exception):
    """``create_pod``'s answer for a node whose pod is not made, with why (not a failure of that node)."""

    def __init__(self, msg):
        super(NotStarted, self).__init__(msg)
        self.msg = msg


def pod_identity(pod):
    """(node, run id) a pod of ours says it is for: its ``nodeops.io/node`` annotation and run label."""
    meta = pod.get("metadata") or {}
    return ((meta.get("annotations") or {}).get(naming.ANNOTATION_NODE),
            (meta.get("labels") or {}).get(naming.LABEL_RUN))


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


class Launch:
    """Pods made and adopted (a part of ``run.BroadcastRun``)."""

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

    def launch(self, owner, parallelism, deadline_s):
        """Start the next slow-start batch once the previous one is created. Never blocks."""
        if self.batch and not self.finish_batch(wait=False):
            return
        batch = next_batch(self.waiting, self.active, parallelism, self.batch_size)
        if not batch:
            return
        self.batch_left = len(batch)
        self.batches += 1
        self.soak_until = None

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
        try:
            why = self.under_pressure_now(node_run)
        except Exception as exc:   # noqa: BLE001 -- in a pool thread: whatever it is, this node is not started
            why = pressure.room_unknown(exc)
        if why:
            return None, NotStarted(why)
        pod = pods.build_pod(self.opts, self.run_id, node_run.node, owner=owner, active_deadline=deadline_s,
                             code_digest=self.code_digest, name=node_run.pod_name, pressured=node_run.pressured)
        try:
            try:
                # Slimmed here, in the worker: a batch of thousands of full pods is never held at once.
                created = self.client.create(self.client.core_path("pods", self.namespace), pod,
                                             retry_for=CREATE_RETRY_SECONDS)
            except Conflict as exc:
                # The pod of this (run, node) exists already (made by an earlier attempt whose answer
                # was lost, or by an earlier run): adopt it, never make a second one. Only if it is this
                # run's pod for this node: a pod of that name made for another node or run is never adopted.
                created = self.client.get(self.client.core_path("pods", self.namespace, node_run.pod_name))
                owner_node, owner_run = pod_identity(created)
                if (owner_node, owner_run) != (node_run.node, self.run_id):
                    return None, Conflict("pod %s exists, but it is the pod of node %s in run %s, not of node %s "
                                          "in run %s: not adopted (%s)" % (node_run.pod_name, owner_node, owner_run,
                                                                           node_run.node, self.run_id, exc.msg),
                                          status=409, reason="AlreadyExists")
        except ApiError as exc:
            if node_run.pressured and pressure.quota_refusal(exc.msg):
                # A quota scoped to the critical class filled up since the run's dry run: not this node's failure.
                return None, NotStarted(pressure.refused_critical(exc.msg))
            return None, exc
        return outcomes.slim_pod(created), None

    def under_pressure_now(self, node_run):
        """For a node under DiskPressure as the nodes' watch last saw it (whatever it was when planned): why its pod is
        not made now (it may not run there, the API server refuses critical pods, or it does not fit beside the
        node's pods, so it would preempt one), or None, and ``node_run.pressured`` set: its pod is a critical one.
        One list of that node's pods, in this pool thread, right before the pod is made."""
        node = self.pressure_nodes.get(node_run.node)
        node_run.pressured = node is not None
        if node is None:
            return None
        return (pressure.refusal(self.opts) or self.critical_refused
                or self.no_room(self.opts, self.run_id, node, node_run.pod_name))

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
            if r.pressured and r.node not in self.pressure_seen:
                self.pressure_seen[r.node] = r.node in self.pressure_nodes   # as the watch has seen it since
            if isinstance(exc, NotStarted):
                verdict = outcomes.outcome("not_started", DISK_PRESSURE, exc.msg)
                self.set_done(r, verdict)
            elif exc is not None:
                errors += 1
                self._create_failed(r, exc, now)
            else:
                created += 1
                self._created(r, pod, now)
        self.batch = []
        self.log("created %d pods (%d active)" % (created, self.active))
        self.batch_size = next_batch_size(self.batch_size, errors)
        return True

    def _create_failed(self, r, exc, now):
        """A pod that could not be made (after the client's retries): its node failed."""
        verdict = outcomes.outcome("failed", "CreateFailed", exc.msg)
        verdict.update(finished_mono=now, started_mono=now)
        self.set_done(r, verdict)

    def _created(self, r, pod, now):
        r.state = "created"
        self.active += 1
        r.created_at = now
        r.confirmed_at = time.monotonic()
        if r.pod is None:
            r.pod = pod   # no watch event yet: the create response is the oldest state there is
        self.touched.add(r)
