# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure parts of cron_broadcast: schedules, objects, history capping."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import datetime
import hashlib
import json
import os
import sys

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import options
from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron import manifests
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import history, shipping
from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron import schedule
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import InvalidInput

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), *([os.pardir] * 5 + ["tools"])))
import rights_table  # noqa: E402  pylint: disable=wrong-import-position


@pytest.mark.parametrize("expr", ["30 2 * * *", "  30  2 * *   * ", "@DAILY", "@every 1h", "0 0 ? * mon",
                                  "5-3 * * * *", "TZ=UTC 0 3 * * *"])
def test_schedules_are_kept_exactly_as_written_for_the_apiserver_to_judge(expr):
    assert schedule.check_schedule(expr) == expr


@pytest.mark.parametrize("expr", ["", "   ", None, 5])
def test_only_no_schedule_at_all_is_refused_locally(expr):
    with pytest.raises(InvalidInput) as info:
        schedule.check_schedule(expr)
    assert info.value.param == "schedule" and "e.g. '30 2 * * *'" in info.value.msg


class Refusal(Exception):
    def __init__(self, status, causes):
        super(Refusal, self).__init__("refused")
        self.status = status
        self.body = {"kind": "Status", "reason": "Invalid", "details": {"causes": causes}}


@pytest.mark.parametrize("exc, param, fragment", [
    (Refusal(422, [{"field": "spec.schedule", "message": "Invalid value: \"5-3 * * * *\": beginning of range (5) "
                                                         "beyond end of range (3): 5-3"}]),
     "schedule", "schedule='5-3 * * * *' is invalid: the apiserver refused it: Invalid value"),
    (Refusal(422, [{"field": "spec.timeZone", "message": "Invalid value: \"Mars/Base\": unknown time zone"}]),
     "time_zone", "time_zone='Mars/Base' is invalid: the apiserver refused it"),
])
def test_an_apiserver_refusal_names_the_parameter(exc, param, fragment):
    err = schedule.refused_by_apiserver(exc, {"schedule": "5-3 * * * *", "time_zone": "Mars/Base"})
    assert isinstance(err, InvalidInput) and err.param == param
    assert err.msg.startswith(fragment), err.msg


@pytest.mark.parametrize("exc", [Refusal(403, [{"field": "spec.schedule"}]),
                                 Refusal(422, [{"field": "metadata.name", "message": "too long"}])])
def test_other_refusals_pass_through(exc):
    assert schedule.refused_by_apiserver(exc, {"schedule": "x"}) is exc


def test_next_runs_is_empty_where_croniter_does_not_know_the_syntax():
    assert schedule.next_runs("@every 1h", None) == []


def test_next_runs_in_time_zone_and_utc():
    now = datetime.datetime(2026, 3, 28, 12, 0, tzinfo=datetime.timezone.utc)
    runs = schedule.next_runs("30 2 * * *", "Europe/Berlin", now=now, count=2)
    # The clocks go forward on 2026-03-29 and 02:30 does not exist; croniter fires at 03:00.
    assert runs[0] == {"local": "2026-03-29T03:00:00+02:00", "utc": "2026-03-29T01:00:00+00:00"}
    assert runs[1] == {"local": "2026-03-30T02:30:00+02:00", "utc": "2026-03-30T00:30:00+00:00"}
    assert len(schedule.next_runs("@hourly", None, now=now)) == 5


def test_time_zone_check():
    assert schedule.check_time_zone("America/New_York") == "America/New_York"
    with pytest.raises(InvalidInput) as info:
        schedule.check_time_zone("Europe/Atlantis")
    assert info.value.param == "time_zone"


def opts():
    params = dict((k, copy.deepcopy(v.get("default"))) for k, v in options.BROADCAST_OPTIONS.items())
    params.update(name="nightly", namespace="ops", preset="image_prune",
                  image_prune={"include": [], "exclude": [], "dry_run": False})
    return options.validate(params)


CRON = {"name": "nightly", "schedule": "30 2 * * *", "time_zone": "Europe/Berlin", "concurrency_policy": "Forbid",
        "starting_deadline_seconds": 120, "successful_jobs_history_limit": 3, "failed_jobs_history_limit": 1,
        "history_limit": 10, "suspend": False, "runner_image": "python:3.13-slim"}


def granted_with_what_follows(objs):
    """What the built Roles and ClusterRoles grant, in the README table's words, and what Kubernetes makes
    follow from that (``rights_table.FOLLOWS``: creating pods reads Secrets)."""
    granted = set()
    for obj in objs:
        if obj["kind"] in ("Role", "ClusterRole"):
            ns = obj["metadata"].get("namespace")
            where = "cluster" if ns is None else ("default" if ns == "default" else "its namespace")
            granted |= rights_table.from_rules(where, obj["rules"])
    return granted | rights_table.follows_from(granted)


@pytest.mark.parametrize("node_events, keep_images, disk_pressure", [("failures", False, True), ("none", False, True),
                                                                     ("all", True, True), ("failures", False, False)])
def test_objects_are_labelled_and_rbac_is_minimal(node_events, keep_images, disk_pressure):
    """Every right the built objects give the runner, and every right that follows from one, is a row of the
    README's table for these options; a right the table does not list fails, however it is granted."""
    built = dict(opts(), node_events=node_events, disk_pressure=disk_pressure)
    if keep_images:
        built["workload"] = dict(built["workload"], inputs=["cluster_images"])
    objs = manifests.build_objects(CRON, built, sources={"engine.py": "# code"})
    conditions = ([rights_table.NODE_EVENTS] if node_events != "none" else []) + (
        [rights_table.KEEP_IMAGES] if keep_images else []) + ([rights_table.DISK_PRESSURE] if disk_pressure else [])
    table = rights_table.rows()
    documented = rights_table.rights(table, conditions, name="nightly") | rights_table.implied(table, name="nightly")
    granted = granted_with_what_follows(objs)
    assert sorted(granted - documented) == [], "granted, but not in the README's table"
    assert sorted(documented - granted) == [], "in the README's table, but not granted"
    kinds = ["ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"] + (
        ["Role", "RoleBinding"] if node_events != "none" else []) + ["ConfigMap", "CronJob"]
    assert [o["kind"] for o in objs] == kinds
    # Every binding binds the runner's ServiceAccount, and only it.
    account = {"kind": "ServiceAccount", "name": objs[0]["metadata"]["name"], "namespace": "ops"}
    bindings = [o["subjects"] for o in objs if o["kind"].endswith("Binding")]
    assert bindings == [[account]] * len([k for k in kinds if k.endswith("Binding")])
    for obj in objs:
        assert obj["metadata"]["labels"] == dict({"app.kubernetes.io/managed-by": "nodeops.kubernetes",
                                                  "nodeops.io/cron-broadcast": "nightly"},
                                                 **({"nodeops.io/kind": "runner-code"} if obj is objs[-2] else {}))
    cluster_role = objs[3]
    assert cluster_role["metadata"]["name"] == "nodeops-ops-nightly-%s-nodes" % manifests.name_hash("ops", "nightly")


def test_the_runner_may_replace_only_its_history_and_no_configmap_of_code():
    """The runner's Role: ``update`` on ConfigMaps only for its history, by name; its own code is immutable."""
    objs = manifests.build_objects(CRON, opts(), sources={"_broadcast/runner.py": "# r"})
    rules = [r for r in objs[1]["rules"] if r["resources"] == ["configmaps"]]
    updates = [r for r in rules if "update" in r["verbs"]]
    assert updates == [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["nodeops-nightly-history"],
                        "verbs": ["update"]}]
    code = objs[-2]
    assert code["kind"] == "ConfigMap" and code["immutable"] is True


@pytest.mark.parametrize("first, second", [(("a-b", "c"), ("a", "b-c")), (("ops", "x-y"), ("ops-x", "y"))])
def test_cluster_scoped_names_of_two_cron_broadcasts_never_collide(first, second):
    one, two = manifests.object_names(first[1], first[0]), manifests.object_names(second[1], second[0])
    for key in ("cluster_role", "node_events_role"):
        assert one[key] != two[key]
        assert len(one[key]) <= 253 and one[key] == one[key].lower()
    assert one["cluster_role"].startswith("nodeops-%s-%s-" % first)   # still readable


def test_the_runner_code_is_content_addressed_and_its_digest_is_in_the_cronjob():
    a = manifests.build_objects(CRON, opts(), sources={"_broadcast/runner.py": "# r"})
    b = manifests.build_objects(CRON, opts(), sources={"_broadcast/runner.py": "# r, changed"})
    assert a[-2]["metadata"]["name"] != b[-2]["metadata"]["name"]
    assert a[-2]["metadata"]["name"].startswith("nodeops-nightly-runner-")
    manifest = json.loads(a[-2]["data"][shipping.MANIFEST_KEY])
    digest = hashlib.sha256(a[-2]["data"][shipping.MANIFEST_KEY].encode()).hexdigest()
    container = a[-1]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert digest in container["command"] and a[-2]["metadata"]["name"].endswith(digest[:10])
    # Every file the runner reads is in the manifest: its code and its input.
    assert sorted(manifest) == sorted([shipping.PACKAGE_DIR + "/_broadcast/runner.py", "runner.json"])
    assert manifest["runner.json"] == hashlib.sha256(a[-2]["data"]["runner.json"].encode()).hexdigest()
    # Nothing unchecked on the path: no PYTHONPATH, and python runs isolated (-I).
    assert "-I" in container["command"] and not [e for e in container["env"] if e["name"] == "PYTHONPATH"]


def test_cronjob_runs_the_runner_from_the_configmap():
    objs = manifests.build_objects(CRON, opts(), sources={"_broadcast/engine.py": "# code",
                                                          "_broadcast/runner.py": "# r"})
    cron = objs[-1]["spec"]
    assert (cron["schedule"], cron["timeZone"], cron["concurrencyPolicy"], cron["startingDeadlineSeconds"]) == (
        "30 2 * * *", "Europe/Berlin", "Forbid", 120)
    pod = cron["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "nodeops-nightly"
    items = pod["volumes"][0]["configMap"]["items"]
    key = shipping.config_key(shipping.PACKAGE_DIR + "/_broadcast/runner.py")
    assert {"key": key, "path": shipping.PACKAGE_DIR + "/_broadcast/runner.py"} in items
    assert objs[-2]["data"][key] == "# r"
    container = pod["containers"][0]
    assert container["image"] == "python:3.13-slim"
    assert container["command"][-1] == "ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.runner"
    runner_input = json.loads(objs[-2]["data"]["runner.json"])
    assert runner_input["options"]["name"] == "nightly" and runner_input["history"] == {
        "configmap": "nodeops-nightly-history", "keep": 10}


def test_history_is_capped_by_runs_then_size():
    runs = [{"run_id": str(i), "nodes": [{"node": "n", "log": "x" * 1000}]} for i in range(20)]
    assert [r["run_id"] for r in history.cap_history(runs, keep=5)] == ["0", "1", "2", "3", "4"]
    capped = history.cap_history(copy.deepcopy(runs), keep=20, max_bytes=6000)
    assert len(json.dumps(capped)) <= 6000 and len(capped) == 20
    assert capped[0]["nodes"][0]["log"] == "x" * 1000      # the newest run keeps its logs
    logs = [r["nodes"][0]["log"] is not None for r in capped]
    assert logs == sorted(logs, reverse=True) and 1 < sum(logs) < 20   # the oldest runs' logs went first


def removal_run(run_id, nodes=3, images=50, log="l" * 500):
    names = ["registry.example/team/app-%03d:v1" % i for i in range(images)]
    recs = [{"node": "n%d" % i, "outcome": "succeeded", "log": log,
             "result": {"preset": "image_prune", "images_removed": names, "images_removed_count": images + 7,
                        "bytes_freed": 1000 * (i + 1)}} for i in range(nodes)]
    recs.append({"node": "bad", "outcome": "failed", "log": log, "result": {"errors": ["x"]}})
    return history.history_entry(run_id, "job", "a", "b", "succeeded", {"summary": {}, "nodes": recs})


def test_each_run_records_what_its_nodes_removed():
    entry = removal_run("r1")
    # 57 on each node: the count is the node's own, beyond the 50 names it lists.
    none = {"dry_run_nodes": 0, "would_free_bytes": 0, "would_remove_items": 0}
    assert entry["removed"] == dict(none, bytes_freed=6000, items=3 * 57, nodes_reporting=3)
    files = history.history_entry("r2", "j", "a", "b", "succeeded", {"nodes": [
        {"node": "n", "result": {"files_removed": ["a.log", "b.log"], "files_removed_count": 2, "bytes_freed": 5}},
        {"node": "m", "result": None}, {"node": "k", "outcome": "not_started"}]})
    assert files["removed"] == dict(none, bytes_freed=5, items=2, nodes_reporting=1)
    # A dry run removed nothing: what it would have freed is counted apart.
    dry = history.history_entry("r3", "j", "a", "b", "succeeded", {"nodes": [
        {"node": "n", "result": {"dry_run": True, "images_removed": ["x:1"], "images_removed_count": 1,
                                 "bytes_freed": 9}}]})
    assert dry["removed"] == dict(bytes_freed=0, items=0, nodes_reporting=0, dry_run_nodes=1, would_free_bytes=9,
                                  would_remove_items=1)


def test_the_removal_record_outlasts_logs_and_names_as_the_history_is_capped():
    runs = [removal_run(str(i)) for i in range(10)]
    full = len(json.dumps(runs))
    # Logs go first, the oldest runs' first.
    capped = history.cap_history(copy.deepcopy(runs), keep=10, max_bytes=full - 3000)
    assert capped[0]["nodes"][0]["log"] and capped[-1]["nodes"][0]["log"] is None
    assert all(r["nodes"][0]["result"]["images_removed"] for r in capped)
    # Then the older runs' names; their counts and bytes stay, and every run is still there.
    no_logs = len(json.dumps([dict(r, nodes=[dict(n, log=None) for n in r["nodes"]]) for r in runs]))
    capped = history.cap_history(copy.deepcopy(runs), keep=10, max_bytes=no_logs - 3000)
    assert len(capped) == 10 and capped[0]["nodes"][0]["result"]["images_removed"]
    oldest = capped[-1]["nodes"][0]["result"]
    assert oldest["images_removed"] is None and oldest["lists_dropped"] is True
    assert (oldest["images_removed_count"], oldest["bytes_freed"]) == (57, 1000)
    # A budget for one run only: the oldest runs go, the newest keeps its totals.
    capped = history.cap_history(copy.deepcopy(runs), keep=10, max_bytes=len(json.dumps(runs[0])))
    assert [r["run_id"] for r in capped][0] == "0" and len(capped) < 10
    # One run too big by itself: its names, then its succeeded nodes go; the failed node and the totals stay.
    huge = removal_run("big", nodes=40)
    kept = copy.deepcopy(huge)
    [capped] = history.cap_history([huge], keep=1, max_bytes=2000)
    assert huge == kept, "cap_history changed the runs it was given"
    assert len(json.dumps(capped)) <= 2000
    assert [n["node"] for n in capped["nodes"]] == ["bad"] and capped["nodes_dropped"] == 40
    assert capped["removed"] == huge["removed"]


def test_a_run_that_skipped_thousands_of_nodes_still_fits():
    """A selector that picks 10 nodes of 5,000: the skipped ones fold into a count per reason."""
    run = removal_run("sel", nodes=10)
    run["nodes"] += [{"node": "n%05d" % i, "outcome": "skipped", "reason": "selector mismatch: node_selector",
                      "log": None, "result": None} for i in range(5000)]
    assert len(json.dumps(run)) > history.HISTORY_MAX_BYTES
    [capped] = history.cap_history([run], keep=1)
    assert len(json.dumps(capped)) <= history.HISTORY_MAX_BYTES
    assert capped["skipped_by_reason"] == {"selector mismatch: node_selector": 5000}
    assert len(capped["nodes"]) == 11 and capped["nodes"][0]["log"]      # the nodes that ran keep their logs
    # Twenty thousand failed nodes: their logs go, then nodes are cut until it fits, and counted.
    failing = {"run_id": "f", "summary": {}, "removed": {}, "nodes": [
        {"node": "n%05d" % i, "outcome": "failed", "reason": "Error", "log": "x" * 200} for i in range(20000)]}
    [capped] = history.cap_history([failing], keep=1)
    assert len(json.dumps(capped)) <= history.HISTORY_MAX_BYTES
    assert capped["nodes_dropped"] + len(capped["nodes"]) == 20000 and capped["nodes"]
    assert all(rec["log"] is None for rec in capped["nodes"])


def test_history_entry_trims_logs():
    entry = history.history_entry("r1", "job", "a", "b", "succeeded",
                                  {"summary": {"succeeded": 1}, "nodes": [{"node": "n", "log": "y" * 5000}]})
    assert len(entry["nodes"][0]["log"]) == history.LOG_CHARS_IN_HISTORY


@pytest.mark.parametrize("placement, expected", [
    ({}, {}),
    ({"runner_node_selector": {"node-role.example/system": "true"}},
     {"nodeSelector": {"node-role.example/system": "true"}}),
    ({"runner_tolerations": [{"key": "dedicated", "operator": "Equal", "value": "system", "effect": "NoSchedule"}]},
     {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "system", "effect": "NoSchedule"}]}),
])
def test_runner_placement_goes_on_the_runner_pod_only(placement, expected):
    objs = manifests.build_objects(dict(CRON, **placement), opts(), sources={"_broadcast/engine.py": "# code"})
    pod_spec = objs[-1]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert dict((k, pod_spec[k]) for k in ("nodeSelector", "tolerations") if k in pod_spec) == expected
    runner_input = json.loads(objs[-2]["data"]["runner.json"])
    assert "tolerations" not in runner_input["options"] or runner_input["options"]["tolerations"] == []


def test_a_window_with_a_time_zone_ships_the_zones_rules_to_the_runner():
    import base64

    windowed = dict(opts(), window={"end": "05:00", "time_zone": "Europe/Berlin"})
    objs = manifests.build_objects(CRON, windowed, sources={"e.py": "# c"}, zone=b"TZif-rules")
    config_map = [o for o in objs if o["kind"] == "ConfigMap"][0]
    assert base64.b64decode(config_map["binaryData"][manifests.ZONE_KEY]) == b"TZif-rules"
    assert json.loads(config_map["data"]["runner.json"])["time_zone_file"] == "time-zone.tzif"
    pod = objs[-1]["spec"]["jobTemplate"]["spec"]["template"]
    assert {"key": "time-zone.tzif", "path": "time-zone.tzif"} in pod["spec"]["volumes"][0]["configMap"]["items"]
    # Other rules, another digest: the change shows in the CronJob's diff.
    other = manifests.build_objects(CRON, windowed, sources={"e.py": "# c"}, zone=b"TZif-other")
    assert other[-1]["spec"]["jobTemplate"]["spec"]["template"]["metadata"] != pod["metadata"]
    # No window, or a duration: nothing shipped.
    for plain in (opts(), dict(opts(), window={"duration_s": 60})):
        config_map = [o for o in manifests.build_objects(CRON, plain, sources={"e.py": "# c"}) if o["kind"] == "ConfigMap"]
        assert "binaryData" not in config_map[0] and "time_zone_file" not in config_map[0]["data"]["runner.json"]
    # The controller's own zone database has the real rules.
    real = manifests.build_objects(CRON, windowed, sources={"e.py": "# c"})
    assert base64.b64decode([o for o in real if o["kind"] == "ConfigMap"][0]["binaryData"]["time-zone.tzif"])[:4] == \
        b"TZif"
