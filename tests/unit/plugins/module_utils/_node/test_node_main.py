# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The node script's own parts: its result line, and how it runs a preset."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._node import main as node_main
from ansible_collections.nodeops.kubernetes.plugins.module_utils._node.main import parse_result


def test_parse_result_takes_the_last_marker_line():
    log = "x\nNODEOPS_RESULT {\"a\": 1}\nmore\nNODEOPS_RESULT {\"a\": 2}\n"
    assert parse_result(log) == {"a": 2}
    assert parse_result("no marker") is None
    assert parse_result(None) is None


def judged_path_cleanup(monkeypatch, host, verdict):
    """path_cleanup's judging stage run through the node script on ``host``; returns the cleaning stage's params."""
    judge = {"stage": "judge", "path": "/var/log/app", "host_root": str(host), "verdict": str(verdict)}
    monkeypatch.setenv(node_main.ENV, json.dumps({"preset": "path_cleanup", "params": judge}))
    assert node_main.main() == 0
    return {"path": "/var/log/app", "mount": str(host / "var" / "log" / "app"), "verdict": str(verdict),
            "older_than_days": 1, "patterns": []}


def test_the_node_script_imports_the_preset_it_is_told_and_reports_its_errors(monkeypatch, capsys, tmp_path):
    # path_cleanup on an empty directory: nothing to remove, no errors, exit 0.
    (tmp_path / "var" / "log" / "app").mkdir(parents=True)      # a host, as the pod sees it at host_root
    params = judged_path_cleanup(monkeypatch, tmp_path, tmp_path / "verdict.json")
    monkeypatch.setenv(node_main.ENV, json.dumps({"preset": "path_cleanup", "params": params}))
    assert node_main.main() == 0
    assert parse_result(capsys.readouterr().out)["files_removed_count"] == 0
    assert node_main.PRESETS.endswith("module_utils._presets")


def test_a_success_writes_its_result_to_the_termination_message_and_a_failure_leaves_it_to_the_kubelet(
        monkeypatch, tmp_path):
    message = tmp_path / "termination-log"
    message.write_text("")                      # the kubelet mounts it; the script only writes to it
    monkeypatch.setenv(node_main.TERMINATION_ENV, str(message))
    host = tmp_path / "host"
    (host / "var" / "log" / "app").mkdir(parents=True)
    params = judged_path_cleanup(monkeypatch, host, tmp_path / "verdict.json")
    monkeypatch.setenv(node_main.ENV, json.dumps({"preset": "path_cleanup", "params": params}))
    assert node_main.main() == 0
    assert parse_result(message.read_text())["files_removed_count"] == 0
    assert "\n" not in message.read_text() and len(message.read_text()) <= node_main.MAX_TERMINATION_BYTES
    # A failure writes nothing: with FallbackToLogsOnError the kubelet puts the log's tail there.
    # A host without crictl (nsenter cannot start it: 127) is a HostProblem, exit 2.
    message.write_text("")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "nsenter").write_text("#!/bin/sh\necho 'nsenter: failed to execute crictl' >&2\nexit 127\n")
    (bindir / "nsenter").chmod(0o755)
    monkeypatch.setenv("PATH", "%s:/usr/bin:/bin" % bindir)
    monkeypatch.setenv(node_main.ENV, json.dumps({"preset": "image_prune", "params": {}}))
    assert node_main.main() == 2
    assert message.read_text() == ""


def test_a_result_too_long_for_the_message_is_left_to_the_log(tmp_path):
    assert node_main.result_message({"a": "x" * 100}).startswith("NODEOPS_RESULT {")
    assert node_main.result_message({"a": "x" * 4096}) is None
    assert node_main.write_termination_message({"a": "x" * 4096}, str(tmp_path / "t")) is False
    # No file: not in a container. Nothing is created (the script may run on a host, in a test).
    assert node_main.write_termination_message({"a": 1}, str(tmp_path / "none")) is False
    assert not (tmp_path / "none").exists()


def lay_out_code_config_map(tmp_path, workload):
    """The run's code ConfigMap as the kubelet mounts it (its items), and the argv the pod runs with the
    mount path of this test. Returns (mount dir, argv, bin dir with a fake nsenter)."""
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import pods, shipping

    code = pods.node_code(workload)
    config_map = pods.code_config_map({"name": "b", "namespace": "ns"}, "r", code, owner={})
    mounted = tmp_path / "mount"
    for item in shipping.mount_items(code["files"], under_package=True) + [
            {"key": shipping.MANIFEST_KEY, "path": shipping.MANIFEST_KEY}]:
        target = mounted / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(config_map["data"][item["key"]])
    argv = pods.node_command(code["digest"])
    argv[argv.index(pods.NODE_MOUNT["mountPath"])] = str(mounted)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "nsenter").write_text("#!/bin/sh\necho 'nsenter: failed to execute crictl: No such file' >&2\nexit 127\n")
    (bindir / "nsenter").chmod(0o755)
    return mounted, argv, bindir


def run_as_the_pod(argv, bindir, tmp_path):
    import os
    import subprocess
    import sys

    env = {"PATH": "%s:%s" % (bindir, os.environ["PATH"]), "TMPDIR": str(tmp_path),
           node_main.ENV: json.dumps({"preset": "image_prune", "params": {}})}
    return subprocess.run([sys.executable] + argv[1:], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=60, check=False)


IMAGE_PRUNE = {"kind": "preset", "preset": "image_prune", "node_script": True, "inputs": []}


def test_run_as_the_pod_runs_it_a_host_problem_exits_2(tmp_path):
    """The pod's own argv (the integrity check, then the node script) on the files its code ConfigMap
    holds. A host whose nsenter cannot start crictl (exit 127) is a HostProblem: exit 2, the error in the result."""
    _mounted, argv, bindir = lay_out_code_config_map(tmp_path, IMAGE_PRUNE)
    proc = run_as_the_pod(argv, bindir, tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert parse_result(proc.stdout)["errors"][0].startswith("crictl is not installed")


@pytest.mark.parametrize("tampered", ["_presets/image_prune.py", "_node/main.py", "nodeops-manifest.json"])
def test_tampered_node_code_never_runs(tmp_path, tampered):
    """Invariant: code whose digest does not match the pod spec never runs. A line appended to any file of
    the run's code ConfigMap (the manifest included) stops the pod before the first import of our code:
    exit 4, a message naming the file, and the appended line's effect never happens."""
    mounted, argv, bindir = lay_out_code_config_map(tmp_path, IMAGE_PRUNE)
    marker = tmp_path / "pwned"
    with open(str(mounted / tampered), "a") as f:
        f.write("\nopen(%r, 'w').write('ran')\n" % str(marker) if tampered.endswith(".py") else " ")
    proc = run_as_the_pod(argv, bindir, tmp_path)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "nodeops integrity check failed: %s does not match" % tampered in proc.stderr
    assert "nothing was run" in proc.stderr.strip().splitlines()[-1]
    assert not marker.exists() and "NODEOPS_RESULT" not in proc.stdout


def test_code_beside_the_mount_is_never_imported(tmp_path):
    """Only the checked copy is on the import path: neither PYTHONPATH nor the working directory (where a
    ``json.py`` would shadow the standard library's, which the check itself imports) is read."""
    mounted, argv, bindir = lay_out_code_config_map(tmp_path, IMAGE_PRUNE)
    evil = tmp_path / "evil" / "ansible_collections"
    evil.mkdir(parents=True)
    (evil / "__init__.py").write_text("open(%r, 'w').write('ran')\n" % str(tmp_path / "pwned"))
    (tmp_path / "evil" / "json.py").write_text("open(%r, 'w').write('ran')\n" % str(tmp_path / "pwned"))
    import os
    import subprocess
    import sys

    env = {"PATH": "%s:%s" % (bindir, os.environ["PATH"]), "TMPDIR": str(tmp_path), "PYTHONPATH": str(tmp_path / "evil"),
           node_main.ENV: json.dumps({"preset": "image_prune", "params": {}})}
    proc = subprocess.run([sys.executable] + argv[1:], cwd=str(tmp_path / "evil"), env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert not (tmp_path / "pwned").exists()


def test_every_list_in_a_result_is_bounded_and_says_it_was_cut():
    result = {"errors": ["e%d" % i for i in range(120)], "images_removed": ["i"] * 3, "bytes_freed": 5}
    out = node_main.bounded(result)
    assert len(out["errors"]) == node_main.MAX_LISTED and out["images_removed"] == ["i"] * 3
    assert out["truncated"] == {"errors": 120}
    assert node_main.bounded({"errors": []}) == {"errors": []}
    assert len(result["errors"]) == 120     # the input is not changed
