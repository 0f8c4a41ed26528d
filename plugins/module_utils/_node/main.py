# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The node script: what a preset pod runs, as ``...module_utils._node.main``.

The pod mounts its run's code ConfigMap, which holds this file and the chosen preset's module (see
``_broadcast/shipping.py``); ``_node/boot.py`` checks them against the digest in the pod spec and runs
this from the checked copy, with ``NODEOPS_PRESET={"preset": name, "params": {...}}``.
It imports the preset, runs its ``on_node(params)`` and prints progress lines, then the result as one
``NODEOPS_RESULT {json}`` line (``parse_result`` reads it back). It exits 0 when the preset reported no
errors, 1 when it did, 2 when the host cannot do the preset at all.

How the result reaches the engine without a log read: on success the script also writes the result
line to the container's termination message (``/dev/termination-log``, at most 4096 bytes), which the
kubelet copies into the pod status the engine already watches. On failure it writes nothing there, so
that the kubelet's ``FallbackToLogsOnError`` puts the log's last lines in the message instead: the
result line and the lines before it, the failure tail. A result too long for the message is left out
of it, and the engine reads it from the log.

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
TERMINATION_LOG = "/dev/termination-log"
TERMINATION_ENV = "NODEOPS_TERMINATION_LOG"    # another path, for tests
# The kubelet keeps at most this many bytes of a container's termination message.
MAX_TERMINATION_BYTES = 4096
NSENTER_MOUNT = ("nsenter", "--target", "1", "--mount", "--")
# The presets' package: this package's sibling (also when run with -m, where __name__ is __main__).
PRESETS = (__package__ or "ansible_collections.nodeops.kubernetes.plugins.module_utils._node").rsplit(".", 1)[0] \
    + "._presets"


class HostProblem(Exception):
    """The node's host cannot do what the preset needs (a missing tool, no runtime): a clear, final error."""


def say(text):
    # The pod's output is its report (this runs in the pod, not as an Ansible module).
    sys.stdout.write(text + "\n")


def bounded(result, limit=MAX_LISTED):
    """``result`` with every list in it cut to ``limit`` items, and ``truncated``: {name: how many there were}
    for each list that was cut, so that a reader knows the list is not whole. Pure."""
    out, cut = dict(result), {}
    for key, value in result.items():
        if isinstance(value, list) and len(value) > limit:
            out[key] = value[:limit]
            cut[key] = len(value)
    if cut:
        out["truncated"] = dict(out.get("truncated") or {}, **cut)
    return out


def emit(result):
    sys.stdout.flush()
    say(RESULT_MARKER + json.dumps(result, sort_keys=True))


def result_message(result):
    """The termination message that carries ``result``: one compact result line, or None when it
    would not fit in the kubelet's 4096 bytes (the engine then reads the result from the log). Pure."""
    line = RESULT_MARKER + json.dumps(result, sort_keys=True, separators=(",", ":"))
    return line if len(line.encode("utf-8")) <= MAX_TERMINATION_BYTES else None


def write_termination_message(result, path):
    """Put the result line in the termination message, when the container has one (the kubelet
    mounts the file; on any other host there is none, and nothing is written)."""
    message = result_message(result)
    if message is None:
        say("the result is longer than a termination message (%d bytes); the engine reads it from the log"
            % MAX_TERMINATION_BYTES)
        return False
    if not os.path.exists(path):
        return False
    try:
        with open(path, "w") as f:
            f.write(message)
    except OSError as exc:
        say("could not write the termination message %s: %s" % (path, exc))
        return False
    return True


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
    # Every list a preset returns is bounded here, errors included: one node's result stays small.
    result = bounded(result)
    emit(result)
    if result.get("errors"):
        return 1     # the kubelet's fallback puts the log tail, result line included, in the message
    write_termination_message(result, environ.get(TERMINATION_ENV, TERMINATION_LOG))
    return 0


if __name__ == "__main__":
    # Run as -m, this file is __main__; the presets import it under its package name, a second
    # module object. Run that one, so that the HostProblem a preset raises is the one caught.
    raise SystemExit(importlib.import_module(__spec__.name).main())
