# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a run sees its pods end: watchers, the events they bring, and each node's verdict (see run.py).

Watchers on the run's pods, the nodes (to notice one that leaves mid-run at once) and the kubelet's
Warning events (a pod that will never start) feed one queue. The main thread applies what they saw
(``apply_pod_event``, ``apply_sync``, ``apply_kubelet_event``, pure) to the node runs, then judges the
ones that changed and those whose pending_timeout has come (``track_pending``, ``due_pending_timeouts``,
pure) with ``outcomes.classify``. A node that leaves the cluster is lost, its pod read and deleted.

``Observe`` is a part of ``run.BroadcastRun``: its methods use the run's state.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import queue

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import limits, naming, outcomes, pressure
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.logs import finished_log
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.plan import is_ready, skip_reason, slim_node
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.watch import Watcher

FINISHED = ("succeeded", "failed")   # outcomes of a pod that ran to its end on its node


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


def due_pending_timeouts(pending, now, pending_timeout):
    """The node runs whose pod has been Pending for ``pending_timeout`` seconds by ``now``."""
    return [r for r in pending if now - r.pending_since >= pending_timeout]


def went_not_ready(was_ready, ready, r):
    """Whether a node's change from ``was_ready`` (None: not known) to ``ready`` makes it one that went NotReady
    after its pod finished in this run (node run ``r``, or None: not one of the run's nodes). Pure."""
    if ready or was_ready is False or r is None or r.state != "done":
        return False
    return (r.result or {}).get("outcome") in FINISHED


def _pod_event(event):
    """What the run reads of an Event: which pod, and what the kubelet said."""
    return {"metadata": {"resourceVersion": (event.get("metadata") or {}).get("resourceVersion")},
            "pod": (event.get("involvedObject") or {}).get("name"),
            "reason": event.get("reason"), "message": event.get("message")}


class Observe:
    """Watch, apply, judge (a part of ``run.BroadcastRun``)."""

    def watchers(self):
        """The run's pods, the nodes (to notice one that leaves mid-run at once) and the kubelet's
        Warning events (a pod that will never start, such as a missing hostPath)."""
        pods_watch = Watcher(self.client, self.client.core_path("pods", self.namespace),
                             naming.run_selector(self.opts["name"], self.run_id), self.events,
                             self.initial_resource_version, log=self.log, tag="pods", slim=outcomes.slim_pod)
        nodes_watch = Watcher(self.client, "/api/v1/nodes", None, self.events, self.plan.get("nodes_resource_version"),
                              log=self.log, tag="nodes", slim=slim_node)
        events_watch = Watcher(self.client, self.client.core_path("events", self.namespace), None, self.events,
                               log=self.log, tag="events", slim=_pod_event,
                               field_selector="involvedObject.kind=Pod,type=Warning")
        return [pods_watch, nodes_watch, events_watch]

    def observe(self, wait):
        """Apply what the watchers saw (waiting up to ``wait`` seconds for it), then judge what changed."""
        seen = self._drain(wait)
        now = self.clock.monotonic()
        for kind, tag, payload in seen:
            self._apply(kind, tag, payload, now)
        self.judge(now)

    def _apply(self, kind, tag, payload, now):
        """One thing a watcher saw. A watcher's error is the run's (an abort), but for the events'."""
        if kind == "wake":
            return
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
            name = payload[1]["metadata"]["name"]
            self.pressure_nodes.pop(name, None)
            self.node_ready.pop(name, None)
            self.not_ready.discard(name)
            self.joining.discard(name)
            if name not in self.plan_skipped and name not in self.runs:
                self.plan["skipped"].pop(name, None)   # skipped during the run, gone since: not the run's to report
            self.node_left(name, now)
        elif kind == "event":
            self.readiness(payload[1]["metadata"]["name"], is_ready(payload[1]))
            self.pressure_now(payload[1])
            self.follow(payload[1])
        elif kind == "sync":
            present = dict((n["metadata"]["name"], n) for n in payload[0])
            for name in [n for n in self.pressure_nodes if n not in present]:
                self.pressure_nodes.pop(name, None)
            for name in [n for n in self.node_ready if n not in present]:
                self.node_ready.pop(name, None)
                self.not_ready.discard(name)
                self.joining.discard(name)
            for name, node in sorted(present.items()):
                self.readiness(name, is_ready(node))
                self.pressure_now(node)
                self.follow(node)
            for node in [n for n in self.runs if n not in present]:
                self.node_left(node, now)

    def follow(self, node):
        """A node the nodes' watch saw (``follow_nodes``): one eligible now that the run has not got (it joined, or
        was skipped at the plan: cordoned, tainted, NotReady) gets its pod in this run, while the run still starts
        pods, under the window, the failure budget and the timeout like the others. One not eligible is reported
        skipped with its reason, as the plan reports the nodes it skipped."""
        name = node["metadata"]["name"]
        if name in self.runs or self.stopped is not None or not self.opts.get("follow_nodes"):
            return
        if self.node_list is not None and name not in self.node_list:
            return   # an explicit list is the whole universe of the run
        reason = skip_reason(node, self.opts, self.tolerations, self.constraints) or self.too_late_for(name)
        if pressure.under_pressure(node):
            # Reported either way; whether its critical pod fits is judged when it is made (launch.create_pod). One
            # skipped for DiskPressure (no room, or its room not known) stays so while it is under DiskPressure.
            self.pressure_seen.setdefault(name, True)
            if (self.plan["skipped"].get(name) or "").startswith("under DiskPressure"):
                return
        if reason:
            self.plan["skipped"][name] = reason
            return
        was = self.plan["skipped"].pop(name, None)
        self.add_node(name)
        self.log("node %s is eligible now (%s): it gets its pod in this run" % (
            name, ("skipped at the plan: %s" if name in self.plan_skipped else "skipped earlier in the run: %s") % was
            if was else "joined during the run"))

    def pressure_now(self, node):
        """Whether a node is under DiskPressure now, as the nodes' watch last saw it: the nodes that are (their slim
        node, which ``launch.create_pod`` judges a pod by), and for those the run found under it when it planned,
        followed or started their pod, whether they still are."""
        name = node["metadata"]["name"]
        if pressure.under_pressure(node):
            self.pressure_nodes[name] = node
        else:
            self.pressure_nodes.pop(name, None)
        if name in self.pressure_seen:
            self.pressure_seen[name] = name in self.pressure_nodes

    def too_late_for(self, name):
        """Why an eligible node that the run has not got does not get a pod now, or None: it had one in this run
        (a resumed run deletes pods of nodes not eligible when it planned, and a node has one pod per run), or
        starting one now could not end well (the health gate is shut, or less than pending_timeout is left)."""
        if name in self.had_pod:
            return "had a pod in this run already (its node was not eligible when the run resumed)"
        gate = self.opts.get("health_gate")
        if gate and limits.health_check(gate, self.not_ready, len(self.node_ready), self.fallen):
            return "became eligible while the health gate was shut"
        if self.deadline is not None and self.deadline - self.clock.monotonic() < self.opts["pending_timeout"]:
            return "became eligible less than pending_timeout (%ds) before the run's timeout" % self.opts["pending_timeout"]
        return None

    def readiness(self, name, ready):
        """A node's Ready condition as watched: the health gate's counts, and the nodes that went NotReady after
        their pod finished in this run."""
        was = self.node_ready.get(name)
        self.node_ready[name] = bool(ready)
        if ready:
            self.not_ready.discard(name)
            self.joining.discard(name)
            return
        if was is None or name in self.joining:
            self.joining.add(name)   # joined during the run and not Ready yet: not counted until it has been
            return
        self.not_ready.add(name)
        if went_not_ready(was, ready, self.runs.get(name)) and name not in self.fallen:
            self.fallen.append(name)
            self.log("node %s went NotReady after its pod finished" % name)

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

    def finish(self, r, verdict, now):
        """A node's pod ended (``verdict``): the node is done, and its log is read now if it must be."""
        verdict.update(started_mono=r.created_at, finished_mono=now)
        self.set_done(r, verdict)
        if verdict["outcome"] in FINISHED and self.node_ready.get(r.node) is False and r.node not in self.fallen \
                and (self.plan.get("ready") or {}).get(r.node, True):
            # NotReady already when its pod's end was seen (the two watch events came together), Ready at the plan.
            self.fallen.append(r.node)
            self.log("node %s went NotReady while its pod ran" % r.node)
        if r.pod is not None and verdict["outcome"] in FINISHED:
            r.message = outcomes.termination_message(r.pod)
            r.log, read = finished_log(verdict["outcome"], r.message, self.opts, self.wants_result)
            if read:
                # Read now, while the pod surely exists: before any cleanup or cancellation. The
                # pool finishes every read before the run deletes anything.
                r.log_future = self.pool.submit(self.read_log, r.pod_name, self.wants_result)

    def node_left(self, node, now):
        """A node left the cluster during the run: lost, its pod (if any) read and deleted."""
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
