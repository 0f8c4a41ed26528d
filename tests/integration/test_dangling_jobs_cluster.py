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
        assert "set sweep_schedule to sweep on a schedule" in chosen["msg"]
        assert audit.writes_since(mark, namespace=None) == []
        # With a schedule, auto installs the scheduled sweep alone, and says so (check mode: nothing written).
        alone = kh.run_module(tmp_path, "dangling_job_ttl", {"ttl_seconds": 600, "policy_name": kh.unique("auto"),
                                                             "sweep_schedule": "0 3 * * *"}, check=True)
        assert not alone.get("failed"), alone.get("msg")
        assert alone["policy_engine"] == "none" and "scheduled sweep (sweep_schedule) is installed alone" in alone[
            "policy_engine_reason"] and "CronJob" in {o["kind"] for o in alone["scheduled_sweep"]["changes"]}
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
    without the feature gate the policy was refused (native_policy is None), and no Job gains a TTL."""
    ttl_added_only_where_it_should(batch, core, namespace, second_namespace, bool(native_policy))


def ttl_added_only_where_it_should(batch, core, namespace, second_namespace, active):
    """Jobs of every kind the policy must tell apart, created through the API and read back: only the ownerless
    one in the included namespace gains the TTL (when a policy is ``active``), UPDATE never adds it, and the
    real TTL-after-finished controller deletes a finished ownerless Job."""
    # The engine loads a new policy from its informer; wait until a probe Job shows it acts.
    def probe():
        job = batch.create_namespaced_job(namespace, make_job(kh.unique("probe"), labels={"grp": "probe"}))
        return _ttl(job) == NATIVE_TTL
    if active:
        kh.wait_for("the policy to act", probe, timeout=60, interval=0.5)
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
    expected = {"ownerless": NATIVE_TTL, "own-ttl": 42} if active else {"own-ttl": 42}
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
    if not active:
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


# ------------------------------------------------------------------ the scheduled sweep, in the cluster

def _sweep_args(real_node, namespace, **extra):
    """A scheduled sweep whose runner goes on the real node, with the locally built Python image."""
    args = {"policy": False, "ttl_seconds": TTL, "sweep_schedule": "0 3 * * *", "time_zone": "Europe/Berlin",
            "sweep_namespace": namespace, "policy_name": kh.unique("sched"), "runner_image": real_node.image,
            "runner_node_selector": real_node.label, "runner_tolerations": real_node.tolerations}
    args.update(extra)
    return args


def _sweep_history(core, namespace, name):
    import json

    cm = core.read_namespaced_config_map(name, namespace)
    return json.loads((cm.data or {}).get("runs") or "[]")


def _rules_review(core, namespace, service_account, review_ns):
    """What ``service_account`` (of ``namespace``) may do in ``review_ns``, as the apiserver's
    SelfSubjectRulesReview says, in rights_table's words (``where`` is "here")."""
    sys.path.insert(0, os.path.join(kh.REPO, "tools"))
    import rights_table  # pylint: disable=import-outside-toplevel

    token = core.create_namespaced_service_account_token(service_account, namespace, k8s.AuthenticationV1TokenRequest(
        spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=600))).status.token
    cfg = k8s.Configuration()
    cfg.host = core.api_client.configuration.host
    cfg.ssl_ca_cert = os.path.join(kh.STATE, "pki", "ca.crt")
    cfg.api_key = {"authorization": "Bearer " + token}
    status = k8s.AuthorizationV1Api(k8s.ApiClient(cfg)).create_self_subject_rules_review(k8s.V1SelfSubjectRulesReview(
        spec=k8s.V1SelfSubjectRulesReviewSpec(namespace=review_ns))).status
    assert not status.incomplete, status.evaluation_error
    return rights_table.from_rules("here", [{"apiGroups": r.api_groups, "resources": r.resources, "verbs": r.verbs,
                                             "resourceNames": r.resource_names} for r in status.resource_rules])


def _job_done(batch, namespace, name):
    job = batch.read_namespaced_job(name, namespace)
    return any(c.type in ("Complete", "Failed") and c.status == "True" for c in job.status.conditions or [])


def test_scheduled_sweep_runs_on_the_real_node_and_spares_every_control(
        tmp_path, core, batch, namespace, second_namespace, real_node, audit):
    """The runner pod, on the real node, sweeps the old finished ownerless Jobs of the included namespace and
    spares every control; its rights are the sweep's only; the history records the sweep; check mode writes
    nothing; state=absent removes it all, and someone else's objects under its labels survive."""
    cron = batch.create_namespaced_cron_job(namespace, {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "owner"},
        "spec": {"schedule": "0 0 1 1 *", "suspend": True, "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}}}}})
    owner = k8s.V1OwnerReference(api_version="batch/v1", kind="CronJob", name="owner", uid=cron.metadata.uid)
    jobs = [make_job("old-%02d" % i, labels={"grp": "old"}) for i in range(12)]
    jobs += [make_job("running-%02d" % i, labels={"grp": "running"}, pod_annotations={"sim.nodeops.io/delay": "1h"})
             for i in range(3)]
    jobs += [make_job("owned-%02d" % i, labels={"grp": "owned"}, owner=owner) for i in range(3)]
    jobs += [make_job("optout-%02d" % i, labels={"grp": "optout", "nodeops.io/keep-job": "true"}) for i in range(2)]
    jobs += [make_job("argo-%02d" % i, labels={"grp": "gitops"},
                      annotations={"argocd.argoproj.io/tracking-id": "app:batch/Job:x/argo-%d" % i}) for i in range(2)]
    create_all(batch, namespace, jobs)
    create_all(batch, second_namespace, [make_job("elsewhere-%02d" % i, labels={"grp": "old"}) for i in range(4)])
    for sel in ("grp=old", "grp=owned", "grp=optout", "grp=gitops"):
        kh.wait_for("Jobs %s to finish" % sel, lambda: finished(batch, namespace, sel), timeout=120)
    kh.wait_for("the other namespace's Jobs to finish", lambda: finished(batch, second_namespace, "grp=old"), timeout=60)
    finish_earlier(batch, namespace, "grp=old", 2 * TTL)
    finish_earlier(batch, second_namespace, "grp=old", 2 * TTL)   # old too, but not in include_namespaces
    create_all(batch, namespace, [make_job("recent-%02d" % i, labels={"grp": "recent"}) for i in range(2)])
    kh.wait_for("recent Jobs to finish", lambda: finished(batch, namespace, "grp=recent"), timeout=60)

    args = _sweep_args(real_node, namespace, include_namespaces=[namespace], run_now=True, sweep_page_size=5)
    name = args["policy_name"]
    mark = audit.mark()
    preview = kh.run_module(tmp_path, "dangling_job_ttl", args, check=True, diff=True)
    assert not preview.get("failed"), preview.get("msg")
    assert preview["changed"] is True and audit.writes_since(mark, namespace=None) == []
    assert {o["kind"] for o in preview["scheduled_sweep"]["changes"]} >= {"CronJob", "ServiceAccount", "Job"}
    cron_key = "CronJob/%s/%s-sweep" % (namespace, name)
    assert preview["diff"]["before"][cron_key] is None and preview["diff"]["after"][cron_key]["spec"][
        "schedule"] == "0 3 * * *", sorted(preview["diff"]["after"])

    result = kh.run_module(tmp_path, "dangling_job_ttl", args)
    assert not result.get("failed"), result.get("msg")
    sched = result["scheduled_sweep"]
    assert sched["history"] == "%s/%s-sweep-history" % (namespace, name) and len(sched["next_runs"]) == 5
    assert sched["next_runs"][0]["local"].endswith(("+01:00", "+02:00"))   # Europe/Berlin
    stored = batch.read_namespaced_cron_job(name + "-sweep", namespace)
    assert stored.spec.schedule == "0 3 * * *" and stored.spec.time_zone == "Europe/Berlin"
    kh.wait_for("the sweep Job to finish", lambda: _job_done(batch, namespace, sched["job"]), timeout=180)
    [pod] = core.list_namespaced_pod(namespace, label_selector="job-name=" + sched["job"]).items
    assert pod.spec.node_name == real_node.name and pod.status.phase == "Succeeded", pod.status

    left = sorted({j.metadata.labels["grp"] for j in batch.list_namespaced_job(namespace).items
                   if (j.metadata.labels or {}).get("grp")})
    assert left == ["gitops", "optout", "owned", "recent", "running"]
    assert len(batch.list_namespaced_job(second_namespace).items) == 4   # not included: untouched
    [entry] = _sweep_history(core, namespace, name + "-sweep-history")
    assert entry["state"] == "succeeded" and entry["job"] == sched["job"], entry
    assert entry["summary"]["taken"] == 12 and entry["removed"] == {"jobs": 12, "ttl_set": 0}
    assert entry["per_namespace"] == {namespace: 12} and len(entry["names"]) == 12
    # The runner's own Job is owned by the CronJob: spared with the controls.
    assert entry["spared_by_reason"] == {"owned": 4, "not finished": 3, "opted out": 2, "gitops-managed": 2,
                                         "finished recently": 2}, entry["spared_by_reason"]
    # broadcast_info returns it, with the schedule.
    info = kh.run_module(tmp_path, "broadcast_info", {"namespace": namespace, "name": name})
    [swept] = info["sweeps"]
    assert (swept["name"], swept["schedule"], swept["time_zone"], swept["installed"]) == (
        name, "0 3 * * *", "Europe/Berlin", True)
    assert swept["last_run"] == entry and swept["history"] == [entry] and info["cron_broadcasts"] == []
    everything = kh.run_module(tmp_path, "broadcast_info", {"namespace": namespace})
    assert everything["cron_broadcasts"] == [] and [s["name"] for s in everything["sweeps"]] == [name]

    # Its rights: the README's table for these options and not one right more, as the apiserver's
    # SelfSubjectRulesReview tells its ServiceAccount, here (its namespace, included) and in a namespace
    # not included (nothing there). A ServiceAccount with no binding gives what anyone may do.
    sys.path.insert(0, os.path.join(kh.REPO, "tools"))
    import rights_table  # pylint: disable=import-outside-toplevel

    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    table = rights_table.rights(rights_table.rows(table="sweep"), [rights_table.DELETE, rights_table.SOME_NAMESPACES],
                                name=name)
    for ns, places in ((namespace, ("its namespace", "each included namespace", "cluster")),
                       (second_namespace, ("cluster",))):
        granted = _rules_review(core, namespace, name + "-sweep", ns) - _rules_review(core, namespace, "nobody", ns)
        documented = set(("here",) + right[1:] for right in table if right[0] in places)
        assert granted == documented, (ns, granted ^ documented)
    assert ("here", "batch", "jobs", "delete", "") in _rules_review(core, namespace, name + "-sweep", namespace)

    again = kh.run_module(tmp_path, "dangling_job_ttl", dict(args, run_now=False))
    assert again["changed"] is False, again["scheduled_sweep"]["changes"]
    assert _sweep_history(core, namespace, name + "-sweep-history") == [entry]   # the install keeps the runs
    # A one-off sweep of the same policy name, without sweep_schedule, leaves the scheduled one alone.
    one_off = kh.run_module(tmp_path, "dangling_job_ttl", {"policy": False, "sweep": True, "policy_name": name,
                                                           "sweep_namespace": namespace, "ttl_seconds": TTL,
                                                           "include_namespaces": [namespace]})
    assert not one_off.get("failed") and "scheduled_sweep" not in one_off, one_off
    assert batch.read_namespaced_cron_job(name + "-sweep", namespace).spec.schedule == "0 3 * * *"

    # Someone else's ConfigMap under the sweep's labels, not made by us: state=absent leaves it.
    core.create_namespaced_config_map(namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(
        name=name + "-sweep-code-foreign", labels={"nodeops.io/dangling-job-sweep": name,
                                                   "app.kubernetes.io/managed-by": "nodeops.kubernetes"})))
    mark = audit.mark()
    preview = kh.run_module(tmp_path, "dangling_job_ttl", dict(args, state="absent", run_now=False), check=True)
    assert preview["changed"] is True and audit.writes_since(mark, namespace=None) == []
    gone = kh.run_module(tmp_path, "dangling_job_ttl", dict(args, state="absent", run_now=False))
    assert gone["changed"] is True, gone.get("msg")
    assert {o["kind"] for o in gone["scheduled_sweep"]["changes"]} == {
        "CronJob", "ConfigMap", "ServiceAccount", "Role", "RoleBinding"}
    assert [c.metadata.name for c in core.list_namespaced_config_map(
        namespace, label_selector="nodeops.io/dangling-job-sweep=" + name).items] == [name + "-sweep-code-foreign"]
    assert k8s.RbacAuthorizationV1Api(core.api_client).list_namespaced_role(namespace, label_selector="nodeops.io/dangling-job-sweep=" + name).items == []
    assert kh.run_module(tmp_path, "dangling_job_ttl", dict(args, state="absent", run_now=False))["changed"] is False


def test_sigterm_to_the_sweep_in_its_pod_loses_nothing(tmp_path, core, batch, namespace, real_node):
    """The sweep's runner in its pod on the real node gets SIGTERM after it has looked at four Jobs (its test
    hook, set on this Job's pod only): it stops listing, lets the writes in flight finish and records the
    sweep as interrupted, naming exactly the Jobs it took, and those are gone while the others stay. The next
    sweep takes the rest."""
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron import manifests
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._dangling import sweep_runner
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._node.main import parse_result

    create_all(batch, namespace, [make_job("old-%02d" % i, labels={"grp": "old"}) for i in range(10)])
    kh.wait_for("the Jobs to finish", lambda: finished(batch, namespace, "grp=old"), timeout=120)
    finish_earlier(batch, namespace, "grp=old", 2 * TTL)
    args = _sweep_args(real_node, namespace, include_namespaces=[namespace], sweep_page_size=3, sweep_concurrency=2)
    name = args["policy_name"]
    installed = kh.run_module(tmp_path, "dangling_job_ttl", args)
    assert not installed.get("failed"), installed.get("msg")
    cron_job = kh.rest_client().get("/apis/batch/v1/namespaces/%s/cronjobs/%s-sweep" % (namespace, name))
    job = manifests.job_from_cron(cron_job, name + "-term")
    job["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": sweep_runner.FAULT_ENV, "value": "4"})
    batch.create_namespaced_job(namespace, job)
    kh.wait_for("the sweep Job to finish", lambda: _job_done(batch, namespace, name + "-term"), timeout=180)
    [pod] = core.list_namespaced_pod(namespace, label_selector="job-name=%s-term" % name).items
    terminated = pod.status.container_statuses[0].state.terminated
    log = core.read_namespaced_pod_log(pod.metadata.name, namespace)
    assert pod.spec.node_name == real_node.name and terminated.exit_code == 143, log
    assert "SIGTERM: stopped listing" in log and parse_result(terminated.message)["state"] == "interrupted", log
    [entry] = _sweep_history(core, namespace, name + "-sweep-history")
    assert (entry["state"], entry["job"]) == ("interrupted", name + "-term"), entry
    # Of the four Jobs looked at before the signal, those whose write was sent are taken and named; those still
    # waiting for a slot (the pacer: 2 in flight, 150 a second) were not sent and are left for the next sweep.
    # No Job looked at after the signal is touched. What the history names is exactly what is gone.
    taken = entry["summary"]["taken"]
    left = sorted(j.metadata.name for j in batch.list_namespaced_job(namespace, label_selector="grp=old").items)
    names = sorted(n.split("/", 1)[1] for n in entry["names"])
    assert 0 <= taken <= 4 and len(names) == taken, entry
    assert set(names) <= {"old-%02d" % i for i in range(4)}, names
    assert sorted(set(names) | set(left)) == ["old-%02d" % i for i in range(10)] and not set(names) & set(left)

    again = kh.run_module(tmp_path, "dangling_job_ttl", dict(args, run_now=True))
    kh.wait_for("the next sweep to finish", lambda: _job_done(batch, namespace, again["scheduled_sweep"]["job"]),
                timeout=180)
    newest = _sweep_history(core, namespace, name + "-sweep-history")[0]
    assert (newest["state"], newest["summary"]["taken"]) == ("succeeded", 10 - taken), newest
    assert batch.list_namespaced_job(namespace, label_selector="grp=old").items == []


def test_tampered_sweep_code_is_refused_and_nothing_is_swept(tmp_path, core, batch, namespace, real_node):
    """Someone re-makes the sweep's code ConfigMap under its name with other code: the runner's pod on the real
    node refuses to run it (its digest is in the CronJob), so no Job is swept and no history is written; and
    installing again refuses to take the re-made ConfigMap over, writing nothing."""
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron import manifests
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._node import boot

    create_all(batch, namespace, [make_job("old-%02d" % i, labels={"grp": "old"}) for i in range(3)])
    kh.wait_for("the Jobs to finish", lambda: finished(batch, namespace, "grp=old"), timeout=120)
    finish_earlier(batch, namespace, "grp=old", 2 * TTL)
    args = _sweep_args(real_node, namespace, include_namespaces=[namespace])
    name = args["policy_name"]
    installed = kh.run_module(tmp_path, "dangling_job_ttl", args)
    assert not installed.get("failed"), installed.get("msg")
    [code] = core.list_namespaced_config_map(namespace, label_selector="nodeops.io/kind=sweep-code").items
    key = [k for k in code.data if k.endswith("_dangling.sweep_runner.py")][0]
    tampered = dict(code.data)
    tampered[key] = code.data[key].replace("def main(environ=None):", "def main(environ=None):\n    return 0\n\n\ndef _x():")
    assert tampered[key] != code.data[key]
    core.delete_namespaced_config_map(code.metadata.name, namespace)
    core.create_namespaced_config_map(namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(
        name=code.metadata.name, labels=code.metadata.labels, annotations=code.metadata.annotations),
        data=tampered, immutable=True))

    cron_job = kh.rest_client().get("/apis/batch/v1/namespaces/%s/cronjobs/%s-sweep" % (namespace, name))
    batch.create_namespaced_job(namespace, manifests.job_from_cron(cron_job, name + "-tampered"))
    kh.wait_for("the sweep Job to fail", lambda: _job_done(batch, namespace, name + "-tampered"), timeout=180)
    [pod] = core.list_namespaced_pod(namespace, label_selector="job-name=%s-tampered" % name).items
    terminated = pod.status.container_statuses[0].state.terminated
    log = core.read_namespaced_pod_log(pod.metadata.name, namespace)
    assert pod.spec.node_name == real_node.name and terminated.exit_code == boot.EXIT_TAMPERED, log
    assert "does not match its digest" in log, log
    assert len(batch.list_namespaced_job(namespace, label_selector="grp=old").items) == 3
    assert _sweep_history(core, namespace, name + "-sweep-history") == []

    again = kh.run_module(tmp_path, "dangling_job_ttl", args)
    assert again.get("failed") and "does not hold what its name says" in again["msg"], again
    assert core.read_namespaced_config_map(code.metadata.name, namespace).data[key] == tampered[key]


def test_a_bad_schedule_or_a_name_taken_writes_nothing_not_even_the_policy(tmp_path, core, namespace, audit):
    """The scheduled sweep is checked whole (the apiserver judges the schedule) before the policy's first write;
    an object of its name that is not this sweep's (another team's, or another of this collection's) is never
    taken over."""
    name = kh.unique("bad")
    mark = audit.mark()
    refused = kh.run_module(tmp_path, "dangling_job_ttl", {"policy_name": name, "sweep_schedule": "0 24 * * *",
                                                           "sweep_namespace": namespace, "ttl_seconds": 600})
    assert refused["failed"] and refused["msg"].startswith("sweep_schedule='0 24 * * *' is invalid"), refused["msg"]
    assert "the apiserver refused it" in refused["msg"]
    zone = kh.run_module(tmp_path, "dangling_job_ttl", {"policy_name": name, "sweep_schedule": "0 3 * * *",
                                                        "time_zone": "Mars/Olympus", "sweep_namespace": namespace})
    assert zone["failed"] and "time_zone='Mars/Olympus'" in zone["msg"], zone["msg"]
    assert audit.writes_since(mark, namespace=None) == []

    # A ServiceAccount of the sweep's name: one we did not create, then one of ours that is not this sweep's.
    for annotations, says in (({}, "was not created by nodeops.kubernetes"),
                              ({"nodeops.io/created-by": "nodeops.kubernetes"}, "is not this scheduled sweep's")):
        core.create_namespaced_service_account(namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(
            name=name + "-sweep", annotations=annotations,
            labels={"app.kubernetes.io/managed-by": "nodeops.kubernetes"})))
        mark = audit.mark()
        taken = kh.run_module(tmp_path, "dangling_job_ttl", {"policy_name": name, "sweep_schedule": "0 3 * * *",
                                                             "sweep_namespace": namespace})
        assert taken["failed"] and says in taken["msg"], taken["msg"]
        assert audit.writes_since(mark, namespace=None) == []
        sa = core.read_namespaced_service_account(name + "-sweep", namespace)
        assert "nodeops.io/dangling-job-sweep" not in (sa.metadata.labels or {})
        core.delete_namespaced_service_account(name + "-sweep", namespace)


# ------------------------------------------------------------------ Kyverno's admission controller, live

@pytest.fixture(scope="module")
def kyverno_admission():
    """Kyverno's real admission controller, run against this cluster for this module's last tests, then stopped
    and its webhook configurations deleted (they fail closed)."""
    try:
        kyverno_tools.admission_up()
        yield
    finally:
        kyverno_tools.admission_down()
    for kind in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        assert kh.rest_client().get("/apis/admissionregistration.k8s.io/v1/" + kind,
                                    {"labelSelector": "webhook.kyverno.io/managed-by=kyverno"})["items"] == [], kind


@pytest.mark.parametrize("engine", ["kyverno", "kyverno_legacy"])
def test_kyverno_admission_adds_the_ttl_only_where_it_should(tmp_path, batch, core, namespace, second_namespace,
                                                             kyverno_admission, engine):
    """The same Jobs as the native engine's end-to-end test, through Kyverno's admission controller with the
    policy the module wrote; then removing the policy stops the mutation."""
    name = kh.unique(engine.replace("_", "-"))
    args = {"policy_name": name, "policy_engine": engine, "ttl_seconds": NATIVE_TTL,
            "include_namespaces": [namespace, second_namespace], "exclude_namespaces": [second_namespace]}
    if engine == "kyverno" and not kh.native_ttl_engine():
        # Kubernetes 1.34 without the gate: auto picks Kyverno, which serves here, as native does not.
        chosen = kh.run_module(tmp_path, "dangling_job_ttl", dict(args, policy_engine="auto"), check=True)
        assert chosen["policy_engine"] == "kyverno" and "MutatingPolicy CRD is served" in chosen[
            "policy_engine_reason"], chosen
    installed = kh.run_module(tmp_path, "dangling_job_ttl", args)
    assert installed["changed"] is True and installed["policy_engine"] == engine, installed.get("msg")
    ttl_added_only_where_it_should(batch, core, namespace, second_namespace, True)
    assert kh.run_module(tmp_path, "dangling_job_ttl", dict(args, state="absent"))["changed"] is True

    def untouched():
        job = batch.create_namespaced_job(namespace, make_job(kh.unique("after"), labels={"grp": "after"}))
        return _ttl(job) is None
    kh.wait_for("Kyverno to stop adding the TTL once the policy is gone", untouched, timeout=60, interval=0.5)
