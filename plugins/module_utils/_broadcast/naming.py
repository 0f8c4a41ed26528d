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


def pod_name(name, run_id, node_name):
    return "%s-%s-%s" % (name, run_id, node_hash(node_name))


def run_selector(name, run_id=None):
    sel = "%s=%s,%s=%s" % (LABEL_MANAGED_BY, MANAGED_BY, LABEL_BROADCAST, name)
    if run_id:
        sel += ",%s=%s" % (LABEL_RUN, run_id)
    return sel
