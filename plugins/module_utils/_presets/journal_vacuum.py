# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preset journal_vacuum: shrink the host's systemd journal with ``journalctl --vacuum-size``,
``--vacuum-time`` and ``--vacuum-files``.

journalctl removes archived journal files only, never the active ones. The sizes before and after
are measured on the journal directories themselves, so ``bytes_freed`` is exact.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.nodeops.kubernetes.plugins.module_utils._node.main import HostProblem, host_run, missing_tool, say
from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets.base import (
    HOST_PRIVILEGED,
    OptionError,
    pod_part,
)

NAME = "journal_vacuum"
SUMMARY = ("C(journal_vacuum) shrinks the host's systemd journal with C(journalctl --vacuum-*), which removes "
           "archived journal files only. The pod runs privileged with the host PID namespace.")
OPTIONS = dict(
    max_size=dict(type="str"),
    max_age=dict(type="str"),
    max_files=dict(type="int"),
)
DOCUMENTATION = r"""
description:
  - Options of the C(journal_vacuum) preset. Give at least one of I(max_size), I(max_age) and I(max_files).
  - Needs C(journalctl) on the node's host. The journal directories are C(/var/log/journal) and C(/run/log/journal).
type: dict
suboptions:
  max_size:
    description:
      - Remove archived journal files until the journal takes no more than this, for example C(500M) or C(2G)
        (C(journalctl --vacuum-size)). A number with an optional C(K), C(M), C(G) or C(T) suffix.
    type: str
  max_age:
    description:
      - Remove archived journal files with no entries newer than this, for example C(2weeks), C(10d) or C(12h)
        (C(journalctl --vacuum-time)).
    type: str
  max_files:
    description:
      - Keep at most this many archived journal files (C(journalctl --vacuum-files)).
    type: int
"""
JOURNAL_DIRS = ("/var/log/journal", "/run/log/journal")
SIZE = re.compile(r"^[1-9][0-9]*[KMGT]?$")
AGE = re.compile(r"^[1-9][0-9]*\s*(s|sec|m|min|h|hour|hours|d|day|days|w|week|weeks|month|months|y|year|years)$")


def pod(opts):
    if opts.get("max_size") is None and opts.get("max_age") is None and opts.get("max_files") is None:
        raise OptionError("journal_vacuum", opts, "at least one of max_size, max_age and max_files")
    if opts.get("max_size") is not None and not SIZE.match(str(opts["max_size"])):
        raise OptionError("journal_vacuum.max_size", opts["max_size"],
                          "a size such as 500M or 2G (a number with an optional K, M, G or T suffix)")
    if opts.get("max_age") is not None and not AGE.match(str(opts["max_age"])):
        raise OptionError("journal_vacuum.max_age", opts["max_age"],
                          "a time span such as 12h, 10d or 2weeks")
    if opts.get("max_files") is not None and opts["max_files"] < 1:
        raise OptionError("journal_vacuum.max_files", opts["max_files"], "a number of files of at least 1")
    params = dict((k, opts[k]) for k in ("max_size", "max_age", "max_files") if opts.get(k) is not None)
    return pod_part("journal-vacuum", params=params, host_pid=True, security=HOST_PRIVILEGED, disk_relief=True)


def vacuum_argv(params):
    """The journalctl command for ``params``. Pure."""
    argv = ["journalctl"]
    if params.get("max_size") is not None:
        argv.append("--vacuum-size=%s" % params["max_size"])
    if params.get("max_age") is not None:
        argv.append("--vacuum-time=%s" % str(params["max_age"]).replace(" ", ""))
    if params.get("max_files") is not None:
        argv.append("--vacuum-files=%d" % params["max_files"])
    return argv


def parse_sizes(find_output):
    """Sum of the ``%s`` sizes ``find -printf '%s\\n'`` printed, and the number of files. Pure."""
    sizes = [int(line) for line in find_output.split() if line.isdigit()]
    return sum(sizes), len(sizes)


def _journal_size():
    code, out, err = host_run(["find"] + list(JOURNAL_DIRS) + ["-type", "f", "-name", "*.journal*", "-printf", "%s\n"])
    if code not in (0, 1):   # 1: one of the directories does not exist
        raise HostProblem("cannot measure the journal on the node's host: %s" % err.strip())
    return parse_sizes(out.decode("utf-8", "replace"))


def on_node(params):
    before, files_before = _journal_size()
    argv = vacuum_argv(params)
    code, out, err = host_run(argv)
    if missing_tool(code, err):
        raise HostProblem("journalctl is not installed on the node's host (not on its PATH); "
                          "journal_vacuum needs it")
    for line in (out.decode("utf-8", "replace") + err).splitlines():
        if line.strip():
            say(line.strip())
    after, files_after = _journal_size()
    last = (err.strip().splitlines() or [""])[-1]
    errors = [] if code == 0 else ["%s exited %d: %s" % (" ".join(argv), code, last)]
    return {"preset": NAME, "command": argv, "bytes_before": before, "bytes_after": after,
            "bytes_freed": max(0, before - after), "files_removed_count": max(0, files_before - files_after),
            "errors": errors}
