# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWX the way AWX runs a job, and the HTML report in a real browser.

ansible-runner (the engine AWX runs playbooks with) runs playbooks/prune_images.yml and
playbooks/report.yml from a private data directory laid out as AWX lays it out (project/,
inventory/, env/envvars, env/extravars). The only credential is what AWX's "OpenShift or Kubernetes
API Bearer Token" credential injects: K8S_AUTH_HOST, K8S_AUTH_API_KEY (a real ServiceAccount token,
bound to files/rbac/awx-prune-images.yml and nothing more), K8S_AUTH_VERIFY_SSL and
K8S_AUTH_SSL_CA_CERT. HOME is an empty directory and KUBECONFIG points at nothing: there is no
kubeconfig anywhere. The report the second job writes is then loaded in Debian's headless Chromium.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import utils as k8s_utils

import kube_helpers as kh

sys.path.insert(0, os.path.join(kh.REPO, "tools", "localcluster"))
sys.path.insert(0, os.path.join(kh.REPO, "tools"))
import browser  # noqa: E402  pylint: disable=wrong-import-position
import run_runner  # noqa: E402  pylint: disable=wrong-import-position

RUNNER = os.path.join(os.path.dirname(sys.executable), "ansible-runner")
RBAC = os.path.join(kh.REPO, "files", "rbac", "awx-prune-images.yml")
ARTIFACTS = os.path.join(kh.REPO, "build", "artifacts")
PRUNE_TASK = "Run image_prune once on every eligible node"


def rbac_objects(namespace):
    """files/rbac/awx-prune-images.yml for this namespace, its cluster-scoped names made unique to it."""
    with open(RBAC) as f:
        text = f.read()
    listed = yaml.safe_load(text.replace("nodeops-awx", namespace + "-awx").replace("node-maintenance", namespace))
    assert listed["kind"] == "List"
    return listed["items"]


def delete_rbac(api_client, objects):
    rbac = k8s.RbacAuthorizationV1Api(api_client)
    for obj in objects:
        kind, meta = obj["kind"], obj["metadata"]
        try:
            if kind == "ClusterRole":
                rbac.delete_cluster_role(meta["name"])
            elif kind == "ClusterRoleBinding":
                rbac.delete_cluster_role_binding(meta["name"])
            elif kind == "Role" and meta["namespace"] == "default":
                rbac.delete_namespaced_role(meta["name"], "default")
            elif kind == "RoleBinding" and meta["namespace"] == "default":
                rbac.delete_namespaced_role_binding(meta["name"], "default")
        except k8s.exceptions.ApiException as exc:
            if exc.status != 404:
                raise


def job_events(pdd, ident):
    events = []
    for path in sorted(glob.glob(os.path.join(pdd, "artifacts", ident, "job_events", "*.json")),
                       key=lambda p: int(os.path.basename(p).split("-")[0])):
        with open(path) as f:
            events.append(json.load(f))
    return events


def run_job(pdd, ident, playbook, extravars, home):
    """One job, as AWX starts it: ansible-runner run on the private data directory, in an environment
    that holds nothing but a PATH, an empty HOME and a KUBECONFIG that points at nothing."""
    with open(os.path.join(pdd, "env", "extravars"), "w") as f:
        yaml.safe_dump(extravars, f)
    env = {"PATH": "%s:/usr/bin:/bin" % os.path.dirname(sys.executable), "HOME": home, "LANG": "C.UTF-8",
           "KUBECONFIG": os.path.join(home, ".kube", "config")}
    proc = subprocess.run([RUNNER, "run", pdd, "-p", playbook, "--ident", ident], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    with open(os.path.join(pdd, "artifacts", ident, "rc")) as f:
        rc = int(f.read().strip())
    return proc, rc, job_events(pdd, ident)


@pytest.fixture(scope="module")
def awx(cluster, api_client, real_node, tmp_path_factory):
    """Two cron runs recorded for the report, then both jobs through ansible-runner. Returns what they left."""
    core = k8s.CoreV1Api(api_client)
    namespace = kh.unique("awx")
    core.create_namespace({"metadata": {"name": namespace, "labels": {
        "nodeops-test": "1", "pod-security.kubernetes.io/enforce": "privileged"}}})
    objects = rbac_objects(namespace)
    nodes = kh.SimNodes(core)
    label = {"nodeops-awx": namespace}
    tmp = tmp_path_factory.mktemp("awx")
    try:
        k8s_utils.create_from_yaml(api_client, yaml_objects=objects)
        sa = [o for o in objects if o["kind"] == "ServiceAccount"][0]["metadata"]["name"]
        token = core.create_namespaced_service_account_token(sa, namespace, k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))).status.token
        good = nodes.add(name=kh.unique("awx-ok"), labels=label)
        bad = nodes.add(name=kh.unique("awx-bad"), labels=label)
        tainted = nodes.add(name=kh.unique("awx-db"), labels=label)
        nodes.taint(tainted, "dedicated", "db")
        core.patch_node(real_node.name, {"metadata": {"labels": label}})
        result_line = "NODEOPS_RESULT " + json.dumps({"bytes_freed": 52428800, "dry_run": True, "errors": [],
                                                      "images_removed": ["docker.io/library/nginx:1.25"],
                                                      "images_removed_count": 1, "preset": "image_prune"})
        annotations = {"sim.nodeops.io/message": result_line, "sim.nodeops.io/exit-code." + bad: "3"}
        selector = "nodeops-awx=" + namespace
        # The report's data: two runs of a cron broadcast, by its runner, recorded in its history.
        installed = kh.run_module(tmp, "cron_broadcast", {
            "name": "nightly", "namespace": namespace, "schedule": "30 2 * * *", "preset": "image_prune",
            "image_prune": {"dry_run": True}, "node_label_selector": selector, "parallelism": "100%",
            "image": real_node.image, "tolerations": real_node.tolerations, "pod_annotations": annotations})
        assert not installed.get("failed"), installed.get("msg")
        for run in range(2):
            command, env = run_runner.runner_command(namespace, "nightly", str(tmp / ("runner%d" % run)))
            proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
            assert proc.returncode == 1, proc.stdout + proc.stderr      # one node fails, as it should

        # The private data directory, as AWX lays it out for a job.
        pdd = str(tmp / "pdd")
        shutil.copytree(os.path.join(kh.REPO, "playbooks"), os.path.join(pdd, "project", "playbooks"))
        collections = os.path.join(pdd, "requirements_collections", "ansible_collections", "nodeops")
        os.makedirs(collections)
        os.symlink(kh.REPO, os.path.join(collections, "kubernetes"))
        os.makedirs(os.path.join(pdd, "inventory"))
        with open(os.path.join(pdd, "inventory", "hosts"), "w") as f:
            f.write("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
        os.makedirs(os.path.join(pdd, "env"))
        ca = os.path.join(pdd, "credentials", "k8s_ca.crt")
        os.makedirs(os.path.dirname(ca))
        shutil.copy(os.path.join(kh.STATE, "pki", "ca.crt"), ca)
        envvars = {"K8S_AUTH_HOST": "https://127.0.0.1:%d" % run_runner.cluster.APISERVER_PORT,
                   "K8S_AUTH_API_KEY": token, "K8S_AUTH_VERIFY_SSL": "True", "K8S_AUTH_SSL_CA_CERT": ca,
                   "ANSIBLE_COLLECTIONS_PATH": os.path.join(pdd, "requirements_collections"),
                   "ANSIBLE_NOCOLOR": "1"}
        with open(os.path.join(pdd, "env", "envvars"), "w") as f:
            yaml.safe_dump(envvars, f)
        home = str(tmp / "empty-home")
        os.makedirs(home)

        mark = kh.AuditLog().mark()
        prune = run_job(pdd, "prune", "playbooks/prune_images.yml", {
            "prune_namespace": namespace, "prune_image": real_node.image, "prune_tolerations": real_node.tolerations,
            "prune_node_label_selector": selector, "prune_pod_annotations": annotations, "prune_parallelism": "100%"},
            home)
        # Who created the run's pods and its run record (the scheduler's bindings and the kubelet's events aside).
        writers = {e.get("user", {}).get("username") for e in kh.AuditLog().events_since(mark)
                   if e.get("verb") == "create" and e.get("stage") == "ResponseComplete"
                   and (e.get("objectRef") or {}).get("namespace") == namespace
                   and (e.get("objectRef") or {}).get("resource") in ("pods", "configmaps")
                   and not (e.get("objectRef") or {}).get("subresource")}
        report_path = str(tmp / "report.html")
        report = run_job(pdd, "report", "playbooks/report.yml", {
            "report_namespace": namespace, "report_runs": 5, "report_format": "both",
            "report_html_path": report_path, "report_cluster": "local"}, home)
        yield {"namespace": namespace, "pdd": pdd, "home": home, "prune": prune, "report": report,
               "report_path": report_path, "writers": writers, "sa": sa, "nodes": {
                   "good": good, "bad": bad, "tainted": tainted, "real": real_node.name}}
    finally:
        core.patch_node(real_node.name, {"metadata": {"labels": {"nodeops-awx": None}}})
        kh.run_module(tmp, "cron_broadcast", {"name": "nightly", "namespace": namespace, "state": "absent"})
        delete_rbac(api_client, objects)
        nodes.cleanup()
        core.delete_namespace(namespace)


def task_results(events, task):
    return [e["event_data"] for e in events if e.get("event") in ("runner_on_ok", "runner_on_failed")
            and e.get("event_data", {}).get("task") == task]


def test_prune_images_runs_in_ansible_runner_with_the_credentials_variables_only(awx):
    proc, rc, events = awx["prune"]
    assert rc == 2, proc.stdout[-3000:]       # one node failed, so the job fails, as AWX shows it
    # No kubeconfig anywhere: the empty HOME stayed empty, and KUBECONFIG pointed at nothing.
    assert os.listdir(awx["home"]) in ([], [".ansible"]), os.listdir(awx["home"])
    assert not os.path.exists(os.path.join(awx["home"], ".kube"))
    with open(os.path.join(awx["pdd"], "env", "envvars")) as f:
        assert sorted(k for k in yaml.safe_load(f) if k.startswith("K8S_AUTH_")) == [
            "K8S_AUTH_API_KEY", "K8S_AUTH_HOST", "K8S_AUTH_SSL_CA_CERT", "K8S_AUTH_VERIFY_SSL"]
    # The pods were created by the credential's ServiceAccount, not by anyone else.
    assert awx["writers"] == {"system:serviceaccount:%s:%s" % (awx["namespace"], awx["sa"])}, awx["writers"]
    # Every task of the play shows in the job's events, in order.
    started = [e["event_data"]["task"] for e in events if e.get("event") == "playbook_on_task_start"]
    expected = ["Ensure the namespace exists", "Plan the run (check mode writes nothing)", PRUNE_TASK,
                "Keep the run's result, whichever path ran it", "Per-node results", "Fail if any node failed"]
    assert [t for t in started if t in expected] == expected, started
    # The per-node results are in the job events, as AWX's job output shows them.
    [run] = task_results(events, PRUNE_TASK)
    nodes = dict((rec["node"], rec) for rec in run["res"]["nodes"])
    names = awx["nodes"]
    assert nodes[names["good"]]["outcome"] == "succeeded"
    assert nodes[names["good"]]["result"]["bytes_freed"] == 52428800
    assert (nodes[names["bad"]]["outcome"], nodes[names["bad"]]["exit_code"]) == ("failed", 3)
    assert (nodes[names["tainted"]]["outcome"], nodes[names["tainted"]]["reason"]) == (
        "skipped", "untolerated taint dedicated=db:NoSchedule")
    # The real node really ran it: a dry run on its containerd lists real images.
    real = nodes[names["real"]]
    assert real["outcome"] == "succeeded" and real["result"]["dry_run"] is True, real
    table = [e for e in events if e.get("event") == "runner_on_ok"
             and e["event_data"].get("task") == "Per-node results"][0]["event_data"]["res"]["msg"]
    assert any(line.startswith(names["real"]) and "succeeded" in line for line in table), table


def test_report_runs_in_ansible_runner_and_writes_the_html_report(awx):
    proc, rc, events = awx["report"]
    assert rc == 0, proc.stdout[-3000:]
    [printed] = task_results(events, "Print each broadcast's last runs, node by node")
    lines = printed["res"]["msg"]
    assert lines[0].startswith("== nightly") and sum(1 for line in lines if line.startswith("  run ")) == 2, lines
    [written] = task_results(events, "Write the HTML report")
    assert written["res"]["dest"] == awx["report_path"] and os.path.getsize(awx["report_path"]) > 2000


class Dom(HTMLParser):
    """The elements of a rendered DOM that the assertions read."""

    def __init__(self):
        HTMLParser.__init__(self)
        self.elements = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def having(self, tag, cls):
        return [a for t, a in self.elements if t == tag and cls in (a.get("class") or "").split()]


def chromium():
    path = browser.binary()
    if path:
        return path
    why = browser.unavailable_reason() or "chromium is not installed (run: make browser)"
    if os.environ.get("NODEOPS_REQUIRE_BROWSER") == "1":
        pytest.fail("NODEOPS_REQUIRE_BROWSER=1 but there is no browser: " + why)
    pytest.skip("no browser for the report test: " + why)


def test_the_html_report_renders_in_headless_chromium(awx, tmp_path):
    binary = chromium()
    url = "file://" + awx["report_path"]
    profile = str(tmp_path / "profile")
    dump = subprocess.run([binary] + browser.HEADLESS_FLAGS + ["--user-data-dir=" + profile, "--dump-dom", url],
                          capture_output=True, text=True, timeout=120, check=False)
    assert dump.returncode == 0 and "</html>" in dump.stdout, dump.stderr[-2000:]
    dom = Dom()
    dom.feed(dump.stdout)
    names = awx["nodes"]
    # One row per node that ran (the tainted one is skipped and listed apart), one cell per recorded run.
    rows = dict((r["data-node"], r) for r in dom.having("tr", "node-row"))
    assert sorted(rows) == sorted([names["good"], names["bad"], names["real"]]), sorted(rows)
    cells = dom.having("td", "cell")
    assert len(cells) == 3 * 2
    classes = [c["class"] for c in cells]
    assert classes.count("cell outcome-succeeded") == 4 and classes.count("cell outcome-failed") == 2, classes
    skipped = dict((r["data-reason"], int(r["data-count"])) for r in dom.having("tr", "skipped-row"))
    assert skipped["untolerated taint dedicated=db:NoSchedule"] == 1, skipped
    assert names["tainted"] in [s["data-node"] for s in dom.having("span", "skipped-node")]
    bars = dict((b["data-node"], int(b["data-bytes"])) for b in dom.having("div", "bar-row"))
    assert bars[names["good"]] == 52428800 and bars[names["bad"]] == 0 and bars[names["real"]] > 0, bars
    assert len(dom.having("rect", "run-bar")) == 2
    # A screenshot, kept as a build artifact.
    os.makedirs(ARTIFACTS, exist_ok=True)
    shot = os.path.join(ARTIFACTS, "report.png")
    if os.path.exists(shot):
        os.remove(shot)
    taken = subprocess.run([binary] + browser.HEADLESS_FLAGS + ["--user-data-dir=" + profile, "--window-size=1100,1000",
                                                                "--screenshot=" + shot, url],
                           capture_output=True, text=True, timeout=120, check=False)
    assert taken.returncode == 0, taken.stderr[-2000:]
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(shot) > 20000
