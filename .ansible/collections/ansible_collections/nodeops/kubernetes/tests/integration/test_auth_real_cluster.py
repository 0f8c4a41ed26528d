# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared connection options reach the real apiserver, from options or K8S_AUTH_* alone."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils.connection import auth_settings, connection_config
from ansible_collections.nodeops.kubernetes.plugins.module_utils.errors import ApiError, ApiUnavailable
from ansible_collections.nodeops.kubernetes.plugins.module_utils.rest import RestClient

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
