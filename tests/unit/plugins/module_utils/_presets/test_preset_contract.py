# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every registered preset is what ``base.Preset`` says a preset is, and ``base.NodePreset`` when its pod
runs the node script: the names it declares, their types, and its functions' signatures."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import inspect
import types
import typing

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets import base
from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets.registry import REGISTRY

# Options each preset accepts, to see what its pod runs (a new preset adds a valid set of its own).
VALID_OPTIONS = {
    "image_prune": {},
    "path_cleanup": {"path": "/var/tmp/nodeops", "older_than_days": 7},
    "host_command": {"command": ["true"]},
    "journal_vacuum": {"max_size": "500M"},
}


def methods(protocol):
    """{name: function} of the methods ``protocol`` and the protocols it extends declare."""
    found = {}
    for cls in reversed(protocol.__mro__):
        if cls.__module__ == base.__name__:
            found.update((name, value) for name, value in vars(cls).items()
                         if inspect.isfunction(value) and not name.startswith("_"))
    return found


def parameters(function, skip=0):
    return [(p.name, p.kind, p.default) for p in list(inspect.signature(function).parameters.values())[skip:]]


def shown(function, skip=0):
    return ", ".join(name for name, _kind, _default in parameters(function, skip))


def breaches(module, protocol):
    """How ``module`` falls short of ``protocol``, one sentence each: none when it satisfies it."""
    problems = []
    declared = typing.get_type_hints(protocol)
    assert declared and methods(protocol), "not a protocol with attributes and methods: %r" % protocol
    for name, kind in sorted(declared.items()):
        if not hasattr(module, name):
            problems.append("no %s" % name)
        elif not isinstance(getattr(module, name), kind):
            problems.append("%s is a %s, not a %s" % (name, type(getattr(module, name)).__name__, kind.__name__))
    for name, method in sorted(methods(protocol).items()):
        given = getattr(module, name, None)
        if not inspect.isfunction(given):
            problems.append("no function %s" % name)
        elif parameters(given) != parameters(method, skip=1):
            problems.append("%s(%s), not %s(%s)" % (name, shown(given), name, shown(method, skip=1)))
    return problems


def runs_node_script(part):
    return part["params"] is not None or any(stage.get("params") is not None for stage in part["init"])


def test_every_preset_has_valid_options_here():
    assert sorted(VALID_OPTIONS) == sorted(REGISTRY)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_preset_is_a_preset(name):
    preset = REGISTRY[name]
    assert breaches(preset, base.Preset) == []
    assert isinstance(preset, base.Preset)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_a_preset_whose_pod_runs_the_node_script_is_a_node_preset(name):
    """The node script calls ``on_node`` of a preset whose ``pod`` gave it params; a preset whose container
    runs its own command has no ``on_node`` (it would never run)."""
    preset = REGISTRY[name]
    part = preset.pod(dict(VALID_OPTIONS[name]))
    if runs_node_script(part):
        assert breaches(preset, base.NodePreset) == []
        assert isinstance(preset, base.NodePreset)
    else:
        assert part["container"]["command"]
        assert not hasattr(preset, "on_node") and not isinstance(preset, base.NodePreset)


def _fake(names, **changes):
    """A module with ``names``, some changed."""
    module = types.ModuleType("fake_preset")
    for name, value in dict(names, **changes).items():
        setattr(module, name, value)
    return module


def test_the_contract_checker_catches_each_breach():
    def pod(opts):
        return {}

    def on_node(params):
        return {}

    def pod_with_two(opts, extra):
        return {}

    def on_node_renamed(options):
        return {}

    whole = dict(NAME="fake", SUMMARY="C(fake) fakes.", OPTIONS={}, DOCUMENTATION="type: dict", pod=pod, on_node=on_node)
    assert breaches(_fake(whole), base.NodePreset) == [] and isinstance(_fake(whole), base.NodePreset)
    missing = dict(whole)
    del missing["SUMMARY"]
    assert breaches(_fake(missing), base.Preset) == ["no SUMMARY"]
    assert not isinstance(_fake(missing), base.Preset)
    assert breaches(_fake(whole, OPTIONS=[]), base.Preset) == ["OPTIONS is a list, not a dict"]
    assert breaches(_fake(whole, pod=pod_with_two), base.Preset) == ["pod(opts, extra), not pod(opts)"]
    assert breaches(_fake(whole, pod="pod"), base.Preset) == ["no function pod"]
    assert breaches(_fake(whole, on_node=on_node_renamed), base.NodePreset) == [
        "on_node(options), not on_node(params)"]
    without_node = dict(whole)
    del without_node["on_node"]
    assert breaches(_fake(without_node), base.Preset) == []
    assert breaches(_fake(without_node), base.NodePreset) == ["no function on_node"]
