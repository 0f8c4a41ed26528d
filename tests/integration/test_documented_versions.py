# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The versions the module notes name (tools/versions.py, from the pins) are what these tests run against.

The notes are generated from the pins and every module carries them (tests/unit/test_tested_versions.py).
Here the running parts say their own versions: the API server, the kwok nodes and this controller's
ansible-core, and, in their own test, the real node's kubelet, containerd and runc.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

import pytest
from kubernetes import client as k8s

import kube_helpers as kh

sys.path.insert(0, os.path.join(kh.REPO, "tools"))
import versions  # noqa: E402  pylint: disable=wrong-import-position

PINS = versions.pins()


def cluster_version():
    """The Kubernetes version of the cluster under test (the go.mod of the minor NODEOPS_K8S_VERSION selects): the
    notes' default, or the compatibility suite's."""
    version = kh.local_cluster.K8S_VERSION
    assert version == (PINS["compat_kubernetes"] if kh.local_cluster.K8S_MINOR == PINS["compat_minor"]
                       else PINS["kubernetes"]), version
    return version


@pytest.mark.k8s_compat
def test_the_control_plane_kwok_and_ansible_core_are_the_pinned_versions(api_client, core):
    from ansible.release import __version__ as ansible_core

    kwok = {n.status.node_info.kubelet_version for n in core.list_node().items
            if n.status.node_info.kubelet_version.startswith("kwok-")}
    running = {"kubernetes": k8s.VersionApi(api_client).get_code().git_version, "kwok": kwok,
               "ansible_core": ansible_core}
    # kwok's nodes say their kubelet version as kwok-0.8.0 for kwok v0.8.0.
    assert running == {"kubernetes": cluster_version(), "kwok": {"kwok-" + PINS["kwok"].lstrip("v")},
                       "ansible_core": PINS["ansible_core"]}


def test_the_real_node_runs_the_kubelet_containerd_and_runc_the_notes_name(core, real_node):
    info = core.read_node(real_node.name).status.node_info
    assert info.kubelet_version == cluster_version()
    assert info.kube_proxy_version in ("", cluster_version())
    # The runtime the node was started with (cluster.py records it), not what this process's environment says:
    # the cluster version's own unless NODEOPS_CONTAINERD chose (make runtime-compat).
    runtime = real_node.node.recorded_runtime()
    expected = os.environ.get("NODEOPS_CONTAINERD") or kh.local_cluster.realnode.default_runtime(
        kh.local_cluster.K8S_MINOR)
    assert runtime == expected, (runtime, expected)
    built = runtime == "2.4"
    want = PINS["containerd"].lstrip("v") if built else PINS["debian_containerd"]
    assert info.container_runtime_version == "containerd://" + want, (
        "the real node runs %s; update the pins in tools/versions.py and run it" % info.container_runtime_version)
    runc = real_node.sh("runc --version")
    # Debian's package says its own suffix (1.1.5+ds1); the built one says exactly its version.
    first = runc.splitlines()[0]
    if built:
        assert first == "runc version " + PINS["runc"].lstrip("v"), runc
    else:
        assert first.startswith("runc version %s+" % PINS["debian_runc"]), runc
    assert "libseccomp: " in runc, "runc was built without seccomp"
    assert real_node.sh("command -v runc").strip() == ("/usr/local/sbin/runc" if built else "/usr/sbin/runc")
