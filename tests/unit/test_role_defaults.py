# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The role's defaults are the modules' defaults: each lives once in module_utils, and the role's
defaults, vars and argument specs are checked against it here."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import yaml

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import options as broadcast_options
from ansible_collections.nodeops.kubernetes.plugins.modules import cron_broadcast, dangling_job_ttl

ROLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "roles", "node_maintenance")


def load(*path):
    with open(os.path.join(ROLE, *path)) as f:
        return yaml.safe_load(f)


def test_the_dangling_job_defaults_agree_with_the_module():
    module = dangling_job_ttl.build_argument_spec()
    defaults = load("defaults", "main.yml")["node_maintenance_dangling_jobs"]
    merged = load("vars", "main.yml")["_node_maintenance_defaults_dangling"]
    specs = load("meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    documented = specs["node_maintenance_dangling_jobs"]["options"]
    assert defaults == merged
    # The role's names of the scheduled sweep's options, where the module's alone would be unclear.
    module_key = {"sweep_time_zone": "time_zone", "sweep_run_now": "run_now"}
    for key, value in defaults.items():
        if key == "enabled":
            continue
        assert module[module_key.get(key, key)].get("default") == value, key
        assert documented[key].get("default") == value, key
        if "choices" in module[module_key.get(key, key)]:
            assert documented[key]["choices"] == module[key]["choices"], key


def test_the_task_defaults_agree_with_cron_broadcast():
    module = cron_broadcast.build_argument_spec()
    specs = load("meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    task = specs["node_maintenance_tasks"]["options"]
    for key, documented in task.items():
        if "default" in documented and key in module:
            assert module[key].get("default") == documented["default"], key
    assert load("defaults", "main.yml")["node_maintenance_runner_image"] == broadcast_options.DEFAULT_IMAGE
