# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pod Security: the level a pod needs, the refusal's message, and the API server's warnings."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import options, pods
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.engine import Engine
from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron import manifests
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube import podsecurity
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.api import ConnectionConfig, RestClient
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import (
    Conflict,
    Forbidden,
    Invalid,
    InvalidInput,
    NamespaceMissing,
    NotFound,
    PodSecurityRefused,
)
from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets.registry import REGISTRY

# What kube-apiserver answers when the baseline level refuses the image_prune pod (its message, verbatim).
REFUSED = ('pods "prune-preflight-0c1d2e3f" is forbidden: violates PodSecurity "baseline:latest": host namespaces '
           '(hostPID=true), privileged (container "image-prune" must not set securityContext.privileged=true)')
PRESET_OPTIONS = {"image_prune": {"include": [], "exclude": [], "dry_run": True},
                  "path_cleanup": {"path": "/var/log/myapp", "older_than_days": 7},
                  "host_command": {"command": ["fstrim", "-av"]},
                  "journal_vacuum": {"max_size": "1G"}}


def broadcast_opts(**overrides):
    params = dict((k, copy.deepcopy(v.get("default"))) for k, v in options.BROADCAST_OPTIONS.items())
    params.update(name="prune", namespace="ops", run_id=None, preset="image_prune",
                  image_prune=PRESET_OPTIONS["image_prune"])
    params.update(overrides)
    return options.validate(params)


def container(**security):
    return {"name": "c", "image": "i", "securityContext": security} if security else {"name": "c", "image": "i"}


RESTRICTED_CONTEXT = {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                      "seccompProfile": {"type": "RuntimeDefault"}}


# ---------------------------------------------------------------- the level a pod needs (pure)

@pytest.mark.parametrize("spec, annotations, level", [
    ({"containers": [container()]}, None, "baseline"),
    ({"containers": [container(**RESTRICTED_CONTEXT)]}, None, "restricted"),
    ({"hostPID": True, "containers": [container(**RESTRICTED_CONTEXT)]}, None, "privileged"),
    ({"hostNetwork": True, "containers": [container()]}, None, "privileged"),
    ({"containers": [container(privileged=True)]}, None, "privileged"),
    ({"initContainers": [container(privileged=True)], "containers": [container()]}, None, "privileged"),
    ({"containers": [container()], "volumes": [{"name": "h", "hostPath": {"path": "/var/log"}}]}, None,
     "privileged"),
    ({"containers": [container(capabilities={"add": ["SYS_ADMIN"]})]}, None, "privileged"),
    ({"containers": [container(capabilities={"add": ["CHOWN"]})]}, None, "baseline"),
    ({"containers": [dict(container(), ports=[{"containerPort": 80, "hostPort": 80}])]}, None, "privileged"),
    ({"containers": [container(seccompProfile={"type": "Unconfined"})]}, None, "privileged"),
    ({"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}, "containers": [container()]},
     None, "privileged"),
    ({"containers": [container()]}, {"container.apparmor.security.beta.kubernetes.io/c": "unconfined"},
     "privileged"),
    ({"containers": [container(**dict(RESTRICTED_CONTEXT, runAsUser=0))]}, None, "baseline"),
    ({"containers": [container(**RESTRICTED_CONTEXT)], "volumes": [{"name": "n", "nfs": {"server": "s"}}]}, None,
     "baseline"),
    ({"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
      "containers": [container(allowPrivilegeEscalation=False, capabilities={"drop": ["ALL"]})],
      "volumes": [{"name": "cm", "configMap": {"name": "x"}}]}, None, "restricted"),
])
def test_required_level_is_the_least_permissive_level_that_admits_the_pod(spec, annotations, level):
    assert podsecurity.required_level(spec, annotations) == level


@pytest.mark.parametrize("preset", sorted(REGISTRY))
def test_every_presets_pod_needs_privileged(preset):
    """They reach the host (host PID and a privileged container, or a hostPath), which only privileged admits."""
    opts = broadcast_opts(**dict({"preset": preset, "image_prune": None}, **{preset: PRESET_OPTIONS[preset]}))
    pod = pods.build_pod(opts, "r1", "node-1")
    assert podsecurity.required_level(pod["spec"], pod["metadata"]["annotations"]) == "privileged"


def test_the_cron_runners_pod_fits_restricted():
    opts = broadcast_opts()
    cron = {"name": "nightly", "schedule": "0 3 * * *", "time_zone": None, "concurrency_policy": "Forbid",
            "starting_deadline_seconds": None, "successful_jobs_history_limit": 3, "failed_jobs_history_limit": 3,
            "history_limit": 10, "suspend": False, "runner_image": "python:3.13-slim", "runner_node_selector": {},
            "runner_tolerations": []}
    cron_job = [o for o in manifests.build_objects(cron, opts, sources={}) if o["kind"] == "CronJob"][0]
    assert podsecurity.required_level(cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]) == "restricted"


@pytest.mark.parametrize("message, level", [
    (REFUSED, "baseline"),
    ('pods "x" is forbidden: violates PodSecurity "restricted:v1.30": allowPrivilegeEscalation != false', "restricted"),
    ('pods "x" is forbidden: User "u" cannot create resource "pods"', None),
    ('pods "x" is forbidden: error looking up service account ops/runner: serviceaccount "runner" not found', None),
    (None, None),
])
def test_a_refusal_is_recognised_by_its_words_and_names_its_level(message, level):
    assert podsecurity.refused_level(message) == level
    assert podsecurity.is_refusal(403, message) is (level is not None)
    assert podsecurity.is_refusal(422, message) is False


@pytest.mark.parametrize("spec, refused_at, needed", [
    ({"hostPID": True, "containers": [container()]}, "baseline", "privileged"),
    ({"containers": [container()]}, "restricted", "baseline"),
    # What this file judges baseline, the apiserver refused at baseline: then privileged, never baseline.
    ({"containers": [container()]}, "baseline", "privileged"),
    ({"containers": [container(**RESTRICTED_CONTEXT)]}, "restricted", "baseline"),
])
def test_the_level_needed_is_never_one_the_apiserver_refused(spec, refused_at, needed):
    assert podsecurity.needed_level(spec, None, refused_at) == needed


def test_label_command_and_the_enforce_label():
    assert podsecurity.label_command("ops", "privileged") == (
        "kubectl label --overwrite namespace ops pod-security.kubernetes.io/enforce=privileged")
    assert podsecurity.enforced_label(
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}}) == "baseline"
    assert podsecurity.enforced_label({"metadata": {"name": "ops"}}) is None


@pytest.mark.parametrize("values, texts", [
    (['299 - "would violate PodSecurity \\"restricted:latest\\": host namespaces (hostPID=true)"'],
     ['would violate PodSecurity "restricted:latest": host namespaces (hostPID=true)']),
    (['299 - "a"', '299 - "b", 299 kube-apiserver "c" "Wed, 01 Jan 2025 00:00:00 GMT"', '299 - "a"'],
     ["a", "b", "c"]),
    (["not a warning header"], ["not a warning header"]),
    ([], []),
    (None, []),
])
def test_warning_headers_become_their_texts_in_order_each_once(values, texts):
    assert podsecurity.warning_texts(values) == texts


# ---------------------------------------------------------------- the dry run and its refusal (engine)

class FakeClient:
    """Answers the pod dry run with ``refusal`` (or accepts it, with ``warnings``) and a Namespace read."""

    core_path = staticmethod(RestClient.core_path)

    def __init__(self, refusal=None, warnings=(), namespace=None):
        self.refusal = refusal
        self.warnings = list(warnings)
        self.namespace = namespace
        self.calls = []

    def create(self, path, body, dry_run=False, retry_for=0, warnings=None):
        self.calls.append(("POST", path, dry_run))
        if warnings is not None:
            warnings.extend(self.warnings)
        if self.refusal is not None:
            raise self.refusal
        return body

    def get(self, path, query=None, timeout=None):
        self.calls.append(("GET", path))
        if isinstance(self.namespace, Exception):
            raise self.namespace
        return self.namespace


def forbidden(message):
    return Forbidden("POST /api/v1/namespaces/ops/pods failed: 403 Forbidden: " + message, status=403,
                     reason="Forbidden", body={"kind": "Status", "message": message, "reason": "Forbidden"})


def labelled(**labels):
    return {"metadata": {"name": "ops", "labels": labels}}


@pytest.mark.parametrize("namespace, source", [
    (labelled(**{"pod-security.kubernetes.io/enforce": "baseline"}),
     "(its label pod-security.kubernetes.io/enforce=baseline)"),
    (labelled(), "(the cluster default: the namespace has no pod-security.kubernetes.io/enforce label)"),
    (Forbidden("GET /api/v1/namespaces/ops failed: 403 Forbidden: no", status=403),
     "(as the API server said; the Namespace could not be read: GET /api/v1/namespaces/ops failed"),
])
def test_a_pod_security_refusal_says_namespace_level_needed_level_and_the_label_in_one_message(namespace, source):
    client = FakeClient(refusal=forbidden(REFUSED), namespace=namespace)
    with pytest.raises(PodSecurityRefused) as info:
        Engine(client).preflight(broadcast_opts(), "r1", "node-1")
    msg = info.value.msg
    assert msg.startswith("preset='image_prune' is invalid: namespace \"ops\" enforces Pod Security level "
                          "\"baseline\" "), msg
    assert source in msg
    assert 'the pods of preset image_prune need level "privileged" (hostPID=true, container image-prune: ' \
           'privileged)' in msg
    assert "nothing was written: " + REFUSED in msg
    assert msg.endswith("; expected a namespace whose level admits them: "
                        "kubectl label --overwrite namespace ops pod-security.kubernetes.io/enforce=privileged")
    assert info.value.result == {
        "invalid_parameter": "preset",
        "pod_security": {"namespace": "ops", "enforced": "baseline", "required": "privileged", "command":
                         "kubectl label --overwrite namespace ops pod-security.kubernetes.io/enforce=privileged"}}
    assert [c[0] for c in client.calls] == ["POST", "GET"] and client.calls[0][2] is True


def test_a_pod_template_refused_at_restricted_needs_baseline():
    template = {"spec": {"containers": [{"name": "check", "image": "busybox:1.36"}]}}
    opts = broadcast_opts(preset=None, image_prune=None, pod_template=template)
    message = ('pods "x" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false '
               '(container "check" must set securityContext.allowPrivilegeEscalation=false)')
    with pytest.raises(PodSecurityRefused) as info:
        Engine(FakeClient(refusal=forbidden(message), namespace=labelled())).preflight(opts, "r1", "node-1")
    assert info.value.param == "pod_template"
    assert 'the pods of this pod_template need level "baseline"' in info.value.msg
    assert info.value.msg.endswith("pod-security.kubernetes.io/enforce=baseline")


@pytest.mark.parametrize("refusal, error, fragment", [
    (NotFound("POST /api/v1/namespaces/ops/pods failed: 404 NotFound: namespaces \"ops\" not found", status=404),
     NamespaceMissing, "namespace='ops' is invalid: it does not exist"),
    # RBAC, not the pod: the credentials' own error, never blamed on an option (check mode warns instead).
    (forbidden('pods "x" is forbidden: User "u" cannot create resource "pods"'), Forbidden,
     'User "u" cannot create resource "pods"'),
    (forbidden('admission webhook "images.example" denied the request: not signed'), InvalidInput,
     "preset='image_prune' is invalid: the API server refused a dry run: POST"),
    (Invalid("POST /api/v1/namespaces/ops/pods failed: 422 Invalid: bad", status=422), InvalidInput,
     "preset='image_prune' is invalid: the API server refused a dry run"),
])
def test_other_refusals_keep_their_own_errors(refusal, error, fragment):
    client = FakeClient(refusal=refusal)
    with pytest.raises(error) as info:
        Engine(client).preflight(broadcast_opts(), "r1", "node-1")
    # The exact class: a PodSecurityRefused is an InvalidInput too, and must not pass for one here.
    assert info.type is error and fragment in info.value.msg
    assert [c[0] for c in client.calls] == ["POST"]   # no Namespace read for what is not Pod Security


def test_a_pod_that_exists_already_is_no_refusal_and_the_warnings_are_kept_with_their_context():
    client = FakeClient(warnings=['299 - "would violate PodSecurity \\"restricted:latest\\": hostPID"'])
    engine = Engine(client)
    pod = engine.preflight(broadcast_opts(), "r1", "node-1")
    assert pod["metadata"]["namespace"] == "ops"
    assert engine.preflight_warnings == [
        'API server warning for the pods of preset image_prune in namespace ops: would violate PodSecurity '
        '"restricted:latest": hostPID']
    client.refusal = Conflict("exists", status=409)
    assert Engine(client).preflight(broadcast_opts(), "r1", "node-1") == pod


# ---------------------------------------------------------------- the client hands the Warning headers over

class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):   # noqa: N802 -- the name http.server calls
        self.rfile.read(int(self.headers["Content-Length"]))
        refused = self.path.startswith("/api/v1/namespaces/refused/")
        body = json.dumps({"kind": "Status", "message": "no"} if refused else {"kind": "Pod"}).encode()
        self.send_response(403 if refused else 201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Warning", '299 - "would violate PodSecurity \\"restricted:latest\\": hostPID"')
        self.send_header("Warning", '299 - "second"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_the_client_collects_every_warning_header_of_a_response_error_or_not(http_server):
    client = RestClient(ConnectionConfig(http_server, token="t"))
    got = []
    assert client.create("/api/v1/namespaces/ops/pods", {"kind": "Pod"}, dry_run=True, warnings=got) == {"kind": "Pod"}
    assert podsecurity.warning_texts(got) == ['would violate PodSecurity "restricted:latest": hostPID', "second"]
    refused = []
    with pytest.raises(Forbidden):
        client.create("/api/v1/namespaces/refused/pods", {"kind": "Pod"}, dry_run=True, warnings=refused)
    assert refused == got
    assert client.create("/api/v1/namespaces/ops/pods", {"kind": "Pod"}) == {"kind": "Pod"}   # none asked: fine
