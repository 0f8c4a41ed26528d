# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The integrity check every pod of ours runs before any code of ours: the node pods and the runner.

Why: their code reaches them through a ConfigMap, and anyone who may write ConfigMaps in the
namespace could change code that then runs as root on every node. So the pod spec, which only
someone who may write the pod (or the CronJob) can set, carries the SHA-256 of a manifest, and the
manifest lists the SHA-256 of every file the pod will read. This module's source is the pod's
``python3 -I -B -c`` argument: it is never read from the ConfigMap.

It reads each file once, checks it, and copies the checked bytes into a fresh directory it then runs
from, so that nothing can change between the check and the import (a ConfigMap volume is updated in
place by the kubelet). A mismatch runs nothing: it says which file failed, on stderr (the kubelet's
FallbackToLogsOnError makes that the pod's termination message), and exits with ``EXIT_TAMPERED``.

argv: ``<manifest sha256> <mounted dir> <package dir below the run root> <module> [args...]``.
Standard library only, Python 3.9+, and short: it is in every pod spec (``command`` strips the
docstrings, comments and blank lines).
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import runpy
import sys
import tempfile

MANIFEST = "nodeops-manifest.json"
EXIT_TAMPERED = 4


def _refuse(what):
    sys.stderr.write("nodeops integrity check failed: %s; nothing was run\n" % what)
    raise SystemExit(EXIT_TAMPERED)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        _refuse("%s cannot be read (%s)" % (path, exc.strerror))


def boot(want, mounted, package, module, args):
    raw = _read(os.path.join(mounted, MANIFEST))
    if hashlib.sha256(raw).hexdigest() != want:
        _refuse("%s does not match the digest in the pod spec" % MANIFEST)
    root = tempfile.mkdtemp(prefix="nodeops-")
    for rel, digest in sorted(json.loads(raw.decode("utf-8")).items()):
        data = _read(os.path.join(mounted, rel))
        if hashlib.sha256(data).hexdigest() != digest:
            _refuse("%s does not match its digest in %s" % (rel, MANIFEST))
        dest = os.path.join(root, package, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "wb") as f:
            f.write(data)
    os.environ["NODEOPS_CODE_ROOT"] = root
    sys.path.insert(0, root)
    sys.argv = [module] + list(args)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    boot(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
