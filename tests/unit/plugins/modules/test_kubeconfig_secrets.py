# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A kubeconfig given as a dict, through Ansible's own exit_json (not patched): only its credentials are masked.

broadcast_info runs against a stub API server on plain http://, so the whole path is real: the argument spec,
the kubeconfig loader, the request with the kubeconfig's token, Ansible's masking of the result and its warnings.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import threading

from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from module_args import patch_module_args

from ansible_collections.nodeops.kubernetes.plugins.modules import broadcast_info

TOKEN = "tok-4a7f1c9e2b"
KEY_DATA = base64.b64encode(b"-----BEGIN EC PRIVATE KEY-----\nnot-a-real-key\n").decode("ascii")
# kind names its cluster, context, user and nodes alike; with kubeconfig no_log, "kind-dev" was masked inside
# every node name ("********-control-plane"), and the namespace everywhere it appeared.
NAME = "kind-dev"
NODE = "kind-dev-control-plane"
NAMESPACE = "team-a"
LABELS = {"app.kubernetes.io/managed-by": "nodeops.kubernetes", "nodeops.io/kind": "run-record",
          "nodeops.io/broadcast": "prune", "nodeops.io/run-id": "r1"}
LISTS = {
    "/api/v1/namespaces/%s/configmaps" % NAMESPACE: [
        {"metadata": {"name": "nodeops-run-prune-r1", "labels": LABELS},
         "data": {"state": "finished", "failed_nodes": json.dumps([NODE])}}],
    "/apis/batch/v1/namespaces/%s/cronjobs" % NAMESPACE: [],
    "/api/v1/namespaces/%s/pods" % NAMESPACE: [
        {"metadata": {"name": "prune-r1-0c1d", "labels": LABELS, "annotations": {"nodeops.io/node": NODE}},
         "status": {"phase": "Failed"}}],
}


class _StubApi(BaseHTTPRequestHandler):
    seen_authorization = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.seen_authorization.append(self.headers.get("Authorization"))
        items = LISTS.get(self.path.split("?")[0])
        body = json.dumps({"items": items or [], "metadata": {"resourceVersion": "1"}}).encode()
        self.send_response(200 if items is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def module_process(monkeypatch):
    """Run as in a module's own process. Once a test has imported controller code (a filter plugin does),
    Ansible sends warnings to the controller's display instead of into the module result (ansible-core 2.19
    and newer; before that they always went into the result)."""
    try:
        from ansible.module_utils import _internal
    except ImportError:
        return
    monkeypatch.setattr(_internal, "is_controller", False)


@pytest.fixture
def stub_api():
    server = HTTPServer(("127.0.0.1", 0), _StubApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _StubApi.seen_authorization = []
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _kubeconfig(server):
    return {"apiVersion": "v1", "kind": "Config", "current-context": NAME,
            "clusters": [{"name": NAME, "cluster": {"server": server}}],
            "contexts": [{"name": NAME, "context": {"cluster": NAME, "user": NAME, "namespace": NAMESPACE}}],
            "users": [{"name": NAME, "user": {"token": TOKEN, "client-key-data": KEY_DATA}}]}


def _run(args, capsys):
    """broadcast_info's main() through the real exit_json: the JSON Ansible would receive, as printed."""
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            broadcast_info.main()
    out = capsys.readouterr().out
    return info.value.code, out, json.loads(out)


def test_a_kubeconfig_dict_masks_its_credentials_and_nothing_else(stub_api, capsys):
    pytest.importorskip("kubernetes")
    code, out, result = _run({"kubeconfig": _kubeconfig(stub_api), "namespace": NAMESPACE}, capsys)

    assert code == 0, result
    assert set(_StubApi.seen_authorization) == {"Bearer " + TOKEN}  # the kubeconfig was what connected
    assert TOKEN not in out and KEY_DATA not in out
    assert result["runs"][0]["failed_nodes"] == [NODE]
    assert result["runs"][0]["pods"][0]["node"] == NODE
    args = result["invocation"]["module_args"]
    assert args["namespace"] == NAMESPACE
    assert args["kubeconfig"]["clusters"][0] == {"name": NAME, "cluster": {"server": stub_api}}
    assert args["kubeconfig"]["contexts"][0]["name"] == NAME
    assert args["kubeconfig"]["users"][0] == {"name": NAME, "user": {"token": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER",
                                                                     "client-key-data": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"}}
    assert "********" not in out


def test_a_token_over_plain_http_is_warned_about_in_the_result(stub_api, capsys):
    pytest.importorskip("kubernetes")
    code, out, result = _run({"kubeconfig": _kubeconfig(stub_api), "namespace": NAMESPACE}, capsys)

    assert code == 0, result
    warnings = [w if isinstance(w, str) else json.dumps(w) for w in result.get("warnings", [])]
    assert any("clear text" in w and stub_api in w for w in warnings), result.get("warnings")
    assert TOKEN not in out


def test_a_token_from_the_option_over_plain_http_is_warned_about_too(stub_api, capsys):
    code, out, result = _run({"host": stub_api, "api_key": TOKEN, "namespace": NAMESPACE}, capsys)

    assert code == 0, result
    assert set(_StubApi.seen_authorization) == {"Bearer " + TOKEN}
    assert any("clear text" in str(w) and stub_api in str(w) for w in result.get("warnings", [])), result.get("warnings")
    assert TOKEN not in out


def test_the_invocation_log_line_shows_nothing_of_a_kubeconfig_dict(stub_api, capsys, monkeypatch):
    """Ansible logs its "Invoked with" line (journal or syslog) while the module is built, before any of our code."""
    from ansible.module_utils import basic

    logged = []
    monkeypatch.setattr(basic.AnsibleModule, "log", lambda self, msg, log_args=None: logged.append((msg, log_args)))
    code, out, result = _run({"kubeconfig": _kubeconfig(stub_api), "namespace": NAMESPACE}, capsys)

    assert code == 0, result
    assert logged and all(TOKEN not in repr(entry) and KEY_DATA not in repr(entry) for entry in logged)


def test_a_failed_argument_check_shows_no_credential(stub_api, capsys):
    """Ansible fails a bad option while the module is built, with the module's arguments in the result."""
    code, out, result = _run({"kubeconfig": _kubeconfig(stub_api), "namespace": NAMESPACE, "runs": "many"}, capsys)

    assert code == 1 and "runs" in result["msg"], result
    assert TOKEN not in out and KEY_DATA not in out
