# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A run's record and its code: the ConfigMaps a run writes besides its pods (see run.py).

* The run record owns every pod of the run, so none is ever left unowned; its ``data`` (written by
  ``history.record_data``) says how the run goes: "running" with its progress, then "finished",
  "aborted" or "cleanup-incomplete". A run that leaves no pod deletes it.
* The code ConfigMap (immutable, owned by the record) holds the node script; a resumed run checks
  that the one it finds is exactly ours (``verified_code_digest``) before any pod is made.
* The record's annotations hold the run's lease (``lease.py``): one process drives a run at a time.

``Record`` is a part of ``run.BroadcastRun``: its methods use the run's state.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import history, inputs, naming, outcomes, pods
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import lease, shipping
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.launch import CREATE_RETRY_SECONDS
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.apply import LABEL_MANAGED_BY, MANAGED_BY
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import ApiError, Conflict, Invalid, RunHeld, TamperedCode
from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets.base import CLUSTER_IMAGES, compact_images

PROGRESS_SECONDS = 5        # the run record's progress is written at most this often (one request)


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


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


def record_state(remaining, aborted):
    """The run record's last state, from what ``cleanup`` left (``remaining`` pods of the run, None if
    unknown) and the exception that aborted the run (or None). None: the record is deleted, as no pod is
    left for it to own (the results went back to the caller). Pure."""
    if remaining == 0:
        return None
    if aborted is not None:
        return "aborted"
    return "finished" if remaining is not None else "cleanup-incomplete"


class Record:
    """The run record and the run's code ConfigMap (a part of ``run.BroadcastRun``)."""

    def ensure_record(self):
        """The run record: a ConfigMap that owns the run's pods, so none is ever left unowned. The code the
        node pods run goes beside it (``ensure_code``), never in it: the record is written as the run goes.

        Whoever makes the record holds the run's lease; a record that exists is held (``lease.acquire``: it
        is taken over only from a holder that is gone, else RunHeld, before this process writes anything)."""
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": self.record_name, "namespace": self.namespace,
                             "annotations": lease.annotations(self.holder, self.clock.now()),
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
        path = self.client.core_path("configmaps", self.namespace, self.record_name)
        sent = self.clock.monotonic()
        try:
            record = self.client.create(self.client.core_path("configmaps", self.namespace), body,
                                        retry_for=CREATE_RETRY_SECONDS)
        except Conflict:
            made = False
            record = lease.acquire(self.client, path, self.holder, self.opts["name"], self.run_id, self.clock,
                                   self.opts["timeout"], log=self.log)
        self.holding = True
        if made and (self.plan["existing"] or self.plan.get("record_uid")):
            # The plan saw this run's pods or its record, yet we made the record: the one they belonged to is
            # gone (the run finished in another process since this one planned), and the garbage collector
            # takes its pods. Adopting them would report them lost; making them again would run nodes twice.
            self.client.delete(path)
            self.holding = False
            raise RunHeld(lease.gone_message(self.opts["name"], self.run_id))
        self.renewer = lease.Renewer(self.client, path, self.holder, self.clock, log=self.log, sent=sent).start()
        owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": record["metadata"]["name"],
                 "uid": record["metadata"]["uid"], "blockOwnerDeletion": False, "controller": False}
        if workload.get("node_script"):
            try:
                self.code_digest = self.ensure_code(owner, cluster_images)
            except TamperedCode:
                if made:   # no pod was made: the record we just wrote would only say "running" forever
                    self.release()
                    self.client.delete(path)
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
        data = history.record_data("running", progress=counts, updated_at=iso(self.clock.now()))
        try:
            # Conditional on holding the run: one that lost it must not write over the new holder's.
            self.renewer.write(lease.data_ops(data))
        except ApiError as exc:
            self.log("could not write the run's progress: %s" % exc.msg)

    def release(self):
        """Stop renewing the run's lease (the record's last write, or its deletion, comes next)."""
        if self.renewer is not None:
            self.renewer.stop()

    def fenced(self):
        """Whether this process must delete nothing now: it lost the run, or cannot prove it still holds it
        (``lease.Renewer.holds``). The caller then hands the run over."""
        return self.renewer is not None and not self.renewer.holds()

    def lost(self):
        """The process that holds the run now, once a renewal found this one lost it; else None."""
        return self.renewer.lost if self.renewer is not None else None

    def finish_record(self, remaining, aborted=None):
        """The record's last state (``record_state``), or the record deleted. A failure is a warning: the
        results are in hand, and the record is left as it was."""
        path = self.client.core_path("configmaps", self.namespace, self.record_name)
        failed = [r.node for r in self.runs.values() if r.result and r.result["outcome"] in outcomes.FAILURES]
        state = record_state(remaining, aborted)
        # Both writes are conditional on this process holding the run (a JSON patch's test op, then a delete
        # whose precondition is the version that patch made): one that lost it leaves the record alone.
        try:
            if state is None:
                record = self.renewer.write([])
                self.client.delete(path, preconditions={"resourceVersion": record["metadata"]["resourceVersion"]})
                return
            self.renewer.write(lease.data_ops(history.record_data(
                state, finished_at=iso(self.clock.now()), failed_nodes=failed,
                progress=progress_counts(self.runs.values(), self.active), updated_at=iso(self.clock.now()))))
        except (Invalid, Conflict) as exc:
            self.warnings.append("run record %s was left as it was: this process no longer holds the run (%s)"
                                 % (self.record_name, exc.msg))
        except ApiError as exc:
            self.warnings.append("could not update run record %s: %s" % (self.record_name, exc.msg))
