# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""broadcast_job at the module edge: AnsibleModule patched at exit_json and fail_json."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from module_args import patch_module_args

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
    (dict(preset="image_prune", failure_policy="fail_fast", max_failures=2),
     "max_failures=2 is invalid; expected no max_failures with failure_policy=fail_fast"),
    (dict(preset="image_prune", max_failures="half"), "max_failures='half' is invalid"),
    (dict(preset="image_prune", window={"end": "5am"}), "window.end='5am' is invalid; expected a time of day HH:MM"),
    (dict(preset="image_prune", window={"end": "05:00", "time_zone": "Europe/Atlantis"}),
     "window.time_zone='Europe/Atlantis' is invalid"),
    (dict(preset="image_prune", window={}), "window={} is invalid: it gives neither end nor duration"),
    (dict(preset="image_prune", node_selector={"gpu": True}),
     "node_selector={'gpu': True} is invalid: the value of gpu is a boolean, and label values are strings"),
])
def test_bad_input_fails_before_any_api_call(edge, args, fragment):
    with pytest.raises(Fail) as info:
        run(dict(BASE, **args))
    assert fragment in info.value.args[0]["msg"]


def test_credentials_are_no_log_in_the_argument_spec():
    """Only the flags; that a token given as api_key is nowhere in what ansible-playbook -vvv prints, logs
    or registers is tests/integration/test_trust_secrets.py::test_api_key_is_not_logged."""
    spec = broadcast_job.build_argument_spec()
    assert spec["api_key"]["no_log"] and spec["password"]["no_log"] and spec["kubeconfig"]["no_log"]


def test_connection_errors_become_fail_json(module_edge):
    """A NodeopsError raised anywhere below the module surfaces through the single fail_json edge."""
    with pytest.raises(Fail) as info:
        run(dict(BASE, preset="image_prune", host="ftp://nowhere"))
    assert "must start with https://" in info.value.args[0]["msg"]


@pytest.mark.parametrize("args, fragment", [
    ({"preset": "journal_vacuum", "preset_options": {"max_size": "1G", "keep": 3}},
     "preset_options={'max_size': '1G', 'keep': 3} is invalid: keep. Supported parameters include: max_age, "
     "max_files, max_size"),
    ({"preset": "journal_vacuum", "preset_options": {"max_files": "many"}}, "preset_options={'max_files': 'many'}"),
    ({"preset": "image_prune", "preset_options": {}, "image_prune": {"dry_run": True}},
     "either preset_options or image_prune, not both"),
    ({"preset_options": {"dry_run": True}, "pod_template": {"spec": {"containers": [{}]}}},
     "preset_options={'dry_run': True} is invalid; expected a preset"),
])
def test_preset_options_are_checked_against_the_chosen_preset_before_any_api_call(edge, args, fragment):
    base = {"name": "x", "host": "https://127.0.0.1:1", "api_key": "x"}
    with pytest.raises(Fail) as info:
        with patch_module_args(dict(base, **args)):
            broadcast_job.main()
    assert fragment in info.value.args[0]["msg"]


def test_preset_options_become_the_presets_own_options():
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._ansible.edge import resolve_preset_options

    params = resolve_preset_options({"preset": "journal_vacuum", "preset_options": {"max_age": "2weeks"},
                                     "journal_vacuum": None})
    assert params["journal_vacuum"] == {"max_age": "2weeks", "max_size": None, "max_files": None}
    assert params["preset_options"] is None
