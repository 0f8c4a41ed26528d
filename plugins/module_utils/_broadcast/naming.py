# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The names and labels of a broadcast's objects: pods, run records, selectors. Pure.

A pod's name is derived from (broadcast, run, node), so a node can never hold two pods of one run.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib

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


def pod_names(name, run_id, node_names):
    """{node: pod name} for one run's nodes, no two alike. Pure and deterministic for a set of nodes.

    A pod's name ends in 8 hex digits of its node name's SHA-256 (``node_hash``): 32 bits, so two of 10,000
    node names share them about once in 90 runs (bench-00528 and bench-09078 do). Where several nodes share
    them, the first by name keeps them and each other takes the next 8 digits of its own digest that no other
    node of the run has, so a node never takes (or adopts) another node's pod.
    """
    nodes = sorted(set(node_names))
    taken = {}
    for node in nodes:
        taken.setdefault(node_hash(node), []).append(node)
    suffixes = dict((node, h) for h, group in taken.items() for node in group[:1])
    used = set(taken)
    for h, group in sorted(taken.items()):
        for node in group[1:]:
            digest = hashlib.sha256(node.encode("utf-8")).hexdigest()
            for start in range(8, len(digest) - 7, 8):
                candidate = digest[start:start + 8]
                if candidate not in used:
                    break
            else:   # 2**-224: every slice of its digest is taken; a counter then
                candidate = next("%08x" % i for i in range(2 ** 32) if "%08x" % i not in used)
            used.add(candidate)
            suffixes[node] = candidate
    return dict((node, pod_name(name, run_id, node, suffixes[node])) for node in nodes)


def run_selector(name, run_id=None):
    sel = "%s=%s,%s=%s" % (LABEL_MANAGED_BY, MANAGED_BY, LABEL_BROADCAST, name)
    if run_id:
        sel += ",%s=%s" % (LABEL_RUN, run_id)
    return sel
