# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Invariant: the node_maintenance role never takes over or deletes a namespace it did not create.

Each test points the role, through ansible-playbook, at a namespace in a hostile or a friendly state and
checks the outcome with the official client and the apiserver's audit log. The role runs impersonating a
user of its own (with the admin's rights), so the audit log tells its writes from anyone else's, even from
other tests sharing the cluster under the admin's certificate.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import sys
import time

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

import kube_helpers as kh

ROLE = "nodeops.kubernetes.node_maintenance"
CREATED_BY = "nodeops.io/created-by"
ENFORCE = "pod-security.kubernetes.io/enforce"
MANAGED_BY = "app.kubernetes.io/managed-by"

# One preset task (privileged level needed), suspended: the role installs its CronJob, nothing ever runs.
PRESET_TASKS = [{"name": "team-prune", "schedule": "0 3 1 1 *", "preset": "image_prune", "suspend": True}]


def run_role(tmp_path, user, namespace, state="present", check=False, **role_vars):
    """Run the role as ``user`` (impersonated, in system:masters); return the finished process."""
    role_vars = dict({"node_maintenance_namespace": namespace, "node_maintenance_state": state,
                      "node_maintenance_tasks": PRESET_TASKS,
                      # The TTL policy is cluster-wide and other tests own it; leave it out (and absent).
                      "node_maintenance_dangling_jobs": {"enabled": False}}, **role_vars)
    play = [{"name": "node_maintenance under test", "hosts": "localhost", "gather_facts": False,
             "connection": "local", "roles": [{"role": ROLE}]}]
    playbook = tmp_path / ("play-%s-%s.yml" % (state, time.monotonic_ns()))
    playbook.write_text(json.dumps(play))
    extra = tmp_path / ("vars-%s.json" % time.monotonic_ns())
    extra.write_text(json.dumps(role_vars))
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
               "-e", "ansible_python_interpreter=" + sys.executable, "-e", "@%s" % extra, str(playbook)]
    if check:
        command.append("--check")
    env = dict(os.environ, KUBECONFIG=kh.KUBECONFIG, ANSIBLE_NOCOLOR="1",
               K8S_AUTH_IMPERSONATE_USER=user, K8S_AUTH_IMPERSONATE_GROUPS="system:masters")
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)


def writes_by(audit, mark, user):
    """Every write request ``user`` made after ``mark``, cluster-wide (cluster-scoped objects included)."""
    out = []
    for event in audit.events_since(mark):
        if event.get("stage") != "ResponseComplete" or event.get("verb") in ("get", "list", "watch"):
            continue
        if (event.get("impersonatedUser") or {}).get("username") != user:
            continue
        ref = event.get("objectRef") or {}
        out.append((event["verb"], ref.get("resource"), ref.get("namespace"), ref.get("name"),
                    "dryRun=All" in event.get("requestURI", "")))
    return out


def namespace_meta(core, name):
    meta = core.read_namespace(name).metadata
    return {"labels": dict(meta.labels or {}), "annotations": dict(meta.annotations or {}),
            "deleting": meta.deletion_timestamp is not None}


def exists(read):
    try:
        read()
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


@pytest.fixture
def role_user():
    return kh.unique("nodeops-role-test")


@pytest.fixture
def team_namespace(core, namespace):
    """An existing team namespace the role did not create, with one object of the team's in it."""
    core.create_namespaced_config_map(namespace, k8s.V1ConfigMap(
        metadata=k8s.V1ObjectMeta(name="team-settings"), data={"owner": "team-a"}))
    core.patch_namespace(namespace, {"metadata": {"labels": {"team": "a"}}})
    return namespace


class RoleCleanup:
    """Runs the role with state=absent at the end unless the test already did, so no CronJob or
    ClusterRole of the role outlives a failed test (the namespace fixture then deletes the namespace)."""

    def __init__(self, tmp_path, user, namespace):
        self.args = (tmp_path, user, namespace)
        self.done = False

    def absent(self):
        proc = run_role(*self.args, state="absent")
        self.done = proc.returncode == 0
        return proc

    def finish(self):
        if not self.done:
            run_role(*self.args, state="absent")


@pytest.mark.parametrize("enforce", [None, "privileged"], ids=["no-psa-label", "enforce-privileged"])
def test_role_never_relabels_or_deletes_a_namespace_it_did_not_create(
        core, team_namespace, tmp_path, role_user, enforce):
    if enforce:
        core.patch_namespace(team_namespace, {"metadata": {"labels": {ENFORCE: enforce}}})
    before = namespace_meta(core, team_namespace)
    cleanup = RoleCleanup(tmp_path, role_user, team_namespace)
    try:
        present = run_role(tmp_path, role_user, team_namespace)
        assert present.returncode == 0, present.stdout + present.stderr
        assert namespace_meta(core, team_namespace) == before          # not relabelled, not annotated
        crons = k8s.BatchV1Api(core.api_client).list_namespaced_cron_job(team_namespace).items
        assert [c.metadata.name for c in crons] == ["team-prune"]       # the role did install its task

        absent = cleanup.absent()
        assert absent.returncode == 0, absent.stdout + absent.stderr
        assert exists(lambda: core.read_namespace(team_namespace)), "state=absent deleted the team's namespace"
        after = namespace_meta(core, team_namespace)
        assert after == before and not after["deleting"]
        assert core.read_namespaced_config_map("team-settings", team_namespace).data == {"owner": "team-a"}
        assert k8s.BatchV1Api(core.api_client).list_namespaced_cron_job(team_namespace).items == []
    finally:
        cleanup.finish()


def test_role_refuses_a_namespace_whose_pod_security_level_is_too_low_before_any_write(
        core, team_namespace, tmp_path, role_user, audit):
    core.patch_namespace(team_namespace, {"metadata": {"labels": {ENFORCE: "baseline"}}})
    before = namespace_meta(core, team_namespace)
    cleanup = RoleCleanup(tmp_path, role_user, team_namespace)
    try:
        for check in (False, True):
            mark = audit.mark()
            proc = run_role(tmp_path, role_user, team_namespace, check=check)
            out = proc.stdout + proc.stderr
            assert writes_by(audit, mark, role_user) == [], out
            assert proc.returncode != 0, out
            assert "Namespace %s exists and was not created by this role" % team_namespace in out
            assert "enforces the Pod Security level baseline; the tasks need privileged" in out
            assert ("kubectl label --overwrite namespace %s pod-security.kubernetes.io/enforce=privileged"
                    % team_namespace) in out
            assert "node_maintenance_manage_namespace_labels" in out
        assert namespace_meta(core, team_namespace) == before
        assert k8s.BatchV1Api(core.api_client).list_namespaced_cron_job(team_namespace).items == []
        cleanup.done = True   # nothing was installed, so there is nothing to remove
    finally:
        cleanup.finish()


def test_role_raises_the_pod_security_level_of_an_existing_namespace_only_when_asked(
        core, team_namespace, tmp_path, role_user, audit):
    core.patch_namespace(team_namespace, {"metadata": {"labels": {ENFORCE: "baseline"}}})
    before = namespace_meta(core, team_namespace)
    cleanup = RoleCleanup(tmp_path, role_user, team_namespace)
    try:
        mark = audit.mark()
        present = run_role(tmp_path, role_user, team_namespace, node_maintenance_manage_namespace_labels=True)
        assert present.returncode == 0, present.stdout + present.stderr
        # The writes are seen, as the role's user: the audit filter of the refusal test can see them.
        writes = writes_by(audit, mark, role_user)
        assert ("patch", "namespaces", team_namespace, team_namespace, False) in writes, writes
        after = namespace_meta(core, team_namespace)
        assert after["labels"] == dict(before["labels"], **{ENFORCE: "privileged"})   # that label only
        assert after["annotations"] == before["annotations"]
        crons = k8s.BatchV1Api(core.api_client).list_namespaced_cron_job(team_namespace).items
        assert [(c.metadata.name, c.spec.suspend) for c in crons] == [("team-prune", True)]

        again = run_role(tmp_path, role_user, team_namespace, node_maintenance_manage_namespace_labels=True)
        assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout + again.stderr

        absent = cleanup.absent()
        assert absent.returncode == 0, absent.stdout + absent.stderr
        assert not namespace_meta(core, team_namespace)["deleting"]
        assert core.read_namespaced_config_map("team-settings", team_namespace).data == {"owner": "team-a"}
    finally:
        cleanup.finish()


def test_role_deletes_the_namespace_it_created(core, tmp_path, role_user, audit):
    name = kh.unique("t-role-created")
    cleanup = RoleCleanup(tmp_path, role_user, name)
    try:
        mark = audit.mark()
        preview = run_role(tmp_path, role_user, name, check=True)
        assert preview.returncode == 0, preview.stdout + preview.stderr
        assert "Would install team-prune in the new namespace %s" % name in preview.stdout
        assert [w for w in writes_by(audit, mark, role_user) if not w[4]] == []   # dry runs at most
        assert not exists(lambda: core.read_namespace(name))

        present = run_role(tmp_path, role_user, name)
        assert present.returncode == 0, present.stdout + present.stderr
        meta = namespace_meta(core, name)
        assert meta["annotations"].get(CREATED_BY) == "node_maintenance"
        assert meta["labels"][MANAGED_BY] == "nodeops.kubernetes"
        assert meta["labels"][ENFORCE] == "privileged"

        again = run_role(tmp_path, role_user, name, check=True)
        assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout + again.stderr

        absent = cleanup.absent()
        assert absent.returncode == 0, absent.stdout + absent.stderr
        assert not exists(lambda: core.read_namespace(name))
    finally:
        cleanup.finish()
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
