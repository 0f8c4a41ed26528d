# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pod Security, asked before anything is written, on the real control plane (its PodSecurity admission).

Invariant: a namespace whose Pod Security level refuses a preset's pods never gets anything written
by broadcast_job or cron_broadcast, in check mode or not. A CronJob is the case that matters: Pod
Security enforces on Pods only, so without the pods' own dry run it installs cleanly and fails at
its first run, at night. The refusal names the namespace, its level, the level needed and the label
that admits it; a namespace's ``warn`` label reaches the task as Ansible warnings.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from kubernetes import client as k8s

import kube_helpers as kh

ENFORCE = "pod-security.kubernetes.io/enforce"
WARN = "pod-security.kubernetes.io/warn"


def label_namespace(core, namespace, **labels):
    core.patch_namespace(namespace, {"metadata": {"labels": labels}})


def job_args(namespace, **extra):
    args = {"name": "prune", "namespace": namespace, "preset": "image_prune", "image_prune": {"dry_run": True},
            "node_label_selector": "!nodeops-test", "parallelism": "100%"}
    args.update(extra)
    return args


def cron_args(namespace, **extra):
    args = {"name": "nightly", "namespace": namespace, "schedule": "0 3 * * *", "preset": "image_prune",
            "image_prune": {"dry_run": True}}
    args.update(extra)
    return args


def ours(writes, namespace):
    """The writes of this test's objects: in its namespace, or named after it (a cron broadcast's
    cluster-scoped RBAC and its Role for Node events in default carry the namespace in their names)."""
    return [w for w in writes if w["namespace"] == namespace or namespace in (w["name"] or "")]


def refused_dry_runs(audit, mark, namespace):
    """Pod creates in ``namespace`` the apiserver refused, each a dry run (so never a write)."""
    return [e for e in audit.events_since(mark) if e.get("stage") == "ResponseComplete"
            and e.get("verb") == "create" and (e.get("objectRef") or {}).get("resource") == "pods"
            and (e.get("objectRef") or {}).get("namespace") == namespace
            and (e.get("responseStatus") or {}).get("code") == 403 and "dryRun=All" in e.get("requestURI", "")]


@pytest.fixture(autouse=True)
def no_cluster_scoped_leftovers(api_client, namespace):
    """Cluster-scoped RBAC outlives the test namespace: remove what a test installed."""
    yield
    rbac = k8s.RbacAuthorizationV1Api(api_client)
    for binding in rbac.list_cluster_role_binding(label_selector="nodeops.io/cron-broadcast").items:
        if binding.metadata.name.startswith("nodeops-%s-" % namespace):
            rbac.delete_cluster_role_binding(binding.metadata.name)
    for role in rbac.list_cluster_role(label_selector="nodeops.io/cron-broadcast").items:
        if role.metadata.name.startswith("nodeops-%s-" % namespace):
            rbac.delete_cluster_role(role.metadata.name)
    for role in rbac.list_namespaced_role("default", label_selector="nodeops.io/cron-broadcast").items:
        if namespace in role.metadata.name:
            rbac.delete_namespaced_role(role.metadata.name, "default")
    for binding in rbac.list_namespaced_role_binding("default", label_selector="nodeops.io/cron-broadcast").items:
        if namespace in binding.metadata.name:
            rbac.delete_namespaced_role_binding(binding.metadata.name, "default")


@pytest.mark.parametrize("module, args, check", [
    ("broadcast_job", job_args, True),
    ("broadcast_job", job_args, False),
    ("cron_broadcast", cron_args, False),
    ("cron_broadcast", cron_args, True),
])
def test_a_namespace_enforcing_baseline_refuses_image_prune_before_any_write(
        tmp_path, api_client, core, namespace, audit, module, args, check):
    label_namespace(core, namespace, **{ENFORCE: "baseline"})
    mark = audit.mark()
    result = kh.run_module(tmp_path, module, args(namespace), check=check)
    assert result.get("failed"), result
    command = "kubectl label --overwrite namespace %s %s=privileged" % (namespace, ENFORCE)
    for fragment in ('namespace "%s"' % namespace, 'enforces Pod Security level "baseline"',
                     "its label %s=baseline" % ENFORCE, 'need level "privileged"', command):
        assert fragment in result["msg"], result["msg"]
    assert result["pod_security"] == {"namespace": namespace, "enforced": "baseline", "required": "privileged",
                                      "command": command}
    # Nothing written, in the namespace or cluster-wide; the apiserver was asked, by a dry run.
    assert ours(audit.writes_since(mark, namespace=None), namespace) == []
    assert audit.writes_since(mark, namespace=namespace) == []
    assert refused_dry_runs(audit, mark, namespace), "no refused dry run of a pod in the audit log"
    assert core.list_namespaced_pod(namespace).items == []
    assert core.list_namespaced_config_map(namespace, label_selector="app.kubernetes.io/managed-by").items == []
    assert k8s.BatchV1Api(api_client).list_namespaced_cron_job(namespace).items == []


def test_with_the_label_it_names_the_install_goes_through_and_stays_idempotent(tmp_path, core, namespace, audit):
    label_namespace(core, namespace, **{ENFORCE: "baseline"})
    refused = kh.run_module(tmp_path, "cron_broadcast", cron_args(namespace))
    assert refused.get("failed") and refused["pod_security"]["required"] == "privileged", refused
    label_namespace(core, namespace, **{ENFORCE: refused["pod_security"]["required"]})
    first = kh.run_module(tmp_path, "cron_broadcast", cron_args(namespace))
    assert not first.get("failed"), first.get("msg")
    assert first["changed"] is True and not first.get("warnings"), first
    second = kh.run_module(tmp_path, "cron_broadcast", cron_args(namespace))
    assert not second.get("failed") and second["changed"] is False, second
    mark = audit.mark()
    checked = kh.run_module(tmp_path, "cron_broadcast", cron_args(namespace), check=True)
    assert not checked.get("failed") and checked["changed"] is False, checked
    assert ours(audit.writes_since(mark, namespace=None), namespace) == []
    gone = kh.run_module(tmp_path, "cron_broadcast", {"name": "nightly", "namespace": namespace, "state": "absent"})
    assert gone["changed"] is True


@pytest.mark.parametrize("module, args, check", [
    ("broadcast_job", job_args, True),
    ("broadcast_job", job_args, False),
    ("cron_broadcast", cron_args, True),
    ("cron_broadcast", cron_args, False),
])
def test_a_warn_label_becomes_an_ansible_warning(tmp_path, core, namespace, sim_nodes, module, args, check):
    """enforce=privileged admits the pods; warn=restricted makes the apiserver say what restricted would refuse."""
    label_namespace(core, namespace, **{ENFORCE: "privileged", WARN: "restricted"})
    tag = kh.unique("psw")
    sim_nodes.add(name=tag, labels={"nodeops-test": tag})
    extra = {"node_selector": {"nodeops-test": tag}}
    if module == "broadcast_job":
        extra["node_label_selector"] = None
    result = kh.run_module(tmp_path, module, args(namespace, **extra), check=check)
    assert not result.get("failed"), result.get("msg")
    warned = [w for w in result.get("warnings") or [] if 'would violate PodSecurity "restricted:latest"' in w]
    assert warned, result.get("warnings")
    assert all("the pods of preset image_prune in namespace %s" % namespace in w for w in warned), warned
    assert any("hostPID=true" in w for w in warned), warned
    if module == "cron_broadcast" and not check:
        kh.run_module(tmp_path, "cron_broadcast", {"name": "nightly", "namespace": namespace, "state": "absent"})
