# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The local control plane is real: validation, RBAC, controllers, scheduler, logs, audit."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import sys
import time

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

import kube_helpers as kh

CLUSTER = [sys.executable, os.path.join(kh.REPO, "tools", "localcluster", "cluster.py")]
KUBECTL = os.path.join(kh.STATE, "bin", "kubectl")


def _job(name, ttl=None, exit_code=None):
    annotations = {"sim.nodeops.io/exit-code": str(exit_code)} if exit_code is not None else None
    return k8s.V1Job(
        metadata=k8s.V1ObjectMeta(name=name),
        spec=k8s.V1JobSpec(
            ttl_seconds_after_finished=ttl,
            backoff_limit=0,
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(annotations=annotations),
                spec=k8s.V1PodSpec(restart_policy="Never",
                                   containers=[k8s.V1Container(name="main", image="busybox:1.36")]))))


def _job_condition(batch, namespace, name):
    job = batch.read_namespaced_job(name, namespace)
    for cond in job.status.conditions or []:
        if cond.status == "True" and cond.type in ("Complete", "Failed"):
            return cond.type
    return None


def test_apiserver_rejects_an_invalid_pod(core, namespace):
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name"},
           "spec": {"containers": [{"name": "c"}]}}
    with pytest.raises(ApiException) as info:
        core.create_namespaced_pod(namespace, bad)
    assert info.value.status == 422
    assert "Bad_Name" in info.value.body and "image" in info.value.body


def test_service_account_without_rolebinding_is_denied(core, namespace, cluster):
    core.create_namespaced_service_account(namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="nobody")))
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(audiences=[])))
    cfg = k8s.Configuration()
    admin_cfg = kh.new_api_client(cluster).configuration
    cfg.host = admin_cfg.host
    cfg.ssl_ca_cert = admin_cfg.ssl_ca_cert
    cfg.api_key = {"authorization": "Bearer " + token.status.token}
    sa_core = k8s.CoreV1Api(k8s.ApiClient(cfg))
    with pytest.raises(ApiException) as info:
        sa_core.list_namespaced_pod(namespace)
    assert info.value.status == 403
    assert "system:serviceaccount:%s:nobody" % namespace in info.value.body
    # The token itself is valid: a permission the SA does have (self review) works.
    review = k8s.AuthorizationV1Api(k8s.ApiClient(cfg)).create_self_subject_access_review(
        k8s.V1SelfSubjectAccessReview(spec=k8s.V1SelfSubjectAccessReviewSpec(
            resource_attributes=k8s.V1ResourceAttributes(namespace=namespace, verb="list", resource="pods"))))
    assert review.status.allowed is False


def test_job_pod_lands_on_a_kwok_node_and_job_completes(core, batch, namespace):
    batch.create_namespaced_job(namespace, _job("ok"))
    assert kh.wait_for("Job ok to finish", lambda: _job_condition(batch, namespace, "ok")) == "Complete"
    pods = core.list_namespaced_pod(namespace, label_selector="job-name=ok").items
    assert len(pods) == 1
    node = core.read_node(pods[0].spec.node_name)
    assert node.metadata.annotations.get("kwok.x-k8s.io/node") == "fake"
    assert pods[0].status.phase == "Succeeded"


def test_failing_pod_reports_its_exit_code(core, batch, namespace):
    batch.create_namespaced_job(namespace, _job("bad", exit_code=7))
    assert kh.wait_for("Job bad to finish", lambda: _job_condition(batch, namespace, "bad")) == "Failed"
    pod = core.list_namespaced_pod(namespace, label_selector="job-name=bad").items[0]
    assert pod.status.container_statuses[0].state.terminated.exit_code == 7


def test_job_created_from_cronjob_runs(batch, namespace):
    cron = {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 3 * * *", "suspend": True,
                 "jobTemplate": {"spec": {"template": {"spec": {
                     "restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.36"}]}}}}},
    }
    batch.create_namespaced_cron_job(namespace, cron)
    subprocess.run([KUBECTL, "--kubeconfig", kh.KUBECONFIG, "-n", namespace, "create", "job", "manual",
                    "--from=cronjob/nightly"], check=True, capture_output=True)
    job = batch.read_namespaced_job("manual", namespace)
    assert job.metadata.owner_references[0].kind == "CronJob"
    assert kh.wait_for("Job manual to finish", lambda: _job_condition(batch, namespace, "manual")) == "Complete"


def test_ttl_controller_deletes_finished_job(batch, namespace):
    batch.create_namespaced_job(namespace, _job("short-lived", ttl=0))

    def gone():
        try:
            batch.read_namespaced_job("short-lived", namespace)
            return False
        except ApiException as exc:
            return exc.status == 404

    kh.wait_for("the TTL controller to delete Job short-lived", gone, timeout=60)


def test_background_deletion_removes_job_pods(core, batch, namespace):
    batch.create_namespaced_job(namespace, _job("gc"))
    kh.wait_for("Job gc to finish", lambda: _job_condition(batch, namespace, "gc"))
    assert core.list_namespaced_pod(namespace, label_selector="job-name=gc").items
    batch.delete_namespaced_job("gc", namespace, propagation_policy="Background")
    kh.wait_for("the garbage collector to delete the pods of Job gc",
                lambda: not core.list_namespaced_pod(namespace, label_selector="job-name=gc").items)


def test_audit_log_records_the_writes_of_a_test(core, namespace, audit):
    mark = audit.mark()
    core.create_namespaced_config_map(namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="audited")))
    core.delete_namespaced_config_map("audited", namespace)
    writes = audit.writes_since(mark, namespace=namespace)
    assert [(w["verb"], w["resource"], w["name"]) for w in writes if w["resource"] == "configmaps"] == [
        ("create", "configmaps", "audited"), ("delete", "configmaps", "audited")]
    assert audit.writes_since(audit.mark(), namespace=namespace) == []


def test_an_audit_window_that_was_not_read_fails_instead_of_showing_nothing(tmp_path, cluster):
    """A log the apiserver does not write (a wrong path, or one read before its events are in) shows none of
    the window's control writes: "nothing written" must not pass on it."""
    log = kh.AuditLog(path=str(tmp_path / "audit.log"))
    open(log.path, "w").close()
    mark = log.mark()
    with pytest.raises(AssertionError, match="made at the end of the window is not in the audit log"):
        log.writes_since(mark, namespace=None, timeout=2)


def test_a_rotated_audit_log_fails_instead_of_showing_nothing(tmp_path, cluster):
    """The apiserver rotates its log (--audit-log-maxsize): the file is renamed and a new one started. A window
    read from the new file at the old offset would hold nothing, or someone else's events."""
    log = kh.AuditLog(path=str(tmp_path / "audit.log"))
    with open(log.path, "wb") as old:
        old.write(b"\n" * 100)
    mark = log.mark()
    os.rename(log.path, log.path + ".1")
    with open(log.path, "wb") as fresh:
        fresh.write(b" " * 200)   # larger than the old one was at the mark
    with pytest.raises(AssertionError, match="was rotated since"):
        log.writes_since(mark, namespace=None, timeout=2)


def test_pod_log_is_read_through_the_api(core, namespace, tmp_path, api_client):
    pod = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="talker"), spec=k8s.V1PodSpec(
        restart_policy="Never", node_name="kwok-worker-1",
        containers=[k8s.V1Container(name="main", image="busybox:1.36")]))
    core.create_namespaced_pod(namespace, pod)
    kh.wait_for("pod talker to finish", lambda: core.read_namespaced_pod("talker", namespace).status.phase == "Succeeded")
    # The default log every simulated container has.
    assert "simulated container done" in core.read_namespaced_pod_log("talker", namespace)
    # A log chosen for this one pod, served by kwok behind the apiserver's pods/log path.
    log_file = tmp_path / "talker.log"
    log_file.write_text("2026-01-01T00:00:00Z stdout F line one\n2026-01-01T00:00:01Z stdout F line two\n")
    k8s.CustomObjectsApi(api_client).create_namespaced_custom_object(
        "kwok.x-k8s.io", "v1alpha1", namespace, "logs",
        {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs", "metadata": {"name": "talker"},
         "spec": {"logs": [{"logsFile": str(log_file)}]}})
    kh.wait_for("per-pod log", lambda: core.read_namespaced_pod_log("talker", namespace) == "line one\nline two\n")
    assert core.read_namespaced_pod_log("talker", namespace, tail_lines=1) == "line two\n"


def test_unschedulable_pod_stays_pending_with_scheduler_reason(core, namespace):
    pod = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="huge"), spec=k8s.V1PodSpec(
        restart_policy="Never",
        containers=[k8s.V1Container(name="main", image="busybox:1.36",
                                    resources=k8s.V1ResourceRequirements(requests={"cpu": "500"}))]))
    core.create_namespaced_pod(namespace, pod)

    def reason():
        for cond in core.read_namespaced_pod("huge", namespace).status.conditions or []:
            if cond.type == "PodScheduled" and cond.status == "False":
                return cond.message
        return None

    assert "Insufficient cpu" in kh.wait_for("the scheduler to give up on pod huge", reason)


def test_node_helpers_drive_readiness_and_scheduling(core, sim_nodes):
    name = sim_nodes.add(labels={"nodeops-test": "helpers"})
    sim_nodes.set_not_ready(name)
    sim_nodes.set_not_ready(name, not_ready=False)
    sim_nodes.cordon(name)
    sim_nodes.taint(name, "dedicated", "infra")
    node = core.read_node(name)
    assert node.spec.unschedulable is True
    # The node lifecycle controller adds its own node.kubernetes.io/unschedulable taint to a cordoned node.
    assert ("dedicated", "infra", "NoSchedule") in [(t.key, t.value, t.effect) for t in node.spec.taints]


def test_cluster_down_undoes_every_host_change_and_up_on_other_ports_works(core, namespace):
    """Runs last in this file: it restarts every component, and kwok on another port."""
    real = kh.RealNodeHelper()
    real_was_up = real.absent_reason() is None
    subprocess.run(CLUSTER + ["down"], check=True, capture_output=True)
    with pytest.raises(Exception):
        core.list_namespace(_request_timeout=2)
    if real_was_up:
        # Nothing of the real node is left: processes, nft tables, iptables chains, the lo address,
        # the bridge, cgroups, mounts, sysctls; as recorded before it first started.
        assert real.node.pid() is None
        leftovers = subprocess.run(["pgrep", "-af", real.node.root], capture_output=True, text=True,
                                   check=False).stdout
        assert leftovers == "", leftovers
        assert real.node.host_state() == real.recorded_host_state()
    started = time.monotonic()
    # Existing state, other ports: kwok's nodes must follow it, or every log read fails.
    env = dict(os.environ, NODEOPS_KWOK_PORT=str(int(os.environ.get("NODEOPS_KWOK_PORT", "10247")) + 1))
    subprocess.run(CLUSTER + ["up"], check=True, capture_output=True, env=env)
    elapsed = time.monotonic() - started
    assert elapsed < 60, "cluster took %.1fs to come back" % elapsed
    if real_was_up:
        assert real.absent_reason() is None
        assert kh.simnodes.is_ready(core.api_client.sanitize_for_serialization(core.read_node(real.name)))
    # State survived the restart, and the restarted kwok runs pods again and serves their logs.
    assert core.read_namespace(namespace).metadata.name == namespace
    pod = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="after-restart"), spec=k8s.V1PodSpec(
        restart_policy="Never", node_name="kwok-worker-2",
        containers=[k8s.V1Container(name="main", image="busybox:1.36")]))
    core.create_namespaced_pod(namespace, pod)
    kh.wait_for("a pod to run after the restart",
                lambda: core.read_namespaced_pod("after-restart", namespace).status.phase == "Succeeded")
    assert "simulated container done" in core.read_namespaced_pod_log("after-restart", namespace)
