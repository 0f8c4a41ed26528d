# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a root-on-every-node tool must never do, each set up as the hostile case on the real cluster:

* change or delete an object it did not create, whatever labels that object carries;
* let two installs share a cluster-scoped object;
* run code that someone with only ConfigMap rights changed (on the real node, through the real runner).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

import kube_helpers as kh

OUR_LABELS = {"app.kubernetes.io/managed-by": "nodeops.kubernetes"}


def cron_args(namespace, name="nightly", **extra):
    args = {"name": name, "namespace": namespace, "schedule": "0 3 * * *", "suspend": True,
            "preset": "image_prune", "image_prune": {"dry_run": True}}
    args.update(extra)
    return args


def manifests():
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron import manifests as m

    return m


def test_a_cluster_role_of_the_same_name_that_we_did_not_create_is_never_taken_over(tmp_path, api_client, namespace,
                                                                                    audit):
    """Invariant: never take over what the collection did not create. A ClusterRole already holds the name
    our install would use (with our labels even): the install fails before any write and names it."""
    rbac = k8s.RbacAuthorizationV1Api(api_client)
    name = manifests().object_names("nightly", namespace)["cluster_role"]
    theirs = {"metadata": {"name": name, "labels": dict(OUR_LABELS, **{"nodeops.io/cron-broadcast": "nightly"})},
              "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}
    rbac.create_cluster_role(theirs)
    try:
        mark = audit.mark()
        for check in (True, False):
            result = kh.run_module(tmp_path, "cron_broadcast", cron_args(namespace), check=check)
            assert result.get("failed"), result
            assert "ClusterRole %s exists and was not created by nodeops.kubernetes" % name in result["msg"]
        assert audit.writes_since(mark) == []
        kept = rbac.read_cluster_role(name)
        assert [r.resources for r in kept.rules] == [["secrets"]]
        assert not (kept.metadata.annotations or {}).get("nodeops.io/created-by")
    finally:
        rbac.delete_cluster_role(name)


def test_absent_removes_only_what_the_collection_created(tmp_path, api_client, core, namespace):
    """Invariant: state=absent deletes only objects that carry our labels *and* were created by us. A team's
    ConfigMap and pod labelled like ours, and a ClusterRole with the old (pre-hash) name, survive."""
    rbac = k8s.RbacAuthorizationV1Api(api_client)
    installed = kh.run_module(tmp_path, "cron_broadcast", cron_args(namespace))
    assert not installed.get("failed"), installed.get("msg")
    cron_labels = dict(OUR_LABELS, **{"nodeops.io/cron-broadcast": "nightly"})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "team-config", "labels": cron_labels},
                                                  "data": {"k": "v"}})
    run_labels = dict(OUR_LABELS, **{"nodeops.io/broadcast": "nightly", "nodeops.io/run-id": "x1",
                                     "nodeops.io/kind": "run-record"})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "team-record", "labels": run_labels}})
    core.create_namespaced_pod(namespace, {"metadata": {"name": "team-pod", "labels": run_labels}, "spec": {
        "nodeSelector": {"nodeops-test/none": "x"}, "containers": [{"name": "c", "image": "team/app:1"}]}})
    foreign_cluster_role = "nodeops-%s-nightly-nodes" % namespace    # the name an earlier version would use
    rbac.create_cluster_role({"metadata": {"name": foreign_cluster_role}, "rules": []})
    # ... and that earlier version took it over: it applied its labels with force, as our field manager.
    kh.rest_client().apply("/apis/rbac.authorization.k8s.io/v1/clusterroles/" + foreign_cluster_role, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": foreign_cluster_role, "labels": cron_labels}}, "nodeops.kubernetes")
    try:
        for check in (True, False):
            removed = kh.run_module(tmp_path, "cron_broadcast", {"name": "nightly", "namespace": namespace,
                                                                 "state": "absent"}, check=check)
            assert not removed.get("failed"), removed.get("msg")
            names = sorted(d["name"] for d in removed["deleted"])
            assert "team-config" not in names and "team-record" not in names and "team-pod" not in names
            assert foreign_cluster_role not in names
            assert "nightly" in names      # our CronJob
        core.read_namespaced_config_map("team-config", namespace)
        core.read_namespaced_config_map("team-record", namespace)
        core.read_namespaced_pod("team-pod", namespace)
        rbac.read_cluster_role(foreign_cluster_role)
        with pytest.raises(ApiException) as gone:
            rbac.read_cluster_role(manifests().object_names("nightly", namespace)["cluster_role"])
        assert gone.value.status == 404
    finally:
        rbac.delete_cluster_role(foreign_cluster_role)


def test_two_installs_whose_names_join_alike_get_their_own_cluster_role(tmp_path, api_client, core):
    """Namespace 'a-b' with name 'c' and namespace 'a' with name 'b-c' once shared one ClusterRole, and the
    second install took the first runner's binding. Each now has its own, bound to its own runner."""
    rbac = k8s.RbacAuthorizationV1Api(api_client)
    base = kh.unique("tr")
    pairs = [(base + "-x", "y-z"), (base, "x-y-z")]
    for ns, _name in pairs:
        core.create_namespace({"metadata": {"name": ns, "labels": {"nodeops-test": "1"}}})
    try:
        for ns, name in pairs:
            result = kh.run_module(tmp_path, "cron_broadcast", cron_args(ns, name=name))
            assert not result.get("failed"), result.get("msg")
        bindings = [rbac.read_cluster_role_binding(manifests().object_names(name, ns)["cluster_role"])
                    for ns, name in pairs]
        assert bindings[0].metadata.name != bindings[1].metadata.name
        assert [(b.subjects[0].namespace, b.subjects[0].name) for b in bindings] == [
            (ns, "nodeops-" + name) for ns, name in pairs]
    finally:
        for ns, name in pairs:
            kh.run_module(tmp_path, "cron_broadcast", {"name": name, "namespace": ns, "state": "absent"})
            core.delete_namespace(ns)


def _as_user(user):
    api = kh.new_api_client()
    api.set_default_header("Impersonate-User", user)
    return k8s.CoreV1Api(api)


def test_runner_code_changed_by_a_configmap_writer_never_runs(tmp_path, api_client, core, namespace, real_node):
    """Invariant: code whose digest does not match never runs. Someone with only ConfigMap rights in the
    namespace cannot edit the runner's code (it is immutable), so they delete it and create it again with
    a line appended. The next run_now fails with the integrity message on the real node, and the line never runs."""
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import shipping

    rbac = k8s.RbacAuthorizationV1Api(api_client)
    user = "configmap-writer"
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "cm-writer"}, "rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]})
    rbac.create_namespaced_role_binding(namespace, {"metadata": {"name": "cm-writer"}, "roleRef": {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-writer"},
        "subjects": [{"kind": "User", "name": user}]})
    args = cron_args(namespace, runner_image=real_node.image, runner_node_selector=real_node.label,
                     runner_tolerations=real_node.tolerations, nodes=[real_node.name],
                     tolerations=real_node.tolerations, image=real_node.image)
    try:
        installed = kh.run_module(tmp_path, "cron_broadcast", args)
        assert not installed.get("failed"), installed.get("msg")
        code_name = [o["name"] for o in installed["objects"] if o["kind"] == "ConfigMap"][0]
        mallory = _as_user(user)
        code = mallory.read_namespaced_config_map(code_name, namespace)
        key = shipping.config_key(shipping.PACKAGE_DIR + "/_broadcast/runner.py")
        tampered = code.data[key] + "\nprint('TAMPERED-LINE-RAN')\n"
        with pytest.raises(ApiException) as refused:
            mallory.patch_namespaced_config_map(code_name, namespace, {"data": {key: tampered}})
        assert refused.value.status == 422 and "immutable" in refused.value.body
        mallory.delete_namespaced_config_map(code_name, namespace)
        # A copy in every respect (labels, our created-by annotation) but the appended line.
        mallory.create_namespaced_config_map(namespace, {"metadata": {
            "name": code_name, "labels": code.metadata.labels, "annotations": code.metadata.annotations},
            "immutable": True, "data": dict(code.data, **{key: tampered})})
        # The module, asked to install again, notices (the immutable content is not its own)...
        again = kh.run_module(tmp_path, "cron_broadcast", args)
        assert again.get("failed") and "ConfigMap %s is immutable and does not hold what its name says" % code_name \
            in again["msg"], again
        # ... and the schedule, which asks nobody, starts the Job as the CronJob says (kubectl create job --from).
        batch = k8s.BatchV1Api(api_client)
        cron_job = kh.rest_client().get("/apis/batch/v1/namespaces/%s/cronjobs/nightly" % namespace)
        job_name = "nightly-tampered"
        batch.create_namespaced_job(namespace, manifests().job_from_cron(cron_job, job_name))

        def finished_job():
            job = batch.read_namespaced_job(job_name, namespace)
            return job if (job.status.succeeded or job.status.failed) else None

        job = kh.wait_for("the Job to finish", finished_job, timeout=180, interval=1)
        pod = core.list_namespaced_pod(namespace, label_selector="job-name=%s" % job_name).items[0]
        log = core.read_namespaced_pod_log(pod.metadata.name, namespace)
        assert job.status.failed == 1 and pod.spec.node_name == real_node.name, log
        message = pod.status.container_statuses[0].state.terminated.message
        assert ("nodeops integrity check failed: %s/_broadcast/runner.py does not match its digest"
                % shipping.PACKAGE_DIR) in message, message
        assert "TAMPERED-LINE-RAN" not in log and pod.status.container_statuses[0].state.terminated.exit_code == 4
        # Nothing of the run happened: no node pod, no run record, no history.
        assert core.list_namespaced_pod(namespace, label_selector="nodeops.io/broadcast=nightly").items == []
        assert [c.metadata.name for c in core.list_namespaced_config_map(namespace).items
                if c.metadata.name.startswith("nodeops-run-") or c.metadata.name.endswith("-history")] == []
    finally:
        kh.run_module(tmp_path, "cron_broadcast", {"name": "nightly", "namespace": namespace, "state": "absent"})


def test_node_code_replaced_between_two_attempts_of_a_run_is_refused(tmp_path, core, namespace, real_node, audit):
    """Invariant: a run never points its pods at code it did not write. A run's code ConfigMap replaced by
    someone (deleted, made again with a line appended) before the run is resumed: the resumed run stops
    before its first pod, names the ConfigMap, and creates no pod."""
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import naming, shipping

    args = {"name": "rn", "namespace": namespace, "nodes": [real_node.name], "tolerations": real_node.tolerations,
            "image": real_node.image, "preset": "image_prune", "image_prune": {"dry_run": True}, "run_id": "tamper1",
            "timeout": 180}
    first = kh.run_module(tmp_path, "broadcast_job", args)
    assert not first.get("failed"), first.get("msg")
    # The first attempt ended and cleaned up; someone plants the run's code ConfigMap with a changed script.
    code_name = naming.code_name("rn", "tamper1")
    record = core.create_namespaced_config_map(namespace, {"metadata": {
        "name": naming.record_name("rn", "tamper1"), "labels": {"nodeops.io/broadcast": "rn"}}})
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import options, pods

    opts = options.validate(dict(args, image_prune={"dry_run": True}))
    code = pods.node_code(opts["workload"])
    planted = pods.code_config_map(opts, "tamper1", code, {"apiVersion": "v1", "kind": "ConfigMap",
                                                           "name": record.metadata.name, "uid": record.metadata.uid})
    key = shipping.config_key("_presets/image_prune.py")
    planted["data"][key] += "\nraise SystemExit('TAMPERED')\n"
    core.create_namespaced_config_map(namespace, planted)
    mark = audit.mark()
    again = kh.run_module(tmp_path, "broadcast_job", args)
    assert again.get("failed"), again
    assert "ConfigMap %s does not hold this collection's _presets/image_prune.py" % code_name in again["msg"]
    assert [w for w in audit.writes_since(mark, namespace=namespace) if w["resource"] == "pods"] == []
    assert core.list_namespaced_pod(namespace, label_selector="nodeops.io/run-id=tamper1").items == []
