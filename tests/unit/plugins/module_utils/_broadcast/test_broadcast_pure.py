# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure parts of broadcast_job: selectors, validation, plan, pod builder, classifier."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import options
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import outcomes
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import plan as planner
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import pods, shipping
from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets.registry import REGISTRY
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import naming
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import InvalidInput
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.selectors import (
    SelectorError,
    matches,
    parse_label_selector,
    tolerates,
)


def params(**overrides):
    """Module parameters as AnsibleModule would hand them over (defaults filled in)."""
    base = dict((k, copy.deepcopy(v.get("default"))) for k, v in options.BROADCAST_OPTIONS.items())
    base.update(name="prune", namespace="ops", run_id=None, preset="image_prune",
                image_prune={"include": [], "exclude": [], "dry_run": True})
    base.update(overrides)
    return base


def node(name, labels=None, taints=None, ready=True, unschedulable=False):
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": dict({"taints": taints} if taints else {}, **({"unschedulable": True} if unschedulable else {})),
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


# ---------------------------------------------------------------- selectors

@pytest.mark.parametrize("text, labels, expected", [
    ("zone in (a,b)", {"zone": "a"}, True),
    ("zone in (a,b)", {"zone": "c"}, False),
    ("zone notin (a)", {}, True),
    ("!gpu", {"gpu": "x"}, False),
    ("gpu", {"gpu": ""}, True),
    ("tier=web,env!=prod", {"tier": "web", "env": "dev"}, True),
    ("tier==web", {"tier": "db"}, False),
    ("", {"any": "thing"}, True),
])
def test_label_selector_semantics(text, labels, expected):
    assert matches(parse_label_selector(text), labels) is expected


@pytest.mark.parametrize("text", ["zone in ()", "zone in (a,,b)", "=x", "a b", "bad key!=x", "k=v v", ",", "x in a"])
def test_invalid_label_selectors_are_rejected(text):
    with pytest.raises(SelectorError):
        parse_label_selector(text)


@pytest.mark.parametrize("toleration, taint, expected", [
    ({"operator": "Exists"}, {"key": "k", "effect": "NoSchedule"}, True),
    ({"key": "k", "operator": "Exists"}, {"key": "k", "value": "v", "effect": "NoExecute"}, True),
    ({"key": "k", "value": "v"}, {"key": "k", "value": "v", "effect": "NoSchedule"}, True),
    ({"key": "k", "value": "w"}, {"key": "k", "value": "v", "effect": "NoSchedule"}, False),
    ({"key": "k", "operator": "Exists", "effect": "NoExecute"}, {"key": "k", "effect": "NoSchedule"}, False),
])
def test_toleration_rules(toleration, taint, expected):
    assert tolerates(toleration, taint) is expected


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("overrides, param, fragment", [
    (dict(parallelism=0), "parallelism", "at least 1"),
    (dict(parallelism="150%"), "parallelism", "1% to 100%"),
    (dict(parallelism="ten"), "parallelism", "percentage"),
    (dict(parallelism=True), "parallelism", "whole number"),
    (dict(timeout=-1), "timeout", "at least 1"),
    (dict(pending_timeout=0), "pending_timeout", "at least 1"),
    (dict(restart_limit=-2), "restart_limit", "at least 0"),
    (dict(node_label_selector="zone in ()"), "node_label_selector", "label selector"),
    (dict(pod_template={"spec": {"containers": [{"name": "c", "image": "i"}]}}), "pod_template", "not both"),
    (dict(preset=None, image_prune=None), "preset", "pod_template"),
    (dict(preset="path_cleanup", image_prune=None, path_cleanup={"path": "/etc", "older_than_days": 1}),
     "path_cleanup.path", "protected system path"),
    (dict(preset="path_cleanup", image_prune=None, path_cleanup={"path": "var/log", "older_than_days": 1}),
     "path_cleanup.path", "relative"),
    (dict(preset="path_cleanup", image_prune=None, path_cleanup={"path": "/var/log/x", "patterns": []}),
     "path_cleanup", "older_than_days"),
    (dict(preset="host_command", image_prune=None, host_command={"command": "rm -rf /tmp/x", "shell": False}),
     "host_command.command", "shell=true"),
    (dict(name="a" * 38), "name", "at most 37"),
    (dict(name="Bad_Name"), "name", "DNS-1123"),
    (dict(run_id="x" * 17), "run_id", "at most 16"),
    (dict(namespace="Ops"), "namespace", "DNS-1123"),
    (dict(tolerations=[{"key": "k", "operator": "Maybe"}]), "tolerations[0]", "Equal or Exists"),
    (dict(nodes=[]), "nodes", "non-empty"),
    (dict(pod_labels={"bad key": "v"}), "pod_labels", "label"),
    (dict(preset=None, image_prune=None, pod_template={"spec": {}}), "pod_template", "spec.containers"),
    (dict(path_cleanup={"path": "/var/log", "older_than_days": 1}), "path_cleanup", "chosen preset"),
])
def test_bad_input_names_the_parameter_value_and_what_is_accepted(overrides, param, fragment):
    with pytest.raises(InvalidInput) as info:
        options.validate(params(**overrides))
    assert info.value.param == param
    assert fragment in info.value.msg
    assert info.value.msg.startswith(param + "=")


@pytest.mark.parametrize("param, value, kind, quoted", [
    ("node_selector", True, "a boolean", 'gpu: "true"'),
    ("node_selector", False, "a boolean", 'gpu: "false"'),
    ("node_selector", 2, "a number", 'gpu: "2"'),
    ("node_selector", 1.1, "a number", 'gpu: "1.1"'),   # version: 1.10 in YAML
    ("node_selector", None, "null", 'gpu: ""'),
    ("pod_labels", True, "a boolean", 'gpu: "true"'),
])
def test_a_label_value_that_is_not_a_string_is_refused_not_compared_as_text(param, value, kind, quoted):
    """node_selector {gpu: true} would compare "True" with the nodes' "true" and skip every node."""
    with pytest.raises(InvalidInput) as info:
        options.validate(params(**{param: {"gpu": value}}))
    assert info.value.param == param and info.value.value == {"gpu": value}
    assert info.value.msg.startswith("%s=%r is invalid: the value of gpu is %s, and label values are strings"
                                     % (param, {"gpu": value}, kind)), info.value.msg
    assert info.value.msg.endswith(quoted), info.value.msg


def test_a_quoted_node_selector_value_selects_the_nodes_labelled_with_it():
    opts = options.validate(params(node_selector={"gpu": "true"}))
    result = planner.plan([node("a-gpu", {"gpu": "true"}), node("b-cpu", {"gpu": "false"})], [], opts, "r1")
    assert result["eligible"] == ["a-gpu"]
    assert result["skipped"] == {"b-cpu": "selector mismatch: node_selector gpu=true"}


@pytest.mark.parametrize("value, eligible, expected", [
    (10, 100, 10), ("25%", 100, 25), ("25%", 3, 1), ("100%", 7, 7), ("1%", 5000, 50), ("3", 9, 3),
])
def test_parallelism_resolves_against_eligible_nodes(value, eligible, expected):
    assert options.resolve_parallelism(options.parse_parallelism(value), eligible) == expected


# ---------------------------------------------------------------- plan

def test_plan_reports_every_skip_reason():
    opts = options.validate(params(node_label_selector="pool!=gpu"))
    nodes = [
        node("a-ok", {"pool": "general"}),
        node("b-gpu", {"pool": "gpu"}),
        node("c-cp", {"node-role.kubernetes.io/control-plane": ""},
             taints=[{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
        node("d-cordoned", unschedulable=True),
        node("e-notready", ready=False),
        node("f-tainted", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        node("g-soft", taints=[{"key": "soft", "effect": "PreferNoSchedule"}]),
    ]
    result = planner.plan(nodes, [], opts, "r1")
    assert result["eligible"] == ["a-ok", "g-soft"]
    assert result["skipped"] == {
        "b-gpu": "selector mismatch: node_label_selector", "c-cp": "control plane", "d-cordoned": "cordoned",
        "e-notready": "NotReady", "f-tainted": "untolerated taint dedicated=db:NoSchedule"}


def test_opt_ins_make_nodes_eligible():
    opts = options.validate(params(include_control_plane=True, include_cordoned=True, include_not_ready=True,
                                   tolerate_all_taints=True))
    nodes = [node("cp", {"node-role.kubernetes.io/control-plane": ""},
                  taints=[{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
             node("cordoned", unschedulable=True,
                  taints=[{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
             node("nr", ready=False), node("t", taints=[{"key": "x", "effect": "NoExecute"}])]
    assert planner.plan(nodes, [], opts, "r1")["eligible"] == ["cordoned", "cp", "nr", "t"]


def test_explicit_nodes_and_node_selector():
    opts = options.validate(params(nodes=["a", "ghost"], node_selector={"zone": "z1"}))
    result = planner.plan([node("a", {"zone": "z1"}), node("b", {"zone": "z1"})], [], opts, "r1")
    assert result["eligible"] == ["a"]
    assert result["skipped"] == {"ghost": "no such node"}
    opts = options.validate(params(node_selector={"zone": "z2"}))
    assert planner.plan([node("a", {"zone": "z1"})], [], opts, "r1")["skipped"] == {
        "a": "selector mismatch: node_selector zone=z2"}


def test_plan_adopts_this_runs_pods_and_deletes_strays():
    opts = options.validate(params(nodes=["a"]))
    mine = {"metadata": {"name": naming.pod_name("prune", "r1", "a"), "labels": {naming.LABEL_RUN: "r1"}}}
    stray = {"metadata": {"name": naming.pod_name("prune", "r1", "b"), "labels": {naming.LABEL_RUN: "r1"}}}
    other_run = {"metadata": {"name": naming.pod_name("prune", "r0", "a"), "labels": {naming.LABEL_RUN: "r0"}}}
    result = planner.plan([node("a"), node("b")], [mine, stray, other_run], opts, "r1")
    assert result["existing"] == {"a": mine}
    assert result["to_delete"] == [stray["metadata"]["name"]]


# ---------------------------------------------------------------- pods

def test_pod_is_pinned_by_affinity_and_labelled():
    opts = options.validate(params(pod_labels={"team": "sre"}))
    pod = pods.build_pod(opts, "r1", "node-1", active_deadline=300)
    assert pod["metadata"]["name"] == naming.pod_name("prune", "r1", "node-1")
    assert len(pod["metadata"]["name"]) <= 63
    assert pod["metadata"]["labels"]["nodeops.io/run-id"] == "r1"
    assert pod["metadata"]["labels"]["team"] == "sre"
    assert pod["metadata"]["labels"]["nodeops.io/node"] == "node-1"
    assert "nodeops.io/node" not in pods.build_pod(opts, "r1", "n" * 64)["metadata"]["labels"]
    assert pod["metadata"]["annotations"]["nodeops.io/node"] == "node-1"
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchFields"] == [
        {"key": "metadata.name", "operator": "In", "values": ["node-1"]}]
    assert "nodeName" not in pod["spec"]
    assert pod["spec"]["hostPID"] is True and pod["spec"]["containers"][0]["securityContext"]["privileged"]
    assert pod["spec"]["activeDeadlineSeconds"] == 300
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_pin_node_name_bypasses_the_scheduler():
    opts = options.validate(params(pin="node_name"))
    pod = pods.build_pod(opts, "r1", "node-1")
    assert pod["spec"]["nodeName"] == "node-1" and "affinity" not in pod["spec"]


def test_pod_template_gets_no_host_access_it_did_not_ask_for():
    template = {"metadata": {"labels": {"app": "x"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}
    opts = options.validate(params(preset=None, image_prune=None, pod_template=template))
    pod = pods.build_pod(opts, "r1", "n")
    assert "hostPID" not in pod["spec"] and "securityContext" not in pod["spec"]["containers"][0]
    assert pod["metadata"]["labels"]["app"] == "x"
    assert template["spec"] == {"containers": [{"name": "c", "image": "busybox:1.36"}]}  # not mutated


def test_every_container_leaves_its_log_tail_in_its_termination_message_unless_the_template_says_otherwise():
    template = {"spec": {"containers": [{"name": "c", "image": "i"},
                                        {"name": "d", "image": "i", "terminationMessagePolicy": "File"}]}}
    opts = options.validate(params(preset=None, image_prune=None, pod_template=template))
    containers = pods.build_pod(opts, "r1", "n")["spec"]["containers"]
    assert [c["terminationMessagePolicy"] for c in containers] == ["FallbackToLogsOnError", "File"]
    preset_pod = pods.build_pod(options.validate(params()), "r1", "n")
    assert preset_pod["spec"]["containers"][0]["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_the_termination_message_is_read_apart_from_the_outcome():
    done = pod("Succeeded", containerStatuses=[{"state": {"terminated": {
        "exitCode": 0, "reason": "Completed", "message": 'NODEOPS_RESULT {"a":1}'}}}])
    assert outcomes.classify(done, 0, SPEC)["message"] is None
    assert outcomes.termination_message(done) == 'NODEOPS_RESULT {"a":1}'
    assert outcomes.termination_message(outcomes.slim_pod(done)) == 'NODEOPS_RESULT {"a":1}'
    assert outcomes.termination_message(pod("Running")) is None


def test_path_cleanup_mounts_its_directory_and_the_host_read_only_unprivileged():
    opts = options.validate(params(preset="path_cleanup", image_prune=None,
                                          path_cleanup={"path": "/var/log/app", "older_than_days": 3,
                                                        "patterns": [], "dry_run": True}))
    pod = pods.build_pod(opts, "r1", "n")
    assert pod["spec"]["volumes"] == [
        {"name": "target", "hostPath": {"path": "/var/log/app", "type": "Directory"}},
        # The host's view, read-only, to judge where the path really leads (links) before touching it.
        {"name": "host", "hostPath": {"path": "/", "type": "Directory"}},
        {"name": "verdict", "emptyDir": {"sizeLimit": "1Mi"}},
        {"name": "nodeops-node", "configMap": {
            "name": "nodeops-run-prune-r1-code",
            "items": shipping.mount_items(pods.node_files("path_cleanup"), under_package=True)
            + [{"key": shipping.MANIFEST_KEY, "path": shipping.MANIFEST_KEY}]}},
        # Where the checked code is copied: the pod's own, so a read-only root filesystem does not matter.
        {"name": "nodeops-tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    assert pod["spec"]["containers"][0]["volumeMounts"][0]["readOnly"] is True
    assert "hostPID" not in pod["spec"] and "securityContext" not in pod["spec"]["containers"][0]


def test_host_command_argv_and_shell():
    opts = options.validate(params(preset="host_command", image_prune=None,
                                          host_command={"command": ["df", "-h"], "shell": False}))
    assert pods.build_pod(opts, "r", "n")["spec"]["containers"][0]["command"][-3:] == ["--", "df", "-h"]
    opts = options.validate(params(preset="host_command", image_prune=None,
                                          host_command={"command": "df -h | tail -1", "shell": True}))
    assert pods.build_pod(opts, "r", "n")["spec"]["containers"][0]["command"][-3:] == [
        "/bin/sh", "-c", "df -h | tail -1"]


# ---------------------------------------------------------------- classify

SPEC = {"restart_policy": "OnFailure", "restart_limit": 2, "pending_timeout": 60}


def pod(phase, **status):
    body = {"metadata": {"name": "p"}, "spec": {}, "status": dict(phase=phase, **status)}
    return body


@pytest.mark.parametrize("the_pod, pending_for, expected", [
    (None, 0, ("lost", "PodDisappeared", None)),
    (pod("Succeeded", containerStatuses=[{"restartCount": 0, "state": {"terminated": {"exitCode": 0,
                                                                                      "reason": "Completed"}}}]),
     0, ("succeeded", "Completed", 0)),
    (pod("Failed", containerStatuses=[{"state": {"terminated": {"exitCode": 3, "reason": "Error"}}}]),
     0, ("failed", "Error", 3)),
    (pod("Failed", reason="DeadlineExceeded", message="Pod was active too long"), 0,
     ("failed", "DeadlineExceeded", None)),
    (pod("Running", containerStatuses=[{"restartCount": 3, "lastState": {"terminated": {"exitCode": 5}}}]), 0,
     ("failed", "RestartLimitExceeded", 5)),
    (pod("Running", containerStatuses=[{"restartCount": 2}]), 0, None),
    (pod("Pending"), 59, None),
    (pod("Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                 "message": "0/3 nodes are available: 1 Insufficient cpu."}]), 60,
     ("unschedulable", "Unschedulable", None)),
])
def test_classify(the_pod, pending_for, expected):
    verdict = outcomes.classify(the_pod, pending_for, SPEC)
    if expected is None:
        assert verdict is None
    else:
        assert (verdict["outcome"], verdict["reason"], verdict["exit_code"]) == expected


def test_scheduled_but_stuck_pending_reports_the_container_reason():
    stuck = pod("Pending", containerStatuses=[{"state": {"waiting": {"reason": "ImagePullBackOff",
                                                                     "message": "pull access denied"}}}])
    stuck["spec"]["nodeName"] = "n1"
    verdict = outcomes.classify(stuck, 61, SPEC)
    assert (verdict["outcome"], verdict["reason"], verdict["message"]) == ("failed", "ImagePullBackOff",
                                                                           "pull access denied")


def waiting_pod(reason):
    p = pod("Pending", containerStatuses=[{"state": {"waiting": {"reason": reason, "message": "kubelet says"}}}])
    p["spec"]["nodeName"] = "n1"
    return p


@pytest.mark.parametrize("reason", outcomes.FATAL_WAITING_REASONS)
def test_a_container_that_cannot_start_fails_at_once(reason):
    verdict = outcomes.classify(waiting_pod(reason), 0, SPEC)
    assert (verdict["outcome"], verdict["reason"], verdict["message"]) == ("failed", reason, "kubelet says")


@pytest.mark.parametrize("reason", ["ContainerCreating", "PodInitializing", "ErrImagePull"])
def test_a_container_still_starting_is_given_pending_timeout(reason):
    assert outcomes.classify(waiting_pod(reason), 59, SPEC) is None
    assert outcomes.classify(waiting_pod(reason), 60, SPEC)["reason"] == reason


@pytest.mark.parametrize("event, expected", [
    ({"reason": "FailedMount", "message": 'MountVolume.SetUp failed for volume "target" : hostPath type check '
                                          'failed: /nope is not a directory'}, "HostPathMissing"),
    ({"reason": "FailedMount", "message": 'MountVolume.SetUp failed for volume "cfg" : configmap "x" not found'},
     None),
    ({"reason": "BackOff", "message": "Back-off restarting failed container"}, None),
    ({"reason": None, "message": None}, None),
])
def test_fatal_event(event, expected):
    found = outcomes.fatal_event(event)
    assert (found[0] if found else None) == expected
    if found:
        assert found[1] == event["message"]


def test_a_fatal_event_fails_a_pending_pod_but_not_a_finished_one():
    creating = waiting_pod("ContainerCreating")
    verdict = outcomes.classify(creating, 1, SPEC, ("HostPathMissing", "hostPath type check failed: /x"))
    assert (verdict["outcome"], verdict["reason"]) == ("failed", "HostPathMissing")
    done = pod("Succeeded", containerStatuses=[{"state": {"terminated": {"exitCode": 0}}}])
    assert outcomes.classify(done, 0, SPEC, ("HostPathMissing", "x"))["outcome"] == "succeeded"


def test_unschedulable_message_is_the_schedulers():
    p = pod("Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                    "message": "0/3 nodes are available: 1 Insufficient cpu."}])
    assert "Insufficient cpu" in outcomes.classify(p, 100, SPEC)["message"]


# ---------------------------------------------------------------- slimming (what the engine keeps per node)

FULL_POD = {
    "metadata": {"name": "p", "namespace": "ops", "resourceVersion": "42", "uid": "u",
                 "labels": {naming.LABEL_RUN: "r1"}, "annotations": {"a": "b"},
                 "managedFields": [{"manager": "x", "fieldsV1": {"f:spec": {}}}]},
    "spec": {"nodeName": "n1", "containers": [{"name": "task", "image": "python", "command": ["true"]}],
             "tolerations": [{"operator": "Exists"}]},
    "status": {"phase": "Failed", "reason": "DeadlineExceeded", "message": "too long", "hostIP": "10.0.0.1",
               "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "t"}],
               "containerStatuses": [{"name": "task", "image": "python", "imageID": "sha", "restartCount": 3,
                                      "state": {"terminated": {"exitCode": 2, "reason": "Error"}},
                                      "lastState": {"terminated": {"exitCode": 1}}}]},
}


@pytest.mark.parametrize("phase", ["Pending", "Running", "Succeeded", "Failed"])
def test_slim_pod_keeps_every_field_classification_reads(phase):
    full = copy.deepcopy(FULL_POD)
    full["status"]["phase"] = phase
    slim = outcomes.slim_pod(full)
    for pending_for in (0, 61):
        assert outcomes.classify(slim, pending_for, SPEC) == outcomes.classify(full, pending_for, SPEC)
    assert outcomes.restarts(slim) == outcomes.restarts(full) == 3
    assert slim["metadata"] == {"name": "p", "labels": {naming.LABEL_RUN: "r1"}, "resourceVersion": "42"}
    assert "managedFields" not in slim["metadata"] and "containers" not in slim["spec"]
    assert len(repr(slim)) < len(repr(full))


def test_slim_nodes_plan_the_same():
    opts = options.validate(params(node_label_selector="pool!=gpu"))
    nodes = [node("a", {"pool": "general"}), node("b", {"pool": "gpu"}), node("c", ready=False),
             node("d", unschedulable=True), node("e", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])]
    for n in nodes:
        n["metadata"]["managedFields"] = [{"manager": "kwok"}]
        n["status"]["conditions"].append({"type": "MemoryPressure", "status": "False"})
        n["status"]["nodeInfo"] = {"kubeletVersion": "fake"}
    slim = [planner.slim_node(n) for n in nodes]
    assert planner.plan(slim, [], opts, "r1") == planner.plan(nodes, [], opts, "r1")
    assert all("nodeInfo" not in n["status"] and "managedFields" not in n["metadata"] for n in slim)


# ---------------------------------------------------------------- the plan judges the pod it will create

NODES = [node("ssd-1", labels={"disktype": "ssd", "zone": "a"}),
         node("hdd-1", labels={"disktype": "hdd", "zone": "b"}),
         node("gpu-1", labels={"disktype": "ssd", "gpu": "2"},
              taints=[{"key": "gpu", "value": "yes", "effect": "NoSchedule"}])]


def template_spec(pod_spec):
    opts = {"containers": [{"name": "c", "image": "busybox:1.36"}]}
    opts.update(pod_spec)
    return options.validate(params(preset=None, image_prune=None, pod_template={"spec": opts}))


def required(*terms):
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


@pytest.mark.parametrize("pod_spec, eligible, skipped", [
    ({}, ["hdd-1", "ssd-1"], {"gpu-1": "untolerated taint gpu=yes:NoSchedule"}),
    ({"tolerations": [{"key": "gpu", "operator": "Exists"}]}, ["gpu-1", "hdd-1", "ssd-1"], {}),
    ({"nodeSelector": {"disktype": "ssd"}}, ["ssd-1"],
     {"hdd-1": "template nodeSelector disktype=ssd not matched", "gpu-1": "untolerated taint gpu=yes:NoSchedule"}),
    ({"affinity": required({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]})}, ["hdd-1"],
     {"ssd-1": "template affinity requiredDuringSchedulingIgnoredDuringExecution not matched",
      "gpu-1": "template affinity requiredDuringSchedulingIgnoredDuringExecution not matched"}),
    # Terms are ORed; a term's requirements are ANDed; matchFields are on the node's name.
    ({"affinity": required({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]},
                                                 {"key": "disktype", "operator": "In", "values": ["ssd"]}]},
                           {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["ssd-1"]}]})},
     ["ssd-1"], {"hdd-1": "template affinity requiredDuringSchedulingIgnoredDuringExecution not matched",
                 "gpu-1": "template affinity requiredDuringSchedulingIgnoredDuringExecution not matched"}),
    ({"affinity": required({"matchExpressions": [{"key": "gpu", "operator": "Gt", "values": ["1"]}]}),
      "tolerations": [{"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}]},
     ["gpu-1"], {"ssd-1": "template affinity requiredDuringSchedulingIgnoredDuringExecution not matched",
                 "hdd-1": "template affinity requiredDuringSchedulingIgnoredDuringExecution not matched"}),
    ({"affinity": required({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"},
                                                 {"key": "zone", "operator": "NotIn", "values": ["b"]}]})},
     ["ssd-1"], {"hdd-1": "template affinity requiredDuringSchedulingIgnoredDuringExecution not matched",
                 "gpu-1": "template affinity requiredDuringSchedulingIgnoredDuringExecution not matched"}),
])
def test_plan_judges_the_pod_it_will_create(pod_spec, eligible, skipped):
    result = planner.plan(NODES, [], template_spec(pod_spec), "r1")
    assert result["eligible"] == eligible
    assert result["skipped"] == skipped


def test_the_pin_is_merged_into_the_templates_affinity():
    pod_anti = {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "kubernetes.io/hostname"}]}
    preferred = [{"weight": 1, "preference": {"matchExpressions": [{"key": "zone", "operator": "In",
                                                                    "values": ["a"]}]}}]
    affinity = required({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]},
                        {"matchExpressions": [{"key": "disktype", "operator": "Exists"}]})
    affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] = preferred
    affinity["podAntiAffinity"] = pod_anti
    opts = template_spec({"affinity": copy.deepcopy(affinity)})
    built = pods.build_pod(opts, "r1", "ssd-1")["spec"]["affinity"]
    pin = {"key": "metadata.name", "operator": "In", "values": ["ssd-1"]}
    assert built == {
        "podAntiAffinity": pod_anti,
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": preferred,
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}], "matchFields": [pin]},
                {"matchExpressions": [{"key": "disktype", "operator": "Exists"}], "matchFields": [pin]}]}}}
    assert opts["workload"]["template"]["spec"]["affinity"] == affinity   # the template is not mutated


def test_a_preset_is_pinned_by_one_term():
    built = pods.build_pod(options.validate(params()), "r1", "n1")["spec"]["affinity"]
    assert built == required({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]})


@pytest.mark.parametrize("preset, preset_options", [
    ("image_prune", {"image_prune": {"include": [], "exclude": ["nodeops.local/keep-*"], "dry_run": True}}),
    ("path_cleanup", {"path_cleanup": {"path": "/var/log/app", "older_than_days": 3, "patterns": ["*.log"],
                                       "dry_run": False}}),
    ("host_command", {"host_command": {"command": ["df", "-h"], "shell": False}}),
])
def test_a_preset_pod_is_small_and_runs_the_script_from_its_run_record(preset, preset_options):
    opts = options.validate(params(preset=preset, **dict({"image_prune": None}, **preset_options)))
    pod = pods.build_pod(opts, "0123456789abcdef", "ip-10-0-0-1.eu-west-1.compute.internal",
                         owner={"apiVersion": "v1", "kind": "ConfigMap", "name": "nodeops-run-prune-0123456789abcdef",
                                "uid": "0c0ffee0-0000-4000-8000-000000000000", "controller": False,
                                "blockOwnerDeletion": False}, active_deadline=600)
    size = len(json.dumps(pod, separators=(",", ":")))
    # The integrity check (_node/boot.py, about 1.3 KB) is the bulk: it must be in the pod spec, not in a ConfigMap,
    # once per container (path_cleanup judges the path in an unprivileged init container first).
    containers = len(pod["spec"]["containers"]) + len(pod["spec"].get("initContainers") or [])
    assert size < 4096 * containers, "preset pod is %d bytes for %d containers" % (size, containers)
    if preset != "host_command":
        container = pod["spec"]["containers"][0]
        code = pods.node_code(opts["workload"])
        assert container["command"] == pods.node_command(code["digest"])
        assert container["command"][:3] == ["python3", "-I", "-B"] and container["command"][-1] == pods.NODE_ENTRY
        volume = [v for v in pod["spec"]["volumes"] if v["name"] == "nodeops-node"][0]
        assert volume["configMap"]["name"] == "nodeops-run-prune-0123456789abcdef-code"
        assert sorted(i["path"] for i in volume["configMap"]["items"]) == sorted(
            list(pods.node_files(preset)) + [shipping.MANIFEST_KEY])


@pytest.mark.parametrize("preset", sorted(REGISTRY))
def test_the_node_script_the_record_holds_is_the_node_script_and_its_preset(preset):
    files = pods.node_files(preset)
    assert sorted(files) == sorted(["_node/main.py", "_presets/base.py", "_presets/%s.py" % preset])
    for path, source in files.items():
        compile(source, path, "exec")


def test_pod_names_of_a_run_never_collide_and_keep_the_plain_name_where_they_can():
    bench = ["bench-%05d" % i for i in range(10000)]
    # Found by the 10,000-node benchmark: two node names, one 8-hex-digit hash.
    assert naming.node_hash("bench-00528") == naming.node_hash("bench-09078")
    names = naming.pod_names("bench", "e1", bench)
    assert len(set(names.values())) == 10000
    assert names["bench-00528"] == naming.pod_name("bench", "e1", "bench-00528")   # the first by name keeps it
    assert names["bench-09078"] != names["bench-00528"] and len(names["bench-09078"]) == len(names["bench-00528"])
    assert sum(names[n] != naming.pod_name("bench", "e1", n) for n in bench) == 1   # every other name as before
    assert naming.pod_names("bench", "e1", list(reversed(bench))) == names          # order does not matter


def test_pod_names_stay_unique_when_a_name_is_taken_already():
    # b's pod (of a resumed run) has the name a would take: a takes the next slice of its own digest.
    taken = naming.pod_name("prune", "r1", "a")
    names = naming.pod_names("prune", "r1", ["a", "b"], keep={"b": taken})
    assert names["b"] == taken and names["a"] != taken and names["a"].startswith("prune-r1-")
    assert len(names["a"]) == len(taken)


def _pod_of(opts, run_id, node, name):
    return pods.build_pod(opts, run_id, node, name=name)


def test_a_resumed_run_matches_pods_to_nodes_by_their_node_never_by_a_name_another_node_could_take():
    """Names are made per run: when a colliding node leaves (or joins) between attempts, the other's name would
    shift. The plan goes by the pod's node annotation, keeps each existing pod's name, and never hands one node's
    pod to another."""
    a, b = "bench-00528", "bench-09078"   # same node_hash
    opts = options.validate(params(nodes=[a, b]))
    both = planner.plan([node(a), node(b)], [], opts, "r1")["pod_names"]
    pod_a, pod_b = _pod_of(opts, "r1", a, both[a]), _pod_of(opts, "r1", b, both[b])
    # a left (cordoned, gone): b keeps its own pod; a's pod is deleted, never adopted by b.
    only_b = options.validate(params(nodes=[b]))
    left = planner.plan([node(b)], [pod_a, pod_b], only_b, "r1")
    assert left["existing"] == {b: pod_b} and left["pod_names"] == {b: both[b]}
    assert left["to_delete"] == [both[a]]
    # b ran alone under the plain name, then a joined: b keeps its pod, a gets a name no pod has.
    alone = planner.plan([node(b)], [], only_b, "r1")["pod_names"][b]
    assert alone == naming.pod_name("prune", "r1", b)
    joined = planner.plan([node(a), node(b)], [_pod_of(opts, "r1", b, alone)], opts, "r1")
    assert list(joined["existing"]) == [b] and joined["pod_names"][b] == alone
    assert joined["pod_names"][a] != alone and joined["to_delete"] == []
    # Two pods for one node (an earlier attempt's, under another name): one is kept, the other deleted.
    twice = planner.plan([node(a), node(b)], [pod_a, _pod_of(opts, "r1", a, "prune-r1-0000abcd")], opts, "r1")
    assert list(twice["existing"]) == [a] and len(twice["to_delete"]) == 1


def test_the_plan_and_the_run_use_the_collision_free_names():
    opts = options.validate(params(nodes=["bench-00528", "bench-09078"]))
    plan = planner.plan([node("bench-00528"), node("bench-09078")], [], opts, "r1")
    assert len(set(plan["pod_names"].values())) == 2
    # A pod this run made for bench-09078 (under its own name) is found again when the run resumes.
    mine = {"metadata": {"name": plan["pod_names"]["bench-09078"], "labels": {naming.LABEL_RUN: "r1"},
                         "annotations": {naming.ANNOTATION_NODE: "bench-09078"}}}
    again = planner.plan([node("bench-00528"), node("bench-09078")], [mine], opts, "r1")
    assert again["existing"] == {"bench-09078": mine} and again["to_delete"] == []


def test_a_resumed_run_reads_the_node_annotation_of_the_pods_it_lists():
    """The engine lists a run's pods slimmed (outcomes.slim_pod): the slim pod keeps the node annotation, or the plan
    could only go by the plain name, and a pod under a collision-free name would be deleted and made again."""
    opts = options.validate(params(nodes=["bench-00528", "bench-09078"]))
    names = planner.plan([node("bench-00528"), node("bench-09078")], [], opts, "r1")["pod_names"]
    full = {"metadata": {"name": names["bench-09078"], "labels": {naming.LABEL_RUN: "r1"}, "uid": "u",
                         "annotations": {naming.ANNOTATION_NODE: "bench-09078", "other": "x"}},
            "spec": {"nodeName": "bench-09078"}, "status": {"phase": "Running"}}
    slim = outcomes.slim_pod(full)
    assert slim["metadata"]["annotations"] == {naming.ANNOTATION_NODE: "bench-09078"}
    assert names["bench-09078"] != naming.pod_name("prune", "r1", "bench-09078")   # not the plain name
    again = planner.plan([node("bench-00528"), node("bench-09078")], [slim], opts, "r1")
    assert again["existing"] == {"bench-09078": slim} and again["to_delete"] == []
