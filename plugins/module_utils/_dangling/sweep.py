# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sweep of ownerless Jobs that exist already: which Jobs it takes (pure), and the sweep.

It lists a page at a time, so memory does not grow with the number of Jobs, and writes with
bounded concurrency.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import threading
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import ApiError, NotFound, WatchExpired
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


class Sweep:
    """One sweep over the cluster's Jobs. Counters are kept, Jobs are not: memory stays flat.

    A Job counts as taken once its write succeeded (in check mode, once it was found): a write that failed is
    in ``errors``, and one cut short was never counted. ``should_stop`` (a callable) is asked before each Job
    and each page; when it says yes the sweep lists no further, lets the writes in flight finish and raises
    Stopped, its counts whole."""

    def __init__(self, client, opts, action, check_mode, page_size=500, concurrency=10, max_names=100, now=None,
                 should_stop=None):
        self.client = client
        self.opts = opts
        self.action = action
        self.check_mode = check_mode
        self.page_size = page_size
        self.concurrency = concurrency
        self.max_names = max_names
        self.now = now or datetime.datetime.now(datetime.timezone.utc)
        self.counts, self.spared, self.names, self.errors = {}, {}, [], []
        self.stats = {"pages": 0, "restarts": 0, "examined": 0}
        self._lock = threading.Lock()
        self._pending = []
        self.should_stop = should_stop or (lambda: False)

    def run(self):
        # With include_namespaces only those namespaces are listed (less to read, less RBAC needed).
        paths = ([self.client.group_path("batch/v1", "jobs", ns) for ns in self.opts["include_namespaces"]]
                 or ["/apis/batch/v1/jobs"])
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            for path in paths:
                self._list(path)
            self._drain()
        finally:
            # Every write submitted is done (counted, or in errors) before this returns or raises.
            self._pool.shutdown(wait=True)
        return self.result()

    def result(self):
        """What the sweep took and spared so far (all of it once ``run`` returned)."""
        total = sum(self.counts.values())
        return {"action": self.action, "total": total, "per_namespace": dict(self.counts), "names": sorted(self.names),
                "names_truncated": total > len(self.names), "spared": dict(self.spared), "errors": list(self.errors),
                "stats": dict(self.stats)}

    def _list(self, path):
        query = {"limit": self.page_size}
        while True:
            self._check_stop()
            try:
                page = self.client.get(path, query, timeout=60)
            except WatchExpired:
                # The continue token expired (410): finish the writes in flight, then list again. The
                # Jobs already handled are gone (or carry a TTL) and are not taken twice.
                self._drain()
                self.stats["restarts"] += 1
                query = {"limit": self.page_size}
                continue
            self.stats["pages"] += 1
            for job in page.get("items") or []:
                self._consider(job)
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return
            query = {"limit": self.page_size, "continue": cont}

    def _check_stop(self):
        if self.should_stop():
            self._drain()
            raise Stopped()

    def _taken(self, ns, name):
        with self._lock:
            self.counts[ns] = self.counts.get(ns, 0) + 1
            if len(self.names) < self.max_names:
                self.names.append("%s/%s" % (ns, name))

    def _consider(self, job):
        self._check_stop()
        self.stats["examined"] += 1
        why = sweep_verdict(job, self.now, self.opts)
        if why:
            self.spared[why] = self.spared.get(why, 0) + 1
            return
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        if self.check_mode:
            self._taken(ns, name)
            return
        self._pending.append(self._pool.submit(self._write, ns, name))
        if len(self._pending) >= self.concurrency * 4:
            self._drain()   # bounded: a few pages of work in flight at most

    def _drain(self):
        for future in self._pending:
            future.result()
        self._pending = []

    def _write(self, ns, name):
        path = self.client.group_path("batch/v1", "jobs", ns, name)
        try:
            if self.action == "delete":
                self.client.delete(path, propagation="Background")
            else:
                self.client.merge_patch(path, {"spec": {"ttlSecondsAfterFinished": self.opts["ttl_seconds"]}})
            self._taken(ns, name)
        except NotFound:
            pass   # gone already: nothing to sweep
        except ApiError as exc:
            with self._lock:
                self.errors.append("%s/%s: %s" % (ns, name, exc.msg))


def run(client, opts, action, check_mode, **settings):
    """Delete (or set the TTL of) finished ownerless Jobs. Returns counts per namespace and a capped name list."""
    return Sweep(client, opts, action, check_mode, **settings).run()
