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

from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron import manifests

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
        manifests.object_names(name, namespace)["service_account"], namespace,
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


def test_the_history_records_what_each_run_removed_on_each_node(tmp_path, namespace, labelled):
    """Two runs, each node's result in its termination message (the simulated kubelet's copy of what the
    node script writes): broadcast_info returns per run and per node the images removed and bytes freed."""
    selector, names = labelled
    freed = []
    for run, images in enumerate([["a:1", "b:1"], ["c:1"]]):
        result = {"bytes_freed": 1000 * (run + 1), "dry_run": False, "errors": [], "images_removed": images,
                  "images_removed_count": len(images), "preset": "image_prune"}
        install(tmp_path, namespace, selector, image_prune={"dry_run": False}, pod_annotations={
            "sim.nodeops.io/message": "NODEOPS_RESULT " + json.dumps(result, separators=(",", ":"))})
        command, env = run_runner.runner_command(namespace, "nightly", str(tmp_path))
        env["NODEOPS_RUN_ID"] = "removal%d" % run
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        freed.append((images, result["bytes_freed"]))
    runs = history(tmp_path, namespace)["history"]
    assert [r["run_id"] for r in runs] == ["removal1", "removal0"]
    for run, (images, bytes_freed) in zip(runs, reversed(freed)):
        assert run["removed"] == {"bytes_freed": 3 * bytes_freed, "items": 3 * len(images), "nodes_reporting": 3,
                                  "dry_run_nodes": 0, "would_free_bytes": 0, "would_remove_items": 0}
        ran = [rec for rec in run["nodes"] if rec["node"] in names]
        assert len(ran) == 3 and all(rec["outcome"] == "skipped" for rec in run["nodes"] if rec not in ran)
        for rec in ran:
            assert (rec["result"]["images_removed"], rec["result"]["bytes_freed"]) == (images, bytes_freed), rec


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

    # But the real way a pod reads a Secret is a volume, and creating pods is granted: the API server
    # admits, as the runner, a pod of its namespace that mounts one (a dry run: validated, never stored).
    secret = core.create_namespaced_secret(namespace, {"metadata": {"name": "not-the-runners"},
                                                       "stringData": {"key": "value"}}).metadata.name
    pod = {"metadata": {"name": "reads-a-secret"}, "spec": {
        "restartPolicy": "Never", "automountServiceAccountToken": False,
        "containers": [{"name": "c", "image": "busybox:1.36", "command": ["cat", "/secret/key"],
                        "volumeMounts": [{"name": "s", "mountPath": "/secret"}]}],
        "volumes": [{"name": "s", "secret": {"secretName": secret}}]}}
    as_runner = k8s.CoreV1Api(k8s.ApiClient(cfg))
    admitted = as_runner.create_namespaced_pod(namespace, pod, dry_run="All")
    assert admitted.spec.volumes[0].secret.secret_name == secret
    with pytest.raises(ApiException) as info:
        as_runner.create_namespaced_pod("kube-system", pod, dry_run="All")
    assert info.value.status == 403
    # So the README's table must list it, as following from create pods (the RBAC comparison accepts it
    # only because it does).
    sys.path.insert(0, os.path.join(kh.REPO, "tools"))
    import rights_table  # pylint: disable=import-outside-toplevel
    assert ("its namespace", "", "secrets", "get", "") in rights_table.implied(rights_table.rows())
    assert ("its namespace", "", "secrets", "get", "") in rights_table.follows_from(
        rights_table.rights(rights_table.rows(), []))


def test_the_runner_has_exactly_the_documented_rights(tmp_path, api_client, core, namespace, labelled):
    """The API server's own view of the runner's rights (SelfSubjectRulesReview as its ServiceAccount, in its
    namespace and in default) is the README's table for these options, and not one right more."""
    sys.path.insert(0, os.path.join(kh.REPO, "tools"))
    import rights_table  # pylint: disable=import-outside-toplevel

    install(tmp_path, namespace, labelled[0], node_events="failures",
            image_prune={"dry_run": True, "keep_images_in_cluster": True})
    # What any ServiceAccount may do on this cluster (discovery, self reviews, trust bundles) is not the
    # runner's grant: a ServiceAccount with no binding at all gives that baseline.
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})

    def reviewer(sa):
        token = core.create_namespaced_service_account_token(sa, namespace, k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=600))).status.token
        cfg = k8s.Configuration()
        cfg.host = api_client.configuration.host
        cfg.ssl_ca_cert = CA
        cfg.api_key = {"authorization": "Bearer " + token}
        authz = k8s.AuthorizationV1Api(k8s.ApiClient(cfg))

        def review(ns):
            status = authz.create_self_subject_rules_review(k8s.V1SelfSubjectRulesReview(
                spec=k8s.V1SelfSubjectRulesReviewSpec(namespace=ns))).status
            assert not status.incomplete, status.evaluation_error
            return rights_table.from_rules("here", [{"apiGroups": r.api_groups, "resources": r.resources,
                                                     "verbs": r.verbs, "resourceNames": r.resource_names}
                                                    for r in status.resource_rules])
        return review

    runner, nobody = reviewer(manifests.object_names("nightly", namespace)["service_account"]), reviewer("nobody")
    table = rights_table.rights(rights_table.rows(), [rights_table.NODE_EVENTS, rights_table.KEEP_IMAGES,
                                                      rights_table.DISK_PRESSURE], name="nightly")
    for ns, places in ((namespace, ("its namespace", "cluster")), ("default", ("default", "cluster"))):
        granted = runner(ns) - nobody(ns)
        documented = set(("here",) + right[1:] for right in table if right[0] in places)
        assert granted == documented, (ns, granted ^ documented)


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


@pytest.mark.parametrize("phase", ["cleanup", "events", "history"])
def test_sigterm_while_a_run_is_being_finished_loses_nothing(tmp_path, core, namespace, labelled, phase):
    """Invariant: whenever SIGTERM comes, the history gets the run, interrupted, with a result for every
    eligible node; failed pods kept for debugging stay kept, and no pod is left that nobody owns. The runner
    sends itself SIGTERM as it enters each phase after its pods finished (its test hook), so no timing is
    involved. Before, SIGTERM there deleted the kept pods and recorded the run with no nodes, or was not
    caught at all during the history write."""
    selector, names = labelled
    install(tmp_path, namespace, selector, pod_annotations={"sim.nodeops.io/exit-code." + names[1]: "2"})
    command, env = run_runner.runner_command(namespace, "nightly", str(tmp_path), job_name="nightly-term")
    env["NODEOPS_TEST_SIGTERM_AT"] = phase
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 143, proc.stdout + proc.stderr
    assert "SIGTERM during %s" % phase in proc.stdout, proc.stdout
    last = history(tmp_path, namespace)["history"][0]
    assert (last["job"], last["state"]) == ("nightly-term", "interrupted"), last
    outcome = dict((rec["node"], rec["outcome"]) for rec in last["nodes"] if rec["node"] in names)
    assert outcome == {names[0]: "succeeded", names[1]: "failed", names[2]: "succeeded"}, last["nodes"]
    # The failed node's pod is kept for debugging, owned by its run record; nothing else is left.
    kept = core.list_namespaced_pod(namespace, label_selector="nodeops.io/broadcast=nightly").items
    assert [p.metadata.annotations["nodeops.io/node"] for p in kept] == [names[1]]
    assert [o.kind for o in kept[0].metadata.owner_references] == ["ConfigMap"]
    records = core.list_namespaced_config_map(namespace, label_selector="nodeops.io/kind=run-record").items
    assert [r.metadata.name for r in records] == [kept[0].metadata.owner_references[0].name]


def test_run_now_creates_a_job_owned_by_the_cronjob(tmp_path, api_client, namespace, labelled):
    result = install(tmp_path, namespace, labelled[0], run_now=True)
    job = k8s.BatchV1Api(api_client).read_namespaced_job(result["job"], namespace)
    owner = job.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("CronJob", "nightly", True)
    assert job.spec.template.spec.service_account_name == "nodeops-nightly"


@pytest.mark.k8s_compat
def test_idempotence_diff_check_mode_and_absent(tmp_path, api_client, core, namespace, labelled, audit):
    first = install(tmp_path, namespace, labelled[0])
    assert first["changed"] and len(first["changes"]) == 9   # with the Role to post Node events in default
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
        ["CronJob", "ConfigMap", "RoleBinding", "Role", "ServiceAccount", "ClusterRoleBinding", "ClusterRole",
         "RoleBinding", "Role"])
    assert sorted(d["namespace"] for d in gone["deleted"] if d["kind"] in ("Role", "RoleBinding")) == sorted(
        [namespace, namespace, "default", "default"])
    selector = "nodeops.io/cron-broadcast=nightly"
    assert core.list_namespaced_config_map(namespace, label_selector=selector).items == []
    assert k8s.BatchV1Api(api_client).list_namespaced_cron_job(namespace).items == []
    rbac = k8s.RbacAuthorizationV1Api(api_client)
    assert rbac.list_cluster_role(label_selector=selector).items == [] or all(
        namespace not in r.metadata.name for r in rbac.list_cluster_role(label_selector=selector).items)
    assert core.read_namespaced_config_map("not-ours", namespace)
    assert rbac.list_namespaced_role("default", label_selector=selector).items == [] or all(
        namespace not in r.metadata.name for r in rbac.list_namespaced_role("default", label_selector=selector).items)
    again = kh.run_module(tmp_path, "cron_broadcast", {"name": "nightly", "namespace": namespace, "state": "absent"})
    assert again["changed"] is False


@pytest.mark.parametrize("args, fragment", [
    # The apiserver refuses these in its dry run, before any object is written.
    ({"schedule": "*/5 * * * * *"}, "schedule='*/5 * * * * *' is invalid: the apiserver refused it"),
    ({"schedule": "5-3 * * * *"}, "schedule='5-3 * * * *' is invalid: the apiserver refused it"),
    ({"schedule": "0 22-2 * * *"}, "schedule='0 22-2 * * *' is invalid: the apiserver refused it"),
    ({"schedule": "TZ=UTC 0 3 * * *"}, "schedule='TZ=UTC 0 3 * * *' is invalid: the apiserver refused it"),
    ({"schedule": "0 3 * * *", "time_zone": "Mars/Olympus"}, "time_zone='Mars/Olympus' is invalid"),
    ({"schedule": "0 3 * * *", "starting_deadline_seconds": -1}, "starting_deadline_seconds=-1 is invalid"),
    ({"schedule": "0 3 * * *", "concurrency_policy": "Sometimes"}, "value of concurrency_policy must be one of"),
    ({"schedule": "0 3 * * *", "runner_image": ""}, "runner_image='' is invalid"),
])
@pytest.mark.k8s_compat
def test_bad_input_is_refused_before_any_write(tmp_path, namespace, audit, args, fragment):
    mark = audit.mark()
    base = {"name": "bad", "namespace": namespace, "preset": "image_prune"}
    result = kh.run_module(tmp_path, "cron_broadcast", dict(base, **args))
    assert result["failed"] and fragment in result["msg"], result.get("msg")
    assert audit.writes_since(mark, namespace=None) == []


def schedule_corpus():
    """Hundreds of schedules, generated: ranges (some reversed), steps, names in every case, macros,
    ``@every``, ``?``, TZ prefixes, odd whitespace, wrong field counts, out-of-range numbers."""
    out = ["* * * * *", "0 3 * * *", "", " ", "not a schedule", "* * * *", "0 0 * * * *", "0 0 3 * * * 2030",
           "0 0 L * *", "0 0 15W * *", "0 0 * * 5#3", "H 3 * * *", "@reboot", "0 0 ? ? ?"]
    for a, b in [(0, 59), (5, 3), (10, 10), (59, 0), (0, 60)]:
        out.append("%d-%d * * * *" % (a, b))
    for a, b in [(0, 23), (22, 2), (9, 17), (23, 24)]:
        out.append("0 %d-%d * * *" % (a, b))
    for a, b in [(1, 31), (31, 1), (0, 5), (15, 32)]:
        out.append("0 0 %d-%d * *" % (a, b))
    for a, b in [(1, 12), (12, 1), (0, 3), (6, 13)]:
        out.append("0 0 * %d-%d *" % (a, b))
    for a, b in [(0, 6), (6, 0), (1, 7), (0, 7), (5, 8)]:
        out.append("0 0 * * %d-%d" % (a, b))
    for step in (0, 1, 2, 7, 15, 59, 60, 61):
        out += ["*/%d * * * *" % step, "0 */%d * * *" % step, "0-30/%d * * * *" % step]
    for first, second in [("jan", "mar"), ("dec", "jan"), ("JAN", "MAR"), ("Jan", "Mar"), ("DEC", "JAN")]:
        out += ["0 0 * %s-%s *" % (first, second), "0 0 * %s *" % first, "0 0 * %s,%s *" % (first, second)]
    for first, second in [("mon", "fri"), ("fri", "mon"), ("MON", "SUN"), ("Mon", "Fri"), ("sun", "sat"),
                          ("mon", "sun"), ("sat", "sun")]:
        out += ["0 0 * * %s-%s" % (first, second), "0 0 * * %s" % first, "0 0 * * %s,%s" % (first, second)]
    for macro in ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"):
        out += [macro, macro.upper(), macro.capitalize(), " " + macro, macro + " ", macro + " x"]
    for every in ("1h", "30m", "1h30m", "90s", "0s", "-1h", "1d", "h", ""):
        out += ["@every " + every, "@EVERY " + every]
    out += ["? * * * *", "* ? * * *", "* * ? * *", "* * * ? *", "* * * * ?", "0 0 ? * mon", "0 0 1 * ?"]
    for prefix in ("TZ=UTC ", "CRON_TZ=UTC ", "TZ=Europe/Berlin ", "CRON_TZ=Mars/Base ", "tz=UTC "):
        out += [prefix + "0 3 * * *", prefix + "@daily"]
    out += ["  30  2 * *   * ", "\t0 3 * * *", "0\t3 * * *", "0 3 * * *\n", "0  3  *  *  *"]
    for value in ("60", "-1", "1,2,3", "1,,2", "1-", "-", "*/", "**", "1-2-3", "07", "007", "1.5", "a"):
        out += ["%s * * * *" % value, "0 0 %s * *" % value]
    for n in range(2, 8):
        out.append(" ".join(["*"] * n))
    seen, corpus = set(), []
    for expr in out:
        if expr not in seen:
            seen.add(expr)
            corpus.append(expr)
    return corpus


def apiserver_takes(batch, namespace, expr):
    """The apiserver's own verdict: a CronJob with this schedule, exactly as written, dry-run created."""
    cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "probe"},
            "spec": {"schedule": expr, "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}}}}}
    try:
        batch.create_namespaced_cron_job(namespace, cron, dry_run="All")
        return True
    except ApiException as exc:
        assert exc.status == 422, exc.body
        return False


def test_the_modules_schedule_verdicts_agree_with_the_apiserver_in_both_directions(tmp_path, api_client, namespace):
    corpus = schedule_corpus()
    assert len(corpus) >= 200
    batch = k8s.BatchV1Api(api_client)
    truth = dict((expr, apiserver_takes(batch, namespace, expr)) for expr in corpus)
    assert 20 < sum(truth.values()) < len(corpus) - 20, "the corpus should hold plenty of both verdicts"
    # One play, one check-mode task per schedule: the module's verdict as a user would get it.
    results = tmp_path / "verdicts.json"
    play = [{"hosts": "localhost", "gather_facts": False, "connection": "local", "tasks": [
        {"name": "cron_broadcast per schedule", "nodeops.kubernetes.cron_broadcast": {
            "name": "probe", "namespace": namespace, "schedule": "{{ item }}", "preset": "image_prune"},
         "check_mode": True, "loop": corpus, "register": "r", "ignore_errors": True},
        {"name": "save", "ansible.builtin.copy": {
            "content": "{{ r.results | map(attribute='msg', default='') | zip(r.results | map(attribute='failed',"
                       " default=False)) | list | to_json }}", "dest": str(results)}}]}]
    playbook = tmp_path / "play.json"
    playbook.write_text(json.dumps(play))
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                           "-e", "ansible_python_interpreter=" + sys.executable, str(playbook)],
                          env=dict(os.environ, KUBECONFIG=kh.KUBECONFIG, ANSIBLE_NOCOLOR="1"),
                          capture_output=True, text=True, timeout=1200, check=False)
    assert results.exists(), proc.stdout[-3000:] + proc.stderr[-2000:]
    verdicts = json.loads(results.read_text())
    assert len(verdicts) == len(corpus)
    disagree = []
    for expr, (msg, failed) in zip(corpus, verdicts):
        if failed:
            assert msg.startswith("schedule=%r is invalid" % expr), (expr, msg)
        if (not failed) != truth[expr]:
            verdicts_ = ("refuses" if failed else "accepts", "accepts" if truth[expr] else "refuses")
            disagree.append((expr, "module %s, apiserver %s" % verdicts_, msg))
    assert disagree == [], disagree


@pytest.mark.k8s_compat
def test_the_schedule_is_stored_exactly_as_written(tmp_path, api_client, namespace, labelled):
    for expr in ("@every 6h", "0 0 ? * mon"):
        install(tmp_path, namespace, labelled[0], schedule=expr)
        cron = k8s.BatchV1Api(api_client).read_namespaced_cron_job("nightly", namespace)
        assert cron.spec.schedule == expr
