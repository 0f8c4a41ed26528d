# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kubernetes version knob (NODEOPS_K8S_VERSION): one module directory per minor, whose go.mod is the one
source of the version, a state directory per minor, and refusals of what would mix them.

The clusters themselves run in the integration tier (make integration on the default minor, make k8s-compat on
1.34); this checks the choice, and what a typo, a foreign state directory or a stale binary does.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tools", "localcluster"))
import cluster  # noqa: E402  pylint: disable=wrong-import-position

K8S = os.path.join(REPO, "tools", "k8s")


def gomod(minor):
    with open(os.path.join(K8S, "v" + minor, "go.mod")) as f:
        return f.read()


def test_there_is_a_module_per_supported_minor_and_the_default_is_the_newest():
    minors = cluster.supported_minors()
    assert "1.34" in minors and len(minors) >= 2
    assert cluster.default_minor() == minors[-1]
    assert [int(m.split(".")[1]) for m in minors] == sorted(int(m.split(".")[1]) for m in minors)


@pytest.mark.parametrize("minor", cluster.supported_minors())
def test_each_go_mod_names_one_kubernetes_and_matching_staging_modules(minor):
    """The version is read from go.mod; every k8s.io staging module there must be that release's (v0.MINOR.PATCH),
    or the binary would mix two Kubernetes releases."""
    text = gomod(minor)
    version = cluster.module_version(minor)
    assert re.match(r"^v%s\.\d+$" % re.escape(minor), version), version
    staging = "v0." + version[len("v1."):]
    replaced = re.findall(r"^\s*(k8s\.io/[\w.-]+) => k8s\.io/[\w.-]+ (v\S+)$", text, re.M)
    assert len(replaced) > 20
    assert {name: v for name, v in replaced if v != staging} == {}
    # The shared main.go (a link, so one program is built for every minor).
    assert os.path.realpath(os.path.join(K8S, "v" + minor, "main.go")) == os.path.join(K8S, "main.go")


@pytest.mark.parametrize("value, minor", [("", None), ("1.34", "1.34"), ("v1.34", "1.34"), (" 1.34 ", "1.34")])
def test_the_knob_takes_a_minor(value, minor):
    assert cluster.selected_minor(value) == (minor or cluster.default_minor())


def test_the_knob_takes_the_patch_its_go_mod_names_and_no_other():
    version = cluster.module_version("1.34")
    assert cluster.selected_minor(version) == "1.34"
    other = version.rsplit(".", 1)[0] + "." + str(int(version.rsplit(".", 1)[1]) + 1)
    with pytest.raises(SystemExit) as info:
        cluster.selected_minor(other)
    assert repr(other) in str(info.value) and version in str(info.value)


@pytest.mark.parametrize("value", ["1.35", "1.3", "2.34", "latest", "1.34.x", "1.9999"])
def test_an_unsupported_version_is_refused_naming_the_variable_the_value_and_the_choices(value):
    with pytest.raises(SystemExit) as info:
        cluster.selected_minor(value)
    message = str(info.value)
    assert message.startswith("[cluster] NODEOPS_K8S_VERSION=%r: expected one of " % value)
    for minor in cluster.supported_minors():
        assert minor in message and cluster.module_version(minor) in message


def run_kubeconfig(**env):
    base = {k: v for k, v in os.environ.items()
            if k not in ("NODEOPS_K8S_VERSION", "NODEOPS_CLUSTER_DIR", "NODEOPS_MUTATING_ADMISSION_POLICY_BETA")}
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "localcluster", "cluster.py"), "kubeconfig"],
                          env=dict(base, **env), capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout.strip(), proc.stderr.strip()


def test_each_minor_has_its_own_state_directory():
    assert run_kubeconfig() == (0, os.path.join(REPO, ".cluster", "kubeconfig"), "")
    assert run_kubeconfig(NODEOPS_K8S_VERSION=cluster.default_minor())[1] == os.path.join(REPO, ".cluster", "kubeconfig")
    assert run_kubeconfig(NODEOPS_K8S_VERSION="1.34")[1] == os.path.join(REPO, ".cluster-v1.34", "kubeconfig")
    assert run_kubeconfig(NODEOPS_K8S_VERSION="1.34", NODEOPS_CLUSTER_DIR="/tmp/x")[1] == "/tmp/x/kubeconfig"
    rc, out, err = run_kubeconfig(NODEOPS_K8S_VERSION="1.99")
    assert rc != 0 and out == "" and "NODEOPS_K8S_VERSION='1.99': expected one of" in err


def test_the_mutating_admission_policy_beta_is_only_for_minors_before_its_ga():
    assert run_kubeconfig(NODEOPS_K8S_VERSION="1.34", NODEOPS_MUTATING_ADMISSION_POLICY_BETA="1")[0] == 0
    assert run_kubeconfig(NODEOPS_MUTATING_ADMISSION_POLICY_BETA="0")[0] == 0
    rc, out, err = run_kubeconfig(NODEOPS_MUTATING_ADMISSION_POLICY_BETA="1")
    assert rc != 0 and out == "" and "NODEOPS_MUTATING_ADMISSION_POLICY_BETA=1 is for Kubernetes 1.34 and 1.35" in err
    rc, out, err = run_kubeconfig(NODEOPS_K8S_VERSION="1.34", NODEOPS_MUTATING_ADMISSION_POLICY_BETA="yes")
    assert rc != 0 and "NODEOPS_MUTATING_ADMISSION_POLICY_BETA='yes': expected 1" in err


def test_only_the_beta_flags_differ_and_only_when_asked(monkeypatch):
    monkeypatch.setattr(cluster, "MAP_BETA", False)
    plain = cluster._args("kube-apiserver")
    monkeypatch.setattr(cluster, "MAP_BETA", True)
    beta = cluster._args("kube-apiserver")
    assert beta[:len(plain)] == plain and beta[len(plain):] == [
        "--feature-gates=MutatingAdmissionPolicy=true", "--runtime-config=admissionregistration.k8s.io/v1beta1=true"]


def test_a_state_directory_of_another_minor_is_refused(tmp_path, monkeypatch):
    """etcd cannot open a newer etcd's data directory: a state directory is marked, and never reused across minors."""
    monkeypatch.setattr(cluster, "STATE", str(tmp_path))
    monkeypatch.setattr(cluster, "K8S_MINOR", "1.34")
    cluster.check_state_minor()                    # a fresh (or unmarked) directory is marked
    assert (tmp_path / "k8s-minor").read_text() == "1.34\n"
    cluster.check_state_minor()                    # and accepted again
    monkeypatch.setattr(cluster, "K8S_MINOR", "1.37")
    with pytest.raises(SystemExit) as info:
        cluster.check_state_minor()
    assert "holds a Kubernetes 1.34 cluster, not 1.37" in str(info.value) and "cluster-clean" in str(info.value)
    assert (tmp_path / "k8s-minor").read_text() == "1.34\n"


GO_VERSION_M = """/cache/bin/nodeops-k8s: go1.26.8
\tpath\tnodeops.local/tools/k8s
\tmod\tnodeops.local/tools/k8s\t(devel)\t
\tdep\tgo.etcd.io/etcd/server/v3\tv3.6.4\th1:abc=
\tdep\tk8s.io/kubernetes\t%s\th1:def=
\tbuild\t-trimpath=true
"""


@pytest.mark.parametrize("built, refused", [("v1.34.4", False), ("v1.37.2", True), (None, True)])
def test_a_binary_built_from_another_kubernetes_is_refused(monkeypatch, built, refused):
    """The cache key is the module's files; a binary under that name built from another release never runs."""
    class Done(object):
        stdout = GO_VERSION_M % built if built else GO_VERSION_M.replace("\tdep\tk8s.io/kubernetes\t%s\th1:def=\n", "")

    monkeypatch.setattr(cluster, "K8S_VERSION", "v1.34.4")
    monkeypatch.setattr(cluster.subprocess, "run", lambda *a, **k: Done())
    assert cluster.built_module_version("/bin") == built
    if refused:
        with pytest.raises(SystemExit) as info:
            cluster.check_built_version("/cache/bin/nodeops-k8s")
        assert "built from k8s.io/kubernetes %s, but" % built in str(info.value) and "v1.34.4" in str(info.value)
    else:
        cluster.check_built_version("/cache/bin/nodeops-k8s")
