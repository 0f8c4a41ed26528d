# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The real node's runtime choice (NODEOPS_CONTAINERD) and the configuration each runtime gets.

Both runtimes really run in the integration tier (make integration on 2.4, make k8s-compat on 1.6, the 1.34
cluster's real node; make runtime-compat runs 1.6 on the default cluster);
this checks what a typo does, and that each configuration is the version its containerd reads.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tools", "localcluster"))
import realnode  # noqa: E402  pylint: disable=wrong-import-position


def test_the_default_runtime_is_containerd_2_built_from_its_module(monkeypatch):
    monkeypatch.delenv("NODEOPS_CONTAINERD", raising=False)
    monkeypatch.delenv("NODEOPS_K8S_VERSION", raising=False)
    assert realnode.runtime() == "2.4"
    assert realnode.RUNTIMES["2.4"]["containerd"].startswith("v2.4.")
    assert realnode.RUNTIMES["2.4"]["runc"].startswith("v1.5.")


@pytest.mark.parametrize("value", ["2", "1.7", "debian", ""])
def test_an_unknown_runtime_is_refused_naming_the_choices(monkeypatch, value):
    monkeypatch.setenv("NODEOPS_CONTAINERD", value)
    with pytest.raises(SystemExit) as info:
        realnode.runtime()
    assert str(info.value) == "[real-node] NODEOPS_CONTAINERD=%r: expected one of 1.6, 2.4" % value


def test_each_runtime_gets_the_configuration_version_it_reads():
    """containerd 1.6 reads version 2 (its CRI plugin io.containerd.grpc.v1.cri); 2.x version 3, where the
    sandbox image is a pinned image of io.containerd.cri.v1.images."""
    assert realnode.CONTAINERD_CONFIG.startswith("version = 2\n")
    assert 'sandbox_image = "%(pause)s"' in realnode.CONTAINERD_CONFIG
    assert realnode.CONTAINERD_CONFIG_2.startswith("version = 3\n")
    assert '[plugins."io.containerd.cri.v1.images".pinned_images]\n    sandbox = "%(pause)s"' in realnode.CONTAINERD_CONFIG_2
    assert "io.containerd.grpc.v1.cri" not in realnode.CONTAINERD_CONFIG_2


def test_the_1_6_runtime_needs_debians_packages_and_2_4_what_its_build_needs(monkeypatch):
    node = realnode.Node("/nonexistent", None, None, None)
    monkeypatch.setattr(realnode.os.path, "exists", lambda path: False)
    monkeypatch.setenv("NODEOPS_CONTAINERD", "1.6")
    assert {"containerd", "runc"} <= set(node.missing_packages().values())
    monkeypatch.setenv("NODEOPS_CONTAINERD", "2.4")
    missing = set(node.missing_packages().values())
    assert "libseccomp-dev" in missing and not {"containerd", "runc"} & missing


def test_the_recorded_runtime_of_a_node_and_when_it_must_be_restarted(tmp_path, monkeypatch):
    node = realnode.Node(str(tmp_path), None, None, None)
    assert node.recorded_runtime() is None                    # never started
    (tmp_path / "realnode" / "var" / "lib" / "containerd").mkdir(parents=True)
    assert node.recorded_runtime() == "1.6"                   # a store from before the marker: 1.6's
    (tmp_path / "realnode" / "etc").mkdir()
    (tmp_path / "realnode" / "etc" / "runtime").write_text("2.4\n")
    assert node.recorded_runtime() == "2.4"
    monkeypatch.setattr(node, "pid", lambda: 4242)
    monkeypatch.setenv("NODEOPS_CONTAINERD", "1.6")
    assert node.runs_other_runtime()
    monkeypatch.setenv("NODEOPS_CONTAINERD", "2.4")
    assert not node.runs_other_runtime()
    monkeypatch.setattr(node, "pid", lambda: None)
    monkeypatch.setenv("NODEOPS_CONTAINERD", "1.6")
    assert not node.runs_other_runtime()                     # not running: nothing to restart


@pytest.mark.parametrize("k8s_version, expected", [("", "2.4"), ("1.37", "2.4"), ("1.34", "1.6"), ("v1.34.4", "1.6")])
def test_the_1_34_cluster_keeps_debians_containerd_1_6(monkeypatch, k8s_version, expected):
    """One runtime generation per cluster version, unless NODEOPS_CONTAINERD says otherwise."""
    monkeypatch.delenv("NODEOPS_CONTAINERD", raising=False)
    monkeypatch.setenv("NODEOPS_K8S_VERSION", k8s_version)
    assert realnode.runtime() == expected
    monkeypatch.setenv("NODEOPS_CONTAINERD", "2.4")
    assert realnode.runtime() == "2.4"


def test_an_init_is_known_by_the_root_in_its_command_line():
    argv = [b"/usr/bin/python3", b"/repo/tools/localcluster/realnode.py", b"init", b"/repo/.cluster/realnode",
            b"/repo/.cluster/bin", b"16443", b""]
    assert realnode._init_root(argv) == "/repo/.cluster/realnode"
    assert realnode._init_root([b"/usr/bin/python3", b"/repo/tools/localcluster/realnode.py", b"build", b""]) is None
    assert realnode._init_root([b"sleep", b"60", b""]) is None


def test_another_state_directorys_node_is_never_taken_for_this_one(tmp_path):
    """A pid file that names another real node's init (a recycled pid, another version's cluster) is not this
    node: stopping this one must never signal it, and its running root is what tells stop() to leave the host's
    network alone."""
    import subprocess
    import time

    other_root = str(tmp_path / "other" / "realnode")
    fake_init = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "/x/realnode.py", "init",
                                  other_root, "/x/bin", "16443"])
    try:
        for _attempt in range(50):
            if other_root in realnode.running_roots():
                break
            time.sleep(0.1)
        assert other_root in realnode.running_roots()
        mine = realnode.Node(str(tmp_path / "mine"), str(tmp_path), 16443, str(tmp_path / "bin"))
        os.makedirs(mine.p("run"))
        with open(mine.p("run", "init.pid"), "w") as f:
            f.write(str(fake_init.pid))
        assert mine.pid() is None
        theirs = realnode.Node(str(tmp_path / "other"), str(tmp_path), 16443, str(tmp_path / "bin"))
        os.makedirs(theirs.p("run"))
        with open(theirs.p("run", "init.pid"), "w") as f:
            f.write(str(fake_init.pid))
        assert theirs.pid() == fake_init.pid
    finally:
        fake_init.kill()
        fake_init.wait()
