# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The preset registry, and everything that derives from it or must agree with it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

import pytest
import yaml

from ansible_collections.nodeops.kubernetes.plugins.doc_fragments.broadcast import ModuleDocFragment
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import options
from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets import base
from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets.registry import REGISTRY

PRESETS_DIR = os.path.dirname(os.path.abspath(base.__file__))
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", ".."))
NOT_PRESETS = {"__init__.py", "base.py", "registry.py"}


def test_every_preset_module_is_registered_under_its_file_name():
    files = sorted(f[:-3] for f in os.listdir(PRESETS_DIR) if f.endswith(".py") and f not in NOT_PRESETS)
    assert files == sorted(REGISTRY)
    for name, preset in REGISTRY.items():
        assert preset.NAME == name and preset.__name__.endswith("._presets." + name)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_a_preset_declares_everything(name):
    preset = REGISTRY[name]
    assert preset.SUMMARY.startswith("C(%s) " % name)
    assert isinstance(preset.OPTIONS, dict) and callable(preset.pod)
    doc = yaml.safe_load(preset.DOCUMENTATION)
    assert doc["type"] == "dict" and doc["description"]


def _argspec_from_doc(suboptions):
    spec = {}
    for key, value in suboptions.items():
        entry = {"type": value["type"]}
        for attr in ("default", "required", "elements", "choices"):
            if attr in value:
                entry[attr] = value[attr]
        spec[key] = entry
    return spec


def _normalized(argspec):
    return dict((k, dict((a, v) for a, v in spec.items() if not (a == "required" and v is False)))
                for k, spec in argspec.items())


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_a_presets_documentation_matches_its_argument_spec(name):
    preset = REGISTRY[name]
    doc = yaml.safe_load(preset.DOCUMENTATION)
    assert _normalized(_argspec_from_doc(doc["suboptions"])) == _normalized(preset.OPTIONS)


def test_the_module_options_and_documentation_come_from_the_registry():
    assert options.BROADCAST_OPTIONS["preset"]["choices"] == list(REGISTRY)
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    assert documented["preset"]["choices"] == list(REGISTRY)
    for name, preset in REGISTRY.items():
        assert options.BROADCAST_OPTIONS[name] == {"type": "dict", "options": preset.OPTIONS}
        assert documented[name] == yaml.safe_load(preset.DOCUMENTATION)
        assert preset.SUMMARY in documented["preset"]["description"]


def test_the_role_passes_any_preset_through_without_knowing_it():
    """Adding a preset touches no role file: the role hands preset_options to the module, which checks them."""
    with open(os.path.join(REPO, "roles", "node_maintenance", "meta", "argument_specs.yml")) as f:
        specs = yaml.safe_load(f)
    task_options = specs["argument_specs"]["main"]["options"]["node_maintenance_tasks"]["options"]
    assert "choices" not in task_options["preset"]
    with open(os.path.join(REPO, "roles", "node_maintenance", "tasks", "main.yml")) as f:
        tasks = f.read()
    assert re.search(r"^\s+preset_options: \"\{\{ item.preset_options \| default\(omit\) \}\}\"$", tasks, re.M)
    for name in REGISTRY:
        assert not re.search(r"^\s+%s:" % name, tasks, re.M), name


def test_the_readme_documents_every_preset():
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    for name in REGISTRY:
        assert "`%s`" % name in readme, name


@pytest.mark.parametrize("name, opts, param", [
    ("path_cleanup", {"path": "/etc", "older_than_days": 1}, "path_cleanup.path"),
    ("host_command", {"command": "rm -rf /tmp/x"}, "host_command.command"),
    ("journal_vacuum", {}, "journal_vacuum"),
    ("journal_vacuum", {"max_size": "lots"}, "journal_vacuum.max_size"),
    ("journal_vacuum", {"max_age": "yesterday"}, "journal_vacuum.max_age"),
    ("journal_vacuum", {"max_files": 0}, "journal_vacuum.max_files"),
])
def test_a_presets_option_errors_name_the_parameter(name, opts, param):
    with pytest.raises(base.OptionError) as info:
        REGISTRY[name].pod(opts)
    assert info.value.param == param


def test_the_doc_fragment_is_what_tools_presets_doc_writes():
    import importlib.util

    spec = importlib.util.spec_from_file_location("presets_doc", os.path.join(REPO, "tools", "presets_doc.py"))
    presets_doc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(presets_doc)
    with open(presets_doc.FRAGMENT) as f:
        current = f.read()
    assert presets_doc.render(current, REGISTRY) == current, "run python3 tools/presets_doc.py"
