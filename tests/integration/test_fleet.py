# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/fleet_prune.yml across two real clusters and one that cannot be reached.

The second cluster is a small kwok-only one the test starts beside the main one, on other ports and
in another state directory (tools/localcluster/cluster.py takes both from the environment), and
stops afterwards. The third inventory host points at a closed port.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest
import yaml

import kube_helpers as kh

CLUSTER = os.path.join(kh.REPO, "tools", "localcluster", "cluster.py")
SECOND_PORTS = {"NODEOPS_ETCD_PORT": "23891", "NODEOPS_APISERVER_PORT": "16543", "NODEOPS_KWOK_PORT": "10347",
                "NODEOPS_CM_PORT": "10457", "NODEOPS_SCHED_PORT": "10459"}
RESULT = "NODEOPS_RESULT " + json.dumps({"bytes_freed": 7340032, "dry_run": True, "errors": [],
                                         "images_removed": ["docker.io/library/redis:7.2"], "images_removed_count": 1,
                                         "preset": "image_prune"}, separators=(",", ":"))


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def second_cluster(cluster, tmp_path_factory):
    """A second, kwok-only cluster with two nodes; its kubeconfig. Stopped and forgotten afterwards."""
    state = str(tmp_path_factory.mktemp("second-cluster"))
    env = dict(os.environ, NODEOPS_CLUSTER_DIR=state, NODEOPS_REAL_NODE="0", NODEOPS_REQUIRE_REAL_NODE="0",
               NODEOPS_NODES="2", **SECOND_PORTS)
    up = subprocess.run([sys.executable, CLUSTER, "up"], env=env, capture_output=True, text=True, timeout=300,
                        check=False)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        yield os.path.join(state, "kubeconfig")
    finally:
        subprocess.run([sys.executable, CLUSTER, "down"], env=env, capture_output=True, timeout=120, check=False)
        shutil.rmtree(state, ignore_errors=True)


def test_one_playbook_prunes_every_cluster_and_a_failing_or_unreachable_one_fails_alone(
        tmp_path, namespace, sim_nodes, second_cluster):
    tag = kh.unique("fleet")
    mine = sorted(sim_nodes.add(name="%s-%d" % (tag, i), labels={"nodeops-fleet": tag}) for i in range(3))
    failing = mine[-1]     # its pod exits 3 on the main cluster
    gone_port = closed_port()
    common = {"prune_namespace": namespace, "prune_parallelism": "100%",
              "prune_pod_annotations": {"sim.nodeops.io/message": RESULT}}
    inventory = {"all": {"children": {"clusters": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
        "hosts": {
            "main": dict(common, k8s_kubeconfig=kh.KUBECONFIG, prune_node_label_selector="nodeops-fleet=" + tag,
                         prune_pod_annotations=dict(common["prune_pod_annotations"], **{
                             "sim.nodeops.io/exit-code." + failing: "3"})),
            "second": dict(common, k8s_kubeconfig=second_cluster),
            "gone": dict(common, k8s_host="https://127.0.0.1:%d" % gone_port, k8s_api_key="not-a-token",
                         k8s_validate_certs=False)}}}}}
    path = tmp_path / "fleet.yml"
    path.write_text(yaml.safe_dump(inventory))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORKS="3")
    env.pop("KUBECONFIG", None)
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(path),
                           os.path.join(kh.REPO, "playbooks", "fleet_prune.yml")],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    out = proc.stdout
    assert proc.returncode == 2, out[-4000:] + proc.stderr[-2000:]     # hosts failed
    # One combined table: cluster, node, outcome, bytes freed.
    rows = [line.strip().strip('",') for line in out.splitlines()
            if re.match(r'^\s*"(main|second|gone)\s', line)]
    table = dict(((r.split()[0], r.split()[1]), r.split()[2:4]) for r in rows)
    for node in mine[:-1]:
        assert table[("main", node)] == ["succeeded", "7340032"], rows
    assert table[("main", failing)][0] == "failed", rows
    second = sorted(node for cluster, node in table if cluster == "second")
    assert second == ["kwok-control-plane", "kwok-worker-1", "kwok-worker-2"], rows
    assert table[("second", "kwok-worker-1")] == table[("second", "kwok-worker-2")] == ["succeeded", "7340032"]
    assert table[("second", "kwok-control-plane")][0] == "skipped"
    assert table[("gone", "-")][0] == "unreachable", rows
    assert [r for r in rows if r.startswith("gone") and str(gone_port) in r], rows
    # A node failure fails its cluster's host after the table; the unreachable cluster failed (rescued) its own
    # host only; the healthy cluster is untouched by either.
    recap = dict((m.group(1), (int(m.group(2)), int(m.group(3)))) for m in re.finditer(
        r"^(main|second|gone)\s+: ok=\d+\s+changed=\d+\s+unreachable=\d+\s+failed=(\d+)\s+skipped=\d+\s+rescued=(\d+)",
        out, re.M))
    assert recap == {"main": (1, 0), "second": (0, 0), "gone": (1, 1)}, out[-3000:]
    assert re.search(r"main: broadcast image-prune run \S+: 1 of 3 nodes failed: " + re.escape(failing), out), \
        out[-3000:]

    # Check mode: the plan of every reachable cluster, nothing written.
    check = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(path),
                            "--check", "--limit", "main,second,localhost",
                            os.path.join(kh.REPO, "playbooks", "fleet_prune.yml")],
                           env=env, capture_output=True, text=True, timeout=600, check=False)
    assert check.returncode == 0, check.stdout[-4000:]
    planned = [line.strip().strip('",') for line in check.stdout.splitlines() if re.match(r'^\s*"(main|second)\s', line)]
    assert sorted(r.split()[1] for r in planned if " would run " in r and r.startswith("main")) == mine, planned
    assert '"second: check mode: 2 nodes would run"' in check.stdout, check.stdout[-3000:]


def python_without_kubernetes(directory):
    """Every bare name interpreter discovery tries (python3.13 ... python3), each a Python without the kubernetes
    package (the venv's own, with -S: no site-packages), in ``directory``; and a pyenv-like shim that cannot run."""
    from ansible import constants as C   # pylint: disable=import-outside-toplevel

    directory.mkdir()
    for name in C.config.get_config_value("INTERPRETER_PYTHON_FALLBACK"):
        if "/" not in name:
            fake = directory / name
            fake.write_text('#!/bin/sh\nexec "%s" -S "$@"\n' % sys.executable)
            fake.chmod(0o755)
    shim = directory / "shim"
    shim.write_text('#!/bin/sh\necho "pyenv: python3.13: command not found" >&2\nexit 127\n')
    shim.chmod(0o755)
    return str(shim)


def test_an_inventory_that_names_no_python_runs_with_the_controllers_and_a_python_that_cannot_run_says_why(
        tmp_path, core, namespace, sim_nodes):
    """The inventory lists clusters and their connection only, and interpreter discovery would find a Python
    without the kubernetes package first on PATH: the clusters run with the controller's Python all the same. A
    cluster whose inventory names a Python that cannot run says so in its row. One of two clusters (here two
    selections of the main one) is a dry run: its figures say "would", the column "BYTES FREED"."""
    tag = kh.unique("fleet-py")
    dry = sorted(sim_nodes.add(name="%s-d%d" % (tag, i), labels={"nodeops-fleet": tag + "-d"}) for i in range(2))
    real = sorted(sim_nodes.add(name="%s-r%d" % (tag, i), labels={"nodeops-fleet": tag + "-r"}) for i in range(2))
    fakes = tmp_path / "bin"
    shim = python_without_kubernetes(fakes)
    path = os.pathsep.join([str(fakes), os.environ["PATH"]])
    assert subprocess.run(["python3", "-c", "import kubernetes"], env=dict(os.environ, PATH=path),
                          capture_output=True, check=False).returncode != 0      # discovery would find this one
    other = kh.unique("t-fleet-py")
    common = {"k8s_kubeconfig": kh.KUBECONFIG, "prune_parallelism": "100%",
              "prune_pod_annotations": {"sim.nodeops.io/message": RESULT}}
    inventory = {"clusters": {"hosts": {
        "dry": dict(common, prune_namespace=namespace, prune_node_label_selector="nodeops-fleet=%s-d" % tag),
        # Not a dry run, but on simulated nodes only: nothing runs there.
        "real": dict(common, prune_namespace=other, prune_dry_run=False,
                     prune_node_label_selector="nodeops-fleet=%s-r" % tag),
        "shim": dict(common, prune_namespace=namespace, ansible_python_interpreter=shim)}}}
    (tmp_path / "fleet.yml").write_text(yaml.safe_dump(inventory))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORKS="3", PATH=path)
    env.pop("KUBECONFIG", None)
    try:
        proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                               "-i", str(tmp_path / "fleet.yml"), os.path.join(kh.REPO, "playbooks", "fleet_prune.yml")],
                              env=env, capture_output=True, text=True, timeout=600, check=False)
    finally:
        try:
            core.delete_namespace(other)
        except Exception:   # pylint: disable=broad-except
            pass    # never created: the run did not get that far
    out = proc.stdout
    assert proc.returncode == 2, out[-4000:] + proc.stderr[-2000:]     # the shim's host failed, and only it
    assert "deserialization failed" not in out.split("PLAY [One table")[1], out[-4000:]
    assert re.search(r'"CLUSTER +NODE +OUTCOME +BYTES FREED +REASON"', out), out[-4000:]
    rows = [line.strip().strip('",') for line in out.splitlines() if re.match(r'^\s*"(dry|real|shim)\s', line)]
    table = dict(((r.split()[0], r.split()[1]), r.split()[2:]) for r in rows)
    for node in dry:
        assert table[("dry", node)][:3] == ["succeeded", "would", "7340032"], rows
    for node in real:
        assert table[("real", node)][:2] == ["succeeded", "7340032"], rows
    [shim_row] = [r for r in rows if r.startswith("shim")]
    cause = "Python %s could not run the module (pyenv: python3.13: command not found)" % shim
    assert re.search(r"^shim +- +error +- +%s" % re.escape(cause), shim_row), rows     # the row: its first 160
    assert "shim: %s: set ansible_python_interpreter" % cause in out, out[-3000:]   # the host's failure: all of it
    recap = dict((m.group(1), int(m.group(2))) for m in re.finditer(
        r"^(dry|real|shim)\s+: ok=\d+\s+changed=\d+\s+unreachable=\d+\s+failed=(\d+)", out, re.M))
    assert recap == {"dry": 0, "real": 0, "shim": 1}, out[-3000:]
