# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The module edge for unit tests: AnsibleModule patched at exit_json and fail_json."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.module_utils import basic

from module_edge_results import Exit, Fail


@pytest.fixture
def module_edge(monkeypatch):
    """Patch exit/fail; ``forbid_clients(*modules)`` makes building an API client fail the test."""
    def exit_json(self, **kwargs):
        raise Exit(kwargs)

    def fail_json(self, **kwargs):
        raise Fail(kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)

    def no_cluster(*args, **kwargs):
        raise AssertionError("bad input must be rejected before any API client is made")

    def forbid_clients(*modules):
        for module in modules:
            monkeypatch.setattr(module, "client_from_params", no_cluster)

    return forbid_clients
