# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a module's RETURN says it returns agrees with its options.

The examples are run against the cluster in tests/integration/test_examples.py, which also checks that
every value returned there is one of the RETURN field's documented choices.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib
import re

import pytest
import yaml

# (module, RETURN field path, option): the field returns the value of the option.
RETURNS_AN_OPTION = [
    ("dangling_job_ttl", ("sweep", "action"), "sweep_action"),
]


def load(module):
    return importlib.import_module("ansible_collections.nodeops.kubernetes.plugins.modules." + module)


def return_field(module, path):
    field = {"contains": yaml.safe_load(load(module).RETURN)}
    for name in path:
        field = field["contains"][name]
    return field


@pytest.mark.parametrize("module, path, option", RETURNS_AN_OPTION)
def test_a_returned_option_value_is_documented_with_the_options_choices(module, path, option):
    field = return_field(module, path)
    accepted = load(module).build_argument_spec()[option]["choices"]
    assert field.get("choices") == accepted, "%s RETURN %s: choices %r, but %s takes %r" % (
        module, ".".join(path), field.get("choices"), option, accepted)
    # Nor does its description name a value the option does not take (an old name, say).
    named = set(re.findall(r"\b[a-z]+(?:_[a-z]+)+\b", field["description"])) - {option}
    assert named <= set(accepted), "%s RETURN %s names %s" % (module, ".".join(path), sorted(named - set(accepted)))
