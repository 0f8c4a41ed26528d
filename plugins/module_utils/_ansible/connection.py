# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options shared by every module, matching kubernetes.core.

The option names, aliases and ``K8S_AUTH_*`` environment variables are the
ones kubernetes.core uses, so an AWX/AAP "OpenShift or Kubernetes API Bearer
Token" credential and ``module_defaults`` for ``group/kubernetes.core.k8s``
work unchanged. The order in which settings are looked up follows
kubernetes.core too:

1. module options, then ``K8S_AUTH_<OPTION>`` (or the kubernetes client's
   name, e.g. ``K8S_AUTH_VERIFY_SSL``) for every option left unset;
2. if ``host`` comes with complete credentials, nothing else is loaded;
3. else if ``kubeconfig`` or ``context`` is set, that kubeconfig is loaded;
4. else in-cluster configuration, then the default kubeconfig.

kubernetes.core's own client code is not imported: it returns the
``kubernetes`` package's DynamicClient, and our engine must also run in a pod
that lacks that package (see _kube/api.py). We only borrow the ``kubernetes``
package's kubeconfig loader, which handles contexts and exec plugins.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import os
import re
from urllib.parse import urlsplit

from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import (
    ConnectionConfigError,
    MissingDependency,
)
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.api import ConnectionConfig, Credentials

AUTH_PROXY_HEADERS_SPEC = dict(
    proxy_basic_auth=dict(type="str", no_log=True),
    basic_auth=dict(type="str", no_log=True),
    user_agent=dict(type="str"),
)

AUTH_ARG_SPEC = dict(
    # no_log keeps all of a kubeconfig dict out of what Ansible writes before our code runs (the "Invoked with"
    # journal line, a failed argument check). edge.run_module then unmasks all but its credentials, so its
    # names (and node names and namespaces that contain them) stay readable in results.
    kubeconfig=dict(type="raw", no_log=True),
    context=dict(type="str"),
    host=dict(type="str"),
    api_key=dict(type="str", no_log=True),
    username=dict(type="str"),
    password=dict(type="str", no_log=True),
    validate_certs=dict(type="bool", aliases=["verify_ssl"]),
    ca_cert=dict(type="path", aliases=["ssl_ca_cert"]),
    client_cert=dict(type="path", aliases=["cert_file"]),
    client_key=dict(type="path", aliases=["key_file"]),
    proxy=dict(type="str"),
    no_proxy=dict(type="str"),
    proxy_headers=dict(type="dict", options=AUTH_PROXY_HEADERS_SPEC),
    persist_config=dict(type="bool"),
    impersonate_user=dict(type="str"),
    impersonate_groups=dict(type="list", elements="str"),
)

# Option name -> the kubernetes client's name, which K8S_AUTH_* also accepts.
CLIENT_NAMES = dict(validate_certs="verify_ssl", ca_cert="ssl_ca_cert", client_cert="cert_file",
                    client_key="key_file")

FALSE_STRINGS = ("0", "false", "no", "off")

# Module option -> ConnectionConfig field, for the options that override a kubeconfig.
OPTION_FIELDS = dict(host="server", api_key="token", username="username", password="password",
                     validate_certs="verify", ca_cert="ca_file", client_cert="client_cert_file",
                     client_key="client_key_file", proxy="proxy", no_proxy="no_proxy",
                     impersonate_user="impersonate_user", impersonate_groups="impersonate_groups")


# kubeconfig keys whose string value is a credential, wherever they sit (user, auth-provider config, cluster).
# certificate-authority-data is public, but masked as kubernetes.core does: one rule for both collections'
# module_defaults, and a base64 blob never matches a name a result shows.
KUBECONFIG_SECRET_KEYS = frozenset((
    "token", "password", "secret", "client-key-data", "client-certificate-data", "certificate-authority-data",
    "id-token", "refresh-token", "access-token", "client-secret",
))

# URLs that may carry credentials in their userinfo (http://user:password@proxy:3128).
URL_KEYS = frozenset(("server", "proxy-url"))

# An exec plugin's env entry whose name says it holds a credential (AWS_SECRET_ACCESS_KEY, VAULT_TOKEN...).
SECRET_ENV_NAME = re.compile(r"token|secret|passw|key|credential", re.IGNORECASE)


def auth_settings(params, environ=None):
    """Merge module options with the ``K8S_AUTH_*`` environment. Pure.

    ``params`` may hold other module options too; only connection options
    are read. Returns a dict with one key per connection option that is set.
    """
    environ = os.environ if environ is None else environ
    settings = {}
    for name, spec in AUTH_ARG_SPEC.items():
        value = params.get(name)
        if value is None and name == "proxy_headers":
            headers = {}
            for key in AUTH_PROXY_HEADERS_SPEC:
                env_value = environ.get("K8S_AUTH_PROXY_HEADERS_" + key.upper())
                if env_value is not None:
                    headers[key] = env_value
            value = headers or None
        elif value is None:
            value = environ.get("K8S_AUTH_" + name.upper())
            if value is None and name in CLIENT_NAMES:
                value = environ.get("K8S_AUTH_" + CLIENT_NAMES[name].upper())
            if value is not None:
                if spec.get("type") == "bool":
                    value = value.strip().lower() not in FALSE_STRINGS
                elif spec.get("type") == "list":
                    value = [item for item in value.split(",") if item]
        if value is not None:
            settings[name] = value
    return settings


def kubeconfig_secrets(kubeconfig):
    """The credential strings of a kubeconfig given as a dict, for Ansible to mask. Pure.

    A path gives nothing: its content never reaches the module's parameters or result.
    """
    found = set()
    _collect_secrets(kubeconfig, found)
    found.discard("")  # Ansible would mask "" everywhere, as between every two characters
    return found


def _collect_secrets(node, found):
    if isinstance(node, list):
        for item in node:
            _collect_secrets(item, found)
    elif isinstance(node, dict):
        if _is_secret_env(node):
            found.add(node["value"])
        for key, value in node.items():
            if key in KUBECONFIG_SECRET_KEYS and isinstance(value, str):
                found.add(value)
            elif key in URL_KEYS and isinstance(value, str):
                found.update(url_userinfo_secrets(value))
            else:
                _collect_secrets(value, found)


def url_userinfo_secrets(url):
    """The password of a ``scheme://user:password@host`` URL (a server or proxy-url), and the whole userinfo.
    Pure."""
    netloc = url.split("://", 1)[-1].split("/", 1)[0]
    if "@" not in netloc:
        return set()
    userinfo = netloc.rsplit("@", 1)[0]
    secrets = {userinfo}
    if ":" in userinfo:
        secrets.add(userinfo.split(":", 1)[1])
    return set(s for s in secrets if s)


def _is_secret_env(node):
    # The exec env shape: {name: ..., value: ...}. Only the value is secret; its name is shown.
    return (set(node) == {"name", "value"} and isinstance(node["name"], str)
            and isinstance(node["value"], str) and bool(SECRET_ENV_NAME.search(node["name"])))


def connection_secrets(settings):
    """Every credential in merged settings (from ``auth_settings``) that Ansible must mask. Pure.

    api_key and password are no_log options, but from ``K8S_AUTH_*`` they reach no argument spec.
    """
    found = kubeconfig_secrets(settings.get("kubeconfig"))
    headers = settings.get("proxy_headers") or {}
    for value in (settings.get("api_key"), settings.get("password"), headers.get("basic_auth"),
                  headers.get("proxy_basic_auth")):
        if value:
            found.add(value)
    return found


def cleartext_credentials_warning(config):
    """A warning when a ConnectionConfig would send a token or password over plain http://, else None. Pure."""
    split = urlsplit(config.server)
    if split.scheme.lower() != "http":
        return None
    if config.token or config.token_file or config.credentials:
        what = "a bearer token"
    elif config.password:
        what = "a password (basic authentication)"
    else:
        return None
    # netloc without any user:password@ part, so the warning cannot carry a secret itself.
    return ("the API server http://%s is reached over plain http, so %s would cross the network in clear text; "
            "use its https:// address" % (split.netloc.rpartition("@")[2], what))


def _has_credentials(settings):
    return bool(settings.get("host") and (
        settings.get("api_key")
        or (settings.get("username") and settings.get("password"))
        or (settings.get("client_cert") and settings.get("client_key"))
    ))


def _load_kubeconfig(settings):
    """A ``kubernetes`` Configuration loaded from the kubeconfig the settings name (runs exec plugins)."""
    try:
        from kubernetes import client as k8s_client
        from kubernetes import config as k8s_config
    except ImportError:
        raise MissingDependency(
            "the Python package 'kubernetes' is needed to read a kubeconfig; install it with "
            "'pip install kubernetes', or pass host with api_key or client_cert/client_key")
    configuration = k8s_client.Configuration()
    kubeconfig = settings.get("kubeconfig")
    options = dict(context=settings.get("context"), client_configuration=configuration,
                   persist_config=bool(settings.get("persist_config")))
    try:
        if isinstance(kubeconfig, dict):
            k8s_config.load_kube_config_from_dict(config_dict=kubeconfig, **options)
        else:
            k8s_config.load_kube_config(config_file=kubeconfig, **options)
    except (k8s_config.ConfigException, IOError, OSError, ValueError, TypeError) as exc:
        if isinstance(kubeconfig, dict):
            where = "the kubeconfig given as a dictionary"
        elif kubeconfig:
            where = "kubeconfig %s" % kubeconfig
        else:
            where = "the default kubeconfig (KUBECONFIG or ~/.kube/config)"
        raise ConnectionConfigError("cannot load %s (context %r): %s" % (where, settings.get("context"), exc))
    return configuration


def _bearer(configuration):
    # The key was "authorization" in older kubernetes clients, "BearerToken" now.
    api_key = configuration.api_key or {}
    auth = api_key.get("BearerToken") or api_key.get("authorization")
    if not auth:
        return None
    return auth[len("Bearer "):] if auth.startswith("Bearer ") else auth


def kubeconfig_credentials(settings, configuration):
    """Credentials that follow the kubeconfig's token through its lifetime.

    Before each request the ``kubernetes`` package's own refresh hook runs (it runs the exec
    plugin, e.g. ``aws eks get-token``, again when the token it gave has expired); after a 401
    the kubeconfig is loaded anew, which runs the exec plugin whatever the expiry said.
    """
    holder = {"configuration": configuration}

    def fetch(force):
        if force:
            holder["configuration"] = _load_kubeconfig(settings)
        current = holder["configuration"]
        hook = getattr(current, "refresh_api_key_hook", None)
        if hook is not None:
            hook(current)
        return _bearer(current)

    return Credentials(fetch)


def _from_kubeconfig(settings):
    configuration = _load_kubeconfig(settings)
    token = _bearer(configuration)
    return dict(server=configuration.host, ca_file=configuration.ssl_ca_cert,
                verify=configuration.verify_ssl, client_cert_file=configuration.cert_file,
                client_key_file=configuration.key_file, token=token,
                username=configuration.username or None, password=configuration.password or None,
                proxy=configuration.proxy, tls_server_name=getattr(configuration, "tls_server_name", None),
                credentials=kubeconfig_credentials(settings, configuration) if token else None)


def _proxy_headers(spec):
    """Headers for the proxy's CONNECT, as kubernetes.core sends them (urllib3's make_headers):
    they go to the proxy only, never to the API server."""
    headers = {}
    if spec.get("basic_auth"):
        headers["Authorization"] = "Basic " + base64.b64encode(spec["basic_auth"].encode("utf-8")).decode("ascii")
    if spec.get("proxy_basic_auth"):
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(
            spec["proxy_basic_auth"].encode("utf-8")).decode("ascii")
    if spec.get("user_agent"):
        headers["User-Agent"] = spec["user_agent"]
    return headers


def connection_config(settings, environ=None):
    """Turn merged settings (from ``auth_settings``) into a ConnectionConfig."""
    environ = os.environ if environ is None else environ
    if _has_credentials(settings):
        base = {}
    elif settings.get("kubeconfig") or settings.get("context"):
        base = _from_kubeconfig(settings)
    elif environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists(
            "/var/run/secrets/kubernetes.io/serviceaccount/token"):
        base = ConnectionConfig.in_cluster().to_dict()
    else:
        base = _from_kubeconfig(settings)

    merged = dict(base)
    for option, field in OPTION_FIELDS.items():
        if settings.get(option) is not None:
            merged[field] = settings[option]
    if settings.get("api_key"):
        # An explicit token replaces whatever the kubeconfig would have sent.
        merged.pop("token_file", None)
        merged.pop("credentials", None)
    if settings.get("proxy_headers"):
        merged["proxy_headers"] = _proxy_headers(settings["proxy_headers"])
    if merged.get("verify") is None:
        merged["verify"] = True
    return ConnectionConfig(**merged)
