# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Invariants of trust that pure code decides: what we may change or delete, and which code may run.

The cluster-level versions of these (a foreign object survives, tampered code is refused on the real
node) are in tests/integration/test_trust_cluster.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import options, pods, record, shipping
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube import apply
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import TamperedCode

OURS = {"app.kubernetes.io/managed-by": "nodeops.kubernetes"}


@pytest.mark.parametrize("meta, ours", [
    ({"annotations": {"nodeops.io/created-by": "nodeops.kubernetes"}}, True),
    # Written by an earlier version: our label and our field manager.
    ({"labels": OURS, "managedFields": [{"manager": "nodeops.kubernetes", "operation": "Update"}]}, True),
    # A label alone is anyone's to set: a team's namespace labelled by hand, or by kubectl.
    ({"labels": OURS}, False),
    ({"labels": OURS, "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update"}]}, False),
    # A team's object an earlier version applied over (with force): two writers of its fields, not ours.
    ({"labels": OURS, "managedFields": [{"manager": "kubectl-create", "operation": "Update"},
                                        {"manager": "nodeops.kubernetes", "operation": "Apply"}]}, False),
    # The kubelet or a controller writing status does not make it someone else's.
    ({"labels": OURS, "managedFields": [{"manager": "nodeops.kubernetes", "operation": "Update"},
                                        {"manager": "kubelet", "operation": "Update", "subresource": "status"}]},
     True),
    ({"annotations": {"nodeops.io/created-by": "someone-else"}, "labels": OURS}, False),
    ({}, False),
])
def test_only_what_we_created_counts_as_ours(meta, ours):
    assert apply.created_by_us({"metadata": meta}) is ours


def test_what_we_apply_carries_the_created_by_annotation_and_the_input_is_not_changed():
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "n"}}
    before = copy.deepcopy(obj)
    marked = apply.with_created_by(obj)
    assert marked["metadata"]["annotations"] == {"nodeops.io/created-by": "nodeops.kubernetes"}
    assert obj == before


def test_a_foreign_object_error_names_the_object_and_the_way_out():
    err = apply.foreign({"kind": "ClusterRole", "metadata": {"name": "nodeops-a-b-c-nodes"}})
    assert "ClusterRole nodeops-a-b-c-nodes exists and was not created by nodeops.kubernetes" in err.msg
    assert "choose another name" in err.msg


def image_prune_code():
    opts = options.validate({"name": "p", "namespace": "n", "preset": "image_prune", "image_prune": {}})
    return opts, pods.node_code(opts["workload"])


def stored(code, opts, immutable=True):
    cm = pods.code_config_map(opts, "r1", code, owner={})
    cm["immutable"] = immutable
    return cm


def test_a_resumed_run_takes_the_code_configmap_it_wrote():
    opts, code = image_prune_code()
    assert record.verified_code_digest(stored(code, opts), code) == code["digest"]


@pytest.mark.parametrize("tamper, why", [
    (lambda cm: cm["data"].update({"_presets.image_prune.py": cm["data"]["_presets.image_prune.py"] + "\nx = 1\n"}),
     "does not hold this collection's _presets/image_prune.py"),
    (lambda cm: cm["data"].pop("_node.main.py"), "does not hold this collection's _node/main.py"),
    (lambda cm: cm.update(immutable=False), "is not the immutable code this run wrote"),
    (lambda cm: cm["data"].update({"nodeops-manifest.json": "{}"}), "is not the immutable code this run wrote"),
])
def test_a_resumed_run_refuses_a_code_configmap_someone_replaced(tamper, why):
    """Invariant: a run never points its pods at code it did not write (a code ConfigMap deleted and made
    again by someone with ConfigMap rights, between two attempts of one run)."""
    opts, code = image_prune_code()
    cm = stored(code, opts)
    tamper(cm)
    with pytest.raises(TamperedCode) as info:
        record.verified_code_digest(cm, code)
    assert why in info.value.msg and "refusing to run it" in info.value.msg


def keeping_images():
    opts = options.validate({"name": "p", "namespace": "n", "preset": "image_prune",
                             "image_prune": {"keep_images_in_cluster": True}})
    return opts, pods.node_code(opts["workload"], '["registry.example/app:1"]')


def test_planted_inputs_are_refused_when_no_pod_vouches_for_them():
    """Invariant: a resumed run never hands its pods inputs it did not gather: a code ConfigMap re-made with
    our script but an empty keep-list (so that images other workloads need would be pruned) is refused."""
    opts, code = keeping_images()
    cm = stored(code, opts)
    cm["data"]["_node.cluster-images.json"] = "[]"
    cm["data"]["nodeops-manifest.json"] = shipping.manifest(dict(code["files"], **{
        "_node/cluster-images.json": "[]"}))[0]
    with pytest.raises(TamperedCode) as info:
        record.verified_code_digest(cm, code)
    assert "holds inputs this attempt did not gather (_node/cluster-images.json)" in info.value.msg
    # The pods of the first attempt vouch only for what they were made with.
    planted_digest = shipping.manifest(dict(code["files"], **{"_node/cluster-images.json": "[]"}))[1]
    with pytest.raises(TamperedCode):
        record.verified_code_digest(cm, code, anchor=code["digest"])
    assert record.verified_code_digest(cm, code, anchor=planted_digest) == planted_digest


def test_the_digest_a_pod_checks_is_read_back_from_its_command():
    opts, code = image_prune_code()
    assert record.pod_code_digest(pods.build_pod(opts, "r1", "n", code_digest=code["digest"])) == code["digest"]
    assert record.pod_code_digest({"spec": {"containers": [{"command": ["sleep", "1"]}]}}) is None


def test_the_code_configmap_is_immutable_owned_by_the_record_and_lists_every_file_it_holds():
    opts, code = image_prune_code()
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "nodeops-run-p-r1", "uid": "u"}
    cm = pods.code_config_map(opts, "r1", code, owner)
    assert cm["immutable"] is True and cm["metadata"]["ownerReferences"] == [owner]
    assert cm["metadata"]["name"] == "nodeops-run-p-r1-code"
    import json
    manifest = json.loads(cm["data"]["nodeops-manifest.json"])
    assert sorted(k.replace("/", ".") for k in manifest) == sorted(k for k in cm["data"] if k != "nodeops-manifest.json")
