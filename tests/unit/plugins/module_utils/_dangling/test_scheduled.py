# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The scheduled sweep's objects (pure builders): its rights are the sweep's and nothing more, its code is
checked by digest, and its history is the runner's to write."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import shipping
from ansible_collections.nodeops.kubernetes.plugins.module_utils._dangling import options, scheduled, sweep_runner

SOURCES = {"_dangling/sweep_runner.py": "print('runner')\n", "_kube/api.py": "API = 1\n"}


def opts(**overrides):
    params = {"ttl_seconds": 900, "include_namespaces": [], "exclude_namespaces": ["kube-system"],
              "opt_out_label": "nodeops.io/keep-job", "skip_gitops_managed": True}
    params.update(overrides)
    return options.validate(params)


def sched(**overrides):
    base = {"schedule": "0 3 * * *", "time_zone": None, "namespace": "ops", "runner_image": "python:3.13-slim",
            "action": "delete", "page_size": 500, "concurrency": 10, "max_names": 100, "history_limit": 10,
            "runner_node_selector": {}, "runner_tolerations": [], "deadline_seconds": 3600}
    base.update(overrides)
    return base


def by_kind(objects):
    found = {}
    for obj in objects:
        found.setdefault(obj["kind"], []).append(obj)
    return found


def all_rules(objects):
    """(scope, rule) of every rule granted: the namespace of a Role, or None for a ClusterRole."""
    return [(o["metadata"].get("namespace"), rule) for o in objects if o["kind"] in ("Role", "ClusterRole")
            for rule in o["rules"]]


@pytest.mark.parametrize("action, verb", [("delete", "delete"), ("set_ttl", "patch")])
def test_cluster_wide_rights_are_list_and_one_write_verb_on_jobs_and_its_own_history(action, verb):
    objects = scheduled.build_objects(sched(action=action), opts(), SOURCES)
    assert sorted(map(json.dumps, (r for r in all_rules(objects)))) == sorted(map(json.dumps, [
        (None, {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list", verb]}),
        ("ops", {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["nodeops-dangling-job-ttl-sweep-history"],
                 "verbs": ["get", "update"]})]))
    kinds = by_kind(objects)
    [binding] = kinds["ClusterRoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "nodeops-dangling-job-ttl-sweep", "namespace": "ops"}]
    assert binding["roleRef"]["name"] == kinds["ClusterRole"][0]["metadata"]["name"]


def test_with_included_namespaces_the_rights_are_only_there():
    objects = scheduled.build_objects(sched(), opts(include_namespaces=["ci", "web"]), SOURCES)
    kinds = by_kind(objects)
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    jobs = [(scope, rule) for scope, rule in all_rules(objects) if rule["resources"] == ["jobs"]]
    assert sorted(scope for scope, _rule in jobs) == ["ci", "web"]
    assert all(rule["verbs"] == ["list", "delete"] for _scope, rule in jobs)
    bindings = [b for b in kinds["RoleBinding"] if b["metadata"]["namespace"] in ("ci", "web")]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["ci", "web"]


def test_no_right_beyond_jobs_and_the_history():
    allowed = {("batch", "jobs"): {"list", "delete", "patch"}, ("", "configmaps"): {"get", "update"}}
    for action in ("delete", "set_ttl"):
        for include in ([], ["ci"]):
            objects = scheduled.build_objects(sched(action=action), opts(include_namespaces=include), SOURCES)
            for _scope, rule in all_rules(objects):
                [group], [resource] = rule["apiGroups"], rule["resources"]
                assert set(rule["verbs"]) <= allowed[(group, resource)], rule
                if resource == "configmaps":
                    assert rule["resourceNames"] == ["nodeops-dangling-job-ttl-sweep-history"]


def test_the_cron_job_runs_checked_code_with_the_sweep_options():
    options_ = opts(ttl_seconds=60, include_namespaces=["ci"])
    objects = scheduled.build_objects(sched(time_zone="Europe/Berlin", action="set_ttl"), options_, SOURCES)
    kinds = by_kind(objects)
    [cron] = kinds["CronJob"]
    assert objects[-1] is cron   # applied last, once its rights and code exist
    assert cron["spec"]["schedule"] == "0 3 * * *" and cron["spec"]["timeZone"] == "Europe/Berlin"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    template = cron["spec"]["jobTemplate"]["spec"]["template"]
    code = [c for c in kinds["ConfigMap"] if c.get("immutable")][0]
    digest = template["metadata"]["annotations"][scheduled.RUNNER_DIGEST]
    assert code["metadata"]["name"] == "nodeops-dangling-job-ttl-sweep-code-" + digest[:10]
    files = scheduled.runner_files(sched(time_zone="Europe/Berlin", action="set_ttl"), options_, SOURCES)
    manifest, expected = shipping.manifest(files)
    assert digest == expected and code["data"][shipping.MANIFEST_KEY] == manifest
    assert sorted(code["data"]) == sorted([shipping.MANIFEST_KEY] + [shipping.config_key(p) for p in files])
    container = template["spec"]["containers"][0]
    assert container["command"] == shipping.boot_command(digest, scheduled.CODE_ROOT, "", sweep_runner.__name__,
                                                         python_flags=("-u",))
    assert container["securityContext"]["runAsNonRoot"] is True and container["securityContext"][
        "allowPrivilegeEscalation"] is False
    runner_input = json.loads(code["data"][scheduled.INPUT_KEY])
    assert runner_input["options"] == options_ and runner_input["action"] == "set_ttl"
    assert runner_input["history"]["configmap"] == "nodeops-dangling-job-ttl-sweep-history"
    assert runner_input["history"]["namespace"] == "ops" and runner_input["history"]["keep"] == 10


def test_another_option_is_another_digest_and_the_history_carries_no_data():
    first = scheduled.build_objects(sched(), opts(ttl_seconds=60), SOURCES)
    second = scheduled.build_objects(sched(), opts(ttl_seconds=61), SOURCES)

    def digest(objects):
        return by_kind(objects)["CronJob"][0]["spec"]["jobTemplate"]["spec"]["template"]["metadata"][
            "annotations"][scheduled.RUNNER_DIGEST]
    assert digest(first) != digest(second)
    history = [c for c in by_kind(first)["ConfigMap"] if not c.get("immutable")]
    assert [h["metadata"]["name"] for h in history] == ["nodeops-dangling-job-ttl-sweep-history"]
    assert "data" not in history[0]


def test_history_entry_counts_what_was_taken_and_spared():
    result = {"action": "delete", "total": 2, "per_namespace": {"ci": 2}, "names": ["ci/a", "ci/b"],
              "names_truncated": False, "spared": {"owned": 3, "opted out": 1}, "errors": ["ci/c: forbidden"],
              "errors_total": 30, "stats": {"examined": 36, "jobs_per_s": 12.5}, "pacing": {"throttled": 4}}
    entry = sweep_runner.history_entry("r1", "job-1", "t0", "t1", "failed", result)
    # Errors are counted all (the result keeps the first few): 30, not 1.
    assert entry["summary"] == {"action": "delete", "taken": 2, "examined": 36, "spared": 4, "errors": 30,
                                "jobs_per_s": 12.5, "throttled": 4, "stopped_throttled": False, "left_for_next": 0}
    stopped = sweep_runner.history_entry("r3", None, "t0", "t1", "failed", dict(
        result, stats=dict(result["stats"], stopped_throttled=True, left_for_next=7)))
    assert (stopped["summary"]["stopped_throttled"], stopped["summary"]["left_for_next"]) == (True, 7)
    assert entry["removed"] == {"jobs": 2, "ttl_set": 0} and entry["spared_by_reason"] == {"owned": 3, "opted out": 1}
    failed = sweep_runner.history_entry("r2", None, "t0", "t1", "failed", dict(result, action="set_ttl"), "boom")
    assert failed["summary"]["errors"] == 31 and failed["errors"] == ["boom", "ci/c: forbidden"] and failed["removed"]["ttl_set"] == 2


def test_two_sweeps_of_one_policy_name_in_two_namespaces_share_no_object_name():
    """Both include namespace ci: each has its own Role and RoleBinding there, and its own ClusterRole name, so
    neither install overwrites (or, when removed, deletes) the other's rights."""
    def refs(namespace, include):
        objects = scheduled.build_objects(sched(namespace=namespace), opts(include_namespaces=include), SOURCES)
        return set((o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects)
    assert not refs("ops", ["ci"]) & refs("ops2", ["ci"])
    assert not refs("ops", []) & refs("ops2", [])


def test_the_history_keeps_at_most_a_hundred_names_whatever_sweep_max_names_allows():
    result = {"action": "delete", "total": 5000, "per_namespace": {"ci": 5000},
              "names": ["ci/job-%04d" % i for i in range(5000)], "names_truncated": False, "spared": {},
              "errors": [], "stats": {"examined": 5000}}
    entry = sweep_runner.history_entry("r", "j", "t0", "t1", "succeeded", result)
    assert len(entry["names"]) == sweep_runner.HISTORY_NAMES_MAX == 100 and entry["names_truncated"] is True
    assert entry["summary"]["taken"] == 5000 and len(json.dumps(entry)) < 10000
