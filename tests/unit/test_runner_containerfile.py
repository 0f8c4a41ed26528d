# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""files/Containerfile.runner: the module its ENTRYPOINT runs exists in the image, and is the runner.

Nothing builds images here. The image's files are the collection's, copied by its COPY lines, so the
entry module is found by following them back to this tree: ENTRYPOINT's ``-m`` module, looked up on the
image's PYTHONPATH as Python would (a module file, or a package's ``__main__``), is a file some COPY puts
there.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import posixpath
import shlex

from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron import manifests

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONTAINERFILE = os.path.join(REPO, "files", "Containerfile.runner")


def instructions(path=CONTAINERFILE):
    """[(INSTRUCTION, arguments)] of a Containerfile (no line continuations in ours)."""
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                word, rest = (line.split(None, 1) + [""])[:2]
                out.append((word.upper(), rest.strip()))
    return out


def image_env(parsed):
    env = {}
    for word, rest in parsed:
        if word == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(rest))
    return env


def entry_module(parsed):
    entry = [json.loads(rest) for word, rest in parsed if word == "ENTRYPOINT"][-1]
    assert entry[0].startswith("python") and "-m" in entry, entry
    return entry[entry.index("-m") + 1]


def source_of(parsed, image_path):
    """The file of this tree that a COPY puts at ``image_path`` in the image, or None."""
    for word, rest in parsed:
        if word != "COPY":
            continue
        src, dest = rest.split()
        if src.endswith("/") and image_path.startswith(dest):
            return os.path.join(REPO, src, image_path[len(dest):])
        if not src.endswith("/") and image_path == dest:
            return os.path.join(REPO, src)
    return None


def resolve(parsed, module):
    """The tree's file that ``python3 -m module`` would run in the image, or None."""
    parts = module.split(".")
    for root in image_env(parsed).get("PYTHONPATH", "").split(":"):
        for candidate in (posixpath.join(root, *parts) + ".py", posixpath.join(root, *parts + ["__main__.py"])):
            source = source_of(parsed, candidate)
            if source and os.path.isfile(source):
                return source
    return None


def test_the_runner_images_entry_module_exists_and_is_the_runner_cron_broadcast_runs():
    parsed = instructions()
    module = entry_module(parsed)
    source = resolve(parsed, module)
    assert source, "ENTRYPOINT runs %s, which no COPY of Containerfile.runner puts on its PYTHONPATH" % module
    assert module == manifests.RUNNER_ENTRY, "ENTRYPOINT runs %s; cron_broadcast's CronJob runs %s" % (
        module, manifests.RUNNER_ENTRY)
    with open(source) as f:
        assert 'if __name__ == "__main__":' in f.read(), "%s cannot be run with -m" % source
