# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small Kubernetes REST client on the Python standard library.

Why not the ``kubernetes`` package: the in-cluster runner runs on a stock
``python`` image that does not have it, and the runner must share the engine
with the modules. So the engine talks to the API through this client, and the
modules only use the ``kubernetes`` package to *resolve* connection settings
(kubeconfig files, contexts, exec plugins) into a ``ConnectionConfig``.

Every call has a client-side socket timeout; list and watch calls also send
a server-side ``timeoutSeconds``. Connections are kept alive, one per thread.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import os
import socket
import ssl
import threading
import time

import http.client as httplib
from urllib.parse import quote, urlencode, urlsplit

from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import (
    ERRORS_BY_STATUS,
    ApiError,
    ApiUnavailable,
    ConnectionConfigError,
    NodeopsError,
    NotFound,
    TooManyRequests,
)

DEFAULT_TIMEOUT = 30
RETRY_SECONDS = 30   # how long idempotent requests keep trying through a restart or throttling
USER_AGENT = "nodeops.kubernetes"


class ConnectionConfig:
    """Everything needed to reach and authenticate to one API server.

    ``token_file`` is re-read before each request, because in-cluster
    ServiceAccount tokens are rotated while a long run is going on.
    ``credentials``, when set, is asked for the bearer token before each request
    and told to refresh it once when the server answers 401 (see ``Credentials``).
    """

    FIELDS = ("server", "ca_file", "verify", "client_cert_file", "client_key_file", "token",
              "token_file", "username", "password", "proxy", "no_proxy", "proxy_headers",
              "impersonate_user", "impersonate_groups", "tls_server_name")

    def __init__(self, server, ca_file=None, verify=True, client_cert_file=None, client_key_file=None,
                 token=None, token_file=None, username=None, password=None, proxy=None, no_proxy=None,
                 proxy_headers=None, impersonate_user=None, impersonate_groups=None, tls_server_name=None,
                 credentials=None):
        if not server:
            raise ConnectionConfigError("no API server address: set host, or a kubeconfig with a server")
        self.server = server.rstrip("/")
        self.ca_file = ca_file
        self.verify = verify
        self.client_cert_file = client_cert_file
        self.client_key_file = client_key_file
        self.token = token
        self.token_file = token_file
        self.username = username
        self.password = password
        self.proxy = proxy
        self.no_proxy = no_proxy
        self.proxy_headers = dict(proxy_headers or {})
        self.impersonate_user = impersonate_user
        self.impersonate_groups = list(impersonate_groups or [])
        self.tls_server_name = tls_server_name
        self.credentials = credentials

    def to_dict(self):
        return dict((f, getattr(self, f)) for f in self.FIELDS)

    @classmethod
    def in_cluster(cls):
        """The pod's own ServiceAccount, as every in-cluster client finds it."""
        base = "/var/run/secrets/kubernetes.io/serviceaccount"
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise ConnectionConfigError("not running inside a cluster: KUBERNETES_SERVICE_HOST is not set")
        if ":" in host:
            host = "[%s]" % host
        return cls("https://%s:%s" % (host, port), ca_file=os.path.join(base, "ca.crt"),
                   token_file=os.path.join(base, "token"))

    def bypasses_proxy(self, host):
        for entry in (self.no_proxy or "").split(","):
            entry = entry.strip().lstrip(".")
            if entry and (host == entry or host.endswith("." + entry)):
                return True
        return False


class Credentials:
    """A bearer token with a lifetime: asked before each request, refreshed once on a 401.

    ``fetch(force)`` returns the current token; ``force`` means the server refused the last
    one, so a new one must be obtained (an exec plugin run again, a token file re-read).
    """

    def __init__(self, fetch):
        self._fetch = fetch
        self._lock = threading.Lock()
        self._token = None

    def token(self):
        with self._lock:
            self._token = self._fetch(False)
            return self._token

    def refresh(self, refused):
        """A new token, unless another thread already replaced the one the server refused."""
        with self._lock:
            if self._token == refused:
                self._token = self._fetch(True)
            return self._token


class _SNIConnection(httplib.HTTPSConnection):
    """HTTPS to an address whose certificate names another host (kubeconfig ``tls-server-name``)."""

    def __init__(self, host, port, server_name, **kwargs):
        httplib.HTTPSConnection.__init__(self, host, port, **kwargs)
        self._server_name = server_name

    def connect(self):
        httplib.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._server_name)


def _retry_after(value):
    """Seconds from a Retry-After header (the apiserver sends whole seconds), capped; None if absent."""
    try:
        return min(float(value), 30.0) if value is not None else None
    except ValueError:
        return None


class RestClient:
    """Thread-safe JSON client for one API server."""

    def __init__(self, config, timeout=DEFAULT_TIMEOUT):
        self.config = config
        self.timeout = timeout
        split = urlsplit(config.server)
        if split.scheme not in ("https", "http"):
            raise ConnectionConfigError("API server address %r must start with https://" % config.server)
        self._scheme = split.scheme
        self._host = split.hostname
        self._port = split.port or (443 if split.scheme == "https" else 80)
        self._prefix = split.path.rstrip("/")
        self._local = threading.local()
        self._ssl = self._ssl_context() if split.scheme == "https" else None

    # -------------------------------------------------------------- transport

    def _ssl_context(self):
        cfg = self.config
        if cfg.verify:
            ctx = ssl.create_default_context(cafile=cfg.ca_file) if cfg.ca_file else ssl.create_default_context()
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if cfg.client_cert_file:
            try:
                ctx.load_cert_chain(cfg.client_cert_file, cfg.client_key_file)
            except (IOError, OSError, ssl.SSLError) as exc:
                raise ConnectionConfigError("cannot load client certificate %s / key %s: %s"
                                            % (cfg.client_cert_file, cfg.client_key_file, exc))
        return ctx

    def _new_connection(self, timeout):
        cfg = self.config
        proxy = cfg.proxy if cfg.proxy and not cfg.bypasses_proxy(self._host) else None
        if proxy:
            p = urlsplit(proxy)
            conn_host, conn_port = p.hostname, p.port or 3128
        else:
            conn_host, conn_port = self._host, self._port
        if self._scheme == "https" and cfg.tls_server_name and not proxy:
            conn = _SNIConnection(conn_host, conn_port, cfg.tls_server_name, timeout=timeout, context=self._ssl)
        elif self._scheme == "https":
            conn = httplib.HTTPSConnection(conn_host, conn_port, timeout=timeout, context=self._ssl)
        else:
            conn = httplib.HTTPConnection(conn_host, conn_port, timeout=timeout)
        if proxy:
            conn.set_tunnel(self._host, self._port, headers=cfg.proxy_headers or None)
        return conn

    def _headers(self, content_type=None):
        cfg = self.config
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if content_type:
            headers["Content-Type"] = content_type
        token = cfg.token
        if cfg.credentials is not None:
            token = cfg.credentials.token()
        elif cfg.token_file:
            try:
                with open(cfg.token_file) as f:
                    token = f.read().strip()
            except (IOError, OSError) as exc:
                raise ConnectionConfigError("cannot read token file %s: %s" % (cfg.token_file, exc))
        if token:
            headers["Authorization"] = "Bearer " + token
        elif cfg.username:
            pair = ("%s:%s" % (cfg.username, cfg.password or "")).encode("utf-8")
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        if cfg.impersonate_user:
            headers["Impersonate-User"] = cfg.impersonate_user
        return headers

    def _send(self, method, url, body, headers, timeout, keep):
        """Send one request; return the open response. ``keep`` reuses the thread's connection."""
        conn = getattr(self._local, "conn", None) if keep else None
        fresh = conn is None
        if fresh:
            conn = self._new_connection(timeout)
        else:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
        try:
            conn.putrequest(method, url, skip_accept_encoding=True)
            for k, v in headers.items():
                conn.putheader(k, v)
            for group in self.config.impersonate_groups:
                conn.putheader("Impersonate-Group", group)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
        except (socket.error, httplib.HTTPException, ssl.SSLError) as exc:
            conn.close()
            self._local.conn = None
            if not fresh and not isinstance(exc, socket.timeout):
                # A kept-alive connection the server closed while it sat idle (during a long run the main
                # thread may not call for minutes): it fails as RemoteDisconnected, a reset, a broken pipe
                # or, over TLS, an unexpected EOF. Once more, on a new connection (so never twice).
                return self._send(method, url, body, headers, timeout, keep)
            raise ApiUnavailable("cannot reach the API server at %s: %s" % (self.config.server, exc))
        if keep:
            self._local.conn = conn
        return conn, resp

    def _url(self, path, query):
        url = self._prefix + path
        if query:
            url += "?" + urlencode([(k, v) for k, v in query.items() if v is not None])
        return url

    @staticmethod
    def _error(method, path, status, raw, retry_after=None):
        """The typed ApiError for an error status (NotFound, Conflict, Forbidden, ...)."""
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"message": raw.decode("utf-8", "replace")[:500]}
        reason = body.get("reason") if isinstance(body, dict) else None
        message = body.get("message") if isinstance(body, dict) else str(body)
        cls = ERRORS_BY_STATUS.get(status, ApiError)
        text = "%s %s failed: %s %s: %s" % (method, path, status, reason or "", message)
        if cls is TooManyRequests:
            return cls(text, retry_after=retry_after, status=status, reason=reason, body=body)
        return cls(text, status=status, reason=reason, body=body)

    # -------------------------------------------------------------- public API

    def request(self, method, path, query=None, body=None, content_type="application/json", timeout=None,
                retry_for=None, warnings=None):
        """One JSON request. Returns the decoded body; raises a typed ApiError on error statuses.

        ``warnings``, a list, receives the raw values of the response's Warning headers (the
        apiserver's warnings, e.g. Pod Security's warn mode), error responses' included.

        The one retry policy: idempotent requests (GET, DELETE, or ``retry_for`` given, as for
        creates whose names are deterministic) are tried again on connection errors, 429 (after
        its Retry-After), 500, 502, 503 and 504, with capped exponential backoff, for up to
        ``retry_for`` seconds (default RETRY_SECONDS for GET and DELETE, none for other verbs).
        """
        if retry_for is None:
            retry_for = RETRY_SECONDS if method in ("GET", "DELETE") else 0
        deadline = time.monotonic() + retry_for
        backoff = 0.2
        while True:
            try:
                return self._request_once(method, path, query, body, content_type, timeout, warnings)
            except ApiError as exc:
                left = deadline - time.monotonic()
                if not exc.retryable or left <= 0:
                    raise
                wait = getattr(exc, "retry_after", None) or backoff
                time.sleep(max(0.0, min(wait, left)))
                backoff = min(backoff * 2, 5.0)

    def _request_once(self, method, path, query, body, content_type, timeout, warnings=None):
        timeout = timeout or self.timeout
        # The server-side limit, a little under the client's, so the server gives up first.
        query = dict(query or {})
        query.setdefault("timeout", "%ds" % max(1, int(timeout) - 2))
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        headers = self._headers(content_type if data else None)
        status, raw, resp_headers = self._exchange(method, self._url(path, query), data, headers, timeout)
        if status == 401 and self._refresh(headers):
            headers = self._headers(content_type if data else None)
            status, raw, resp_headers = self._exchange(method, self._url(path, query), data, headers, timeout)
        if warnings is not None:
            warnings.extend(resp_headers.get("Warning") or [])
        if status >= 400:
            raise self._error(method, path, status, raw, _retry_after(resp_headers.get("Retry-After")))
        content_type_got = resp_headers.get("Content-Type", "")
        if not raw:
            return None
        if content_type_got.startswith("application/json"):
            return json.loads(raw)
        return raw.decode("utf-8", "replace")

    def _exchange(self, method, url, data, headers, timeout):
        """Send one request on the thread's kept-alive connection; return (status, body, content type)."""
        conn, resp = self._send(method, url, data, headers, timeout, keep=True)
        try:
            raw = resp.read()
        except (socket.error, httplib.HTTPException) as exc:
            conn.close()
            self._local.conn = None
            raise ApiUnavailable("connection to %s broke while reading: %s" % (self.config.server, exc))
        if resp.will_close:
            conn.close()
            self._local.conn = None
        return resp.status, raw, {"Content-Type": resp.getheader("Content-Type", ""),
                                  "Retry-After": resp.getheader("Retry-After"),
                                  # Several Warning headers come joined by ", ", as RFC 7230 allows.
                                  "Warning": [w for w in [resp.getheader("Warning")] if w]}

    def _refresh(self, sent_headers):
        """After a 401: get a new token if the credentials can. True if the request is worth once more."""
        creds = self.config.credentials
        if creds is None:
            return bool(self.config.token_file)   # a rotated token file is re-read for the retry
        refused = (sent_headers.get("Authorization") or "")[len("Bearer "):]
        try:
            return bool(creds.refresh(refused))
        except NodeopsError as exc:
            raise ConnectionConfigError("the API server refused the token and a new one could not be had: %s"
                                        % exc.msg)

    def watch(self, path, query, timeout):
        """Open a watch. ``query`` should carry ``timeoutSeconds``; ``timeout`` is the client's limit."""
        query = dict(query, watch="true")
        headers = self._headers()
        conn, resp = self._send("GET", self._url(path, query), None, headers, timeout, keep=False)
        if resp.status == 401 and self._refresh(headers):
            resp.read()
            conn.close()
            conn, resp = self._send("GET", self._url(path, query), None, self._headers(), timeout, keep=False)
        if resp.status >= 400:
            raw = resp.read()
            conn.close()
            raise self._error("GET", path, resp.status, raw)
        return WatchStream(conn, resp, path)

    # convenience wrappers for the few resources the collection uses

    @staticmethod
    def core_path(resource, namespace=None, name=None, sub=None):
        parts = ["/api/v1"]
        if namespace:
            parts.append("namespaces/" + quote(namespace, safe=""))
        parts.append(resource)
        if name:
            parts.append(quote(name, safe=""))
        if sub:
            parts.append(sub)
        return "/".join(parts)

    @staticmethod
    def group_path(group_version, resource, namespace=None, name=None, sub=None):
        parts = ["/apis/" + group_version]
        if namespace:
            parts.append("namespaces/" + quote(namespace, safe=""))
        parts.append(resource)
        if name:
            parts.append(quote(name, safe=""))
        if sub:
            parts.append(sub)
        return "/".join(parts)

    def get(self, path, query=None, timeout=None, retry_for=None):
        return self.request("GET", path, query=query, timeout=timeout, retry_for=retry_for)

    def get_or_none(self, path, query=None):
        try:
            return self.get(path, query)
        except NotFound:
            return None

    def create(self, path, body, dry_run=False, retry_for=0, warnings=None):
        """POST. ``retry_for`` only where a retried create is safe: a deterministic name, so a
        create whose answer was lost comes back as Conflict, never as a second object.
        ``warnings``: see ``request``."""
        return self.request("POST", path, query={"dryRun": "All"} if dry_run else None, body=body,
                            retry_for=retry_for, warnings=warnings)

    def delete(self, path, propagation="Background", grace_period=None, retry_for=None, preconditions=None,
               missing_ok=True):
        """DELETE; an object that is gone already is no error (the caller wanted it gone; with ``missing_ok``
        false, NotFound is raised: the caller counts what it deleted). ``retry_for``
        bounds the retries (RETRY_SECONDS by default), for a caller with less time than that left.
        ``preconditions`` (uid, resourceVersion): the apiserver deletes only that object (else Conflict)."""
        opts = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        if grace_period is not None:
            opts["gracePeriodSeconds"] = grace_period
        if preconditions:
            opts["preconditions"] = preconditions
        try:
            return self.request("DELETE", path, body=opts, retry_for=retry_for)
        except NotFound:
            if not missing_ok:
                raise
            return None

    def apply(self, path, body, field_manager, dry_run=False):
        """Server-side apply, taking over conflicting fields (force), as kubernetes.core's apply does."""
        query = {"fieldManager": field_manager, "force": "true"}
        if dry_run:
            query["dryRun"] = "All"
        return self.request("PATCH", path, query=query, body=body, content_type="application/apply-patch+yaml")

    def merge_patch(self, path, body):
        return self.request("PATCH", path, body=body, content_type="application/merge-patch+json")


class WatchStream:
    """Events of one watch request. ``close()`` may be called from another thread to stop it."""

    def __init__(self, conn, resp, path):
        self._conn = conn
        self._resp = resp
        self._path = path
        self.closed = False

    def __iter__(self):
        try:
            while not self.closed:
                try:
                    line = self._resp.readline()
                except (socket.timeout, socket.error, httplib.HTTPException, ValueError, AttributeError) as exc:
                    # AttributeError: http.client after close() from another thread.
                    if self.closed:
                        return
                    raise ApiUnavailable("watch %s broke: %s" % (self._path, exc))
                if not line:
                    return
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    if self.closed:
                        return  # a line cut short by close()
                    raise ApiUnavailable("watch %s sent a truncated event" % self._path)
                yield event
        finally:
            self.close()

    def close(self):
        self.closed = True
        sock = self._conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except (OSError, socket.error):
                pass
        self._conn.close()
