# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every module's notes say what it is tested on, from one fragment generated from the pins.

tests/integration/test_documented_versions.py checks the pins against the running cluster.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib
import os
import re
import sys

import pytest
import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tools"))
sys.path.insert(0, os.path.join(REPO, "tools", "localcluster"))
import versions  # noqa: E402  pylint: disable=wrong-import-position
import kyverno_tools  # noqa: E402  pylint: disable=wrong-import-position

MODULES = sorted(name[:-3] for name in os.listdir(os.path.join(REPO, "plugins", "modules"))
                 if name.endswith(".py") and not name.startswith("_"))
# A version number as notes write one (v1.37.2, 1.37, ansible-core 2.19, containerd 1.6).
VERSION = re.compile(r"\bv?\d+\.\d+(\.\d+)?\b")


def doc(module):
    return yaml.safe_load(importlib.import_module(
        "ansible_collections.nodeops.kubernetes.plugins.modules." + module).DOCUMENTATION)


def test_the_fragment_is_what_the_pins_make():
    assert versions.main(["--check"]) == 0, "run python3 tools/versions.py"


def test_the_cluster_stamps_the_version_go_mod_builds():
    """cluster.py stamps the version go.mod builds (tests/unit/test_k8s_versions.py); the notes name the default
    minor's and the compatibility suite's."""
    import cluster
    pins = versions.pins()
    assert cluster.module_version(cluster.default_minor()) == pins["kubernetes"]
    assert cluster.module_version(pins["compat_minor"]) == pins["compat_kubernetes"] != pins["kubernetes"]


def test_the_pins_are_read_from_the_files_that_decide_them():
    pins = versions.pins()
    assert re.match(r"^v1\.\d+\.\d+$", pins["kubernetes"]) and re.match(r"^v3\.\d+\.\d+$", pins["etcd"])
    assert pins["kyverno"] == kyverno_tools.KYVERNO_VERSION
    assert re.match(r"^2\.\d+\.\d+$", pins["ansible_core"])
    rendered = versions.render(dict(pins, kubernetes="v9.9.9"))
    assert "Kubernetes v9.9.9 (kube-apiserver" in rendered and "kube-proxy v9.9.9 with" in rendered


@pytest.mark.parametrize("module", MODULES)
def test_every_module_takes_its_tested_versions_from_the_fragment_only(module):
    d = doc(module)
    assert "nodeops.kubernetes.tested_versions" in d["extends_documentation_fragment"]
    fragment = yaml.safe_load(versions.render(versions.pins()).split('r"""', 1)[1].rsplit('"""', 1)[0])["notes"]
    # dangling_job_ttl names the Kyverno it is checked with, as "Kyverno <pin>" or "Kyverno CLI <pin>" only.
    kyverno = re.compile(r"Kyverno (CLI )?%s" % re.escape(kyverno_tools.KYVERNO_VERSION))
    own = [n for n in d.get("notes") or [] if n not in fragment and VERSION.search(kyverno.sub("", n))]
    assert not own, "%s writes a version in its own notes: %r" % (module, own)


@pytest.mark.parametrize("note", ["Integration-tested against Kubernetes 1.37 with simulated (kwok) nodes.",
                                  "The controller runs ansible-core 2.19.", "containerd 1.6 on the node.",
                                  "Kyverno v1.18.0 is installed."])
def test_a_stale_version_in_a_modules_own_notes_is_caught(note):
    kyverno = re.compile(r"Kyverno (CLI )?%s" % re.escape(kyverno_tools.KYVERNO_VERSION))
    assert VERSION.search(kyverno.sub("", note))


def test_dangling_job_ttl_names_the_kyverno_it_is_tested_with():
    notes = " ".join(doc("dangling_job_ttl")["notes"])
    assert "Kyverno CLI %s" % kyverno_tools.KYVERNO_VERSION in notes, notes
