# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shape of module_utils, enforced: a function fits on a screen, and no private helper is left unused.

* No function or method in ``plugins/module_utils`` is longer than ``MAX_LINES`` (from its ``def`` to
  its last line, docstring included; see docs/ARCHITECTURE.md, "A function fits on a screen").
* A module-level private function or class (``_name``) is referenced somewhere: in its own module, by
  another module of the collection, by a test or a tool (by name, as an attribute, imported, or inside a
  string such as ``getattr(module, "_name")`` or ``mock.patch("..._name")``). Nothing else calls it, so an
  unreferenced one is dead code.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import os
import re

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import shipping

MAX_LINES = 70
MODULE_UTILS = os.path.dirname(os.path.dirname(os.path.abspath(shipping.__file__)))
REPO = os.path.dirname(os.path.dirname(MODULE_UTILS))
# Where a reference may come from: the collection's code, its tests and its tools.
REFERRING_DIRS = ("plugins", "tests", "tools", "benchmarks", "roles", "extensions", "playbooks")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def python_files(*roots):
    for root in roots:
        for directory, subdirs, files in os.walk(root):
            subdirs[:] = sorted(d for d in subdirs if d not in ("__pycache__", "output"))
            for name in sorted(files):
                if name.endswith(".py"):
                    yield os.path.join(directory, name)


def read(path):
    with open(path) as f:
        return f.read()


def long_functions(source, limit=MAX_LINES):
    """[(qualified name, lines)] of every function or method in ``source`` longer than ``limit`` lines."""
    found = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            name = prefix
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                lines = child.end_lineno - child.lineno + 1
                if not isinstance(child, ast.ClassDef) and lines > limit:
                    found.append((name, lines))
                name += "."
            visit(child, name)

    visit(ast.parse(source), "")
    return found


def private_definitions(source):
    """The module-level functions and classes of ``source`` named ``_name`` (not ``__dunder__``)."""
    return [node.name for node in ast.parse(source).body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.name.startswith("_") and not node.name.endswith("__")]


def _docstrings(tree):
    """The docstring nodes of ``tree``: a name mentioned in prose is not a use of it."""
    return set(id(node.body[0].value) for node in ast.walk(tree)
               if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
               and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant))


def references(source):
    """Every name ``source`` uses (not defines): loaded names, attributes, imported names and the
    identifiers inside its string constants (but its docstrings)."""
    found = set()
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.alias):
            found.add(node.name.rsplit(".", 1)[-1])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.update(IDENTIFIER.findall(node.value))
    return found


def unreferenced(definitions, sources):
    """The (path, name) of ``definitions`` that no source in ``sources`` ({path: source}) references."""
    used = set()
    for source in sources.values():
        used |= references(source)
    return sorted((path, name) for path, name in definitions if name not in used)


def test_no_function_in_module_utils_is_longer_than_a_screen():
    too_long = []
    for path in python_files(MODULE_UTILS):
        too_long += ["%s: %s is %d lines" % (os.path.relpath(path, MODULE_UTILS), name, lines)
                     for name, lines in long_functions(read(path))]
    assert too_long == [], "split these (at most %d lines each)" % MAX_LINES


def test_every_private_function_in_module_utils_is_used():
    definitions = [(os.path.relpath(path, MODULE_UTILS), name)
                   for path in python_files(MODULE_UTILS) for name in private_definitions(read(path))]
    assert definitions
    sources = dict((path, read(path)) for path in python_files(*[os.path.join(REPO, d) for d in REFERRING_DIRS]))
    assert unreferenced(definitions, sources) == [], "dead code: delete it (or use it)"


def _function(name, lines, indent=""):
    """The source of a function ``lines`` lines long."""
    return "%sdef %s():\n" % (indent, name) + "".join("%s    x%d = %d\n" % (indent, i, i) for i in range(lines - 1))


def test_the_length_checker_counts_methods_and_nested_functions():
    source = _function("fits", MAX_LINES) + "\n\nclass C:\n" + _function("long", MAX_LINES + 1, "    ") + \
        "\n    def outer(self):\n" + _function("inner", MAX_LINES, "        ")
    assert long_functions(source) == [("C.long", MAX_LINES + 1), ("C.outer", MAX_LINES + 1)]
    assert long_functions(source, MAX_LINES - 1) == [
        ("fits", MAX_LINES), ("C.long", MAX_LINES + 1), ("C.outer", MAX_LINES + 1), ("C.outer.inner", MAX_LINES)]


def test_the_dead_code_checker_sees_every_kind_of_reference():
    module = "def _called():\n    \"\"\"Not _only_in_a_docstring.\"\"\"\n\ndef _by_string():\n    pass\n\ndef _imported():\n    pass\n\n" \
             "def _attribute():\n    pass\n\nclass _Dead:\n    pass\n\ndef _dead():\n    return _called()\n\n" \
             "def __getattr__(name):\n    pass\n\ndef _only_in_a_docstring():\n    pass\n"
    definitions = [("m.py", name) for name in private_definitions(module)]
    assert [name for _path, name in definitions] == [
        "_called", "_by_string", "_imported", "_attribute", "_Dead", "_dead", "_only_in_a_docstring"]
    user = "import m\nfrom m import _imported\ngetattr(m, '_by_string')\nm._attribute()\n"
    assert unreferenced(definitions, {"m.py": module, "user.py": user}) == [
        ("m.py", "_Dead"), ("m.py", "_dead"), ("m.py", "_only_in_a_docstring")]
