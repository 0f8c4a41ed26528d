# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The edge between Ansible and the engine.

``run_module`` is the one place where a NodeopsError becomes ``fail_json``.
Modules build their argument spec here from the shared connection options.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.nodeops.kubernetes.plugins.module_utils._ansible.connection import (
    AUTH_ARG_SPEC,
    auth_settings,
    connection_config,
)
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import NodeopsError
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.api import RestClient


def argument_spec(**module_options):
    """The connection options plus a module's own options."""
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(module_options)
    return spec


def client_from_params(params, timeout=None):
    """A RestClient for the connection options in ``params`` (and K8S_AUTH_*)."""
    config = connection_config(auth_settings(params))
    return RestClient(config, timeout=timeout) if timeout else RestClient(config)


def run_module(module, action):
    """Call ``action(module)`` and report its result dict; errors become fail_json here only."""
    try:
        result = action(module)
    except NodeopsError as exc:
        module.fail_json(msg=exc.msg, **exc.result)
    module.exit_json(**result)
