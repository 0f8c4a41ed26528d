# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dangling_job_ttl on the real local control plane: the sweep, and the policy against Kyverno's CRDs."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

import kube_helpers as kh

sys.path.insert(0, os.path.join(kh.REPO, "tools", "localcluster"))
import kyverno_tools  # noqa: E402  pylint: disable=wrong-import-position

TTL = 15
CRD = "clusterpolicies.kyverno.io"


def make_job(name, annotations=None, labels=None, pod_annotations=None, owner=None):
    meta = k8s.V1ObjectMeta(name=name, labels=labels, annotations=annotations,
                            owner_references=[owner] if owner else None)
    return k8s.V1Job(metadata=meta, spec=k8s.V1JobSpec(backoff_limit=0, template=k8s.V1PodTemplateSpec(
        metadata=k8s.V1ObjectMeta(annotations=pod_annotations),
        spec=k8s.V1PodSpec(restart_policy="Never", containers=[k8s.V1Container(name="c", image="busybox:1.36")]))))


def create_all(batch, namespace, jobs):
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda j: batch.create_namespaced_job(namespace, j), jobs))


def finished(batch, namespace, selector):
    jobs = batch.list_namespaced_job(namespace, label_selector=selector).items
    return jobs and all(any(c.type in ("Complete", "Failed") and c.status == "True" for c in j.status.conditions or [])
                        for j in jobs)


@pytest.fixture
def second_namespace(core):
    name = kh.unique("t-excluded")
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    kh.wait_for("default ServiceAccount", lambda: core.read_namespaced_service_account("default", name))
    yield name
    core.delete_namespace(name)


def test_sweep_takes_only_old_finished_ownerless_jobs(tmp_path, core, batch, namespace, second_namespace, audit):
    cron = batch.create_namespaced_cron_job(namespace, {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "owner"},
        "spec": {"schedule": "0 0 1 1 *", "suspend": True, "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}}}}})
    owner = k8s.V1OwnerReference(api_version="batch/v1", kind="CronJob", name="owner", uid=cron.metadata.uid)
    jobs = [make_job("old-%03d" % i, labels={"grp": "old"}) for i in range(120)]
    jobs += [make_job("running-%02d" % i, labels={"grp": "running"}, pod_annotations={"sim.nodeops.io/delay": "1h"})
             for i in range(20)]
    jobs += [make_job("owned-%02d" % i, labels={"grp": "owned"}, owner=owner) for i in range(20)]
    jobs += [make_job("optout-%02d" % i, labels={"grp": "optout", "nodeops.io/keep-job": "true"}) for i in range(10)]
    jobs += [make_job("argo-%02d" % i, labels={"grp": "gitops"},
                      annotations={"argocd.argoproj.io/tracking-id": "app:batch/Job:x/argo-%d" % i}) for i in range(5)]
    jobs += [make_job("hook-%02d" % i, labels={"grp": "gitops"}, annotations={"helm.sh/hook": "post-install"})
             for i in range(5)]
    create_all(batch, namespace, jobs)
    create_all(batch, second_namespace, [make_job("elsewhere-%02d" % i, labels={"grp": "old"}) for i in range(20)])
    for sel in ("grp=old", "grp=owned", "grp=optout", "grp=gitops"):
        kh.wait_for("Jobs %s to finish" % sel, lambda: finished(batch, namespace, sel), timeout=120)
    kh.wait_for("excluded Jobs to finish", lambda: finished(batch, second_namespace, "grp=old"), timeout=60)
    time.sleep(TTL + 2)
    create_all(batch, namespace, [make_job("recent-%02d" % i, labels={"grp": "recent"}) for i in range(20)])
    kh.wait_for("recent Jobs to finish", lambda: finished(batch, namespace, "grp=recent"), timeout=60)

    args = {"policy": False, "sweep": True, "ttl_seconds": TTL, "include_namespaces": [namespace, second_namespace],
            "exclude_namespaces": [second_namespace], "sweep_page_size": 7, "sweep_max_names": 50}
    mark = audit.mark()
    preview = kh.run_module(tmp_path, "dangling_job_ttl", args, check=True)
    assert audit.writes_since(mark, namespace=None) == []
    assert preview["changed"] is True and preview["sweep"]["total"] == 120
    assert preview["sweep"]["stats"]["pages"] == 29 + 3   # 200 and 20 Jobs in pages of 7: it really paginates
    assert len(batch.list_namespaced_job(namespace).items) == 200

    result = kh.run_module(tmp_path, "dangling_job_ttl", args)
    assert not result.get("failed"), result.get("msg")
    sweep = result["sweep"]
    assert sweep["per_namespace"] == {namespace: 120}
    assert len(sweep["names"]) == 50 and sweep["names_truncated"] is True
    assert sweep["spared"] == {"owned": 20, "not finished": 20, "opted out": 10, "gitops-managed": 10,
                               "finished recently": 20, "namespace excluded": 20}
    left = sorted({j.metadata.labels["grp"] for j in batch.list_namespaced_job(namespace).items})
    assert left == ["gitops", "optout", "owned", "recent", "running"]
    assert len(batch.list_namespaced_job(second_namespace).items) == 20
    # Background propagation: the garbage collector removes the swept Jobs' pods.
    kh.wait_for("the pods of swept Jobs to go", lambda: not [
        p for p in core.list_namespaced_pod(namespace).items if p.metadata.labels.get("grp") == "old"], timeout=90)
    again = kh.run_module(tmp_path, "dangling_job_ttl", args)
    assert again["changed"] is False and again["sweep"]["total"] == 0


def test_set_ttl_lets_the_ttl_controller_delete(tmp_path, batch, namespace):
    create_all(batch, namespace, [make_job("ttl-%02d" % i, labels={"grp": "ttl"}) for i in range(10)])
    kh.wait_for("Jobs to finish", lambda: finished(batch, namespace, "grp=ttl"), timeout=60)
    time.sleep(3)
    result = kh.run_module(tmp_path, "dangling_job_ttl", {
        "policy": False, "sweep": True, "sweep_action": "set_ttl", "ttl_seconds": 1,
        "include_namespaces": [namespace]})
    assert result["sweep"]["total"] == 10
    kh.wait_for("the TTL controller to delete them",
                lambda: batch.list_namespaced_job(namespace, label_selector="grp=ttl").items == [], timeout=60)


@pytest.mark.parametrize("args, fragment", [
    ({"ttl_seconds": -5}, "ttl_seconds=-5 is invalid"),
    ({"sweep_action": "purge"}, "value of sweep_action must be one of: delete, set_ttl, got: purge"),
    ({"exclude_namespaces": ["Not_A_Namespace"]}, "exclude_namespaces='Not_A_Namespace' is invalid"),
])
def test_bad_input_writes_nothing(tmp_path, audit, args, fragment):
    mark = audit.mark()
    result = kh.run_module(tmp_path, "dangling_job_ttl", dict({"policy": False, "sweep": True}, **args))
    assert result["failed"] and fragment in result["msg"], result.get("msg")
    assert audit.writes_since(mark, namespace=None) == []


@pytest.fixture
def kyverno_crds(api_client):
    """Kyverno's own CRDs, from the pinned Kyverno Go module, in the local control plane."""
    kyverno_tools.install_crds()
    ext = k8s.ApiextensionsV1Api(api_client)
    kh.wait_for("the ClusterPolicy CRD to be established", lambda: any(
        c.type == "Established" and c.status == "True" for c in ext.read_custom_resource_definition(CRD).status.conditions))


def test_missing_kyverno_is_reported_and_sweep_still_works(tmp_path, api_client):
    ext = k8s.ApiextensionsV1Api(api_client)
    try:
        ext.delete_custom_resource_definition(CRD)
    except ApiException as exc:
        assert exc.status == 404

    def gone():
        try:
            ext.read_custom_resource_definition(CRD)
            return False
        except ApiException as exc:
            return exc.status == 404
    kh.wait_for("the CRD to be gone", gone)
    result = kh.run_module(tmp_path, "dangling_job_ttl", {"ttl_seconds": 600})
    assert result["failed"] and "Kyverno is not installed" in result["msg"] and "policy=false" in result["msg"]
    swept = kh.run_module(tmp_path, "dangling_job_ttl", {"policy": False, "sweep": True}, check=True)
    assert not swept.get("failed"), swept.get("msg")


def test_policy_present_idempotent_diff_and_absent(tmp_path, api_client, kyverno_crds, audit):
    custom = k8s.CustomObjectsApi(api_client)
    name = kh.unique("ttl-policy")
    args = {"policy_name": name, "ttl_seconds": 600}
    check = kh.run_module(tmp_path, "dangling_job_ttl", args, check=True)
    assert check["changed"] is True
    first = kh.run_module(tmp_path, "dangling_job_ttl", args)
    assert first["changed"] is True
    stored = custom.get_cluster_custom_object("kyverno.io", "v1", "clusterpolicies", name)
    rule = stored["spec"]["rules"][0]
    assert rule["mutate"]["patchStrategicMerge"] == {"spec": {"+(ttlSecondsAfterFinished)": 600}}
    assert stored["spec"]["background"] is False
    second = kh.run_module(tmp_path, "dangling_job_ttl", args)
    assert second["changed"] is False
    mark = audit.mark()
    changed = kh.run_module(tmp_path, "dangling_job_ttl", dict(args, ttl_seconds=300), check=True, diff=True)
    assert changed["changed"] is True and audit.writes_since(mark, namespace=None) == []
    assert changed["diff"]["before"]["spec"]["rules"][0]["mutate"]["patchStrategicMerge"]["spec"] == {
        "+(ttlSecondsAfterFinished)": 600}
    assert changed["diff"]["after"]["spec"]["rules"][0]["mutate"]["patchStrategicMerge"]["spec"] == {
        "+(ttlSecondsAfterFinished)": 300}
    gone = kh.run_module(tmp_path, "dangling_job_ttl", dict(args, state="absent"))
    assert gone["changed"] is True
    with pytest.raises(ApiException) as info:
        custom.get_cluster_custom_object("kyverno.io", "v1", "clusterpolicies", name)
    assert info.value.status == 404
    assert kh.run_module(tmp_path, "dangling_job_ttl", dict(args, state="absent"))["changed"] is False


# ------------------------------------------------------------------ the real Kyverno engine

CASES = {
    "defaults": {},
    "include-and-custom-ttl": {"ttl_seconds": 60, "include_namespaces": ["ci", "kube-system"]},
    "only-another-namespace": {"include_namespaces": ["prod"]},
    "no-gitops-skip": {"skip_gitops_managed": False},
    "no-excludes-custom-label": {"exclude_namespaces": [], "opt_out_label": "example.com/keep"},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_kyverno_engine_applies_the_generated_policy(tmp_path, case):
    """kyverno test, with the policy the module generates, on Jobs of every kind the policy must tell apart."""
    binary = kyverno_tools.kyverno_binary()
    expected = kyverno_tools.write_test_case(tmp_path / case, CASES[case])
    proc = subprocess.run([binary, "test", str(tmp_path / case), "--detailed-results"], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = kyverno_tools.detailed_rows(proc.stdout)
    assert sorted(r[0] for r in rows) == sorted(expected)
    for resource, result, reason, message in rows:
        assert result == "Pass", (resource, reason, message)
        assert expected[resource] in message or expected[resource] == reason, (resource, reason, message)
        assert "Invalid Policy" not in reason
