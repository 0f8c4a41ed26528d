# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading many objects: paged lists, and list-then-watch with re-list on 410 and reconnects."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading
import time

from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import ApiError, ApiUnavailable, WatchExpired

WATCH_SECONDS = 30          # server-side timeoutSeconds of one watch request
LIST_PAGE = 500


def list_all(client, path, query=None, timeout=60, slim=None):
    """List every item, page by page. Returns (items, resourceVersion).

    ``slim`` maps each item to the part the caller keeps, page by page, so a
    large list is never held whole.
    """
    query = dict(query or {}, limit=LIST_PAGE, timeoutSeconds=timeout)
    items = []
    while True:
        page = client.get(path, query, timeout=timeout + 10)
        page_items = page.get("items") or []
        items.extend(map(slim, page_items) if slim else page_items)
        cont = (page.get("metadata") or {}).get("continue")
        if not cont:
            return items, page["metadata"].get("resourceVersion")
        query["continue"] = cont


class Watcher(threading.Thread):
    """List, then watch one resource from the list's resourceVersion, in a daemon thread until ``stop()``.

    It puts ``(kind, tag, payload)`` on the ``events`` queue (``tag`` names the watcher: several share a queue):

    * ``("sync", tag, (items, resource_version, listed_from))`` after each whole list: first (unless it
      was given ``initial_resource_version``) and after a 410 Gone. ``listed_from`` is ``time.monotonic()``
      when the list began; ``items`` went through ``slim``;
    * ``("event", tag, (type, obj))`` for each ADDED, MODIFIED or DELETED, ``obj`` through ``slim``
      (bookmarks only move the resourceVersion on);
    * ``("error", tag, exc)`` for an ApiError that retrying cannot mend (a 403, say); the watcher ends.

    A watch that ends (timeoutSeconds) starts again from the last resourceVersion; a broken connection or
    a retryable ApiError (429, 5xx, no answer) does too, after a backoff (0.2 s, doubling to 5 s). Every
    request carries timeoutSeconds (server) and a socket timeout (client).
    """

    def __init__(self, client, path, selector, events, initial_resource_version=None, log=None, tag="pods",
                 slim=None, field_selector=None):
        super(Watcher, self).__init__(name="nodeops-watch-" + tag)
        self.daemon = True
        self.client = client
        self.path = path
        self.tag = tag
        self.selector = selector
        self.field_selector = field_selector
        self.events = events
        self.stop_event = threading.Event()
        self.stream = None
        self.resource_version = initial_resource_version
        self.relists = 0
        self.reconnects = 0
        self.streaming = False
        self.log = log or (lambda msg: None)
        self.slim = slim or (lambda obj: obj)

    def stop(self):
        self.stop_event.set()
        stream = self.stream
        if stream is not None:
            stream.close()

    def _relist(self):
        # When the list began, on the real monotonic clock: resourceVersions are opaque and
        # may not be compared, but a list begun after a create was answered holds that object.
        listed_from = time.monotonic()
        items, rv = list_all(self.client, self.path, self._selectors(), slim=self.slim)
        self.relists += 1
        self.resource_version = rv
        self.events.put(("sync", self.tag, (items, rv, listed_from)))

    def _selectors(self):
        query = {}
        if self.selector:
            query["labelSelector"] = self.selector
        if self.field_selector:
            query["fieldSelector"] = self.field_selector
        return query

    def run(self):
        backoff = 0.2
        while not self.stop_event.is_set():
            try:
                if self.resource_version is None:
                    self._relist()
                query = dict(self._selectors(), resourceVersion=self.resource_version, allowWatchBookmarks="true",
                             timeoutSeconds=WATCH_SECONDS)
                self.stream = self.client.watch(self.path, query, timeout=WATCH_SECONDS + 15)
                if self.stop_event.is_set():
                    self.stream.close()
                    return
                self.streaming = True
                for event in self.stream:
                    backoff = 0.2
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            raise WatchExpired("watch expired: %s" % obj.get("message"), status=410)
                        raise ApiError("watch error: %s" % obj.get("message"), status=obj.get("code"))
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        self.resource_version = rv
                    if kind != "BOOKMARK":
                        self.events.put(("event", self.tag, (kind, self.slim(obj))))
            except WatchExpired:
                self.log("%s watch expired (410 Gone); listing again" % self.tag)
                self.resource_version = None
            except (ApiUnavailable, ApiError) as exc:
                if self.stop_event.is_set():
                    return
                if isinstance(exc, ApiError) and not exc.retryable and not isinstance(exc, ApiUnavailable):
                    self.events.put(("error", self.tag, exc))
                    return
                self.reconnects += 1
                self.log("API server unavailable (%s); retrying in %.1fs" % (exc.msg, backoff))
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self.stream = None
