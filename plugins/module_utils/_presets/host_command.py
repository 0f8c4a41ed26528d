# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preset host_command: run a command in the host's namespaces. Its container runs the command
itself (through ``nsenter``), so it has no ``on_node``: the exit code is the node's outcome.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets.base import (
    HOST_PRIVILEGED,
    OptionError,
    pod_part,
)

NAME = "host_command"
SUMMARY = "C(host_command) runs a command in the host's namespaces (privileged, host PID)."
OPTIONS = dict(
    command=dict(type="raw", required=True),
    shell=dict(type="bool", default=False),
)
DOCUMENTATION = r"""
description:
  - Options of the C(host_command) preset.
type: dict
suboptions:
  command:
    description:
      - The command as an argv list. A single shell string is accepted only with I(shell=true).
    type: raw
    required: true
  shell:
    description:
      - Run I(command), a string, with C(/bin/sh -c) on the host.
    type: bool
    default: false
"""
NSENTER_ALL = ("nsenter", "--target", "1", "--mount", "--uts", "--ipc", "--net", "--pid", "--")


def pod(opts):
    command = opts.get("command")
    if opts.get("shell"):
        if not isinstance(command, str) or not command.strip():
            raise OptionError("host_command.command", command, "a non-empty shell string when shell=true")
        argv = ["/bin/sh", "-c", command]
    else:
        if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
            raise OptionError("host_command.command", command,
                              "a list of strings (argv); a shell string needs shell=true")
        argv = list(command)
    return pod_part("host-command", command=list(NSENTER_ALL) + argv, host_pid=True, security=HOST_PRIVILEGED)
