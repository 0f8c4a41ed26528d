# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for the integration tier: the real local control plane, brought up once."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import sys

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

import kube_helpers as kh

# Every ansible-playbook these tests start must load this working tree, never an installed copy of the
# collection (~/.ansible/collections) that would shadow it when the tests are run by hand instead of by make.
_LINKED = os.path.join(kh.REPO, "build", "collections")
if not os.path.isdir(os.path.join(_LINKED, "ansible_collections", "nodeops", "kubernetes")):
    raise pytest.UsageError("%s is missing: run `make link` (make integration does)" % _LINKED)
os.environ["ANSIBLE_COLLECTIONS_PATH"] = _LINKED
# ... and keep Ansible's own files in the checkout's .ansible/, as make does (tools/home_guard.py).
os.environ.setdefault("ANSIBLE_HOME", os.path.join(kh.REPO, ".ansible"))
os.environ.setdefault("ANSIBLE_REMOTE_TMP", os.path.join(kh.REPO, ".ansible", "tmp"))


def pytest_configure(config):
    config.addinivalue_line("markers", "real_node: the test runs on the real node (added to every test that "
                            "uses the real_node fixture; make k8s-compat and make runtime-compat select them)")
    config.addinivalue_line("markers", "k8s_compat: in the compatibility suite on the older Kubernetes minor "
                            "(make k8s-compat), with every real_node test")


def pytest_collection_modifyitems(items):
    for item in items:
        if "real_node" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_node)


@pytest.fixture(scope="session")
def cluster():
    """Start the local cluster if it is not up (a no-op when it is). Returns the kubeconfig path.

    A Kyverno admission controller left running (make kyverno-admission) is stopped first: it writes as the
    tests' admin user, which the audit checks would count, and its webhooks would judge every test's policies.
    The tests that need it start their own (test_dangling_jobs_cluster.py's kyverno_admission)."""
    tools = os.path.join(kh.REPO, "tools", "localcluster")
    subprocess.run([sys.executable, os.path.join(tools, "kyverno_tools.py"), "admission-down"], check=False)
    subprocess.run([sys.executable, os.path.join(tools, "cluster.py"), "up"], check=True)
    return kh.KUBECONFIG


@pytest.fixture(scope="session")
def api_client(cluster):
    return kh.new_api_client(cluster)


@pytest.fixture(scope="session")
def core(api_client):
    return k8s.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def batch(api_client):
    return k8s.BatchV1Api(api_client)


@pytest.fixture(scope="session")
def apps(api_client):
    return k8s.AppsV1Api(api_client)


@pytest.fixture
def namespace(core, request):
    """A fresh namespace per test, deleted afterwards whatever happens."""
    name = kh.unique("t-" + request.node.name.lower().replace("_", "-")[:30].strip("-"))
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name, labels={"nodeops-test": "1"})))
    kh.wait_for("default ServiceAccount in %s" % name,
                lambda: core.read_namespaced_service_account("default", name))
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture
def sim_nodes(core):
    helper = kh.SimNodes(core)
    try:
        yield helper
    finally:
        helper.cleanup()


@pytest.fixture
def audit(cluster):
    return kh.AuditLog()


@pytest.fixture(scope="session")
def real_node(cluster):
    """The cluster's real node (kubelet + containerd); skips with the reason where this machine cannot run it.

    Under NODEOPS_REQUIRE_REAL_NODE=1 (CI on this machine kind) its absence fails instead of skipping.
    """
    node = kh.RealNodeHelper()
    why = node.absent_reason()
    if why:
        if os.environ.get("NODEOPS_REQUIRE_REAL_NODE") == "1":
            pytest.fail("NODEOPS_REQUIRE_REAL_NODE=1 but the real node is absent: " + why)
        pytest.skip("no real node: " + why)
    return node
