# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The node script: what a preset pod runs, ``python3 -m ...module_utils._node.main``.

The pod mounts its run record, which holds this file and the chosen preset's module (see
``_broadcast/shipping.py``), and runs this with ``NODEOPS_PRESET={"preset": name, "params": {...}}``.
It imports the preset, runs its ``on_node(params)`` and prints progress lines, then the result as one
``NODEOPS_RESULT {json}`` line that the engine parses from the pod's log (``parse_result``). It exits
0 when the preset reported no errors, 1 when it did, 2 when the host cannot do the preset at all.

Standard library only. The presets use its helpers: ``say``, ``host_run`` (a command in the host's
mount namespace, through ``nsenter``; the pod has the host PID namespace) and ``HostProblem``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib
import json
import os
import subprocess
import sys

ENV = "NODEOPS_PRESET"
RESULT_MARKER = "NODEOPS_RESULT "
MAX_LISTED = 50
NSENTER_MOUNT = ("nsenter", "--target", "1", "--mount", "--")
# The presets' package: this package's sibling (also when run with -m, where __name__ is __main__).
PRESETS = (__package__ or "ansible_collections.nodeops.kubernetes.plugins.module_utils._node").rsplit(".", 1)[0] \
    + "._presets"


class HostProblem(Exception):
    """The node's host cannot do what the preset needs (a missing tool, no runtime): a clear, final error."""


def say(text):
    # The pod's output is its report (this runs in the pod, not as an Ansible module).
    sys.stdout.write(text + "\n")


def emit(result):
    sys.stdout.flush()
    say(RESULT_MARKER + json.dumps(result, sort_keys=True))


def parse_result(log_text):
    """The last NODEOPS_RESULT object in a log, or None."""
    for line in reversed((log_text or "").splitlines()):
        if line.startswith(RESULT_MARKER):
            try:
                return json.loads(line[len(RESULT_MARKER):])
            except ValueError:
                return None
    return None


def input_path(name):
    """Where an input the engine gathered for the preset (see _presets/base.py) lies: next to this file."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), name)


def host_run(argv):
    """Run ``argv`` in the host's mount namespace. Returns (exit code, stdout bytes, stderr text)."""
    proc = subprocess.run(list(NSENTER_MOUNT) + list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          check=False)
    return proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace")


def missing_tool(returncode, stderr):
    """Whether nsenter could not start the tool at all (not installed on the host). Pure."""
    return returncode == 127 or "failed to execute" in (stderr or "")


def main(environ=None):
    environ = os.environ if environ is None else environ
    request = json.loads(environ[ENV])
    preset = importlib.import_module("%s.%s" % (PRESETS, request["preset"]))
    try:
        result = preset.on_node(request.get("params") or {})
    except HostProblem as exc:
        sys.stdout.write("error: %s\n" % exc)
        emit({"preset": request["preset"], "errors": [str(exc)]})
        return 2
    emit(result)
    return 1 if result.get("errors") else 0


if __name__ == "__main__":
    # Run as -m, this file is __main__; the presets import it under its package name, a second
    # module object. Run that one, so that the HostProblem a preset raises is the one caught.
    raise SystemExit(importlib.import_module(__spec__.name).main())
