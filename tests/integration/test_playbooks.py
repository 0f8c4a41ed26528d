# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The example playbooks run against the local cluster."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import subprocess
import sys

import pytest
from kubernetes import client as k8s

import kube_helpers as kh

sys.path.insert(0, os.path.join(kh.REPO, "tools", "localcluster"))


def playbook(name, *extra):
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
               "-e", "ansible_python_interpreter=" + sys.executable,
               os.path.join(kh.REPO, "playbooks", name)] + list(extra)
    return subprocess.run(command, env=dict(os.environ, KUBECONFIG=kh.KUBECONFIG, ANSIBLE_NOCOLOR="1"),
                          capture_output=True, text=True, timeout=300, check=False)


def test_prune_images_playbook_prints_a_table_per_node(namespace, cluster):
    proc = playbook("prune_images.yml", "-e", "prune_namespace=" + namespace)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "NODE                   OUTCOME" in proc.stdout
    for i in range(1, 9):
        assert "kwok-worker-%d " % i in proc.stdout
    assert "control plane" in proc.stdout
    # A dry run (the default) freed nothing: its column says what it would free.
    assert re.search(r'"NODE +OUTCOME +EXIT +SECONDS +IMAGES +WOULD FREE +REASON"', proc.stdout), proc.stdout
    assert "BYTES FREED" not in proc.stdout


def test_prune_images_playbook_heads_a_real_run_bytes_freed(namespace, cluster):
    """Only the kwok nodes (nothing runs on them), so a real run removes nothing here."""
    proc = playbook("prune_images.yml", "-e", "prune_namespace=" + namespace, "-e", "prune_dry_run=false",
                    "-e", "prune_node_label_selector=type=kwok")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r'"NODE +OUTCOME +EXIT +SECONDS +IMAGES +BYTES FREED +REASON"', proc.stdout), proc.stdout
    assert "WOULD FREE" not in proc.stdout and "kwok-worker-1 " in proc.stdout
    assert re.search(r"nodeops-real-node +skipped .* selector mismatch", proc.stdout), proc.stdout


def test_prune_images_on_a_large_cluster_prints_progress_lines_without_v(namespace, cluster):
    """Above prune_progress_above eligible nodes (0 here) the run goes to the background and the play prints
    a progress line per look, with no -v; the table and the summary come once it is done."""
    proc = playbook("prune_images.yml", "-e", "prune_namespace=" + namespace, "-e", "prune_progress_above=0",
                    "-e", "prune_progress_interval=1", "-e", "prune_async_timeout=100", "-e", "prune_parallelism=2",
                    "-e", '{"prune_pod_annotations": {"sim.nodeops.io/delay": "2s"}}')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "TASK [Run image_prune once on every eligible node]" in proc.stdout      # the short path: skipped
    progress = re.findall(r'"msg": "image-prune run p\d+: (\d+) succeeded, (\d+) failed, (\d+) running, (\d+) waiting, '
                          r'of (\d+) nodes', proc.stdout)
    assert len(progress) >= 2, proc.stdout
    done = [int(p[0]) for p in progress]
    assert done == sorted(done) and any(0 < d < 8 for d in done), progress   # seen mid-run, going up
    assert all(p[4] == "8" for p in progress)
    assert "NODE                   OUTCOME" in proc.stdout
    for i in range(1, 9):
        assert "kwok-worker-%d " % i in proc.stdout


def test_install_report_sweep_and_remove(tmp_path, core, cluster):
    """install_maintenance.yml (the role), report.yml, sweep_dangling_jobs.yml, then removal."""
    import kyverno_tools  # pylint: disable=import-outside-toplevel

    kyverno_tools.install_crds()
    namespace = kh.unique("t-playbooks")
    extra = ["-e", "node_maintenance_namespace=" + namespace]
    try:
        first = playbook("install_maintenance.yml", *extra)
        assert first.returncode == 0, first.stdout + first.stderr
        second = playbook("install_maintenance.yml", *extra)
        assert second.returncode == 0 and "changed=0" in second.stdout, second.stdout
        fewer = playbook("install_maintenance.yml", *extra + ["-e", json.dumps({"node_maintenance_tasks": [
            {"name": "nightly-image-prune", "schedule": "30 2 * * *", "time_zone": "Europe/Berlin",
             "preset": "image_prune", "preset_options": {"exclude": ["registry.example.com/base/*"]},
             "parallelism": "20%"}]})])
        assert fewer.returncode == 0, fewer.stdout + fewer.stderr
        crons = [c.metadata.name for c in k8s.BatchV1Api(core.api_client).list_namespaced_cron_job(namespace).items]
        assert crons == ["nightly-image-prune"]   # the task no longer listed was removed
        report = playbook("report.yml", "-e", "report_namespace=" + namespace, "-e", "report_format=both",
                          "-e", "report_html_path=%s" % (tmp_path / "report.html"))
        assert report.returncode == 0, report.stdout + report.stderr
        assert "== nightly-image-prune  schedule 30 2 * * *" in report.stdout
        assert "no runs recorded yet" in report.stdout
        assert "No runs recorded yet." in (tmp_path / "report.html").read_text()
        bad = playbook("report.yml", "-e", "report_namespace=" + namespace, "-e", "report_format=pdf")
        assert bad.returncode == 2 and "report_format=pdf is invalid; expected text, html or both" in bad.stdout
        assert "weekly-app-logs" not in report.stdout
        sweep = playbook("sweep_dangling_jobs.yml", "-e", "sweep_ttl_seconds=86400")
        assert sweep.returncode == 0, sweep.stdout + sweep.stderr
        assert "would delete" in sweep.stdout
    finally:
        gone = playbook("install_maintenance.yml", *extra + ["-e", "node_maintenance_state=absent"])
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert namespace not in [ns.metadata.name for ns in core.list_namespace().items]


ENGINE_KINDS = {
    "native": [("admissionregistration.k8s.io", "v1", "mutatingadmissionpolicies"),
               ("admissionregistration.k8s.io", "v1", "mutatingadmissionpolicybindings")],
    "kyverno": [("policies.kyverno.io", "v1", "mutatingpolicies")],
    "kyverno_legacy": [("kyverno.io", "v1", "clusterpolicies")],
}


def ttl_policy_kinds(api_client, name="nodeops-dangling-job-ttl"):
    """Which engines' objects named ``name`` exist: {engine: count}."""
    custom = k8s.CustomObjectsApi(api_client)
    found = {}
    for engine, kinds in ENGINE_KINDS.items():
        for group, version, plural in kinds:
            try:
                custom.get_cluster_custom_object(group, version, plural, name)
                found[engine] = found.get(engine, 0) + 1
            except k8s.ApiException as exc:
                assert exc.status == 404
    return found


@pytest.mark.k8s_compat
def test_install_and_sweep_playbooks_with_each_policy_engine(core, cluster):
    """install_maintenance.yml and sweep_dangling_jobs.yml with every engine in turn; absent removes the last."""
    import kyverno_tools  # pylint: disable=import-outside-toplevel

    kyverno_tools.install_crds()
    namespace = kh.unique("t-engines")
    extra = ["-e", "node_maintenance_namespace=" + namespace, "-e", '{"node_maintenance_tasks": []}']
    native = kh.native_ttl_engine()
    try:
        for engine in ("kyverno_legacy", "kyverno", "native"):
            if engine == "native" and not native:
                # Kubernetes 1.34: refused, naming what it needs; the kyverno policy stays.
                install = playbook("install_maintenance.yml", *extra + ["-e", "ttl_policy_engine=" + engine])
                assert install.returncode != 0 and "policy_engine=native cannot be used here" in install.stdout, (
                    install.stdout + install.stderr)
                assert ttl_policy_kinds(core.api_client) == {"kyverno": 1}
                continue
            install = playbook("install_maintenance.yml", *extra + ["-e", "ttl_policy_engine=" + engine])
            assert install.returncode == 0, install.stdout + install.stderr
            assert ttl_policy_kinds(core.api_client) == {engine: len(ENGINE_KINDS[engine])}
            sweep = playbook("sweep_dangling_jobs.yml", "-e", "sweep_ttl_seconds=86400",
                             "-e", "ttl_policy_engine=" + engine)
            assert sweep.returncode == 0, sweep.stdout + sweep.stderr
            assert "TTL policy: %s (asked for;" % engine in sweep.stdout and "would delete" in sweep.stdout
            assert ttl_policy_kinds(core.api_client) == {engine: len(ENGINE_KINDS[engine])}
        auto = playbook("sweep_dangling_jobs.yml", "-e", "ttl_policy_engine=auto")
        # auto: native where served, else the documented fallback, Kyverno's MutatingPolicy (its CRDs are here).
        assert auto.returncode == 0 and "TTL policy: %s (auto:" % ("native" if native else "kyverno") in auto.stdout, (
            auto.stdout + auto.stderr)
    finally:
        gone = playbook("install_maintenance.yml", *extra + ["-e", "node_maintenance_state=absent"])
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert ttl_policy_kinds(core.api_client) == {}


def test_long_run_progress_playbook_polls_broadcast_info_until_done(namespace, cluster):
    proc = playbook("long_run_progress.yml", "-v", "-e", "progress_namespace=" + namespace,
                    "-e", '{"progress_pod_annotations": {"sim.nodeops.io/delay": "3s"}}')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAILED - RETRYING: [localhost]: Show the run's progress" in proc.stdout   # it really polled
    assert '"progress": {' in proc.stdout and '"state": "running"' in proc.stdout
    assert '"succeeded": 8' in proc.stdout   # the summary, once collected
