# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cron_broadcast and broadcast_info at the module edge."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from module_args import patch_module_args

from ansible_collections.nodeops.kubernetes.plugins.modules import broadcast_info, cron_broadcast

from module_edge_results import Fail


@pytest.fixture
def edge(module_edge):
    module_edge(cron_broadcast, broadcast_info)


BASE = {"name": "nightly", "preset": "image_prune", "schedule": "30 2 * * *", "host": "https://127.0.0.1:1",
        "api_key": "x"}


@pytest.mark.parametrize("args, fragment", [
    (dict(schedule="  "), "schedule='  ' is invalid: it is empty"),
    (dict(schedule=None), "schedule=None is invalid"),
    (dict(time_zone="Berlin"), "time_zone='Berlin' is invalid"),
    (dict(starting_deadline_seconds=-10), "starting_deadline_seconds=-10 is invalid"),
    (dict(failed_jobs_history_limit=-1), "failed_jobs_history_limit=-1 is invalid"),
    (dict(concurrency_policy="Never"), "value of concurrency_policy must be one of: Allow, Forbid, Replace"),
    (dict(runner_image=""), "runner_image='' is invalid"),
    (dict(runner_image="   "), "runner_image='   ' is invalid"),
    (dict(parallelism="0%"), "parallelism='0%' is invalid"),
    (dict(history_limit=0), "history_limit=0 is invalid"),
    (dict(runner_node_selector={"bad key!": "x"}), "runner_node_selector={'bad key!': 'x'} is invalid"),
    (dict(runner_tolerations=[{"key": "a", "operator": "Sometimes"}]),
     "runner_tolerations[0]={'key': 'a', 'operator': 'Sometimes'} is invalid"),
    (dict(window={}), "window={} is invalid: it gives neither end nor duration"),
    (dict(window={"time_zone": "Europe/Berlin"}), "window={'time_zone': 'Europe/Berlin'} is invalid"),
    (dict(node_selector={"gpu": True}), "node_selector={'gpu': True} is invalid: the value of gpu is a boolean"),
    (dict(runner_node_selector={"pool": 3}), "runner_node_selector={'pool': 3} is invalid: the value of pool is a number"),
])
def test_cron_broadcast_bad_input(edge, args, fragment):
    with pytest.raises(Fail) as info:
        with patch_module_args(dict(BASE, **args)):
            cron_broadcast.main()
    assert fragment in info.value.args[0]["msg"]


def test_broadcast_info_bad_namespace(edge):
    with pytest.raises(Fail) as info:
        with patch_module_args({"namespace": "Bad NS", "host": "https://127.0.0.1:1", "api_key": "x"}):
            broadcast_info.main()
    assert "namespace='Bad NS' is invalid" in info.value.args[0]["msg"]


def test_cron_broadcast_shares_the_broadcast_options():
    spec = cron_broadcast.build_argument_spec()
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.options import BROADCAST_OPTIONS

    for key, value in BROADCAST_OPTIONS.items():
        assert spec[key] == value
