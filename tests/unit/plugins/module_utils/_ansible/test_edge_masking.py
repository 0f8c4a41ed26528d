# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""edge.mask_only_credentials on a real AnsibleModule: what Ansible masks once a module has started."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.module_utils.basic import AnsibleModule
from module_args import patch_module_args

from ansible_collections.nodeops.kubernetes.plugins.module_utils._ansible import edge

KUBECONFIG = {
    "apiVersion": "v1", "kind": "Config", "current-context": "prod-eu",
    "clusters": [{"name": "prod-eu", "cluster": {"server": "https://prod-eu.example:6443",
                                                 "certificate-authority-data": "Q0EtZGF0YQ=="}}],
    "contexts": [{"name": "prod-eu", "context": {"cluster": "prod-eu", "user": "admin", "namespace": "default"}}],
    "users": [{"name": "admin", "user": {"token": "tok-5c2e", "client-key-data": "S0VZLWRhdGE="}}],
}
CREDENTIALS = {"Q0EtZGF0YQ==", "tok-5c2e", "S0VZLWRhdGE="}
NAMES = {"v1", "Config", "prod-eu", "https://prod-eu.example:6443", "admin", "default"}


# A module's own no_log options, top level and nested (a preset's options could hold one).
MODULE_OPTIONS = dict(
    namespace=dict(type="str"),
    vault_pass=dict(type="str", no_log=True),
    registry=dict(type="list", elements="dict", options=dict(user=dict(type="str"), pass_=dict(type="str", no_log=True))),
)


def started(args, monkeypatch, environ=None):
    """An AnsibleModule as a module builds it (so no_log_values as Ansible computed them), then the edge's masking."""
    for name in ("K8S_AUTH_API_KEY", "K8S_AUTH_PASSWORD", "K8S_AUTH_KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (environ or {}).items():
        monkeypatch.setenv(name, value)
    with patch_module_args(args):
        module = AnsibleModule(argument_spec=edge.argument_spec(**MODULE_OPTIONS))
    before = set(module.no_log_values)
    edge.mask_only_credentials(module)
    return before, module.no_log_values


def test_a_kubeconfig_dict_is_masked_whole_until_the_module_starts_then_only_its_credentials(monkeypatch):
    before, after = started({"kubeconfig": KUBECONFIG, "namespace": "default"}, monkeypatch)
    assert before >= CREDENTIALS | NAMES  # no_log: nothing of it shows before our code runs
    assert after == CREDENTIALS


@pytest.mark.parametrize("args, still_masked", [
    ({"password": "admin", "proxy_headers": {"basic_auth": "prod-eu"}}, {"admin", "prod-eu"}),
    ({"vault_pass": "admin", "registry": [{"user": "default", "pass_": "prod-eu"}]}, {"admin", "prod-eu"}),
])
def test_a_name_that_is_also_another_no_log_value_stays_masked(monkeypatch, args, still_masked):
    """A password equal to the kubeconfig's user name must not be unmasked with the name."""
    after = started(dict(args, kubeconfig=KUBECONFIG), monkeypatch)[1]
    assert after == CREDENTIALS | still_masked


def test_credentials_from_the_environment_are_masked_and_a_kubeconfig_path_stays_masked(monkeypatch):
    after = started({"kubeconfig": "/home/me/.kube/config"}, monkeypatch,
                    {"K8S_AUTH_API_KEY": "env-tok-81", "K8S_AUTH_PASSWORD": "env-pw-82"})[1]
    assert after == {"/home/me/.kube/config", "env-tok-81", "env-pw-82"}


@pytest.mark.parametrize("value, expected", [
    ({"a": ["x", 1, 2.5, True, None, ""], "b": {"c": "y"}}, {"x", "1", "2.5", "y"}),
    ("", set()),
    (None, set()),
])
def test_no_log_strings_are_those_ansible_masks(value, expected):
    assert edge.no_log_strings(value) == expected
