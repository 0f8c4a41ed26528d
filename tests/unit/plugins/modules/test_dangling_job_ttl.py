# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dangling_job_ttl at the module edge."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from module_args import patch_module_args

from ansible_collections.nodeops.kubernetes.plugins.modules import dangling_job_ttl

from module_edge_results import Fail


@pytest.fixture
def edge(module_edge):
    module_edge(dangling_job_ttl)


@pytest.mark.parametrize("args, fragment", [
    ({"ttl_seconds": -1}, "ttl_seconds=-1 is invalid"),
    ({"sweep_action": "nuke"}, "value of sweep_action must be one of: delete, set_ttl, got: nuke"),
    ({"include_namespaces": ["Prod"]}, "include_namespaces='Prod' is invalid"),
    ({"exclude_namespaces": ["x" * 64]}, "exclude_namespaces='" + "x" * 64 + "' is invalid"),
    ({"opt_out_label": "no spaces allowed"}, "opt_out_label='no spaces allowed' is invalid"),
    ({"sweep_concurrency": 0}, "sweep_concurrency=0 is invalid"),
])
def test_bad_input_fails_before_any_api_call(edge, args, fragment):
    with pytest.raises(Fail) as info:
        with patch_module_args(dict({"host": "https://127.0.0.1:1", "api_key": "x"}, **args)):
            dangling_job_ttl.main()
    assert fragment in info.value.args[0]["msg"]
