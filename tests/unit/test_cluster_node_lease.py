# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The simulated nodes' lease (tools/localcluster/cluster.py): the scale benchmark lengthens it for 10,000 nodes,
tests run with a kubelet's 40 s, and a benchmark that was killed must not leave the longer lease behind.

The restarts themselves run against the real cluster (make bench-scale, and ``cluster.py up``); this checks the
configuration they write and the decisions they take.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tools", "localcluster"))
import cluster  # noqa: E402  pylint: disable=wrong-import-position


def state(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "STATE", str(tmp_path))
    os.makedirs(str(tmp_path / "kwok"))
    os.makedirs(str(tmp_path / "run"))


def test_the_lease_is_written_into_kwok_config_and_read_back(tmp_path, monkeypatch):
    state(tmp_path, monkeypatch)
    assert cluster.node_lease_seconds() == cluster.DEFAULT_NODE_LEASE_SECONDS == 40   # no config yet: the default
    cluster._write_kwok_config(1200)
    text = (tmp_path / "kwok" / "kwok.yaml").read_text()
    assert "\n  nodeLeaseDurationSeconds: 1200\n" in text and "nodeLeaseDurationSeconds: 40" not in text
    assert cluster.node_lease_seconds() == 1200
    assert "@POD_LOG@" not in text and str(tmp_path / "kwok" / "pod.log") in text
    cluster._write_kwok_config(40)
    assert cluster.node_lease_seconds() == 40


def test_the_controller_manager_grace_period_follows_the_lease(tmp_path, monkeypatch):
    state(tmp_path, monkeypatch)
    cluster._write_kwok_config(40)
    assert "--node-monitor-grace-period=40s" in cluster._args("kube-controller-manager")
    cluster._write_kwok_config(1200)
    # Renewed every 300 s: a grace period shorter than that would mark every simulated node Unknown.
    assert "--node-monitor-grace-period=1200s" in cluster._args("kube-controller-manager")


def test_a_longer_lease_whose_holder_is_gone_is_abandoned_and_one_held_is_not(tmp_path, monkeypatch):
    state(tmp_path, monkeypatch)
    cluster._write_kwok_config(1200)
    assert cluster._lease_abandoned()   # no holder recorded
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / "run" / "node-lease.holder").write_text(str(gone.pid))
    assert cluster._lease_holder() is None and cluster._lease_abandoned()
    (tmp_path / "run" / "node-lease.holder").write_text(str(os.getpid()))
    assert cluster._lease_holder() == os.getpid() and not cluster._lease_abandoned()
    cluster._write_kwok_config(40)
    assert not cluster._lease_abandoned()   # the default is never "abandoned"


def test_configs_keep_a_held_lease_and_reset_an_abandoned_one(tmp_path, monkeypatch):
    state(tmp_path, monkeypatch)
    monkeypatch.setattr(cluster, "write_kubeconfig", lambda *a, **k: None)
    cluster._write_kwok_config(1200)
    (tmp_path / "run" / "node-lease.holder").write_text(str(os.getpid()))
    cluster.write_configs()
    assert cluster.node_lease_seconds() == 1200   # a benchmark still running keeps its lease
    os.unlink(str(tmp_path / "run" / "node-lease.holder"))
    cluster.write_configs()
    assert cluster.node_lease_seconds() == 40
