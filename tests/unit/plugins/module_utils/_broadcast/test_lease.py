# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run lease's pure parts: who may drive a run, from its record, and the writes that take or keep it.
(The requests are tested on the real apiserver: tests/integration/test_run_lease.py.)"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import socket

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import lease

NOW = datetime.datetime(2026, 12, 4, 12, 0, 0, tzinfo=datetime.timezone.utc)
ME = "here/1/aaaaaa/boot1-4026531836"


def record(holder, age_s, state="running"):
    notes = lease.annotations(holder, NOW - datetime.timedelta(seconds=age_s)) if holder else {}
    return {"metadata": {"name": "nodeops-run-x-1", "annotations": notes, "resourceVersion": "7"},
            "data": {"state": state}}


@pytest.mark.parametrize("rec, verdict", [
    (record(ME, 3), "mine"),
    (record("other/7/bbbbbb/boot2-1", 3), "held"),
    (record("other/7/bbbbbb/boot2-1", lease.LEASE_SECONDS + 1), "held"),   # silent for a lease: only observing tells
    # Even an old renewal time is not trusted across hosts (their clocks may differ): only observing tells.
    (record("other/7/bbbbbb/boot2-1", 3600), "held"),
    (record("other/7/bbbbbb/boot2-1", 3, state="finished"), "free"),
    (record("other/7/bbbbbb/boot2-1", 3, state="aborted"), "free"),
    (record("other/7/bbbbbb/boot2-1", 3, state="cleanup-incomplete"), "free"),
    (record(None, 0), "free"),   # a record of an earlier release, with no lease
    # On this host, in this pid namespace since this boot: a holder whose process has exited is gone at once.
    (record("here/7/bbbbbb/boot1-4026531836", 3), "free"),
    (record("here/42/bbbbbb/boot1-4026531836", 3), "held"),
    # Same host name, but another boot or another pid namespace (a host-network container): its pid means
    # nothing here, so only observing tells.
    (record("here/7/bbbbbb/boot0-4026531836", 3), "held"),
    (record("here/7/bbbbbb/boot1-4026532999", 3), "held"),
    (record("here/7/bbbbbb", 3), "held"),
], ids=["mine", "held", "silent-but-not-observed", "old-by-another-clock", "finished", "aborted", "cleanup-incomplete",
        "no-lease", "same-host-exited", "same-host-alive", "same-name-other-boot", "same-name-other-pidns",
        "no-marks"])
def test_who_may_drive_a_run(rec, verdict):
    assert lease.judge(rec, ME, NOW, alive=lambda pid: pid == 42)[0] == verdict


def test_a_renewal_time_that_cannot_be_read_is_held_not_free():
    """A garbled time is not taken as 'long ago': only the observed silence frees it."""
    rec = record("other/7/bbbbbb/boot2-1", 3)
    rec["metadata"]["annotations"][lease.ANNOTATION_RENEWED] = "yesterday"
    assert lease.judge(rec, ME, NOW)[0] == "held"


def test_the_holder_is_named_with_its_age():
    verdict, holder, age = lease.judge(record("other/7/bbbbbb/boot2-1", 4), ME, NOW)
    assert (verdict, holder, round(age)) == ("held", "other/7/bbbbbb/boot2-1", 4)
    text = lease.held_message("bj", "r1", holder, age)
    assert "other/7/bbbbbb/boot2-1" in text and "4 s ago" in text and "new run_id" in text


def test_this_process_names_its_host_pid_and_what_makes_the_pid_meaningful():
    host, pid, marks = lease._holder_parts(lease.this_process())
    assert (host, pid) == (socket.gethostname(), os.getpid())
    assert marks == lease._local_marks() and marks != "unknown"
    assert lease.this_process() != lease.this_process()   # a token tells two engines of one process apart


def test_a_take_over_is_conditional_and_starts_the_record_afresh():
    patch = lease.takeover_patch(record("other/7/b/x", 3, state="finished"), ME, NOW, 600)
    assert patch["metadata"]["resourceVersion"] == "7"
    assert patch["metadata"]["annotations"][lease.ANNOTATION_HOLDER] == ME
    assert patch["data"] == {"state": "running", "updated_at": "2026-12-04T12:00:00Z", "timeout_s": "600",
                             "finished_at": None, "failed_nodes": None, "progress": None}


def test_writes_to_the_record_are_conditional_on_holding_it():
    ops = lease.conditional(ME, lease.data_ops({"state": "finished", "a/b": "1"}))
    assert ops == [{"op": "test", "path": "/metadata/annotations/nodeops.io~1run-holder", "value": ME},
                   {"op": "add", "path": "/data/a~1b", "value": "1"},
                   {"op": "add", "path": "/data/state", "value": "finished"}]
