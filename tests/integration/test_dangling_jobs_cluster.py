# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dangling_job_ttl on the real local control plane: the sweep, and the policy against Kyverno's CRDs."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
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

# In the compatibility suite on the older Kubernetes minor (make k8s-compat): dangling_job_ttl's engine choice and sweep.
pytestmark = pytest.mark.k8s_compat

TTL = 3600   # the sweep's ttl_seconds: Jobs finished within the hour are recent for the whole test
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


def finish_earlier(batch, namespace, selector, seconds):
    """Move the finish of the (finished) Jobs ``selector`` picks ``seconds`` into the past: the time of their
    Complete or Failed condition, which the sweep reads. The job controller leaves a finished Job's status
    alone, so the age a test gives is the age the sweep sees, however long the test takes to get there."""
    when = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds)

    def backdate(name):
        for _attempt in range(5):
            job = batch.read_namespaced_job_status(name, namespace)
            for cond in job.status.conditions:
                cond.last_transition_time = when
            try:
                return batch.replace_namespaced_job_status(name, namespace, job)
            except ApiException as exc:
                if exc.status != 409:   # the job controller wrote its status meanwhile: read it again
                    raise
        raise AssertionError("could not backdate Job %s/%s" % (namespace, name))

    names = [j.metadata.name for j in batch.list_namespaced_job(namespace, label_selector=selector).items]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(backdate, names))


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
    # Old: finished two TTLs ago; recent: finished now, and recent through all three runs below.
    finish_earlier(batch, namespace, "grp=old", 2 * TTL)
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
    """Kyverno's own CRDs (kyverno.io and policies.kyverno.io), from the pinned Kyverno Go module."""
    kyverno_tools.install_crds()
    ext = k8s.ApiextensionsV1Api(api_client)
    for crd in (CRD, "mutatingpolicies.policies.kyverno.io"):
        kh.wait_for("the %s CRD to be established" % crd, lambda crd=crd: any(
            c.type == "Established" and c.status == "True"
            for c in ext.read_custom_resource_definition(crd).status.conditions or []))
    kh.wait_for("discovery to list Kyverno's policies", lambda: (
        served("kyverno.io/v1", "clusterpolicies") and served("policies.kyverno.io/v1", "mutatingpolicies")))


# What each engine writes: (group, version, plural) of each object, the policy first.
ENGINE_OBJECTS = {
    "native": [("admissionregistration.k8s.io", "v1", "mutatingadmissionpolicies"),
               ("admissionregistration.k8s.io", "v1", "mutatingadmissionpolicybindings")],
    "kyverno": [("policies.kyverno.io", "v1", "mutatingpolicies")],
    "kyverno_legacy": [("kyverno.io", "v1", "clusterpolicies")],
}


def served(group_version, plural):
    listing = kh.rest_client().get_or_none("/apis/" + group_version) or {}
    return any(r["name"] == plural for r in listing.get("resources") or [])


def stored_objects(api_client, engine, name):
    """The objects of ``engine`` named ``name`` as the apiserver stored them (404s left out); native's in the
    version served (v1, or v1beta1 on Kubernetes 1.34 with the feature gate on)."""
    custom = k8s.CustomObjectsApi(api_client)
    found = []
    native = kh.native_ttl_engine() if engine == "native" else None
    for group, version, plural in ENGINE_OBJECTS[engine]:
        if native:
            version = native.split("/")[1]
        try:
            found.append(custom.get_cluster_custom_object(group, version, plural, name))
        except ApiException as exc:
            assert exc.status == 404
    return found


def ttl_of(stored, engine):
    """The TTL the stored policy adds."""
    spec = stored["spec"]
    if engine == "kyverno_legacy":
        return spec["rules"][0]["mutate"]["patchStrategicMerge"]["spec"]["+(ttlSecondsAfterFinished)"]
    expression = spec["mutations"][0]["jsonPatch"]["expression"]
    return int(expression.rsplit("value:", 1)[1].strip(" }]"))


def test_missing_engine_is_reported_and_sweep_still_works(tmp_path, api_client, audit):
    ext = k8s.ApiextensionsV1Api(api_client)
    for crd in (CRD, "mutatingpolicies.policies.kyverno.io"):
        try:
            ext.delete_custom_resource_definition(crd)
        except ApiException as exc:
            assert exc.status == 404
    kh.wait_for("Kyverno's APIs to leave discovery", lambda: not (
        served("kyverno.io/v1", "clusterpolicies") or served("policies.kyverno.io/v1", "mutatingpolicies")))
    native = kh.native_ttl_engine()
    mark = audit.mark()
    missing = [("kyverno_legacy", "kyverno.io/v1 ClusterPolicy CRD"),
               ("kyverno", "policies.kyverno.io/v1 MutatingPolicy CRD")]
    if not native:   # Kubernetes 1.34 (no feature gate): MutatingAdmissionPolicy is not served either
        missing.append(("native", "admissionregistration.k8s.io/v1 (Kubernetes 1.36 or newer), or "
                                  "admissionregistration.k8s.io/v1beta1 (Kubernetes 1.34 and 1.35"))
    for engine, needs in missing:
        result = kh.run_module(tmp_path, "dangling_job_ttl", {"ttl_seconds": 600, "policy_engine": engine})
        assert result["failed"] and ("policy_engine=%s cannot be used here" % engine) in result["msg"], result["msg"]
        assert needs in result["msg"] and "policy=false" in result["msg"] and "policy_engine=auto" in result["msg"]
    assert audit.writes_since(mark, namespace=None) == []
    if native:
        # auto takes what the cluster has: the apiserver's own MutatingAdmissionPolicy.
        chosen = kh.run_module(tmp_path, "dangling_job_ttl", {"ttl_seconds": 600, "policy_name": kh.unique("auto")},
                               check=True)
        assert chosen["policy_engine"] == "native" and chosen["policy_api_version"] == native, chosen
        assert "serves %s mutatingadmissionpolicies" % native in chosen["policy_engine_reason"]
    else:
        # No engine at all: auto says so, naming all three and how to only sweep, and writes nothing.
        chosen = kh.run_module(tmp_path, "dangling_job_ttl", {"ttl_seconds": 600, "policy_name": kh.unique("auto")})
        assert chosen["failed"] and "policy_engine=auto found no way" in chosen["msg"], chosen.get("msg")
        assert "Kubernetes 1.36 or newer" in chosen["msg"] and "policy=false" in chosen["msg"]
        assert "1.34 or 1.35 with the MutatingAdmissionPolicy feature gate" in chosen["msg"]
        assert audit.writes_since(mark, namespace=None) == []
    swept = kh.run_module(tmp_path, "dangling_job_ttl", {"policy": False, "sweep": True}, check=True)
    assert not swept.get("failed"), swept.get("msg")


@pytest.mark.parametrize("engine", ["native", "kyverno", "kyverno_legacy"])
def test_policy_present_idempotent_diff_and_absent(tmp_path, api_client, kyverno_crds, audit, engine):
    name = kh.unique("ttl-policy")
    args = {"policy_name": name, "ttl_seconds": 600, "policy_engine": engine}
    mark = audit.mark()
    if engine == "native" and not kh.native_ttl_engine():
        # Kubernetes 1.34 (MutatingAdmissionPolicy beta, off): refused in check mode and for real, nothing written.
        for check in (True, False):
            refused = kh.run_module(tmp_path, "dangling_job_ttl", args, check=check)
            assert refused["failed"] and "policy_engine=native cannot be used here" in refused["msg"], refused
            assert "Kubernetes 1.36 or newer" in refused["msg"] and "policy_engine=auto" in refused["msg"]
        # The audit log is the check: nothing was written (the v1 API is not served, so a read finds nothing anyway).
        assert audit.writes_since(mark, namespace=None) == []
        return
    check = kh.run_module(tmp_path, "dangling_job_ttl", args, check=True)
    assert check["changed"] is True and check["policy_engine"] == engine
    if engine == "native":   # v1, or v1beta1 on Kubernetes 1.34 with the feature gate on
        assert check["policy_api_version"] == kh.native_ttl_engine() == check["policy"]["apiVersion"], check
    assert audit.writes_since(mark, namespace=None) == [] and stored_objects(api_client, engine, name) == []
    first = kh.run_module(tmp_path, "dangling_job_ttl", args)
    assert first["changed"] is True, first.get("msg")
    stored = stored_objects(api_client, engine, name)
    assert len(stored) == len(ENGINE_OBJECTS[engine]) and ttl_of(stored[0], engine) == 600
    assert [o["kind"] for o in first["policy_objects"]] == [o["kind"] for o in stored]
    for obj in stored:
        assert obj["metadata"]["labels"]["nodeops.io/dangling-job-ttl"] == name
    if engine == "kyverno_legacy":
        assert stored[0]["spec"]["background"] is False
    else:
        assert stored[0]["spec"]["failurePolicy"] == "Ignore"
    second = kh.run_module(tmp_path, "dangling_job_ttl", args)
    assert second["changed"] is False
    mark = audit.mark()
    changed = kh.run_module(tmp_path, "dangling_job_ttl", dict(args, ttl_seconds=300), check=True, diff=True)
    assert changed["changed"] is True and audit.writes_since(mark, namespace=None) == []
    key = "%s/%s" % (stored[0]["kind"], name)
    assert ttl_of(changed["diff"]["before"][key], engine) == 600
    assert ttl_of(changed["diff"]["after"][key], engine) == 300
    mark = audit.mark()
    preview = kh.run_module(tmp_path, "dangling_job_ttl", dict(args, state="absent"), check=True, diff=True)
    assert preview["changed"] is True and sorted(preview["diff"]["before"]) == sorted(
        "%s/%s" % (o["kind"], name) for o in stored)
    assert audit.writes_since(mark, namespace=None) == []
    gone = kh.run_module(tmp_path, "dangling_job_ttl", dict(args, state="absent"))
    assert gone["changed"] is True and stored_objects(api_client, engine, name) == []
    assert kh.run_module(tmp_path, "dangling_job_ttl", dict(args, state="absent"))["changed"] is False


def test_switching_engines_removes_the_old_engines_objects(tmp_path, api_client, kyverno_crds, audit):
    name = kh.unique("switch")
    other = kh.unique("other")   # another policy name: never touched by this one's switches
    kh.run_module(tmp_path, "dangling_job_ttl", {"policy_name": other, "policy_engine": "kyverno_legacy"})
    previous = None
    native = kh.native_ttl_engine()
    for engine in ("kyverno_legacy", "kyverno", "native", "kyverno_legacy"):
        if engine == "native" and not native:
            # Kubernetes 1.34: the switch to native is refused, and the kyverno objects stay as they were.
            before = stored_objects(api_client, previous, name)
            refused = kh.run_module(tmp_path, "dangling_job_ttl", {"policy_name": name, "policy_engine": engine})
            assert refused["failed"] and "policy_engine=native cannot be used here" in refused["msg"], refused
            assert stored_objects(api_client, previous, name) == before and len(before) == 1
            continue
        args = {"policy_name": name, "policy_engine": engine, "ttl_seconds": 120}
        if previous:
            mark = audit.mark()
            preview = kh.run_module(tmp_path, "dangling_job_ttl", args, check=True, diff=True)
            assert preview["changed"] is True and audit.writes_since(mark, namespace=None) == []
            assert sorted(r["kind"] for r in preview["removed"]) == sorted(
                o["kind"] for o in stored_objects(api_client, previous, name))
            assert all(preview["diff"]["after"]["%s/%s" % (r["kind"], name)] is None for r in preview["removed"])
            assert stored_objects(api_client, previous, name)
        result = kh.run_module(tmp_path, "dangling_job_ttl", args)
        assert result["changed"] is True and result["policy_engine"] == engine, result.get("msg")
        for each in ENGINE_OBJECTS:
            assert len(stored_objects(api_client, each, name)) == (len(ENGINE_OBJECTS[each]) if each == engine else 0)
        previous = engine
    gone = kh.run_module(tmp_path, "dangling_job_ttl", {"policy_name": name, "state": "absent"})
    assert gone["changed"] is True and [r["kind"] for r in gone["removed"]] == ["ClusterPolicy"]
    assert len(stored_objects(api_client, "kyverno_legacy", other)) == 1
    kh.run_module(tmp_path, "dangling_job_ttl", {"policy_name": other, "state": "absent"})
    assert stored_objects(api_client, "kyverno_legacy", other) == []


def test_policy_name_and_engine_are_checked_before_any_write(tmp_path, audit):
    mark = audit.mark()
    bad = kh.run_module(tmp_path, "dangling_job_ttl", {"policy_name": "Not_A_Name"})
    assert bad["failed"] and "policy_name='Not_A_Name' is invalid" in bad["msg"] and "DNS-1123" in bad["msg"]
    engine = kh.run_module(tmp_path, "dangling_job_ttl", {"policy_engine": "gatekeeper"})
    assert engine["failed"] and "policy_engine must be one of: auto, native, kyverno, kyverno_legacy" in engine["msg"]
    assert audit.writes_since(mark, namespace=None) == []


# ------------------------------------------------------------------ native: the apiserver adds the TTL

NATIVE_TTL = 3


@pytest.fixture
def native_policy(tmp_path, namespace, second_namespace):
    """The native policy for the test namespace (second_namespace included but excluded), removed afterwards.

    Where the apiserver serves no MutatingAdmissionPolicy (Kubernetes 1.34 without its feature gate), the module refuses it, and the
    fixture yields None: no policy, so no Job gains a TTL."""
    name = kh.unique("native")
    args = {"policy_name": name, "policy_engine": "native", "ttl_seconds": NATIVE_TTL,
            "include_namespaces": [namespace, second_namespace], "exclude_namespaces": [second_namespace]}
    result = kh.run_module(tmp_path, "dangling_job_ttl", args)
    if not kh.native_ttl_engine():
        assert result["failed"] and "policy_engine=native cannot be used here" in result["msg"], result
        yield None
        return
    assert result["changed"] is True and result["policy_engine"] == "native", result.get("msg")
    assert result["policy_api_version"] == kh.native_ttl_engine()
    yield args
    assert kh.run_module(tmp_path, "dangling_job_ttl", dict(args, state="absent"))["changed"] is True


def _ttl(job):
    return job.spec.ttl_seconds_after_finished


def test_native_policy_adds_the_ttl_on_the_real_apiserver(batch, core, namespace, second_namespace, native_policy):
    """No CLI: Jobs are created through the API and what the apiserver stored is read back. On Kubernetes 1.34
    the policy was refused (native_policy is None), and no Job gains a TTL."""
    # The apiserver loads a new policy from its informer; wait until a probe Job shows it acts.
    def probe():
        job = batch.create_namespaced_job(namespace, make_job(kh.unique("probe"), labels={"grp": "probe"}))
        return _ttl(job) == NATIVE_TTL
    if native_policy:
        kh.wait_for("the apiserver to apply the new policy", probe, timeout=30, interval=0.5)
    cron = batch.create_namespaced_cron_job(namespace, {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "owner"},
        "spec": {"schedule": "0 0 1 1 *", "suspend": True, "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}}}}})
    holder = core.create_namespaced_config_map(namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="holder")))
    cron_owner = k8s.V1OwnerReference(api_version="batch/v1", kind="CronJob", name="owner", uid=cron.metadata.uid,
                                      controller=True)
    cm_owner = k8s.V1OwnerReference(api_version="v1", kind="ConfigMap", name="holder", uid=holder.metadata.uid)
    own_ttl = make_job("own-ttl")
    own_ttl.spec.ttl_seconds_after_finished = 42
    running = {"pod_annotations": {"sim.nodeops.io/delay": "1h"}}   # kwok keeps these running
    created = {
        "ownerless": batch.create_namespaced_job(namespace, make_job("ownerless", **running)),
        "cron-owned": batch.create_namespaced_job(namespace, make_job("cron-owned", owner=cron_owner, **running)),
        "configmap-owned": batch.create_namespaced_job(namespace, make_job("cm-owned", owner=cm_owner, **running)),
        "own-ttl": batch.create_namespaced_job(namespace, own_ttl),
        "excluded-namespace": batch.create_namespaced_job(second_namespace, make_job("elsewhere", **running)),
        "opted-out": batch.create_namespaced_job(namespace, make_job(
            "opted-out", labels={"nodeops.io/keep-job": "yes"}, **running)),
        "argocd": batch.create_namespaced_job(namespace, make_job(
            "argocd", annotations={"argocd.argoproj.io/tracking-id": "app:batch/Job:x/argocd"}, **running)),
        "helm-hook": batch.create_namespaced_job(namespace, make_job(
            "helm-hook", annotations={"helm.sh/hook": "pre-upgrade"}, **running)),
    }
    expected = {"ownerless": NATIVE_TTL, "own-ttl": 42} if native_policy else {"own-ttl": 42}
    # Read back what was stored, not only what the create returned.
    stored = {key: _ttl(batch.read_namespaced_job(job.metadata.name, job.metadata.namespace))
              for key, job in created.items()}
    assert stored == {key: expected.get(key) for key in created}

    # UPDATE never adds the TTL: the opted-out Job loses its label and the ConfigMap-owned one its owner,
    # so both would match on CREATE now, and keep no TTL.
    batch.patch_namespaced_job("opted-out", namespace, {"metadata": {"labels": {"nodeops.io/keep-job": None}}})
    batch.patch_namespaced_job("cm-owned", namespace, {"metadata": {"ownerReferences": None}})
    for name in ("opted-out", "cm-owned"):
        job = batch.read_namespaced_job(name, namespace)
        assert not job.metadata.owner_references and "nodeops.io/keep-job" not in (job.metadata.labels or {})
        assert _ttl(job) is None, name

    # A finished ownerless Job is deleted by the real TTL-after-finished controller.
    quick = batch.create_namespaced_job(namespace, make_job("finishes", labels={"grp": "quick"}))
    if not native_policy:
        assert _ttl(quick) is None
        return
    assert _ttl(quick) == NATIVE_TTL
    kh.wait_for("the TTL controller to delete the finished Job", lambda: batch.list_namespaced_job(
        namespace, label_selector="grp=quick").items == [], timeout=60)


# ------------------------------------------------------------------ the real Kyverno engine

CASES = {
    "defaults": {},
    "include-and-custom-ttl": {"ttl_seconds": 60, "include_namespaces": ["ci", "kube-system"]},
    "only-another-namespace": {"include_namespaces": ["prod"]},
    "no-gitops-skip": {"skip_gitops_managed": False},
    "no-excludes-custom-label": {"exclude_namespaces": [], "opt_out_label": "example.com/keep"},
}


@pytest.mark.parametrize("engine", ["kyverno", "kyverno_legacy"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_kyverno_engine_applies_the_generated_policy(tmp_path, case, engine):
    """kyverno test, with the policy the module generates, on Jobs of every kind the policy must tell apart."""
    binary = kyverno_tools.kyverno_binary()
    expected = kyverno_tools.write_test_case(tmp_path / case, CASES[case], engine)
    proc = subprocess.run([binary, "test", str(tmp_path / case), "--detailed-results"], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = kyverno_tools.detailed_rows(proc.stdout)
    assert sorted(r[0] for r in rows) == sorted(expected)
    for resource, result, reason, message in rows:
        assert result == "Pass", (resource, reason, message)
        assert expected[resource] in message or expected[resource] == reason, (resource, reason, message)
        assert "Invalid Policy" not in reason
