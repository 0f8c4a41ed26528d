# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where code runs, enforced: what each package of module_utils may import.

* ``_node``: the node script, in the preset pods. The standard library only.
* ``_presets``: in the node pods too. The standard library, ``_node`` and ``_presets``.
* ``_kube``: the API client, in the runner and on the controller. The standard library and ``_kube``.
* ``_broadcast``: the engine, in the runner and on the controller. The standard library and the
  three packages above.
* ``_ansible``, ``_cron``, ``_dangling``: on the controller, where anything may be imported; but what the
  scheduled sweep's runner ships (``_dangling/sweep_runner.py`` and its imports) is the standard library and
  this collection's shipped modules only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import os
import sys

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import pods, shipping
from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron import manifests
from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets.registry import REGISTRY

PACKAGE = shipping.PACKAGE
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(shipping.__file__)))
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
ALLOWED = {
    "_node": {"_node"},
    "_presets": {"_node", "_presets"},
    "_kube": {"_kube"},
    "_broadcast": {"_kube", "_broadcast", "_node", "_presets"},
}
RUNNER_PACKAGES = ("_kube", "_broadcast", "_node", "_presets")


def imports(source):
    """Every module name ``source`` imports (the names in ``from X import a`` count as ``X.a``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import in module_utils"
            found.append(node.module)
    return found


def files_of(package):
    directory = os.path.join(ROOT, package)
    return sorted(os.path.join(directory, f) for f in os.listdir(directory) if f.endswith(".py"))


def verdict(package, module):
    """Why ``package`` may not import ``module``, or None."""
    if module.split(".")[0] in STDLIB:
        return None
    if module.startswith(PACKAGE + "."):
        target = module[len(PACKAGE) + 1:].split(".")[0]
        return None if target in ALLOWED[package] else "imports %s, outside %s" % (module, sorted(ALLOWED[package]))
    return "imports %s, which is not in the standard library" % module


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_what_runs_where_it_runs(package):
    problems = []
    assert files_of(package)
    for path in files_of(package):
        with open(path) as f:
            source = f.read()
        for module in imports(source):
            why = verdict(package, module)
            if why:
                problems.append("%s %s" % (os.path.relpath(path, ROOT), why))
    assert problems == []


def test_the_checker_catches_a_crossing():
    """The rule above is not vacuous: each kind of crossing is caught."""
    assert verdict("_node", PACKAGE + "._presets.base")
    assert verdict("_presets", PACKAGE + "._broadcast.pods")
    assert verdict("_kube", PACKAGE + "._broadcast.naming")
    assert verdict("_broadcast", PACKAGE + "._ansible.edge")
    assert verdict("_broadcast", "kubernetes.client")
    assert verdict("_node", "yaml")
    assert verdict("_broadcast", "json") is None and verdict("_presets", PACKAGE + "._node.main") is None


def test_the_runner_ships_exactly_what_it_imports_and_nothing_from_the_controller():
    shipped = manifests.runner_sources()
    assert "_broadcast/runner.py" in shipped and "_broadcast/engine.py" in shipped and "_kube/api.py" in shipped
    assert all(path.split("/")[0] in RUNNER_PACKAGES for path in shipped), sorted(shipped)
    # Every import of every shipped module is shipped too (or is the standard library).
    for path, source in shipped.items():
        for module in imports(source):
            if module.startswith(PACKAGE + "."):
                rel = module[len(PACKAGE) + 1:].replace(".", "/")
                assert rel + ".py" in shipped or any(p.startswith(rel + "/") for p in shipped) or \
                    any(rel.startswith(p[:-3] + "/") for p in shipped), "%s imports %s, not shipped" % (path, module)
            else:
                assert module.split(".")[0] in STDLIB, "%s imports %s" % (path, module)


@pytest.mark.parametrize("preset", sorted(REGISTRY))
def test_a_node_pod_gets_the_node_script_and_its_own_preset_only(preset):
    assert sorted(pods.node_files(preset)) == ["_node/main.py", "_presets/base.py", "_presets/%s.py" % preset]


def test_the_sweep_runner_ships_exactly_what_it_imports_and_only_the_standard_library():
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._dangling import scheduled

    shipped = shipping.closure(scheduled.RUNNER_ENTRY)
    assert "_dangling/sweep_runner.py" in shipped and "_dangling/sweep.py" in shipped and "_kube/api.py" in shipped
    assert not any(path.split("/")[0] in ("_ansible", "_cron", "_report") for path in shipped), sorted(shipped)
    for path, source in shipped.items():
        for module in imports(source):
            if module.startswith(PACKAGE + "."):
                rel = module[len(PACKAGE) + 1:].replace(".", "/")
                assert rel + ".py" in shipped or any(p.startswith(rel + "/") for p in shipped) or any(
                    rel.startswith(p[:-3] + "/") for p in shipped), "%s imports %s, not shipped" % (path, module)
            else:
                assert module.split(".")[0] in STDLIB, "%s imports %s" % (path, module)
