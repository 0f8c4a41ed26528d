# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The node script's own parts: its result line, and how it runs a preset."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.nodeops.kubernetes.plugins.module_utils._node import main as node_main
from ansible_collections.nodeops.kubernetes.plugins.module_utils._node.main import parse_result


def test_parse_result_takes_the_last_marker_line():
    log = "x\nNODEOPS_RESULT {\"a\": 1}\nmore\nNODEOPS_RESULT {\"a\": 2}\n"
    assert parse_result(log) == {"a": 2}
    assert parse_result("no marker") is None
    assert parse_result(None) is None


def test_the_node_script_imports_the_preset_it_is_told_and_reports_its_errors(monkeypatch, capsys, tmp_path):
    # path_cleanup on an empty directory: nothing to remove, no errors, exit 0.
    params = {"path": "/var/log/app", "mount": str(tmp_path), "older_than_days": 1, "patterns": []}
    monkeypatch.setenv(node_main.ENV, json.dumps({"preset": "path_cleanup", "params": params}))
    assert node_main.main() == 0
    assert parse_result(capsys.readouterr().out)["files_removed_count"] == 0
    assert node_main.PRESETS.endswith("module_utils._presets")


def test_a_success_writes_its_result_to_the_termination_message_and_a_failure_leaves_it_to_the_kubelet(
        monkeypatch, tmp_path):
    message = tmp_path / "termination-log"
    message.write_text("")                      # the kubelet mounts it; the script only writes to it
    monkeypatch.setenv(node_main.TERMINATION_ENV, str(message))
    params = {"path": "/var/log/app", "mount": str(tmp_path / "empty"), "older_than_days": 1, "patterns": []}
    (tmp_path / "empty").mkdir()
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


def test_run_as_the_pod_runs_it_a_host_problem_exits_2(tmp_path):
    """``python3 -m ..._node.main`` from the files a run record ships, as the pod runs it. A host whose
    nsenter cannot start crictl (exit 127) is a HostProblem: exit 2 with the error in the result."""
    import os
    import subprocess
    import sys

    from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import pods, shipping

    for path, source in pods.node_files("image_prune").items():
        target = tmp_path / shipping.PACKAGE_DIR / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "nsenter").write_text("#!/bin/sh\necho 'nsenter: failed to execute crictl: No such file' >&2\nexit 127\n")
    (bindir / "nsenter").chmod(0o755)
    env = {"PATH": "%s:%s" % (bindir, os.environ["PATH"]),
           node_main.ENV: json.dumps({"preset": "image_prune", "params": {}})}
    proc = subprocess.run([sys.executable, "-S"] + list(pods.NODE_COMMAND[1:]), cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert parse_result(proc.stdout)["errors"][0].startswith("crictl is not installed")
