# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket
import ssl

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._ansible import connection
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import ConnectionConfigError
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.api import Credentials, ConnectionConfig


def test_argument_spec_matches_kubernetes_core():
    """Same names, types, aliases and no_log as kubernetes.core, so module_defaults carry over."""
    core = pytest.importorskip("ansible_collections.kubernetes.core.plugins.module_utils.args_common")

    def normalise(spec):
        out = {}
        for name, opts in spec.items():
            # kubernetes.core 5.4.2 and 6.3.0 dropped kubeconfig's no_log (its PR 1014); it stays here, and
            # edge.mask_only_credentials unmasks all but its credentials once the module has started.
            no_log = bool(opts.get("no_log")) and name != "kubeconfig"
            out[name] = (opts.get("type", "str"), tuple(sorted(opts.get("aliases", []))),
                         no_log, opts.get("elements"),
                         normalise(opts["options"]) if "options" in opts else None)
        return out

    assert normalise(connection.AUTH_ARG_SPEC) == normalise(core.AUTH_ARG_SPEC)


@pytest.mark.parametrize("params, environ, expected", [
    ({}, {}, {}),
    ({"host": "https://a"}, {"K8S_AUTH_HOST": "https://b"}, {"host": "https://a"}),
    ({}, {"K8S_AUTH_HOST": "https://b", "K8S_AUTH_API_KEY": "t"}, {"host": "https://b", "api_key": "t"}),
    ({}, {"K8S_AUTH_VERIFY_SSL": "no"}, {"validate_certs": False}),
    ({}, {"K8S_AUTH_VALIDATE_CERTS": "False"}, {"validate_certs": False}),
    ({}, {"K8S_AUTH_VERIFY_SSL": "yes"}, {"validate_certs": True}),
    ({}, {"K8S_AUTH_SSL_CA_CERT": "/ca"}, {"ca_cert": "/ca"}),
    ({}, {"K8S_AUTH_CERT_FILE": "/c", "K8S_AUTH_KEY_FILE": "/k"}, {"client_cert": "/c", "client_key": "/k"}),
    ({}, {"K8S_AUTH_IMPERSONATE_GROUPS": "a,b,,c"}, {"impersonate_groups": ["a", "b", "c"]}),
    ({}, {"K8S_AUTH_PROXY_HEADERS_USER_AGENT": "ua"}, {"proxy_headers": {"user_agent": "ua"}}),
    ({"validate_certs": False}, {"K8S_AUTH_VERIFY_SSL": "yes"}, {"validate_certs": False}),
    ({"name": "not-a-connection-option"}, {}, {}),
])
def test_auth_settings_merges_params_over_environment(params, environ, expected):
    assert connection.auth_settings(params, environ) == expected


def test_host_with_token_needs_no_kubeconfig():
    cfg = connection.connection_config(
        {"host": "https://api.example:6443/", "api_key": "secret", "validate_certs": False}, environ={})
    assert (cfg.server, cfg.token, cfg.verify) == ("https://api.example:6443", "secret", False)


def test_missing_kubeconfig_is_a_clear_error(tmp_path):
    pytest.importorskip("kubernetes")
    missing = str(tmp_path / "nope")
    with pytest.raises(ConnectionConfigError) as info:
        connection.connection_config({"kubeconfig": missing}, environ={})
    assert "kubeconfig" in info.value.msg and missing in info.value.msg


def test_kubeconfig_dict_and_context_are_honoured():
    pytest.importorskip("kubernetes")
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "current-context": "one",
        "clusters": [{"name": "c1", "cluster": {"server": "https://one:1"}},
                     {"name": "c2", "cluster": {"server": "https://two:2", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u1", "user": {"token": "t1"}}, {"name": "u2", "user": {"token": "t2"}}],
        "contexts": [{"name": "one", "context": {"cluster": "c1", "user": "u1"}},
                     {"name": "two", "context": {"cluster": "c2", "user": "u2"}}],
    }
    cfg = connection.connection_config({"kubeconfig": kubeconfig, "context": "two"}, environ={})
    assert (cfg.server, cfg.token, cfg.verify) == ("https://two:2", "t2", False)
    # An explicit option still wins over the kubeconfig.
    cfg = connection.connection_config({"kubeconfig": kubeconfig, "api_key": "override"}, environ={})
    assert (cfg.server, cfg.token) == ("https://one:1", "override")


def test_proxy_headers_become_http_headers():
    cfg = connection.connection_config({"host": "https://h", "api_key": "t", "proxy": "http://p:3128",
                                        "proxy_headers": {"proxy_basic_auth": "u:p", "user_agent": "x"}},
                                       environ={})
    assert cfg.proxy_headers == {"Proxy-Authorization": "Basic dTpw", "User-Agent": "x"}


def test_connection_config_requires_a_server():
    with pytest.raises(ConnectionConfigError):
        ConnectionConfig(server="")


def test_proxy_basic_auth_goes_to_the_proxy_never_to_the_api_server():
    """As kubernetes.core does (urllib3 make_headers into the proxy headers)."""
    pytest.importorskip("kubernetes")
    kubeconfig = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
                  "clusters": [{"name": "k", "cluster": {"server": "https://k:1"}}],
                  "users": [{"name": "u", "user": {}}],
                  "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}
    cfg = connection.connection_config({"kubeconfig": kubeconfig, "proxy": "http://p:3128",
                                        "proxy_headers": {"basic_auth": "ann:s3cret"}}, environ={})
    assert (cfg.username, cfg.password) == (None, None)
    assert cfg.proxy_headers == {"Authorization": "Basic YW5uOnMzY3JldA=="}


def test_tls_server_name_is_taken_from_the_kubeconfig():
    pytest.importorskip("kubernetes")
    kubeconfig = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
                  "clusters": [{"name": "k", "cluster": {"server": "https://10.0.0.1:6443",
                                                         "tls-server-name": "api.internal"}}],
                  "users": [{"name": "u", "user": {"token": "t"}}],
                  "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}
    cfg = connection.connection_config({"kubeconfig": kubeconfig}, environ={})
    assert cfg.tls_server_name == "api.internal"


def test_credentials_refresh_once_and_only_the_token_that_was_refused():
    calls = []

    def fetch(force):
        calls.append(force)
        return "t%d" % sum(calls)

    creds = Credentials(fetch)
    assert creds.token() == "t0"
    assert creds.refresh("t0") == "t1"
    assert creds.refresh("t0") == "t1"      # another thread's 401 on the old token: no second exec run
    assert calls == [False, True]


class _FakeResponse:
    status = 200
    will_close = False

    def read(self):
        return b'{"ok": true}'

    @staticmethod
    def getheader(name, default=None):
        return "application/json" if name == "Content-Type" else default


class _FakeConnection:
    """Stands in for http.client's connection: ``fail`` is raised by the request it is given."""

    def __init__(self, log, fail=None):
        self.log, self.fail, self.sock, self.timeout, self.closed = log, fail, None, None, False

    def putrequest(self, method, url, **kwargs):
        self.log.append((id(self), method, url.split("?")[0]))

    def putheader(self, *args):
        pass

    def endheaders(self, body=None):
        pass

    def getresponse(self):
        if self.fail is not None:
            exc, self.fail = self.fail, None
            raise exc
        return _FakeResponse()

    def close(self):
        self.closed = True


@pytest.mark.parametrize("stale_error", [
    ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),   # what the apiserver's idle close looks like
    ConnectionResetError(104, "reset"),
    BrokenPipeError(32, "broken pipe"),
])
def test_a_kept_alive_connection_closed_while_idle_is_retried_once_on_a_new_one(monkeypatch, stale_error):
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.api import RestClient

    log, made = [], []
    client = RestClient(ConnectionConfig("https://127.0.0.1:1"))

    def new_connection(timeout):
        made.append(_FakeConnection(log))
        return made[-1]

    monkeypatch.setattr(client, "_new_connection", new_connection)
    assert client.get("/version") == {"ok": True}
    made[0].fail = stale_error           # the server closed it while the run went on
    assert client.get("/version") == {"ok": True}
    assert len(made) == 2 and made[0].closed
    assert [entry[0] for entry in log] == [id(made[0]), id(made[0]), id(made[1])]
    # The new connection is kept for the next request.
    client.get("/version")
    assert len(made) == 2


def test_a_timeout_or_a_failing_new_connection_is_not_retried_by_the_transport(monkeypatch):
    """The transport's own once-more is for a stale kept-alive connection only; the retry policy
    (off here: retry_for=0) is what retries an unavailable server."""
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import ApiUnavailable
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.api import RestClient

    log, made = [], []
    client = RestClient(ConnectionConfig("https://127.0.0.1:1"))
    monkeypatch.setattr(client, "_new_connection", lambda timeout: made.append(_FakeConnection(log)) or made[-1])
    client.get("/version")
    made[0].fail = socket.timeout("timed out")   # the server may still be working on it: not sent twice
    with pytest.raises(ApiUnavailable):
        client.request("GET", "/version", retry_for=0)
    assert len(made) == 1
    monkeypatch.setattr(client, "_new_connection",
                        lambda timeout: made.append(_FakeConnection(log, ConnectionResetError(104, "reset")))
                        or made[-1])
    with pytest.raises(ApiUnavailable):
        client.request("GET", "/version", retry_for=0)       # a fresh connection that fails: not retried
    assert len(made) == 2


@pytest.mark.parametrize("statuses, expected_tokens, ok", [
    ([200], ["old"], True),
    ([401, 200], ["old", "new"], True),
    ([401, 401], ["old", "new"], False),      # refreshed once only, then the 401 stands
])
def test_a_401_refreshes_the_credentials_once_and_retries(monkeypatch, statuses, expected_tokens, ok):
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import ApiError
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.api import RestClient

    tokens = iter(["old", "new", "newer"])
    current = {}

    def fetch(force):
        if force or not current:
            current["t"] = next(tokens)
        return current["t"]

    client = RestClient(ConnectionConfig("https://127.0.0.1:1", credentials=Credentials(fetch)))
    sent, answers = [], iter(statuses)

    def exchange(method, url, data, headers, timeout):
        sent.append(headers["Authorization"][len("Bearer "):])
        status = next(answers)
        body = b'{"ok": true}' if status == 200 else b'{"reason": "Unauthorized"}'
        return status, body, {"Content-Type": "application/json", "Retry-After": None}

    monkeypatch.setattr(client, "_exchange", exchange)
    if ok:
        assert client.get("/version") == {"ok": True}
    else:
        with pytest.raises(ApiError) as info:
            client.get("/version")
        assert info.value.status == 401
    assert sent == expected_tokens


def _scripted(monkeypatch, client, answers, sleeps):
    """Serve ``answers`` (status, Retry-After) in turn; record the policy's sleeps instead of sleeping."""
    answers = iter(answers)
    sent = []

    def exchange(method, url, data, headers, timeout):
        sent.append(method)
        status, retry_after = next(answers)
        body = b'{"ok": true}' if status < 400 else b'{"reason": "x", "message": "m"}'
        return status, body, {"Content-Type": "application/json", "Retry-After": retry_after}

    monkeypatch.setattr(client, "_exchange", exchange)
    monkeypatch.setattr("ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.api.time.sleep",
                        sleeps.append)
    return sent


@pytest.mark.parametrize("method, answers, ok, expected_sleeps", [
    ("GET", [(503, None), (500, None), (200, None)], True, [0.2, 0.4]),
    ("GET", [(429, "3"), (200, None)], True, [3.0]),                   # Retry-After is obeyed
    ("DELETE", [(504, None), (200, None)], True, [0.2]),
    ("GET", [(403, None)], False, []),                                  # permanent: not retried
    ("GET", [(404, None)], False, []),
    ("PATCH", [(503, None)], False, []),                                # not idempotent: not retried
])
def test_one_retry_policy(monkeypatch, method, answers, ok, expected_sleeps):
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import ApiError
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.api import RestClient

    client = RestClient(ConnectionConfig("https://127.0.0.1:1", token="t"))
    sleeps = []
    sent = _scripted(monkeypatch, client, answers, sleeps)
    if ok:
        assert client.request(method, "/x") == {"ok": True}
    else:
        with pytest.raises(ApiError):
            client.request(method, "/x")
    assert sleeps == expected_sleeps
    assert len(sent) == len(answers)


@pytest.mark.parametrize("status, name", [(401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"),
                                          (409, "Conflict"), (410, "WatchExpired"), (422, "Invalid"),
                                          (429, "TooManyRequests"), (500, "ApiError")])
def test_errors_are_typed_by_status(status, name):
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.api import RestClient

    exc = RestClient._error("GET", "/x", status, b'{"reason": "r", "message": "m"}', retry_after=2.0)
    assert type(exc).__name__ == name and exc.status == status


# A kubeconfig as clusters hand them out: its names and namespace show up in results, its credentials must not.
SECRETS = {
    "token": "tok-alice-8f2c", "password": "pw-bob-91ae", "client-key-data": "S0VZLWRhdGE=",
    "client-certificate-data": "Q0VSVC1kYXRh", "certificate-authority-data": "Q0EtZGF0YQ==",
    "id-token": "oidc-id-3b1f", "refresh-token": "oidc-refresh-77aa", "access-token": "gcp-access-5d0e",
    "client-secret": "oidc-client-secret-c4", "exec-secret": "aws-secret-9e1d", "exec-session": "aws-session-02bb",
}
PUBLIC = ["prod-eu", "prod-eu-admin", "alice", "bob", "carol", "dave", "team-a", "https://prod-eu.example:6443",
          "kubectl-oidc", "https://issuer.example", "prod-profile", "aws", "eks", "get-token", "/tmp/token"]
KUBECONFIG = {
    "apiVersion": "v1", "kind": "Config", "current-context": "prod-eu-admin", "preferences": {},
    "clusters": [{"name": "prod-eu", "cluster": {"server": "https://prod-eu.example:6443",
                                                 "certificate-authority-data": SECRETS["certificate-authority-data"]}}],
    "contexts": [{"name": "prod-eu-admin", "context": {"cluster": "prod-eu", "user": "alice", "namespace": "team-a"}}],
    "users": [
        {"name": "alice", "user": {"token": SECRETS["token"], "tokenFile": "/tmp/token"}},
        {"name": "bob", "user": {"username": "bob", "password": SECRETS["password"],
                                 "client-key-data": SECRETS["client-key-data"],
                                 "client-certificate-data": SECRETS["client-certificate-data"]}},
        {"name": "carol", "user": {"auth-provider": {"name": "oidc", "config": {
            "client-id": "kubectl-oidc", "idp-issuer-url": "https://issuer.example", "id-token": SECRETS["id-token"],
            "refresh-token": SECRETS["refresh-token"], "access-token": SECRETS["access-token"],
            "client-secret": SECRETS["client-secret"]}}}},
        {"name": "dave", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws", "args": ["eks", "get-token"],
            "env": [{"name": "AWS_PROFILE", "value": "prod-profile"},
                    {"name": "AWS_SECRET_ACCESS_KEY", "value": SECRETS["exec-secret"]},
                    {"name": "AWS_SESSION_TOKEN", "value": SECRETS["exec-session"]}]}}},
    ],
}


def test_only_the_credentials_of_a_kubeconfig_dict_are_masked():
    masked = connection.kubeconfig_secrets(KUBECONFIG)
    assert masked == set(SECRETS.values())
    assert not masked & set(PUBLIC)


@pytest.mark.parametrize("kubeconfig", ["/home/me/.kube/config", None, {}, {"users": None}, {"users": [{"user": {"token": ""}}]}])
def test_a_kubeconfig_path_or_one_without_credentials_masks_nothing(kubeconfig):
    assert connection.kubeconfig_secrets(kubeconfig) == set()


def test_connection_secrets_cover_the_kubeconfig_dict_and_credentials_from_the_environment():
    """api_key and password are no_log options; from K8S_AUTH_* they reach no argument spec, so they are added."""
    settings = connection.auth_settings({"kubeconfig": KUBECONFIG, "context": "prod-eu-admin"},
                                        {"K8S_AUTH_API_KEY": "env-token-1c", "K8S_AUTH_PASSWORD": "env-pw-2d",
                                         "K8S_AUTH_PROXY_HEADERS_PROXY_BASIC_AUTH": "me:proxy-pw-3e",
                                         "K8S_AUTH_HOST": "https://prod-eu.example:6443", "K8S_AUTH_USERNAME": "me"})
    assert connection.connection_secrets(settings) == set(SECRETS.values()) | {"env-token-1c", "env-pw-2d",
                                                                               "me:proxy-pw-3e"}
    assert connection.connection_secrets({"kubeconfig": "/home/me/.kube/config", "context": "prod-eu-admin"}) == set()


def _kubeconfig_for(server, user):
    return {"apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "k", "cluster": {"server": server}}], "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}


@pytest.mark.parametrize("settings, warned", [
    ({"host": "http://api.example:8080", "api_key": "tok-9"}, "a bearer token"),
    ({"host": "HTTP://api.example:8080", "api_key": "tok-9"}, "a bearer token"),
    ({"host": "http://api.example:8080", "username": "u", "password": "pw-9"}, "a password"),
    ({"kubeconfig": _kubeconfig_for("http://api.example:8080", {"token": "tok-9"})}, "a bearer token"),
    # The kubeconfig's server, the option's token.
    ({"kubeconfig": _kubeconfig_for("http://api.example:8080", {}), "api_key": "tok-9"}, "a bearer token"),
    ({"host": "https://api.example:6443", "api_key": "tok-9"}, None),
    ({"kubeconfig": _kubeconfig_for("https://api.example:6443", {"token": "tok-9"})}, None),
    ({"kubeconfig": _kubeconfig_for("http://api.example:8080", {})}, None),
    ({"host": "http://api.example:8080", "client_cert": "/c", "client_key": "/k"}, None),
])
def test_a_token_sent_to_an_http_api_server_is_warned_about(settings, warned):
    if "kubeconfig" in settings:
        pytest.importorskip("kubernetes")
    message = connection.cleartext_credentials_warning(connection.connection_config(settings, environ={}))
    if warned is None:
        assert message is None
    else:
        assert "http://api.example:8080" in message.lower() and warned in message and "clear text" in message
        assert "tok-9" not in message and "pw-9" not in message


def test_a_password_in_a_kubeconfig_url_is_masked_and_the_host_is_not():
    kubeconfig = {"clusters": [{"name": "prod", "cluster": {"server": "https://10.0.0.1:6443",
                                                            "proxy-url": "http://ops:s3cret@proxy.example:3128"}}]}
    masked = connection.kubeconfig_secrets(kubeconfig)
    assert "s3cret" in masked and "ops:s3cret" in masked
    assert not any("proxy.example" in m or "10.0.0.1" in m for m in masked)
    assert connection.url_userinfo_secrets("https://10.0.0.1:6443/api") == set()
