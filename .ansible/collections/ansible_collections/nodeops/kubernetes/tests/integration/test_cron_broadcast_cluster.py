# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cron_broadcast, the in-cluster runner and broadcast_info on the real local control plane.

kwok nodes run no containers, so the runner's Job cannot execute in the
cluster. These tests take the command, environment and code from the
installed CronJob and ConfigMap and run them as a local process with a token
of the runner's own ServiceAccount: the same code, the same RBAC.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import signal
import subprocess
import sys

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from ansible_collections.nodeops.kubernetes.plugins.module_utils import cron_builder
from ansible_collections.nodeops.kubernetes.plugins.module_utils.errors import InvalidInput
from ansible_collections.nodeops.kubernetes.plugins.module_utils.schedule import check_schedule

import kube_helpers as kh

sys.path.insert(0, os.path.join(kh.REPO, "tools", "localcluster"))
import run_runner  # noqa: E402  pylint: disable=wrong-import-position

CA = os.path.join(kh.STATE, "pki", "ca.crt")


def install(tmp_path, namespace, selector, diff=False, **extra):
    args = {"name": "nightly", "namespace": namespace, "schedule": "0 3 * * *", "preset": "image_prune",
            "image_prune": {"dry_run": True}, "node_selector": selector, "parallelism": "100%"}
    args.update(extra)
    result = kh.run_module(tmp_path, "cron_broadcast", args, diff=diff)
    assert not result.get("failed"), result.get("msg")
    return result


def sa_token_dir(core, namespace, tmp_path, name="nightly"):
    token = core.create_namespaced_service_account_token(
        cron_builder.object_names(name, namespace)["service_account"], namespace,
        k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)))
    directory = tmp_path / "sa"
    directory.mkdir(exist_ok=True)
    (directory / "token").write_text(token.status.token)
    (directory / "ca.crt").write_text(open(CA).read())
    return str(directory), token.status.token


def history(tmp_path, namespace):
    info = kh.run_module(tmp_path, "broadcast_info", {"name": "nightly", "namespace": namespace})
    assert not info.get("failed"), info.get("msg")
    return info["cron_broadcasts"][0]


@pytest.fixture(autouse=True)
def no_cluster_scoped_leftovers(api_client, namespace):
    """Cluster-scoped RBAC outlives the test namespace: remove what a test installed."""
    yield
    rbac = k8s.RbacAuthorizationV1Api(api_client)
    selector = "nodeops.io/cron-broadcast"
    for binding in rbac.list_cluster_role_binding(label_selector=selector).items:
        if binding.metadata.name.startswith("nodeops-%s-" % namespace):
            rbac.delete_cluster_role_binding(binding.metadata.name)
    for role in rbac.list_cluster_role(label_selector=selector).items:
        if role.metadata.name.startswith("nodeops-%s-" % namespace):
            rbac.delete_cluster_role(role.metadata.name)


@pytest.fixture
def labelled(sim_nodes):
    tag = kh.unique("cron")
    names = [sim_nodes.add(name="%s-%d" % (tag, i), labels={"nodeops-test": tag}) for i in range(3)]
    return {"nodeops-test": tag}, names


def test_runner_end_to_end_and_history_outlives_pods_and_jobs(tmp_path, api_client, core, namespace, labelled):
    selector, names = labelled
    install(tmp_path, namespace, selector, pod_annotations={"sim.nodeops.io/exit-code." + names[1]: "2"},
            run_now=True)
    command, env = run_runner.runner_command(namespace, "nightly", str(tmp_path), job_name="nightly-manual")
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr   # a node failed under failure_policy continue
    lines = proc.stdout.strip().splitlines()
    assert any("created" in line and "pods" in line for line in lines)
    assert any(("node %s: failed" % names[1]) in line for line in lines)
    summary = json.loads(lines[-1])
    assert summary["state"] == "failed" and summary["summary"]["succeeded"] == 2
    # Remove every pod and Job: the history must not depend on them.
    k8s.BatchV1Api(api_client).delete_collection_namespaced_job(namespace, propagation_policy="Background")
    core.delete_collection_namespaced_pod(namespace)
    kh.wait_for("no pods left", lambda: core.list_namespaced_pod(namespace).items == [])
    info = history(tmp_path, namespace)
    assert info["schedule"] == "0 3 * * *" and info["suspended"] is False and len(info["next_runs"]) == 5
    last = info["last_run"]
    assert last["state"] == "failed" and last["job"] == "nightly-manual"
    outcomes = dict((rec["node"], rec["outcome"]) for rec in last["nodes"] if rec["node"] in names)
    assert outcomes == {names[0]: "succeeded", names[1]: "failed", names[2]: "succeeded"}


def test_runner_token_is_limited_to_its_job(tmp_path, api_client, core, namespace, labelled):
    install(tmp_path, namespace, labelled[0])
    _dir, token = sa_token_dir(core, namespace, tmp_path)
    cfg = k8s.Configuration()
    cfg.host = api_client.configuration.host
    cfg.ssl_ca_cert = CA
    cfg.api_key = {"authorization": "Bearer " + token}
    authz = k8s.AuthorizationV1Api(k8s.ApiClient(cfg))

    def allowed(verb, resource, ns=None, subresource=None):
        review = authz.create_self_subject_access_review(k8s.V1SelfSubjectAccessReview(
            spec=k8s.V1SelfSubjectAccessReviewSpec(resource_attributes=k8s.V1ResourceAttributes(
                namespace=ns, verb=verb, resource=resource, subresource=subresource))))
        return review.status.allowed

    assert allowed("create", "pods", namespace) and allowed("watch", "pods", namespace)
    assert allowed("get", "pods", namespace, "log") and allowed("list", "nodes")
    assert not allowed("get", "secrets", namespace)
    assert not allowed("list", "secrets", namespace)
    assert not allowed("create", "pods", "kube-system")
    assert not allowed("delete", "nodes")
    assert not allowed("patch", "nodes")
    rules = authz.create_self_subject_rules_review(k8s.V1SelfSubjectRulesReview(
        spec=k8s.V1SelfSubjectRulesReviewSpec(namespace=namespace)))
    assert not any("secrets" in (r.resources or []) or "*" in (r.resources or []) for r in rules.status.resource_rules)


def test_sigterm_records_an_interrupted_run_and_leaves_no_pods(tmp_path, api_client, core, namespace, labelled):
    install(tmp_path, namespace, labelled[0], pod_annotations={"sim.nodeops.io/delay": "1h"})
    command, env = run_runner.runner_command(namespace, "nightly", str(tmp_path), job_name="nightly-manual")
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        kh.wait_for("the runner's pods", lambda: len(core.list_namespaced_pod(
            namespace, label_selector="nodeops.io/broadcast=nightly").items) == 3)
        proc.send_signal(signal.SIGTERM)
        out, _err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, out
    assert json.loads(out.strip().splitlines()[-1])["state"] == "interrupted"
    kh.wait_for("no node pods", lambda: core.list_namespaced_pod(
        namespace, label_selector="nodeops.io/broadcast=nightly").items == [])
    assert core.list_namespaced_config_map(namespace, label_selector="nodeops.io/kind=run-record").items == []
    assert history(tmp_path, namespace)["last_run"]["state"] == "interrupted"


def test_run_now_creates_a_job_owned_by_the_cronjob(tmp_path, api_client, namespace, labelled):
    result = install(tmp_path, namespace, labelled[0], run_now=True)
    job = k8s.BatchV1Api(api_client).read_namespaced_job(result["job"], namespace)
    owner = job.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("CronJob", "nightly", True)
    assert job.spec.template.spec.service_account_name == "nodeops-nightly"


def test_idempotence_diff_check_mode_and_absent(tmp_path, api_client, core, namespace, labelled, audit):
    first = install(tmp_path, namespace, labelled[0])
    assert first["changed"] and len(first["changes"]) == 7
    second = install(tmp_path, namespace, labelled[0])
    assert second["changed"] is False and second["changes"] == []
    mark = audit.mark()
    checked = kh.run_module(tmp_path, "cron_broadcast", {
        "name": "nightly", "namespace": namespace, "schedule": "15 4 * * 1", "preset": "image_prune",
        "image_prune": {"dry_run": True}, "node_selector": labelled[0], "parallelism": "100%"}, check=True)
    assert checked["changed"] is True
    assert audit.writes_since(mark, namespace=None) == []
    changed = install(tmp_path, namespace, labelled[0], schedule="15 4 * * 1", diff=True)
    assert changed["changed"] is True
    assert [c["kind"] for c in changed["changes"]] == ["CronJob"]
    assert changed["diff"]["before"][0]["spec"]["schedule"] == "0 3 * * *"
    assert changed["diff"]["after"][0]["spec"]["schedule"] == "15 4 * * 1"
    # An object of the same kind that is not ours stays.
    core.create_namespaced_config_map(namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="not-ours")))
    gone = kh.run_module(tmp_path, "cron_broadcast", {"name": "nightly", "namespace": namespace, "state": "absent"})
    assert gone["changed"] is True
    assert sorted(d["kind"] for d in gone["deleted"]) == sorted(
        ["CronJob", "ConfigMap", "RoleBinding", "Role", "ServiceAccount", "ClusterRoleBinding", "ClusterRole"])
    selector = "nodeops.io/cron-broadcast=nightly"
    assert core.list_namespaced_config_map(namespace, label_selector=selector).items == []
    assert k8s.BatchV1Api(api_client).list_namespaced_cron_job(namespace).items == []
    rbac = k8s.RbacAuthorizationV1Api(api_client)
    assert rbac.list_cluster_role(label_selector=selector).items == [] or all(
        namespace not in r.metadata.name for r in rbac.list_cluster_role(label_selector=selector).items)
    assert core.read_namespaced_config_map("not-ours", namespace)
    again = kh.run_module(tmp_path, "cron_broadcast", {"name": "nightly", "namespace": namespace, "state": "absent"})
    assert again["changed"] is False


@pytest.mark.parametrize("args, fragment", [
    ({"schedule": "*/5 * * * * *"}, "6 fields"),
    ({"schedule": "0 0 L * *"}, "'l' is not allowed"),
    ({"schedule": "TZ=UTC 0 3 * * *"}, "TZ="),
    ({"schedule": "0 3 * * *", "time_zone": "Mars/Olympus"}, "time_zone='Mars/Olympus' is invalid"),
    ({"schedule": "0 3 * * *", "starting_deadline_seconds": -1}, "starting_deadline_seconds=-1 is invalid"),
    ({"schedule": "0 3 * * *", "concurrency_policy": "Sometimes"}, "value of concurrency_policy must be one of"),
    ({"schedule": "0 3 * * *", "runner_image": ""}, "runner_image='' is invalid"),
])
def test_bad_input_is_refused_before_any_write(tmp_path, namespace, audit, args, fragment):
    mark = audit.mark()
    base = {"name": "bad", "namespace": namespace, "preset": "image_prune"}
    result = kh.run_module(tmp_path, "cron_broadcast", dict(base, **args))
    assert result["failed"] and fragment in result["msg"], result.get("msg")
    assert audit.writes_since(mark, namespace=None) == []


# Kubernetes' CronJob schedule parser is stricter than croniter: no seconds or
# year field, no L/W/#/H/R, no TZ prefix. Every schedule we accept must be one
# the apiserver accepts; every one we refuse must say why.
SCHEDULES = [
    "* * * * *", "0 3 * * *", "30 2 * * 1-5", "*/15 * * * *", "0 0 1 * *", "0 0 1 1 *", "5 4 * * sun",
    "0 22 * * mon-fri", "0 0,12 * * *", "0 9-17/2 * * *", "0 0 * jan,jul *", "0 0 1-7 * mon", "59 23 31 12 *",
    "0 0 ? * mon", "0 0 * * ?", "0 0 * * 0", "@yearly", "@annually", "@monthly", "@weekly", "@daily",
    "@midnight", "@hourly", "1,2,3 * * * *",
    # croniter accepts these (or parts of them); Kubernetes does not
    "0 0 * * 7", "0 0 * * * *", "0 0 3 * * * 2030", "0 0 L * *", "0 0 15W * *", "0 0 * * 5#3", "0 0 * * 5L", "H 3 * * *",
    "R 3 * * *", "TZ=UTC 0 3 * * *", "CRON_TZ=Europe/Berlin 0 3 * * *", "@reboot", "@every 1h",
    # neither accepts these
    "60 * * * *", "* 24 * * *", "* * 32 * *", "* * * 13 *", "* * * * 8", "", "not a schedule", "* * * *",
    "0 0 ? ? ?",
]


def test_schedule_check_agrees_with_the_apiserver(api_client, namespace):
    assert len(SCHEDULES) >= 40
    batch = k8s.BatchV1Api(api_client)
    accepted = []
    for expr in SCHEDULES:
        try:
            ours = check_schedule(expr)
        except InvalidInput as exc:
            assert "schedule=" in exc.msg and "expected" in exc.msg and "e.g." in exc.msg, exc.msg
            continue
        accepted.append(expr)
        cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "probe"},
                "spec": {"schedule": ours, "jobTemplate": {"spec": {"template": {"spec": {
                    "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}}}}}
        try:
            batch.create_namespaced_cron_job(namespace, cron, dry_run="All")
        except ApiException as exc:
            pytest.fail("we accept %r but the apiserver refuses it: %s" % (expr, exc.body))
    assert len(accepted) == 24
