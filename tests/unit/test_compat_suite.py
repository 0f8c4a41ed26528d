# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The compatibility suite (make k8s-compat, on Kubernetes 1.34) holds what the README's support matrix says it
does: collected, not run, with the Makefile's own selection."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shlex
import subprocess
import sys

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets.registry import REGISTRY

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def makefile():
    with open(os.path.join(REPO, "Makefile")) as f:
        return f.read()


@pytest.fixture(scope="module")
def selected():
    """The node ids make k8s-compat runs, as pytest collects them with COMPAT_TESTS."""
    args = shlex.split(re.search(r"^COMPAT_TESTS \?= (.*)$", makefile(), re.M).group(1))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only"] + args,
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout
    return [line for line in proc.stdout.splitlines() if "::" in line]


def names(selected, path):
    return {re.sub(r"\[.*", "", node.split("::", 1)[1]) for node in selected if node.startswith(path + "::")}


def test_every_preset_runs_on_the_real_node(selected):
    with open(os.path.join(REPO, "tests", "integration", "test_real_node.py")) as f:
        source = f.read()
    chosen = names(selected, "tests/integration/test_real_node.py")
    bodies = dict(re.findall(r"^def (test_\w+)\((.*?)(?=^def |\Z)", source, re.M | re.S))
    for preset in REGISTRY:
        assert any('preset="%s"' % preset in bodies[name] for name in chosen), preset
    # ... all of that file but the runner's time-zone window test, which depends on neither version.
    assert set(bodies) - chosen == {"test_the_runner_in_its_pod_closes_the_window_in_its_time_zone"}


def test_the_runner_runs_in_its_pod_on_the_real_node(selected):
    assert "test_cron_run_now_runs_the_real_runner_in_a_pod_on_the_real_node" in names(
        selected, "tests/integration/test_real_node.py")


def test_the_native_engine_tests_are_there_to_expect_the_fallback(selected):
    chosen = names(selected, "tests/integration/test_dangling_jobs_cluster.py")
    assert {"test_missing_engine_is_reported_and_sweep_still_works", "test_policy_present_idempotent_diff_and_absent",
            "test_switching_engines_removes_the_old_engines_objects",
            "test_native_policy_adds_the_ttl_on_the_real_apiserver"} <= chosen
    assert any("sweep" in name for name in chosen)
    assert "test_install_and_sweep_playbooks_with_each_policy_engine" in names(
        selected, "tests/integration/test_playbooks.py")


def defined(path):
    with open(os.path.join(REPO, path)) as f:
        return set(re.findall(r"^def (test_\w+)", f.read(), re.M))


def test_the_support_matrix_counts_what_runs(selected):
    with open(os.path.join(REPO, "README.md")) as f:
        row = [line for line in f if line.startswith("| Kubernetes") and "make k8s-compat" in line][0]
    claimed = int(re.search(r"the tests marked `k8s_compat`: (\d+) of broadcast_job's", row).group(1))
    assert len(names(selected, "tests/integration/test_broadcast_job_cluster.py")) == claimed
    assert "all of dangling_job_ttl's" in row and "every dry-run refusal" in row
    path = "tests/integration/test_dangling_jobs_cluster.py"
    assert names(selected, path) == defined(path)


def test_broadcast_job_on_simulated_nodes_and_the_refusals(selected):
    assert len(names(selected, "tests/integration/test_broadcast_job_cluster.py")) >= 10
    assert "test_bad_input_writes_nothing" in names(selected, "tests/integration/test_broadcast_job_cluster.py")
    assert "test_bad_input_is_refused_before_any_write" in names(selected, "tests/integration/test_cron_broadcast_cluster.py")
    path = "tests/integration/test_dry_run_refusals.py"
    assert names(selected, path) == defined(path)


def test_the_role_runs_through_molecule_on_the_compat_cluster():
    body = makefile().split("\nk8s-compat:", 1)[1].split("\n\n", 1)[0]
    assert "$(MAKE) --no-print-directory molecule NODEOPS_K8S_VERSION=$(COMPAT_K8S)" in body
    assert "$(VPY) -m pytest $(COMPAT_TESTS)" in body
