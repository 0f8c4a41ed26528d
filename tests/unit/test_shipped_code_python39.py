# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What is shipped to pods runs on Python 3.9, as the docs promise ("any image with Python 3.9 or newer").

The cron runner's files (the runner and every module it imports, as cron_broadcast ships them in its
ConfigMap) and each preset's node files (the node script and the preset, as broadcast_job ships them) are
written out exactly as shipped and checked by vermin for anything newer than 3.9: syntax, modules,
functions, keyword arguments. A check that cannot fail is no check: a file using 3.10 is caught too.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import sys

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import pods, shipping
from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron import manifests
from ansible_collections.nodeops.kubernetes.plugins.module_utils._dangling import scheduled
from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets import registry

MINIMUM = "3.9"


def shipped():
    """{path: source} of every file a pod runs: the runners' closures (cron_broadcast's and the scheduled
    sweep's) and every preset's node files."""
    files = dict(manifests.runner_sources())
    files.update(shipping.closure(scheduled.RUNNER_ENTRY))
    for preset in registry.REGISTRY:
        files.update(pods.node_files(preset))
    return files


def vermin_violations(tmp_path, files):
    for rel, source in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    vermin = os.path.join(os.path.dirname(sys.executable), "vermin")
    proc = subprocess.run([vermin, "-t=%s-" % MINIMUM, "--violations", "--no-tips", "--eval-annotations",
                           "--no-parse-comments", "-vv", str(tmp_path)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    return proc.returncode, proc.stdout


def test_every_file_shipped_to_a_pod_needs_nothing_newer_than_python_39(tmp_path):
    files = shipped()
    assert "_broadcast/runner.py" in files and "_node/main.py" in files, sorted(files)
    assert "_dangling/sweep_runner.py" in files and "_dangling/sweep.py" in files, sorted(files)
    assert len([f for f in files if f.startswith("_presets/")]) >= len(registry.REGISTRY)
    rc, out = vermin_violations(tmp_path, files)
    assert rc == 0, "shipped code needs a Python newer than %s:\n%s" % (MINIMUM, out)


@pytest.mark.parametrize("source", [
    "def f(x):\n    match x:\n        case 1:\n            return 1\n",      # 3.10 syntax
    "def f(a, b):\n    return list(zip(a, b, strict=True))\n",              # 3.10 keyword
    "import tomllib\n",                                                      # 3.11 module
])
def test_code_newer_than_39_is_caught(tmp_path, source):
    rc, out = vermin_violations(tmp_path, {"_node/new.py": source})
    assert rc != 0, out
