# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ship our own source into a pod through a ConfigMap: the runner's code, and the node script.

What is shipped is found, not listed: the entry module and every module of this collection it
imports, read from their source (``closure``). AnsiballZ packs a module's module_utils by the same
static reading, so whatever the runner imports is in the zip a module runs from, and is shipped.

In the pod, the files are mounted at their package paths under one root, with a manifest of their
SHA-256 whose own digest is in the pod's command: ``_node/boot.py`` (the command's inline source,
``boot_command``) checks them, copies the checked bytes and imports from the copy, by the same names
as on the controller. Nothing is read from the mount unchecked.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import hashlib
import importlib
import inspect
import json
import sys

# Imported by name, so that it is shipped (``closure``) and packed by AnsiballZ with whatever imports this.
from ansible_collections.nodeops.kubernetes.plugins.module_utils._node import boot as boot_module

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


# ------------------------------------------------------------------ integrity (see _node/boot.py)

MANIFEST_KEY = boot_module.MANIFEST     # the manifest's ConfigMap key and file name


def _bytes(content):
    return content if isinstance(content, bytes) else content.encode("utf-8")


def manifest(files):
    """(the manifest's text, its SHA-256) for ``files`` ({path as mounted: text or bytes}). The manifest
    maps each path to its content's SHA-256; the pod spec carries the manifest's own digest. Pure."""
    text = json.dumps(dict((path, hashlib.sha256(_bytes(content)).hexdigest()) for path, content in files.items()),
                      sort_keys=True, separators=(",", ":"))
    return text, hashlib.sha256(text.encode("utf-8")).hexdigest()


_BOOT_SOURCE = []


def boot_source():
    """The integrity check's source as it goes into a pod's argv: no docstrings, comments or blank lines."""
    if not _BOOT_SOURCE:
        tree = ast.parse(inspect.getsource(boot_module))
        tree.body = [node for node in tree.body if not _is_docstring(node) and not _is_future(node)]
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and len(body) > 1 and _is_docstring(body[0]):
                node.body = body[1:]
        # One space an indent level: unparse indents by four and puts no newline inside a string.
        lines = [line for line in ast.unparse(tree).splitlines() if line.strip()]
        _BOOT_SOURCE.append("\n".join(" " * ((len(line) - len(line.lstrip(" "))) // 4) + line.lstrip(" ")
                                      for line in lines))
    return _BOOT_SOURCE[0]


def _is_docstring(node):
    return isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant) \
        and isinstance(node.value.value, str)


def _is_future(node):
    return (isinstance(node, ast.ImportFrom) and node.module == "__future__") or (
        isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__metaclass__"])


def boot_command(digest, mounted, package, module, python_flags=()):
    """The argv that checks every shipped file against ``digest`` (see ``manifest``) and then runs
    ``module`` from the checked copy. ``-I`` keeps PYTHONPATH and the working directory off the path:
    nothing unchecked can be imported in place of our code."""
    return ["python3", "-I", "-B"] + list(python_flags) + ["-c", boot_source(), digest, mounted, package, module]
