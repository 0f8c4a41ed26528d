# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The names and labels of a broadcast's objects: pods, run records, selectors. Pure.

A pod's name is derived from (broadcast, run, node) and no two nodes of a run share one (``pod_names``); a
pod's node annotation, not its name, says whose it is (plan.py matches a resumed run's pods by it).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import itertools

from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.apply import LABEL_MANAGED_BY, MANAGED_BY

LABEL_BROADCAST = "nodeops.io/broadcast"
LABEL_RUN = "nodeops.io/run-id"
LABEL_NODE_HASH = "nodeops.io/node-hash"
LABEL_NODE = "nodeops.io/node"
ANNOTATION_NODE = "nodeops.io/node"
LABEL_CRON = "nodeops.io/cron-broadcast"
# What a ConfigMap of ours holds: a run record (owner of a run's pods) or a cron broadcast's history.
LABEL_KIND = "nodeops.io/kind"
KIND_RUN_RECORD = "run-record"
KIND_HISTORY = "history"
# The immutable ConfigMap of code a run's node pods (or a cron broadcast's runner) run, checked by digest.
KIND_RUN_CODE = "run-code"
KIND_RUNNER_CODE = "runner-code"


RECORD_PREFIX = "nodeops-run-"


def record_name(name, run_id):
    """The run record: the ConfigMap that owns a run's pods and holds the node script."""
    return RECORD_PREFIX + "%s-%s" % (name, run_id)


def code_name(name, run_id):
    """The run's code: the node script and its inputs, immutable, owned by the run record."""
    return record_name(name, run_id) + "-code"


def node_hash(node_name):
    return hashlib.sha256(node_name.encode("utf-8")).hexdigest()[:8]


def pod_name(name, run_id, node_name, suffix=None):
    return "%s-%s-%s" % (name, run_id, suffix or node_hash(node_name))


def pod_names(name, run_id, node_names, keep=None):
    """{node: pod name} for one run's nodes, no two alike. Pure and deterministic for a set of nodes.

    A pod's name ends in 8 hex digits of its node name's SHA-256 (``node_hash``): 32 bits, so two of 10,000
    node names share them about once in 90 runs (bench-00528 and bench-09078 do). Nodes are named in order:
    each takes the first 8-digit slice of its own digest whose name no node before it took, so the first by
    name keeps the plain name and a node never takes (or adopts) another node's pod. ``keep``: {node: the name
    of the pod it has already} (a resumed run), kept as they are and taken by no other node.
    """
    keep = dict(keep or {})
    nodes = sorted(set(node_names))
    out = dict((node, keep[node]) for node in nodes if node in keep)
    used = set(out.values())
    for node in nodes:
        if node in out:
            continue
        out[node] = next_pod_name(name, run_id, node, used)
        used.add(out[node])
    return out


def next_pod_name(name, run_id, node, taken):
    """The name of ``node``'s pod in a run whose other pods have the names in ``taken`` (a container): the first
    8-digit slice of its digest no other pod has (``pod_names``). A node that joins during a run is named so."""
    digest = hashlib.sha256(node.encode("utf-8")).hexdigest()
    candidates = (pod_name(name, run_id, node, digest[start:start + 8]) for start in range(0, len(digest) - 7, 8))
    # A counter after the eight slices of its digest: never reached (every slice taken is 2**-200 or so).
    fallback = (pod_name(name, run_id, node, "%08x" % i) for i in range(2 ** 32))
    return next(candidate for candidate in itertools.chain(candidates, fallback) if candidate not in taken)


def run_selector(name, run_id=None):
    sel = "%s=%s,%s=%s" % (LABEL_MANAGED_BY, MANAGED_BY, LABEL_BROADCAST, name)
    if run_id:
        sel += ",%s=%s" % (LABEL_RUN, run_id)
    return sel
