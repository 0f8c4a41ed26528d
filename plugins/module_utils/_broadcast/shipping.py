# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ship our own source into a pod through a ConfigMap: the runner's code, and the node script.

What is shipped is found, not listed: the entry module and every module of this collection it
imports, read from their source (``closure``). AnsiballZ packs a module's module_utils by the same
static reading, so whatever the runner imports is in the zip a module runs from, and is shipped.

In the pod, the files are mounted at their package paths under one root on ``PYTHONPATH``, so the
code is imported by the same names as on the controller.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import importlib
import inspect
import sys

PACKAGE = "ansible_collections.nodeops.kubernetes.plugins.module_utils"


def _is_module(name):
    if name in sys.modules:
        return True
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _imported(source):
    """Names of this collection's modules and packages that ``source`` imports."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE + "."):
            found.add(node.module)
            for alias in node.names:
                if _is_module(node.module + "." + alias.name):
                    found.add(node.module + "." + alias.name)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(PACKAGE + "."))
    return found


def closure(*entries):
    """{path below PACKAGE, e.g. "_node/main.py": source} of the entry modules (names) and all they import."""
    files, todo, seen = {}, list(entries), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        module = importlib.import_module(name)
        rel = name[len(PACKAGE) + 1:].replace(".", "/")
        if hasattr(module, "__path__"):
            # A package. Ours have empty __init__ files: in the pod, a directory without one is a
            # namespace package, which imports the same. One that is not empty is shipped.
            try:
                source = inspect.getsource(module)
            except (OSError, TypeError):
                source = ""
            if source.strip():
                files[rel + "/__init__.py"] = source
        else:
            source = inspect.getsource(module)
            files[rel + ".py"] = source
        todo.extend(_imported(source) - seen)
        # Every package above a module must exist in the pod too.
        parent = name.rsplit(".", 1)[0]
        if parent != PACKAGE and parent not in seen:
            todo.append(parent)
    return dict(sorted(files.items()))


def config_key(path):
    """A ConfigMap key for a shipped file (keys may not hold '/')."""
    return path.replace("/", ".")


PACKAGE_DIR = PACKAGE.replace(".", "/")


def mount_items(paths, under_package=False):
    """The ``items`` of a configMap volume that lay the shipped files out as packages. Mounted on a
    ``PYTHONPATH`` root, each file goes below PACKAGE_DIR; mounted on ``<root>/PACKAGE_DIR`` itself
    (``under_package``), the items stay short."""
    return [{"key": config_key(p), "path": p if under_package else "%s/%s" % (PACKAGE_DIR, p)} for p in sorted(paths)]
