# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Watcher against a scripted API server: what it puts on its queue is what its docstring says."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import queue
import re

from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube import watch
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import ApiError, TooManyRequests

A = {"metadata": {"name": "a", "resourceVersion": "11"}, "spec": {"big": "x"}}
B = {"metadata": {"name": "b", "resourceVersion": "21"}, "spec": {"big": "y"}}


def slim(obj):
    return {"name": obj["metadata"]["name"]}


class Stream:
    def __init__(self, events):
        self.events = events

    def __iter__(self):
        return iter(self.events)

    def close(self):
        pass


class ScriptedServer:
    """Answers list pages and watches in order; a watch answer that is an exception is raised."""

    def __init__(self, pages, watches):
        self.pages = list(pages)
        self.watches = list(watches)
        self.listed = []
        self.watched = []

    def get(self, path, query, timeout=None):
        self.listed.append(dict(query))
        return self.pages.pop(0)

    def watch(self, path, query, timeout=None):
        self.watched.append(dict(query))
        answer = self.watches.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return Stream(answer)


def documented():
    """{kind: the number of items of its payload's tuple, or None for one object}, from Watcher's docstring."""
    shapes = re.findall(r'``\("(\w+)", tag, (\([^)]*\)|\w+)\)``', watch.Watcher.__doc__)
    return dict((kind, len(payload.split(",")) if payload.startswith("(") else None) for kind, payload in shapes)


def test_the_watcher_puts_on_its_queue_what_its_docstring_says():
    forbidden = {"type": "ERROR", "object": {"kind": "Status", "code": 403, "message": "no"}}
    server = ScriptedServer(
        pages=[{"items": [A], "metadata": {"continue": "c1"}}, {"items": [B], "metadata": {"resourceVersion": "10"}},
               {"items": [A, B], "metadata": {"resourceVersion": "20"}}],
        watches=[[{"type": "ADDED", "object": A}, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
                  {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}],
                 TooManyRequests("slow down", status=429),
                 [{"type": "MODIFIED", "object": B}, forbidden]])
    events = queue.Queue()
    watcher = watch.Watcher(server, "/api/v1/pods", "app=x", events, tag="pods", slim=slim)
    watcher.run()       # in this thread: it returns after the 403

    seen = []
    while not events.empty():
        seen.append(events.get_nowait())
    assert [(kind, tag) for kind, tag, _payload in seen] == [
        ("sync", "pods"), ("event", "pods"), ("sync", "pods"), ("event", "pods"), ("error", "pods")]
    assert seen[0][2][:2] == ([{"name": "a"}, {"name": "b"}], "10") and isinstance(seen[0][2][2], float)
    assert seen[1][2] == ("ADDED", {"name": "a"})
    assert seen[2][2][:2] == ([{"name": "a"}, {"name": "b"}], "20")
    assert seen[3][2] == ("MODIFIED", {"name": "b"})
    assert isinstance(seen[4][2], ApiError) and seen[4][2].status == 403
    # Watched from each list's resourceVersion; after the 429, from the same one again.
    assert [q["resourceVersion"] for q in server.watched] == ["10", "20", "20"]
    assert all(q["labelSelector"] == "app=x" and q["timeoutSeconds"] == watch.WATCH_SECONDS for q in server.watched)
    assert watcher.relists == 2 and watcher.reconnects == 1

    shapes = documented()
    assert sorted(shapes) == sorted(set(kind for kind, _tag, _payload in seen))
    for kind, _tag, payload in seen:
        if shapes[kind] is None:
            assert not isinstance(payload, tuple), kind
        else:
            assert isinstance(payload, tuple) and len(payload) == shapes[kind], kind
