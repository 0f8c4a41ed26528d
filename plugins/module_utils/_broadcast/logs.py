# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A node's log: whether it must be read at all, the read, and what the result keeps of it (see run.py).

Results and failure tails travel in the pod status the run already watches (``finished_log``, pure),
so most nodes cost no log read. A read, when needed, happens before the pod is deleted: when its pod
ends (``observe.finish``), or when the run deletes it (``cancel.cancel``, ``observe.node_left``).

``Logs`` is a part of ``run.BroadcastRun``: its methods use the run's state.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import ApiError
from ansible_collections.nodeops.kubernetes.plugins.module_utils._node.main import parse_result

# A result read from the log must be found whatever log_tail_lines says: the node script prints a note
# (and the runtime may interleave stderr) after its result line.
RESULT_TAIL_LINES = 20


def trim_log(text, lines, max_bytes):
    """The last ``lines`` lines of ``text``, and at most its last ``max_bytes`` bytes. Pure."""
    if text is None or not lines:
        return None
    kept = "\n".join(text.rstrip("\n").split("\n")[-lines:]) + ("\n" if text.endswith("\n") else "")
    raw = kept.encode("utf-8")
    if len(raw) > max_bytes:
        kept = raw[-max_bytes:].decode("utf-8", "ignore")
    return kept


def finished_log(kind, message, opts, wants_result):
    """For a pod that ended ``kind`` (succeeded or failed) with termination ``message``: the log the
    result returns without any request, and whether to read the log through the API. Pure.

    Results and failure tails travel in the pod status the run already watches: a node script writes
    its result line to the termination message, and the kubelet's FallbackToLogsOnError puts a failed
    container's last log lines there. The log is read through the API only when a wanted result is not
    in the message (it did not fit), when a failed container left no message, or for a succeeded one
    when ``log_on_success`` asks for it.
    """
    lines = opts["log_tail_lines"]
    need_result = wants_result and parse_result(message) is None
    if kind == "failed" and message:
        return trim_log(message, lines, opts["log_max_bytes"]), need_result
    if kind == "failed":
        return None, bool(lines) or need_result
    return None, (bool(lines) and opts["log_on_success"]) or need_result


def log_query(opts, for_result):
    """The query of a log read: the user's tail, or for a result at least RESULT_TAIL_LINES lines and
    64 KiB (a result line lists up to 50 items); ``take_log`` trims it to the log options. None: no read."""
    if not opts["log_tail_lines"] and not for_result:
        return None
    if for_result:
        return {"tailLines": max(opts["log_tail_lines"], RESULT_TAIL_LINES),
                "limitBytes": max(opts["log_max_bytes"], 65536)}
    return {"tailLines": opts["log_tail_lines"], "limitBytes": opts["log_max_bytes"]}


class Logs:
    """Log reads (a part of ``run.BroadcastRun``)."""

    @property
    def wants_result(self):
        return bool(self.opts["workload"].get("node_script"))

    def take_log(self, r, text):
        r.fetched = text
        r.log = trim_log(text, self.opts["log_tail_lines"], self.opts["log_max_bytes"])

    def read_log(self, pod_name, for_result=False, retry_for=None):
        """The tail of a pod's log, through the API. For a result, at least its last line, and up to
        64 KiB (a result line lists up to 50 items); ``take_log`` trims it to the log options."""
        query = log_query(self.opts, for_result)
        if query is None:
            return None
        path = self.client.core_path("pods", self.namespace, pod_name, "log")
        try:
            text = self.client.get(path, query, timeout=30 if retry_for is None else max(1, min(30, retry_for)),
                                   retry_for=retry_for)
        except ApiError as exc:
            return "(log unavailable: %s)" % (exc.reason or exc.status)
        return text if isinstance(text, str) else json.dumps(text)
