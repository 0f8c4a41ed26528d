# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each module's notes say what the integration tier really runs on.

The versions are read from what these tests run against (the API server, the nodes as their kubelets
report themselves, this controller's ansible-core), not from the pins that built them: containerd, for one,
is whatever the host's package is.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib
import os
import sys

import pytest
import yaml
from kubernetes import client as k8s

import kube_helpers as kh

sys.path.insert(0, os.path.join(kh.REPO, "tools", "localcluster"))
import kyverno_tools  # noqa: E402  pylint: disable=wrong-import-position

MODULES = sorted(name[:-3] for name in os.listdir(os.path.join(kh.REPO, "plugins", "modules"))
                 if name.endswith(".py") and not name.startswith("_"))


def notes(module):
    doc = importlib.import_module("ansible_collections.nodeops.kubernetes.plugins.modules." + module).DOCUMENTATION
    return " ".join(yaml.safe_load(doc).get("notes") or [])


@pytest.fixture(scope="module")
def tested(api_client, core, real_node):
    """The phrases every module's notes must hold: what is running here."""
    from ansible.release import __version__ as ansible_core

    kwok = {n.status.node_info.kubelet_version for n in core.list_node().items
            if n.status.node_info.kubelet_version.startswith("kwok-")}
    assert len(kwok) == 1, kwok
    real = core.read_node(real_node.name).status.node_info
    runtime, runtime_version = real.container_runtime_version.split("://", 1)
    return ["Kubernetes " + k8s.VersionApi(api_client).get_code().git_version,
            "kwok v" + kwok.pop()[len("kwok-"):],
            "kubelet and kube-proxy " + real.kubelet_version,
            "%s %s" % (runtime, runtime_version),
            "ansible-core " + ansible_core]


@pytest.mark.parametrize("module", MODULES)
def test_the_notes_name_the_versions_the_tests_run_on(module, tested):
    said = notes(module)
    expected = tested + (["Kyverno " + kyverno_tools.KYVERNO_VERSION] if module == "dangling_job_ttl" else [])
    missing = [phrase for phrase in expected if phrase not in said]
    assert not missing, "%s's notes do not say %s; they say %r" % (module, missing, said)
