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
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import InvalidInput, NodeopsError
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.api import RestClient
from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets.registry import REGISTRY


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


def resolve_preset_options(params):
    """``preset_options`` (one dict for whichever preset is chosen, handy in roles and loops) checked
    against that preset's argument spec and moved to the preset's own option. Returns new params."""
    given = params.get("preset_options")
    if given is None or (given == {} and not params.get("preset")):
        return params
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    preset = params.get("preset")
    if preset not in REGISTRY:
        raise InvalidInput("preset_options", given, "a preset (one of %s) for them to apply to" % ", ".join(REGISTRY))
    if params.get(preset) is not None:
        raise InvalidInput("preset_options", given, "either preset_options or %s, not both" % preset)
    checked = ArgumentSpecValidator(REGISTRY[preset].OPTIONS).validate(given)
    if checked.error_messages:
        raise InvalidInput("preset_options", given, "the options of preset %s" % preset,
                           why="; ".join(checked.error_messages))
    return dict(params, **{preset: checked.validated_parameters, "preset_options": None})
