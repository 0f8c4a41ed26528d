# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pod Security at the module edge: asked by a dry run before any write, in check mode too, and the
API server's warnings passed on as Ansible warnings. The API is a fake that records every write."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

import pytest

from ansible.module_utils import basic
from module_args import patch_module_args

from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.api import RestClient
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import Forbidden, NotFound
from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron import manifests
from ansible_collections.nodeops.kubernetes.plugins.modules import broadcast_job, cron_broadcast

from module_edge_results import Exit, Fail

NS = "ops"
REFUSED = ('pods "x" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostPID=true), '
           'privileged (container "image-prune" must not set securityContext.privileged=true)')
WARNED = '299 - "would violate PodSecurity \\"restricted:latest\\": host namespaces (hostPID=true)"'
COMMAND = "kubectl label --overwrite namespace ops pod-security.kubernetes.io/enforce=privileged"


class FakeApi:
    """One namespace (``labels``, or missing), one Ready worker; pod dry runs answer as Pod Security would."""

    core_path = staticmethod(RestClient.core_path)
    group_path = staticmethod(RestClient.group_path)

    def __init__(self, labels=None, refuse=False, warn=False, missing=False, deny_runner=None, read_only=False):
        self.labels, self.refuse, self.warn, self.missing = labels or {}, refuse, warn, missing
        self.deny_runner = deny_runner   # what an image policy's webhook says to the runner's pod
        self.read_only = read_only       # RBAC: may read, may not create pods
        self.writes, self.dry_runs = [], []

    def get(self, path, query=None, timeout=None):
        if path == self.core_path("namespaces", name=NS):
            return {"metadata": {"name": NS, "labels": dict(self.labels)}}
        items = []
        if path == "/api/v1/nodes":
            items = [{"metadata": {"name": "worker-1", "labels": {}}, "spec": {},
                      "status": {"conditions": [{"type": "Ready", "status": "True"}]}}]
        return {"items": items, "metadata": {"resourceVersion": "1"}}

    def get_or_none(self, path, query=None):
        return None

    def create(self, path, body, dry_run=False, retry_for=0, warnings=None):
        if not dry_run:
            self.writes.append(("create", path))
            return body
        self.dry_runs.append(path)
        if self.read_only:
            raise Forbidden('POST %s failed: 403 Forbidden: pods is forbidden: User "plan" cannot create resource '
                            '"pods" in API group "" in the namespace "ops"' % path, status=403, reason="Forbidden")
        if self.missing:
            raise NotFound("POST %s failed: 404 NotFound: namespaces \"ops\" not found" % path, status=404)
        if self.refuse and path.endswith("/pods") and body["spec"].get("hostPID"):
            raise Forbidden("POST %s failed: 403 Forbidden: %s" % (path, REFUSED), status=403, reason="Forbidden",
                            body={"kind": "Status", "message": REFUSED})
        if self.deny_runner and path.endswith("/pods") and not body["spec"].get("hostPID"):
            raise Forbidden("POST %s failed: 403 Forbidden: %s" % (path, self.deny_runner), status=403,
                            reason="Forbidden", body={"kind": "Status", "message": self.deny_runner})
        if self.warn and warnings is not None and body["spec"].get("hostPID"):
            warnings.append(WARNED)
        return body

    def apply(self, path, body, field_manager, dry_run=False):
        if not dry_run:
            self.writes.append(("apply", path))
        out = copy.deepcopy(body)
        out["metadata"].setdefault("uid", "u1")
        return out

    def delete(self, path, *args, **kwargs):
        self.writes.append(("delete", path))

    def request(self, method, path, *args, **kwargs):
        if method != "GET":
            self.writes.append((method, path))
        return {"items": []}


@pytest.fixture
def edge(module_edge, monkeypatch):
    """Returns (install a FakeApi as every module's client, the warnings the module gave)."""
    warned = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, text: warned.append(text))

    def use(api):
        for module in (broadcast_job, cron_broadcast):
            monkeypatch.setattr(module, "client_from_params", lambda params, timeout=None: api)
        return api
    return use, warned


def run(module, args, check_mode):
    args = dict(args, host="https://127.0.0.1:1", api_key="x", _ansible_check_mode=check_mode)
    with patch_module_args(args):
        module.main()


JOB = {"name": "prune", "namespace": NS, "preset": "image_prune", "image_prune": {"dry_run": True}}
CRON = dict(JOB, schedule="0 3 * * *")


def assert_names_it_all(msg):
    for fragment in ('namespace "ops" enforces Pod Security level "baseline"',
                     "pod-security.kubernetes.io/enforce=baseline", 'need level "privileged"', COMMAND):
        assert fragment in msg, msg


@pytest.mark.parametrize("module, args, check_mode", [
    (broadcast_job, JOB, True),
    (cron_broadcast, CRON, True),
    (cron_broadcast, CRON, False),
])
def test_a_namespace_whose_level_refuses_the_pods_fails_before_any_write(edge, module, args, check_mode):
    use, _warned = edge
    api = use(FakeApi(labels={"pod-security.kubernetes.io/enforce": "baseline"}, refuse=True))
    with pytest.raises(Fail) as info:
        run(module, args, check_mode)
    result = info.value.args[0]
    assert_names_it_all(result["msg"])
    assert result["invalid_parameter"] == "preset"
    assert result["pod_security"] == {"namespace": NS, "enforced": "baseline", "required": "privileged",
                                      "command": COMMAND}
    assert api.dry_runs and api.writes == []


@pytest.mark.parametrize("module, args, check_mode", [
    (broadcast_job, JOB, True),
    (cron_broadcast, CRON, True),
    (cron_broadcast, CRON, False),
])
def test_the_api_servers_pod_security_warnings_become_ansible_warnings(edge, module, args, check_mode):
    use, warned = edge
    use(FakeApi(labels={"pod-security.kubernetes.io/warn": "restricted"}, warn=True))
    with pytest.raises(Exit):
        run(module, args, check_mode)
    assert warned == ['API server warning for the pods of preset image_prune in namespace ops: would violate '
                      'PodSecurity "restricted:latest": host namespaces (hostPID=true)']


def test_cron_broadcast_dry_runs_the_runner_pod_without_its_service_account_not_yet_written(edge):
    use, _warned = edge
    api = use(FakeApi())
    with pytest.raises(Exit):
        run(cron_broadcast, CRON, True)
    # The node pod, the critical node pod a node under DiskPressure would get (disk_pressure), the runner's pod.
    assert api.dry_runs[:3] == ["/api/v1/namespaces/ops/pods"] * 3
    pod = manifests.runner_pod([{"kind": "CronJob", "metadata": {"name": "prune", "namespace": NS}, "spec": {
        "jobTemplate": {"spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {
            "serviceAccountName": "nodeops-prune", "containers": [{"name": "runner"}]}}}}}}])
    assert pod == {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "runner"}]},
                   "metadata": {"name": "prune-preflight", "namespace": NS, "labels": {"a": "b"}, "annotations": {}}}


def test_a_missing_namespace_is_a_warning_in_broadcast_job_check_mode(edge):
    """An earlier task may be about to create it; the plan is still worth seeing."""
    use, warned = edge
    use(FakeApi(missing=True))
    with pytest.raises(Exit):
        run(broadcast_job, JOB, True)
    assert len(warned) == 1 and warned[0].startswith("Pod Security not checked: namespace='ops' is invalid: "
                                                     "it does not exist"), warned


@pytest.mark.parametrize("check_mode", [True, False])
def test_a_missing_namespace_fails_cron_broadcast_plainly_before_any_write(edge, check_mode):
    """Every object's dry run needs the namespace: the error says so first, and plainly."""
    use, _warned = edge
    api = use(FakeApi(missing=True))
    with pytest.raises(Fail) as info:
        run(cron_broadcast, CRON, check_mode)
    assert info.value.args[0]["msg"].startswith("namespace='ops' is invalid: it does not exist")
    assert api.writes == []


def test_an_admission_policy_refusing_the_runners_pod_names_runner_image_before_any_write(edge):
    use, _warned = edge
    denied = 'admission webhook "images.example.com" denied the request: python:3.13-slim is not allowed'
    api = use(FakeApi(deny_runner=denied))
    with pytest.raises(Fail) as info:
        run(cron_broadcast, CRON, False)
    assert info.value.args[0]["msg"].startswith("runner_image='python:3.13-slim' is invalid: the API server "
                                                "refused a dry run: "), info.value.args[0]["msg"]
    assert denied in info.value.args[0]["msg"] and api.writes == []


def test_check_mode_with_credentials_that_may_not_create_pods_still_plans_and_says_what_it_did_not_check(edge):
    """A plan-only account (read rights, no pod create) gets its plan in check mode, with a warning that Pod
    Security was not checked; before, check mode needed no create right, and it still needs none."""
    use, warned = edge
    api = use(FakeApi(read_only=True))
    with pytest.raises(Exit) as info:
        run(broadcast_job, JOB, True)
    assert "plan" in info.value.args[0] or "nodes" in info.value.args[0], info.value.args[0]
    assert any("Pod Security not checked: these credentials may not create pods" in w for w in warned), warned
    assert api.writes == []
