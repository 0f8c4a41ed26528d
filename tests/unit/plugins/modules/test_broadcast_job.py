# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""broadcast_job at the module edge: AnsibleModule patched at exit_json and fail_json."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.nodeops.kubernetes.plugins.modules import broadcast_job

from module_edge_results import Fail


@pytest.fixture
def edge(module_edge):
    module_edge(broadcast_job)


def run(args):
    with patch_module_args(args):
        broadcast_job.main()


BASE = {"name": "prune", "host": "https://127.0.0.1:1", "api_key": "x"}


@pytest.mark.parametrize("args, fragment", [
    (dict(preset="image_nuke"), "value of preset must be one of: image_prune, path_cleanup, host_command, journal_vacuum, got: image_nuke"),
    (dict(preset="image_prune", parallelism=0), "parallelism=0 is invalid"),
    (dict(preset="image_prune", parallelism="150%"), "parallelism='150%' is invalid"),
    (dict(preset="image_prune", timeout=-5), "timeout=-5 is invalid"),
    (dict(preset="image_prune", node_label_selector="zone in ()"), "node_label_selector='zone in ()' is invalid"),
    (dict(preset="image_prune", pod_template={"spec": {"containers": [{"name": "c", "image": "i"}]}}),
     "either preset or pod_template, not both"),
    (dict(preset="path_cleanup", path_cleanup={"path": "/etc", "older_than_days": 1}),
     "path_cleanup.path='/etc' is invalid: /etc is a protected system path"),
    (dict(preset="image_prune", name="n" * 40), "name='" + "n" * 40 + "' is invalid: 40 characters"),
    (dict(state="absent", name="Bad_Name"), "name='Bad_Name' is invalid"),
])
def test_bad_input_fails_before_any_api_call(edge, args, fragment):
    with pytest.raises(Fail) as info:
        run(dict(BASE, **args))
    assert fragment in info.value.args[0]["msg"]


def test_api_key_is_not_logged():
    spec = broadcast_job.build_argument_spec()
    assert spec["api_key"]["no_log"] and spec["password"]["no_log"] and spec["kubeconfig"]["no_log"]


def test_connection_errors_become_fail_json(module_edge):
    """A NodeopsError raised anywhere below the module surfaces through the single fail_json edge."""
    with pytest.raises(Fail) as info:
        run(dict(BASE, preset="image_prune", host="ftp://nowhere"))
    assert "must start with https://" in info.value.args[0]["msg"]
