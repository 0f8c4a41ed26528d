# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The README's table of the runner's rights is what cron_broadcast grants, option by option.

The cluster-side half (the API server's SelfSubjectRulesReview as the runner) is
tests/integration/test_cron_broadcast_cluster.py::test_the_runner_has_exactly_the_documented_rights.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import options
from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron import manifests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools"))
import rights_table  # noqa: E402

CRON = {"name": "nightly", "schedule": "0 3 * * *", "time_zone": None, "concurrency_policy": "Forbid",
        "starting_deadline_seconds": None, "successful_jobs_history_limit": 3, "failed_jobs_history_limit": 3,
        "history_limit": 10, "suspend": False, "runner_image": "python:3.13-slim"}


def granted(opts):
    """What the built objects grant, in the table's words."""
    out = set()
    for obj in manifests.build_objects(CRON, opts, sources={}):
        if obj["kind"] not in ("Role", "ClusterRole"):
            continue
        ns = obj["metadata"].get("namespace")
        where = "cluster" if ns is None else ("default" if ns == "default" else "its namespace")
        out |= rights_table.from_rules(where, obj["rules"])
    return out


@pytest.mark.parametrize("node_events, keep_images, disk_pressure, preset", [
    ("failures", False, True, "image_prune"), ("none", False, True, "image_prune"), ("all", True, True, "image_prune"),
    ("none", True, True, "image_prune"), ("none", False, False, "image_prune"), ("failures", True, False, "image_prune"),
    ("failures", False, True, "host_command")])
def test_the_documented_rights_are_exactly_what_cron_broadcast_grants(node_events, keep_images, disk_pressure, preset):
    params = {"name": "nightly", "namespace": "ops", "preset": preset, "node_events": node_events,
              "disk_pressure": disk_pressure}
    if preset == "image_prune":
        params["image_prune"] = {"keep_images_in_cluster": keep_images}
    else:
        params["host_command"] = {"command": ["true"]}
    opts = options.validate(params)
    # disk_pressure is the default, and only a preset that frees disk space (not host_command) acts on it.
    assert opts["disk_pressure"] is (disk_pressure and preset == "image_prune")
    conditions = ([rights_table.NODE_EVENTS] if node_events != "none" else []) + (
        [rights_table.KEEP_IMAGES] if keep_images else []) + ([rights_table.DISK_PRESSURE] if opts["disk_pressure"] else [])
    documented = rights_table.rights(rights_table.rows(), conditions, name="nightly")
    assert granted(opts) == documented


def test_every_row_says_what_it_implies():
    for row in rights_table.rows():
        assert row["when"] in (rights_table.ALWAYS, rights_table.NODE_EVENTS, rights_table.KEEP_IMAGES, rights_table.DISK_PRESSURE,
                               rights_table.THROUGH_PODS), row


# ------------------------------------------------------------------ the scheduled sweep's table

def sweep_granted(action, include):
    """What dangling_job_ttl's scheduled sweep grants, in the sweep table's words."""
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._dangling import options as dangling_options
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._dangling import scheduled

    opts = dangling_options.validate({"ttl_seconds": 900, "include_namespaces": include, "exclude_namespaces": [],
                                      "opt_out_label": "nodeops.io/keep-job", "policy_name": "nightly"})
    sched = {"schedule": "0 3 * * *", "time_zone": None, "namespace": "ops", "runner_image": "python:3.13-slim",
             "action": action, "page_size": 500, "concurrency": 10, "max_names": 100, "history_limit": 10,
             "deadline_seconds": 3600}
    names = scheduled.object_names("nightly", "ops")
    out = set()
    for obj in scheduled.build_objects(sched, opts, sources={}):
        if obj["kind"] == "ClusterRole":
            out |= rights_table.from_rules("cluster", obj["rules"])
        elif obj["kind"] == "Role":
            where = "its namespace" if obj["metadata"]["name"] == names["history_role"] else "each included namespace"
            out |= rights_table.from_rules(where, obj["rules"])
    return out


@pytest.mark.parametrize("action", ["delete", "set_ttl"])
@pytest.mark.parametrize("include", [[], ["ci", "web"]])
def test_the_sweep_table_is_what_the_scheduled_sweep_grants(action, include):
    conditions = [rights_table.DELETE if action == "delete" else rights_table.SET_TTL,
                  rights_table.SOME_NAMESPACES if include else rights_table.ALL_NAMESPACES]
    documented = rights_table.rights(rights_table.rows(table="sweep"), conditions, name="nightly")
    assert sweep_granted(action, include) == documented
    assert documented   # the table was read
