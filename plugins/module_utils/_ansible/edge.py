# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The edge between Ansible and the engine.

``run_module`` is the one place where a NodeopsError becomes ``fail_json``, and where Ansible is told which
connection values to mask (``mask_only_credentials``). Modules build their argument spec here from the shared
connection options.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible.module_utils.common.warnings import warn

from ansible_collections.nodeops.kubernetes.plugins.module_utils._ansible.connection import (
    AUTH_ARG_SPEC,
    auth_settings,
    cleartext_credentials_warning,
    connection_config,
    connection_secrets,
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
    cleartext = cleartext_credentials_warning(config)
    if cleartext:
        # Ansible's own collector: it reaches the result of exit_json and fail_json alike.
        warn(cleartext)
    return RestClient(config, timeout=timeout) if timeout else RestClient(config)


def no_log_strings(value):
    """The strings Ansible masks for a no_log option's value: every string and number in it. Pure."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return set().union(*[no_log_strings(item) for item in value])
    if isinstance(value, (str, int, float)) and not isinstance(value, bool) and value != "":
        return {str(value)}
    return set()


def no_log_values_except(spec, params, skipped):
    """The strings Ansible masks for the no_log options of ``spec`` other than ``skipped``. Pure.

    Like Ansible's own walk: no_log options, and those inside dict (or list of dict) suboptions.
    """
    found = set()
    for name, opts in spec.items():
        value = params.get(name)
        if value is None or name in skipped:
            continue
        if opts.get("no_log"):
            found |= no_log_strings(value)
        if opts.get("options"):
            for sub_params in value if isinstance(value, list) else [value]:
                if isinstance(sub_params, dict):
                    found |= no_log_values_except(opts["options"], sub_params, ())
    return found


def mask_only_credentials(module):
    """From here on, mask the connection's credentials and no other part of a kubeconfig dict.

    kubeconfig is no_log, so until now Ansible masked every value in it: the names of its clusters, users and
    contexts, "default", and so node names and namespaces containing them. Those are unmasked unless another
    no_log option has the same value. Its credentials, and those from K8S_AUTH_* (which no argument spec
    sees), are masked. A kubeconfig path stays masked, as before.
    """
    kubeconfig = module.params.get("kubeconfig")
    secrets = connection_secrets(auth_settings(module.params))
    if isinstance(kubeconfig, dict):
        kept = secrets | no_log_values_except(module.argument_spec, module.params, ("kubeconfig",))
        module.no_log_values.difference_update(no_log_strings(kubeconfig) - kept)
    module.no_log_values.update(secrets)


def run_module(module, action):
    """Call ``action(module)`` and report its result dict; errors become fail_json here only."""
    mask_only_credentials(module)
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
