# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared connection options reach the real apiserver, from options or K8S_AUTH_* alone."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._ansible.connection import auth_settings, connection_config
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import ApiError, ApiUnavailable
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.api import RestClient

import kube_helpers as kh

PKI = os.path.join(kh.STATE, "pki")
SERVER = "https://127.0.0.1:%s" % os.environ.get("NODEOPS_APISERVER_PORT", "16443")


def _whoami(environ, params=None):
    client = RestClient(connection_config(auth_settings(params or {}, environ), environ=environ))
    review = client.create("/apis/authentication.k8s.io/v1/selfsubjectreviews",
                           {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    return review["status"]["userInfo"]["username"]


def _token():
    with open(os.path.join(PKI, "admin.token")) as f:
        return f.read().strip()


def test_bearer_token_from_k8s_auth_environment_only(cluster):
    """What an AWX 'Kubernetes Bearer Token' credential injects."""
    environ = {"K8S_AUTH_HOST": SERVER, "K8S_AUTH_API_KEY": _token(),
               "K8S_AUTH_SSL_CA_CERT": os.path.join(PKI, "ca.crt"), "K8S_AUTH_VERIFY_SSL": "True"}
    assert _whoami(environ) == "nodeops-token-admin"


def test_client_certificate_from_environment(cluster):
    environ = {"K8S_AUTH_HOST": SERVER, "K8S_AUTH_CERT_FILE": os.path.join(PKI, "admin.crt"),
               "K8S_AUTH_KEY_FILE": os.path.join(PKI, "admin.key"),
               "K8S_AUTH_SSL_CA_CERT": os.path.join(PKI, "ca.crt")}
    assert _whoami(environ) == "nodeops-admin"


def test_kubeconfig_and_context_from_environment(cluster):
    environ = {"K8S_AUTH_KUBECONFIG": cluster, "K8S_AUTH_CONTEXT": "nodeops-local"}
    assert _whoami(environ) == "nodeops-admin"


def test_impersonation_is_sent_and_enforced(cluster):
    assert _whoami({}, {"kubeconfig": cluster, "impersonate_user": "jane",
                        "impersonate_groups": ["devs"]}) == "jane"
    client = RestClient(connection_config(auth_settings({"kubeconfig": cluster, "impersonate_user": "jane"}, {}),
                                          environ={}))
    with pytest.raises(ApiError) as info:
        client.get("/api/v1/nodes")
    assert info.value.status == 403 and info.value.reason == "Forbidden"


def test_unknown_ca_is_refused_unless_validation_is_off(cluster):
    params = {"host": SERVER, "api_key": _token()}
    with pytest.raises(ApiUnavailable) as info:
        RestClient(connection_config(auth_settings(params, {}), environ={})).get("/version")
    assert "CERTIFICATE_VERIFY_FAILED" in info.value.msg
    params["validate_certs"] = False
    assert RestClient(connection_config(auth_settings(params, {}), environ={})).get("/version")["major"] == "1"


def test_modules_connect_with_only_k8s_auth_variables(tmp_path, cluster, namespace):
    """An AWX 'Kubernetes Bearer Token' credential injects K8S_AUTH_* and nothing else."""
    env = {"K8S_AUTH_HOST": SERVER, "K8S_AUTH_API_KEY": _token(),
           "K8S_AUTH_SSL_CA_CERT": os.path.join(PKI, "ca.crt"), "K8S_AUTH_VERIFY_SSL": "yes",
           "KUBECONFIG": str(tmp_path / "no-such-kubeconfig")}
    info = kh.run_module(tmp_path, "broadcast_info", {"namespace": namespace}, env=env)
    assert not info.get("failed"), info.get("msg")
    assert info["cron_broadcasts"] == [] and info["runs"] == []
    args = {"name": "awx", "namespace": namespace, "preset": "image_prune", "nodes": ["kwok-worker-1"]}
    run = kh.run_module(tmp_path, "broadcast_job", args, env=env)
    assert not run.get("failed"), run.get("msg")
    assert run["summary"]["succeeded"] == 1
    # And without them the same task has no cluster to talk to.
    env.pop("K8S_AUTH_HOST")
    env.pop("K8S_AUTH_API_KEY")
    failed = kh.run_module(tmp_path, "broadcast_info", {"namespace": namespace}, env=env)
    assert failed["failed"] and "kubeconfig" in failed["msg"]


def test_module_defaults_group_reaches_every_module_and_kubernetes_core(cluster, tmp_path, namespace):
    """Connection options set only through module_defaults: no K8S_AUTH_*, KUBECONFIG or ~/.kube/config."""
    import json
    import subprocess
    import sys

    play = [{"hosts": "localhost", "gather_facts": False, "connection": "local",
             "module_defaults": {"group/nodeops.kubernetes.k8s": {"kubeconfig": cluster}},
             "tasks": [
                 {"name": "broadcast_job", "nodeops.kubernetes.broadcast_job": {
                     "name": "grp", "namespace": namespace, "preset": "image_prune", "nodes": ["kwok-worker-1"]},
                  "check_mode": True, "register": "bj"},
                 {"name": "cron_broadcast", "nodeops.kubernetes.cron_broadcast": {
                     "name": "grp", "namespace": namespace, "schedule": "0 3 * * *", "preset": "image_prune"},
                  "check_mode": True, "register": "cb"},
                 {"name": "broadcast_info", "nodeops.kubernetes.broadcast_info": {"namespace": namespace},
                  "register": "bi"},
                 {"name": "dangling_job_ttl", "nodeops.kubernetes.dangling_job_ttl": {
                     "policy": False, "sweep": True, "include_namespaces": [namespace]},
                  "check_mode": True, "register": "dj"},
                 {"name": "kubernetes.core through extend_group",
                  "kubernetes.core.k8s_info": {"kind": "Namespace", "name": namespace}, "register": "kc"},
                 {"name": "save", "ansible.builtin.copy": {
                     "content": "{{ {'bj': bj, 'cb': cb, 'bi': bi, 'dj': dj, 'kc': kc} | to_json }}",
                     "dest": str(tmp_path / "out.json")}},
             ]}]
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps(play))
    home = tmp_path / "home"
    home.mkdir()
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith("K8S_AUTH_") and k != "KUBECONFIG")
    env.update(HOME=str(home), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                           "-e", "ansible_python_interpreter=" + sys.executable, str(playbook)],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["bj"]["plan"]["eligible"] == ["kwok-worker-1"]
    assert out["cb"]["changed"] is True
    assert out["bi"]["cron_broadcasts"] == []
    assert "failed" not in out["dj"] or not out["dj"]["failed"]
    assert out["kc"]["resources"][0]["metadata"]["name"] == namespace


EXEC_PLUGIN = r'''#!/usr/bin/env python3
"""An exec credential plugin: a ServiceAccount token bound to the Secret named in CURRENT."""
import json, subprocess, sys
state = sys.argv[1]
secret = open(state + "/current").read().strip()
token = subprocess.run([sys.argv[2], "create", "token", sys.argv[3], "-n", sys.argv[4], "--duration", "10m",
                        "--bound-object-kind", "Secret", "--bound-object-name", secret],
                       check=True, capture_output=True, text=True).stdout.strip()
with open(state + "/calls", "a") as f:
    f.write(secret + "\n")
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": token}}))
'''


def test_a_run_that_outlives_its_exec_plugin_token_gets_a_new_one(
        cluster, tmp_path, api_client, core, namespace, sim_nodes):
    """The token is bound to a Secret the test deletes mid-run (invalid at once): the client refreshes on the
    401 through the exec plugin, and the run returns every node's result."""
    import json
    import threading
    import time

    from kubernetes import client as k8s

    sa = "exec-runner"
    core.create_namespaced_service_account(namespace, {"metadata": {"name": sa}})
    rbac = k8s.RbacAuthorizationV1Api(api_client)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": sa}, "rules": [
        {"apiGroups": [""], "resources": ["pods"],
         "verbs": ["create", "get", "list", "watch", "delete", "deletecollection"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "patch", "delete"]}]})
    subject = [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]
    rbac.create_namespaced_role_binding(namespace, {"metadata": {"name": sa}, "subjects": subject, "roleRef": {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa}})
    cluster_name = "nodeops-test-%s" % namespace
    rbac.create_cluster_role({"metadata": {"name": cluster_name}, "rules": [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}]})
    rbac.create_cluster_role_binding({"metadata": {"name": cluster_name}, "subjects": subject, "roleRef": {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_name}})
    try:
        for name in ("bound-1", "bound-2"):
            core.create_namespaced_secret(namespace, {"metadata": {"name": name}})
        state = tmp_path / "exec"
        state.mkdir()
        (state / "current").write_text("bound-1")
        plugin = state / "plugin.py"
        plugin.write_text(EXEC_PLUGIN)
        kubeconfig = tmp_path / "exec-kubeconfig.json"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "exec",
            "clusters": [{"name": "local", "cluster": {"server": SERVER,
                                                       "certificate-authority": os.path.join(PKI, "ca.crt")}}],
            "users": [{"name": "exec", "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                "args": [str(plugin), str(state), os.path.join(kh.STATE, "bin", "kubectl"), sa, namespace],
                "env": [{"name": "KUBECONFIG", "value": kh.KUBECONFIG}], "interactiveMode": "Never"}}}],
            "contexts": [{"name": "exec", "context": {"cluster": "local", "user": "exec"}}]}))
        tag = kh.unique("exec")
        names = [sim_nodes.add(name="%s-%d" % (tag, i), labels={"nodeops-test": tag}) for i in range(3)]

        def revoke_the_first_token():
            kh.wait_for("the run's pods", lambda: len(core.list_namespaced_pod(namespace).items) == 3, timeout=60)
            (state / "current").write_text("bound-2")
            core.delete_namespaced_secret("bound-1", namespace)   # every token bound to it is invalid now

        revoker = threading.Thread(target=revoke_the_first_token)
        revoker.start()
        started = time.monotonic()
        # The pods outlive the watch (30 s), so the run must reconnect with a token that no longer works.
        result = kh.run_module(tmp_path, "broadcast_job", {
            "kubeconfig": str(kubeconfig), "name": "exec", "namespace": namespace, "preset": "image_prune",
            "node_selector": {"nodeops-test": tag}, "parallelism": "100%",
            "pod_annotations": {"sim.nodeops.io/delay": "45s"}})
        revoker.join(10)
        assert not result.get("failed"), result.get("msg")
        assert sorted((r["node"], r["outcome"]) for r in result["nodes"] if r["node"] in names) == [
            (n, "succeeded") for n in names]
        calls = (state / "calls").read_text().split()
        assert calls[0] == "bound-1" and "bound-2" in calls, calls
        assert time.monotonic() - started > 40
    finally:
        rbac.delete_cluster_role_binding(cluster_name)
        rbac.delete_cluster_role(cluster_name)


@pytest.mark.parametrize("server_name, ok", [("kubernetes.default.svc", True), ("not-the-apiserver.example", False)])
def test_tls_server_name_is_the_name_the_certificate_is_checked_against(cluster, tmp_path, server_name, ok):
    """The apiserver's certificate names kubernetes.default.svc (and 127.0.0.1): a kubeconfig's
    tls-server-name decides which name is checked, whatever address is dialled."""
    import json

    kubeconfig = tmp_path / "sni.json"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": SERVER, "tls-server-name": server_name,
                                               "certificate-authority": os.path.join(PKI, "ca.crt")}}],
        "users": [{"name": "u", "user": {"token": _token()}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}))
    if ok:
        assert _whoami({}, {"kubeconfig": str(kubeconfig)}) == "nodeops-token-admin"
    else:
        with pytest.raises(ApiUnavailable) as info:
            _whoami({}, {"kubeconfig": str(kubeconfig)})
        assert "not-the-apiserver.example" in info.value.msg or "certificate" in info.value.msg.lower()
