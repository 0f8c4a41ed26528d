# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The presets and user pods on the cluster's real node (kubelet + containerd).

Every test asserts what really happened on the node's host (crictl's image
list, files on disk, a marker file), read through the node's own namespaces,
not only what the module reports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import datetime
import hashlib
import json
import os
import time
import uuid

import pytest

import kube_helpers as kh

pytestmark = pytest.mark.usefixtures("real_node")

PRUNABLE = ["nodeops.local/prune-test-a:1", "nodeops.local/prune-test-b:1"]
EXCLUDED = "nodeops.local/prune-keep-c:1"
SLEEPER = "nodeops.local/sleeper:1"


on_real_node = kh.on_real_node


def only_record(result):
    assert len(result["nodes"]) == 1, result["nodes"]
    return result["nodes"][0]


@pytest.fixture
def sleeper_pod(core, namespace, real_node):
    """A running container on the real node, so its image is in use."""
    from kubernetes import client as k8s

    name = "in-use"
    core.create_namespaced_pod(namespace, k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name),
        spec=k8s.V1PodSpec(node_name=real_node.name, tolerations=[k8s.V1Toleration(**t) for t in real_node.tolerations],
                           termination_grace_period_seconds=0,
                           containers=[k8s.V1Container(name="sleep", image=SLEEPER)])))
    kh.wait_for("the sleeper pod Running", lambda: core.read_namespaced_pod(name, namespace).status.phase == "Running",
                timeout=60)
    return name


def test_image_prune_dry_run_lists_exactly_the_unused_images_then_a_real_run_removes_them(
        tmp_path, namespace, real_node, sleeper_pod, audit, core):
    real_node.import_images(PRUNABLE + [EXCLUDED, SLEEPER])
    try:
        before = real_node.crictl_images()
        args = on_real_node(real_node, namespace, name="prune", preset="image_prune",
                            image_prune={"dry_run": True, "exclude": ["nodeops.local/prune-keep-*"]})
        mark = audit.mark()
        dry = kh.run_module(tmp_path, "broadcast_job", args)
        assert not dry.get("failed"), dry.get("msg")
        rec = only_record(dry)
        assert rec["outcome"] == "succeeded", rec
        # The result came in the pod status: the kubelet copied the node script's termination message.
        # The module read no log (the audit policy records every pod log read).
        assert audit.log_reads_since(mark, namespace=namespace) == []
        assert rec["log"] is None and rec["message"] is None
        assert sorted(rec["result"]["images_removed"]) == PRUNABLE
        assert rec["result"]["bytes_freed"] == sum(before[ref] for ref in PRUNABLE)
        assert rec["result"]["bytes_freed"] > 900 * 1024     # the two test images are 300 and 600 KiB of data
        assert real_node.crictl_images() == before, "a dry run removed images"

        args["image_prune"]["dry_run"] = False
        real = kh.run_module(tmp_path, "broadcast_job", args)
        assert not real.get("failed"), real.get("msg")
        rec = only_record(real)
        assert sorted(rec["result"]["images_removed"]) == PRUNABLE
        assert rec["result"]["bytes_freed"] == sum(before[ref] for ref in PRUNABLE)
        after = real_node.crictl_images()
        assert sorted(set(before) - set(after)) == PRUNABLE
        # Kept: the sandbox image, the image of the running sleeper, the excluded one, the task's own image.
        for kept in ("nodeops.local/pause:1", SLEEPER, EXCLUDED, real_node.image):
            assert kept in after, kept
        # containerd 2.x pins the sandbox image (and names it nowhere in crictl info); 1.6 names it there.
        version = core.read_node(real_node.name).status.node_info.container_runtime_version
        pause_why = "sandbox image" if version.startswith("containerd://1.") else "pinned"
        listed = json.loads(real_node.sh("crictl images -o json"))["images"]
        pause = [i for i in listed if "nodeops.local/pause:1" in (i.get("repoTags") or [])][0]
        assert pause["pinned"] is (pause_why == "pinned"), (version, pause)
        why = rec["result"]["images_kept_by_reason"]
        assert sum(why.values()) == rec["result"]["images_kept"], rec["result"]
        # pause for the runtime's reason, and (on 2.x) nothing else pinned; the sleeper's and the task's own
        # image in use; the excluded one excluded.
        assert why.get(pause_why) == 1 and why.get("excluded") == 1 and why.get("in use", 0) >= 2, (version, why)
        assert "sandbox image" not in why or pause_why == "sandbox image", why
    finally:
        real_node.import_images(PRUNABLE)


def test_image_prune_prunes_only_when_the_image_filesystem_is_full_enough(tmp_path, namespace, real_node):
    """disk_usage_above=100 leaves every image (the node's disk is not full); 0 prunes. Both report the usage
    crictl imagefsinfo and statvfs of its mountpoint gave, compared here with df on the node itself."""
    real_node.import_images(PRUNABLE)
    try:
        before = real_node.crictl_images()
        args = on_real_node(real_node, namespace, name="thr", preset="image_prune",
                            image_prune={"disk_usage_above": 100, "include": ["nodeops.local/prune-test-*"],
                                         "runtime_endpoint": "unix:///run/containerd/containerd.sock"},
                            log_on_success=True)
        full = only_record(kh.run_module(tmp_path, "broadcast_job", args))
        assert full["outcome"] == "succeeded", full
        result = full["result"]
        assert result["skipped_below_threshold"] is True and result["images_removed_count"] == 0, result
        assert "nothing to prune" in full["log"]
        assert real_node.crictl_images() == before, "images were removed below the threshold"
        mountpoint = result["imagefs_mountpoint"]
        assert mountpoint.startswith("/var/lib/containerd"), result
        used = real_node.sh("df -P %s | tail -1" % mountpoint).split()[4]
        assert abs(result["disk_usage_before"] - float(used.rstrip("%"))) <= 1.0, (result, used)

        args["image_prune"]["disk_usage_above"] = 0
        pruned = only_record(kh.run_module(tmp_path, "broadcast_job", args))
        assert pruned["outcome"] == "succeeded", pruned
        assert pruned["result"]["skipped_below_threshold"] is False
        assert sorted(pruned["result"]["images_removed"]) == PRUNABLE
        assert not set(PRUNABLE) & set(real_node.crictl_images())
        assert pruned["result"]["disk_usage_after"] is not None
    finally:
        real_node.import_images(PRUNABLE)


def test_image_prune_keeps_an_image_only_a_scaled_to_zero_deployment_refers_to(
        tmp_path, namespace, real_node, apps):
    """keep_images_in_cluster: prune-test-a is referred to only by a Deployment with no replicas; it stays,
    prune-test-b goes. Without the option both would go (the first test shows that)."""
    real_node.import_images(PRUNABLE)
    apps.create_namespaced_deployment(namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "idle"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "idle"}}, "template": {
            "metadata": {"labels": {"app": "idle"}},
            "spec": {"containers": [{"name": "c", "image": PRUNABLE[0]}]}}}})
    try:
        args = on_real_node(real_node, namespace, name="keep", preset="image_prune",
                            image_prune={"include": ["nodeops.local/prune-test-*"], "keep_images_in_cluster": True},
                            log_on_success=True)
        rec = only_record(kh.run_module(tmp_path, "broadcast_job", args))
        assert rec["outcome"] == "succeeded", rec
        assert rec["result"]["images_removed"] == [PRUNABLE[1]], rec["result"]
        assert "keeping the" in rec["log"] and "images the cluster's workloads refer to" in rec["log"]
        left = real_node.crictl_images()
        assert PRUNABLE[0] in left and PRUNABLE[1] not in left
    finally:
        real_node.import_images(PRUNABLE)


# Enough distinct unused images, named like digests, that image_prune's result (50 names listed) is longer
# than the 4096 bytes of a termination message. Distinct images, not tags: crictl lists one image with all
# its tags, and image_prune lists each image once, so 64 tags of one image would be one name in the result.
LONG_RESULT_IMAGES = 64


def _distinct_images_archive(tmp_path, refs):
    """An OCI archive of one image per ref, for ``ctr images import``: a shared one-file layer, and a config
    per image that names its ref, so each has its own image id. Returns (path, {ref: image id})."""
    import io
    import tarfile

    import images

    def blob(data):
        return "sha256:" + hashlib.sha256(data).hexdigest(), data

    def compact(obj):
        return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()

    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w") as tar:
        content = b"nodeops long-result test image\n"
        info = tarfile.TarInfo("nodeops-long-result")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    layer_digest, layer = blob(layer_tar.getvalue())
    blobs, manifests, ids = {layer_digest: layer}, [], {}
    for ref in refs:
        ids[ref], config = blob(compact({
            "architecture": images.GOARCH, "os": "linux", "config": {"Labels": {"io.nodeops.test/ref": ref}},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}))
        manifest_digest, manifest = blob(compact({
            "schemaVersion": 2, "mediaType": images.MT_MANIFEST,
            "config": {"mediaType": images.MT_CONFIG, "digest": ids[ref], "size": len(config)},
            "layers": [{"mediaType": images.MT_LAYER, "digest": layer_digest, "size": len(layer)}]}))
        blobs.update({ids[ref]: config, manifest_digest: manifest})
        manifests.append({"mediaType": images.MT_MANIFEST, "digest": manifest_digest, "size": len(manifest),
                          "platform": {"architecture": images.GOARCH, "os": "linux"},
                          "annotations": {"io.containerd.image.name": ref,
                                          "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1]}})
    files = dict(("blobs/sha256/" + digest.split(":", 1)[1], data) for digest, data in blobs.items())
    files["index.json"] = compact({"schemaVersion": 2, "mediaType": images.MT_INDEX, "manifests": manifests})
    files["oci-layout"] = compact({"imageLayoutVersion": "1.0.0"})
    archive = tmp_path / "long-result-images.tar"
    with tarfile.open(str(archive), "w") as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            tar.addfile(info, io.BytesIO(files[name]))
    return archive, ids


@pytest.mark.parametrize("log_tail_lines", [0, 1, 20], ids=["tail-0", "tail-1", "tail-default"])
def test_image_prune_result_too_long_for_the_termination_message_is_read_from_the_log_whatever_the_tail(
        tmp_path, namespace, real_node, audit, core, log_tail_lines):
    """Issue 22: 64 unused images with 64-hex names make the node script's result line longer than a
    termination message. The script writes none, prints its result line and then a note saying so; the
    engine reads the result from the log. With log_tail_lines 0 or 1 its query used to be tailLines=1,
    which holds only the note: the node came back succeeded with no result. The pod is kept
    (cleanup=never) to show, on its real status and log, that the old query finds no result."""
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._node.main import parse_result

    run = uuid.uuid4().hex[:8]
    repo = "nodeops.local/long-result-%s/" % run
    refs = sorted(repo + hashlib.sha256(b"%s-%d" % (run.encode(), n)).hexdigest() + ":1"
                  for n in range(LONG_RESULT_IMAGES))
    archive, ids = _distinct_images_archive(tmp_path, refs)
    try:
        real_node.sh("ctr -n k8s.io images import %s >/dev/null" % archive)

        def listed():
            # containerd 2.x's CRI image store takes ctr's imports from events, a moment after ctr returns.
            images = json.loads(real_node.sh("crictl images -o json"))["images"]
            found = dict((ref, image["id"]) for image in images for ref in image.get("repoTags") or [] if ref in refs)
            return found if len(found) == len(refs) else None
        assert kh.wait_for("the runtime to list the %d imported images" % len(refs), listed) == ids, (
            "the runtime does not list one image per name")
        assert len(set(ids.values())) == LONG_RESULT_IMAGES
        sizes = real_node.crictl_images()
        containers = json.loads(real_node.sh("crictl ps -a -o json")).get("containers") or []
        assert not set(c.get("imageRef") for c in containers) & set(ids.values()), "a test image is in use"

        args = on_real_node(real_node, namespace, name="long", preset="image_prune", cleanup="never",
                            log_tail_lines=log_tail_lines,
                            image_prune={"dry_run": True, "include": [repo + "*"]})
        mark = audit.mark()
        result = kh.run_module(tmp_path, "broadcast_job", args)
        assert not result.get("failed"), result.get("msg")
        rec = only_record(result)
        assert rec["outcome"] == "succeeded", rec
        found = rec.get("result")
        assert found is not None, "the node succeeded with no result: %r" % rec
        assert found["dry_run"] is True and found["errors"] == [], found
        # 50 names listed, the count says how many there were.
        assert len(found["images_removed"]) == 50 and set(found["images_removed"]) <= set(refs), found
        assert len(set(found["images_removed"])) == 50
        assert found["images_removed_count"] == LONG_RESULT_IMAGES, found
        # image_prune cuts its own list at 50 and gives the count in images_removed_count, so the node
        # script's bounded() finds nothing to cut and adds no truncated entry for it; if one is there, it
        # must say the same.
        assert found.get("truncated", {}).get("images_removed", LONG_RESULT_IMAGES) == LONG_RESULT_IMAGES, found
        assert found["bytes_freed"] == sum(sizes[ref] for ref in refs)
        # The result came from the log, read once for it, whatever log_tail_lines says.
        assert audit.log_reads_since(mark, namespace=namespace) == [rec["pod"]]
        note = "the result is longer than a termination message (4096 bytes); the engine reads it from the log"
        if log_tail_lines == 0:
            assert rec["log"] is None, rec["log"]
        else:
            tail = rec["log"].rstrip("\n").split("\n")
            assert len(tail) == log_tail_lines and tail[-1] == note, rec["log"]
            if log_tail_lines > 1:
                assert parse_result(rec["log"]) == found

        # The result did not fit: even compact, its line is longer than the kubelet keeps, the script left
        # the termination message empty, and its note is the log's last line, after the result line.
        compact = "NODEOPS_RESULT " + json.dumps(found, sort_keys=True, separators=(",", ":"))
        assert len(compact.encode("utf-8")) > 4096, len(compact)
        pod = core.read_namespaced_pod(rec["pod"], namespace)
        assert pod.spec.node_name == real_node.name
        assert not pod.status.container_statuses[0].state.terminated.message
        whole = core.read_namespaced_pod_log(rec["pod"], namespace).rstrip("\n").split("\n")
        assert whole[-1] == note and whole[-2].startswith("NODEOPS_RESULT "), whole[-3:]
        assert len(whole[-2].encode("utf-8")) > 4096 and parse_result(whole[-2]) == found
        # The query before the fix, tailLines=max(log_tail_lines, 1): with 0 or 1 it holds the note only.
        old = core.read_namespaced_pod_log(rec["pod"], namespace, tail_lines=max(log_tail_lines, 1),
                                           limit_bytes=65536)
        assert (parse_result(old) is not None) == (log_tail_lines >= 2), old

        # A dry run removes nothing.
        assert not set(refs) - set(real_node.crictl_images()), "a dry run removed images"
    finally:
        # The names and the sha256:<id> names the CRI plugin adds: with those left, the images would stay,
        # untagged, for the other prune tests to find.
        # One name per ctr call: ctr stops at the first name it cannot remove.
        real_node.sh("for ref in %s; do ctr -n k8s.io images rm $ref >/dev/null 2>&1; done; true"
                     % " ".join(refs + sorted(ids.values())))

    def left():
        # containerd 2.x's CRI image store follows the removals from events, a moment after ctr returns.
        listed = json.loads(real_node.sh("crictl images -o json"))["images"]
        return set(image["id"] for image in listed) & set(ids.values())
    kh.wait_for("the test images to be gone", lambda: not left(), timeout=30)


def _make_tree(real_node, root):
    """Files with set mtimes under ``root`` on the node: two old logs, one new log, one old non-log."""
    old = int(time.time()) - 10 * 86400
    real_node.sh(
        "set -e; mkdir -p {r}/sub {r}-other; "
        "echo a > {r}/old.log; echo bb > {r}/sub/old2.log; echo c > {r}/new.log; echo d > {r}/old.txt; "
        "echo e > {r}-other/old.log; "
        "touch -d @{old} {r}/old.log {r}/sub/old2.log {r}/old.txt {r}-other/old.log".format(r=root, old=old))


def _files(real_node, root):
    out = real_node.sh("cd %s && find . -type f | sort" % root)
    return [line[2:] for line in out.split()]


def test_path_cleanup_deletes_only_old_matching_files_under_the_path(tmp_path, namespace, real_node):
    root = "/var/tmp/nodeops-pc-%s" % uuid.uuid4().hex[:6]
    _make_tree(real_node, root)
    try:
        args = on_real_node(real_node, namespace, name="pc", preset="path_cleanup",
                            path_cleanup={"path": root, "older_than_days": 3, "patterns": ["*.log"], "dry_run": True})
        dry = kh.run_module(tmp_path, "broadcast_job", args)
        assert only_record(dry)["outcome"] == "succeeded", only_record(dry)
        assert sorted(only_record(dry)["result"]["files_removed"]) == ["old.log", "sub/old2.log"]
        assert _files(real_node, root) == ["new.log", "old.log", "old.txt", "sub/old2.log"]

        args["path_cleanup"]["dry_run"] = False
        result = kh.run_module(tmp_path, "broadcast_job", args)
        rec = only_record(result)
        assert rec["outcome"] == "succeeded", rec
        assert sorted(rec["result"]["files_removed"]) == ["old.log", "sub/old2.log"]
        assert rec["result"]["bytes_freed"] == len("a\n") + len("bb\n")
        assert _files(real_node, root) == ["new.log", "old.txt"]
        assert _files(real_node, root + "-other") == ["old.log"], "another directory was touched"
    finally:
        real_node.sh("rm -rf %s %s-other" % (root, root))


# journald's names for archived journal files (<prefix>@<seqnum id>-<seqnum>-<realtime>.journal), which
# journalctl --vacuum-* removes; it never removes the active ones (system.journal).
ARCHIVED = ["system@0123456789abcdef0123456789abcdef-0000000000000001-0005a1b2c3d4e5f6.journal",
            "system@0123456789abcdef0123456789abcdef-0000000000000042-0005a1b2c3d4e5f7.journal",
            "user-1000@0123456789abcdef0123456789abcdef-0000000000000007-0005a1b2c3d4e5f8.journal"]


def test_journal_vacuum_runs_the_hosts_journalctl_and_removes_archived_journals_only(tmp_path, namespace, real_node):
    # journalctl vacuums the local machine's journal: /var/log/journal/<the host's machine id>.
    machine = "/var/log/journal/" + real_node.sh("cat /etc/machine-id").strip()
    assert real_node.sh("ls -A %s 2>/dev/null; true" % machine).strip() == "", "the node already has a journal"
    sizes = [300000, 200000, 100000]
    setup = ["mkdir -p %s" % machine, "head -c 50000 /dev/urandom > %s/system.journal" % machine]
    setup += ["head -c %d /dev/urandom > %s/%s" % (size, machine, name) for size, name in zip(sizes, ARCHIVED)]
    real_node.sh(" && ".join(setup))
    try:
        before = real_node.sh("find /var/log/journal /run/log/journal -type f -printf '%s\\n' 2>/dev/null; true")
        args = on_real_node(real_node, namespace, name="jv", preset="journal_vacuum",
                            journal_vacuum={"max_size": "1K", "max_age": "1d"}, log_on_success=True)
        rec = only_record(kh.run_module(tmp_path, "broadcast_job", args))
        assert rec["outcome"] == "succeeded", rec
        result = rec["result"]
        assert result["command"] == ["journalctl", "--vacuum-size=1K", "--vacuum-time=1d"]
        assert result["bytes_freed"] == sum(sizes) and result["files_removed_count"] == 3, result
        assert result["bytes_before"] == sum(int(n) for n in before.split())
        assert "Vacuuming done" in rec["log"], rec["log"]
        left = real_node.sh("ls %s" % machine).split()
        assert left == ["system.journal"], left   # the active journal stays
    finally:
        real_node.sh("rm -rf %s" % machine)


def test_journal_vacuum_options_are_refused_before_anything_is_written(tmp_path, namespace, real_node, audit):
    mark = audit.mark()
    args = on_real_node(real_node, namespace, name="jvbad", preset="journal_vacuum",
                        journal_vacuum={"max_size": "a lot"})
    result = kh.run_module(tmp_path, "broadcast_job", args)
    assert result["failed"] and "journal_vacuum.max_size='a lot' is invalid" in result["msg"], result["msg"]
    assert audit.writes_since(mark, namespace=namespace) == []


def test_a_failure_on_the_real_node_spends_the_budget_and_the_simulated_nodes_never_start(
        tmp_path, namespace, real_node, sim_nodes):
    """max_failures=0, one pod at a time: the real node (first by name) fails for real, exit 5, and the
    two simulated nodes after it are never started."""
    later = [sim_nodes.add(name="zz-%s-%d" % (uuid.uuid4().hex[:5], i)) for i in range(2)]
    args = on_real_node(real_node, namespace, name="rbudget", preset="host_command", parallelism=1, max_failures=0,
                        nodes=[real_node.name] + later, host_command={"command": "exit 5", "shell": True})
    result = kh.run_module(tmp_path, "broadcast_job", args)
    assert result["failed"] and "failure budget of 0 exhausted: 1 of 3 nodes failed" in result["msg"], result["msg"]
    nodes = dict((rec["node"], rec) for rec in result["nodes"])
    assert (nodes[real_node.name]["outcome"], nodes[real_node.name]["exit_code"]) == ("failed", 5)
    for name in later:
        assert (nodes[name]["outcome"], nodes[name]["reason"], nodes[name]["pod"]) == (
            "not_started", "FailureBudgetExhausted", None)


def test_host_command_runs_in_the_hosts_namespaces(tmp_path, namespace, real_node):
    marker = "/var/tmp/nodeops-marker-%s" % uuid.uuid4().hex[:6]
    try:
        # $$ is the shell's pid in the host's PID namespace: the node's init is 1 there, and we are not.
        args = on_real_node(real_node, namespace, name="hc", preset="host_command",
                            host_command={"command": "hostname > %s; cat /proc/1/cmdline | tr '\\0' ' ' >> %s"
                                                     % (marker, marker), "shell": True})
        result = kh.run_module(tmp_path, "broadcast_job", args)
        assert only_record(result)["outcome"] == "succeeded", only_record(result)
        written = real_node.sh("cat %s" % marker)
        assert "realnode.py init" in written, written   # PID 1 of the node's host is the node's init
    finally:
        real_node.sh("rm -f %s" % marker, check=False)


def test_a_failing_host_command_comes_back_with_its_exit_code_and_log(tmp_path, namespace, real_node, audit):
    args = on_real_node(real_node, namespace, name="hcf", preset="host_command",
                        host_command={"command": "echo about to fail; echo disk full >&2; exit 7", "shell": True})
    mark = audit.mark()
    result = kh.run_module(tmp_path, "broadcast_job", args)
    assert result.get("failed")
    rec = only_record(result)
    assert (rec["outcome"], rec["exit_code"]) == ("failed", 7)
    # The tail is the kubelet's: FallbackToLogsOnError put the failed container's last lines in its
    # termination message. No log was read through the API.
    assert "about to fail" in rec["log"] and "disk full" in rec["log"]
    # stdout and stderr are separate pipes that containerd copies into the one log file as each line
    # arrives, so their order there is not fixed. The message is the tail's last line, whichever it is.
    tail = [line for line in rec["log"].splitlines() if line.strip()]
    assert rec["message"] == tail[-1].strip() and rec["message"] in ("about to fail", "disk full"), rec
    assert audit.log_reads_since(mark, namespace=namespace) == []


def test_a_preset_that_fails_on_the_node_brings_its_errors_and_tail_in_the_pod_status(
        tmp_path, namespace, real_node, audit):
    """A runtime endpoint with no runtime behind it: crictl fails, the node script prints its result
    line and exits 2, and the kubelet's FallbackToLogsOnError tail carries both to the module."""
    args = on_real_node(real_node, namespace, name="ipf", preset="image_prune",
                        image_prune={"runtime_endpoint": "unix:///run/nodeops-no-such-runtime.sock"})
    mark = audit.mark()
    rec = only_record(kh.run_module(tmp_path, "broadcast_job", args))
    assert (rec["outcome"], rec["exit_code"]) == ("failed", 2), rec
    assert rec["result"]["errors"] and "nodeops-no-such-runtime.sock" in rec["result"]["errors"][0], rec
    assert rec["message"] == "; ".join(rec["result"]["errors"]) and "NODEOPS_RESULT" in rec["log"]
    assert audit.log_reads_since(mark, namespace=namespace) == []


def test_a_users_pod_template_runs_on_the_real_node(tmp_path, namespace, real_node, audit):
    """A user's container that writes its own termination message: it is the node's message, with no
    log read. With log_on_success the log is read too, one request per node."""
    script = ("import platform; line = 'hello from %s' % platform.node(); print(line); "
              "open('/dev/termination-log', 'w').write(line)")
    template = {"metadata": {"labels": {"app": "mine"}}, "spec": {"containers": [{
        "name": "mine", "image": real_node.image, "command": ["python3", "-c", script]}]}}
    args = on_real_node(real_node, namespace, name="tpl", pod_template=template)
    del args["image"]
    mark = audit.mark()
    rec = only_record(kh.run_module(tmp_path, "broadcast_job", args))
    assert rec["outcome"] == "succeeded", rec
    assert rec["message"].startswith("hello from") and rec["log"] is None, rec
    assert audit.log_reads_since(mark, namespace=namespace) == []
    mark = audit.mark()
    rec = only_record(kh.run_module(tmp_path, "broadcast_job", dict(args, log_on_success=True)))
    assert "hello from" in rec["log"], rec
    assert audit.log_reads_since(mark, namespace=namespace) == [rec["pod"]]


# ---------------------------------------------------------------- what only a real node shows


def test_a_path_missing_on_the_node_fails_as_soon_as_the_kubelet_says_so(tmp_path, namespace, real_node):
    missing = "/var/tmp/nodeops-missing-%s" % uuid.uuid4().hex[:6]
    args = on_real_node(real_node, namespace, name="pcm", preset="path_cleanup", pending_timeout=300, timeout=600,
                        path_cleanup={"path": missing, "older_than_days": 1})
    started = time.monotonic()
    result = kh.run_module(tmp_path, "broadcast_job", args)
    elapsed = time.monotonic() - started
    rec = only_record(result)
    assert (rec["outcome"], rec["reason"]) == ("failed", "HostPathMissing"), rec
    assert missing in rec["message"] and "not a directory" in rec["message"]
    assert elapsed < 120, "took %.0fs: waited for a timeout instead of the kubelet's event" % elapsed


def test_an_image_that_cannot_be_pulled_fails_at_once(tmp_path, namespace, real_node):
    args = on_real_node(real_node, namespace, name="pull", preset="image_prune", pending_timeout=300, timeout=600,
                        image="nodeops.local/no-such-image:1")
    started = time.monotonic()
    result = kh.run_module(tmp_path, "broadcast_job", args)
    rec = only_record(result)
    assert (rec["outcome"], rec["reason"]) == ("failed", "ImagePullBackOff"), rec
    assert "nodeops.local/no-such-image:1" in rec["message"]
    assert time.monotonic() - started < 120


@pytest.mark.parametrize("break_it, expected", [
    ("mv /usr/local/sbin/crictl /usr/local/sbin/crictl.off",
     "crictl is not installed on the node's host"),
    ("mv /usr/local/sbin/crictl /usr/local/sbin/crictl.off; "
     "printf '#!/bin/sh\\nexec /usr/local/sbin/crictl.bin --runtime-endpoint unix:///run/nowhere.sock "
     "--image-endpoint unix:///run/nowhere.sock --timeout 2s \"$@\"\\n' > /usr/local/sbin/crictl; "
     "chmod +x /usr/local/sbin/crictl",
     "crictl cannot reach the container runtime"),
], ids=["no-crictl", "no-runtime"])
def test_image_prune_on_a_host_without_a_working_crictl_says_why(tmp_path, namespace, real_node, break_it, expected):
    real_node.sh(break_it)
    try:
        args = on_real_node(real_node, namespace, name="nocri", preset="image_prune", image_prune={"dry_run": True})
        result = kh.run_module(tmp_path, "broadcast_job", args)
    finally:
        real_node.sh("mv -f /usr/local/sbin/crictl.off /usr/local/sbin/crictl")
    rec = only_record(result)
    assert result.get("failed")
    assert (rec["outcome"], rec["exit_code"]) == ("failed", 2), rec
    assert rec["message"].startswith(expected), rec["message"]


# ---------------------------------------------------------------- a node under real DiskPressure


def _restart_kubelet(real_node):
    """Kill the node's kubelet: its init starts it again a second later, with etc/kubelet.yaml as it is now, as
    systemd would after a configuration change. (No kubelet to kill, in the second it is being restarted: the same.)"""
    real_node.sh("pkill -KILL -x kubelet || true")


def _disk_pressure_of(core, name):
    node = core.read_node(name)
    condition = [c.status for c in node.status.conditions or [] if c.type == "DiskPressure"]
    tainted = any(t.key == "node.kubernetes.io/disk-pressure" for t in node.spec.taints or [])
    return (condition[0] if condition else None), tainted


@contextlib.contextmanager
def real_disk_pressure(core, real_node):
    """Real DiskPressure on the real node: its kubelet restarted with evictionHard nodefs.available and
    imagefs.available at 99%, above the free space of the node's filesystem; then the kubelet sets the condition and
    the node lifecycle controller the taint. Yields the free percentage. Afterwards, whatever happened, the kubelet's
    configuration is put back (from a copy kept beside it, which a test killed half-way leaves for the next one to
    restore first) and it is restarted, and the condition and taint are waited out.

    The pressured kubelet also gets imageMinimumGCAge 24h: a hard threshold makes it reclaim disk first by deleting
    every unused image it has known for longer than that age (since its restart), which would remove the prune-test
    images itself and, with them, images this node cannot pull again (it has no registry)."""
    path = real_node.node.p("etc", "kubelet.yaml")
    kept = path + ".before-disk-pressure"
    if os.path.exists(kept):
        os.replace(kept, path)      # a test killed under pressure: its kubelet still has the pressured config
        _restart_kubelet(real_node)
        _wait_no_disk_pressure(core, real_node)
    with open(path) as f:
        original = f.read()
    size, avail = [int(x) for x in real_node.sh("df -P -k /var/lib/kubelet | tail -1").split()[1:4:2]]
    free = 100.0 * avail / size
    assert free < 97, "the node's filesystem is %.1f%% free: no threshold is above that" % free
    config = json.loads(original)
    config["evictionHard"] = dict(config["evictionHard"], **{"nodefs.available": "99%", "imagefs.available": "99%"})
    config["imageMinimumGCAge"] = "24h"
    failed = False
    try:
        with open(kept, "w") as f:
            f.write(original)
        with open(path, "w") as f:
            json.dump(config, f, indent=2)
        _restart_kubelet(real_node)
        kh.wait_for("DiskPressure and its taint on the real node",
                    lambda: _disk_pressure_of(core, real_node.name) == ("True", True), timeout=180, interval=1)
        yield free
    except BaseException:
        failed = True
        raise
    finally:
        with open(path, "w") as f:
            f.write(original)
        if os.path.exists(kept):
            os.unlink(kept)
        _restart_kubelet(real_node)
        try:
            _wait_no_disk_pressure(core, real_node)
        except AssertionError:
            if not failed:
                raise   # else the test's own failure is the one to see


def _wait_no_disk_pressure(core, real_node):
    kh.wait_for("the real node out of DiskPressure, untainted",
                lambda: _disk_pressure_of(core, real_node.name) == ("False", False), timeout=180, interval=1)


def _free_cpu_m(core, node_name):
    """The node's allocatable CPU less what its running pods request, in millicores."""
    from kubernetes.utils import parse_quantity

    alloc = int(parse_quantity(core.read_node(node_name).status.allocatable["cpu"]) * 1000)
    pods = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=%s,status.phase!=Succeeded,"
                                            "status.phase!=Failed" % node_name).items

    def cpu(containers):
        return [int(parse_quantity(((c.resources and c.resources.requests) or {}).get("cpu", "0")) * 1000)
                for c in containers or []]
    asked = sum(max([sum(cpu(p.spec.containers))] + cpu(p.spec.init_containers)) for p in pods)
    return alloc - asked


def _preempted_since(core, audit, since, mark):
    """Pods preempted since ``since`` / ``mark``: a DisruptionTarget condition saying so (the scheduler's
    PreemptionByScheduler, the kubelet's preemption to admit a critical pod) on a pod still there, and pods the
    scheduler deleted (its victims: the audit log records every write). [(what, detail)]."""
    out = []
    for pod in core.list_pod_for_all_namespaces().items:
        for cond in pod.status.conditions or []:
            if (cond.type == "DisruptionTarget" and cond.status == "True" and cond.last_transition_time >= since
                    and (cond.reason == "PreemptionByScheduler" or "reempt" in (cond.message or ""))):
                out.append(("%s/%s" % (pod.metadata.namespace, pod.metadata.name), cond.message))
    out.extend(("deleted by the scheduler", "%s/%s" % (w["namespace"], w["name"]))
               for w in audit.writes_since(mark, user="system:kube-scheduler")
               if w["verb"] == "delete" and w["resource"] == "pods")
    return out


def test_a_node_under_real_disk_pressure_gets_its_prune_as_a_critical_pod_and_no_other_pod_pays_for_it(
        tmp_path, core, namespace, real_node, audit):
    """The kubelet really under DiskPressure (evictionHard at 99%, above the free space): a plain pod is refused there,
    image_prune's pod is admitted as a system-node-critical pod and removes the prune-test images (crictl says so),
    the result reports the condition before and after, a critical run that would not fit is skipped rather than
    preempting the critical pod already there, host_command is skipped saying why, and no pod is preempted or
    evicted by any of it."""
    from kubernetes import client as k8s

    real_node.import_images(PRUNABLE)
    since = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    start_mark = audit.mark()
    tolerations = [k8s.V1Toleration(**t) for t in real_node.tolerations]
    # A bystander the kubelet itself never evicts (critical), of a lower priority than ours, so that the scheduler
    # would preempt it for our pod if our pod did not fit and we made it anyway. It takes nearly all free CPU.
    # (A pod of an earlier test may still be going away: its requests count until it is gone.)

    def cpu_for_the_bystander():
        free = _free_cpu_m(core, real_node.name)
        return free - 400 if free >= 700 else None

    bystander_cpu = kh.wait_for("at least 700m of the real node's CPU free", cpu_for_the_bystander, timeout=120)
    bystander = core.create_namespaced_pod(namespace, k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="bystander"),
        spec=k8s.V1PodSpec(node_name=real_node.name, tolerations=tolerations, termination_grace_period_seconds=0,
                           priority_class_name="system-cluster-critical", containers=[k8s.V1Container(
                               name="sleep", image=SLEEPER, resources=k8s.V1ResourceRequirements(
                                   requests={"cpu": "%dm" % bystander_cpu}))])))
    kh.wait_for("the bystander Running", lambda: core.read_namespaced_pod(
        "bystander", namespace).status.phase == "Running", timeout=60)
    assert _disk_pressure_of(core, real_node.name) == ("False", False)
    try:
        with real_disk_pressure(core, real_node) as free:
            mark = audit.mark()
            # The pressure is real: the kubelet refuses a plain pod there (bound to the node, past the scheduler).
            core.create_namespaced_pod(namespace, k8s.V1Pod(
                metadata=k8s.V1ObjectMeta(name="plain"),
                spec=k8s.V1PodSpec(node_name=real_node.name, tolerations=tolerations, restart_policy="Never",
                                   containers=[k8s.V1Container(name="c", image=SLEEPER)])))

            def refused():
                pod = core.read_namespaced_pod("plain", namespace)
                return pod if pod.status.phase == "Failed" else None

            plain = kh.wait_for("the kubelet to refuse the plain pod", refused, timeout=60)
            assert "DiskPressure" in (plain.status.message or ""), plain.status

            args = on_real_node(real_node, namespace, name="relief", preset="image_prune", cleanup="never",
                                image_prune={"include": ["nodeops.local/prune-test-*"]})
            # Check mode says the node is under DiskPressure and eligible.
            plan = kh.run_module(tmp_path, "broadcast_job", args, check=True)
            assert not plan.get("failed"), plan.get("msg")
            assert plan["plan"]["disk_pressure"] == [real_node.name] and plan["plan"]["eligible"] == [real_node.name]

            # A run whose critical pod would not fit beside the bystander is skipped there: no pod, no preemption.
            crowded = dict(args, name="crowded", resources={"requests": {"cpu": "600m"}})
            skipped = kh.run_module(tmp_path, "broadcast_job", crowded)
            rec = only_record(skipped)
            assert rec["outcome"] == "skipped" and rec["reason"].startswith("under DiskPressure and full"), rec
            assert "cpu" in rec["reason"] and skipped["disk_pressure"]["nodes"] == [real_node.name], skipped

            # host_command frees no disk: skipped, saying why.
            other = kh.run_module(tmp_path, "broadcast_job", on_real_node(
                real_node, namespace, name="other", host_command={"command": ["true"]}, preset="host_command"))
            rec = only_record(other)
            assert rec["outcome"] == "skipped" and "frees no disk space" in rec["reason"], rec
            assert rec["disk_pressure"] == {"before": True, "after": True}

            before = real_node.crictl_images()
            assert set(PRUNABLE) <= set(before), "the kubelet removed the prune-test images itself"
            result = kh.run_module(tmp_path, "broadcast_job", args)
            assert not result.get("failed"), result.get("msg")
            rec = only_record(result)
            assert rec["outcome"] == "succeeded", rec
            assert sorted(rec["result"]["images_removed"]) == PRUNABLE, rec["result"]
            assert not set(PRUNABLE) & set(real_node.crictl_images()), "crictl still lists a prune-test image"
            # Reported: under pressure when planned, and still when it ended (the threshold is above the free space).
            assert rec["disk_pressure"] == {"before": True, "after": True}, rec
            assert result["disk_pressure"] == {"nodes": [real_node.name], "cleared": [], "still": [real_node.name]}
            pod = core.read_namespaced_pod(rec["pod"], namespace)
            assert pod.spec.priority_class_name == "system-node-critical" and pod.spec.priority == 2000001000
            pressure_tolerations = [t for t in pod.spec.tolerations
                                    if t.key == "node.kubernetes.io/disk-pressure" or t.key is None]
            assert [(t.key, t.operator, t.effect) for t in pressure_tolerations] == [
                ("node.kubernetes.io/disk-pressure", "Exists", "NoSchedule")]
            # Made by the module: the crowded run and host_command made no pod at all.
            made = [w["name"] for w in kh.pod_creates(audit, mark, namespace)]
            assert sorted(made) == sorted(["plain", rec["pod"]]), made
            # Nothing was preempted, by the scheduler or the kubelet (the plain pod was refused at admission).
            assert _preempted_since(core, audit, since, start_mark) == []
            by = core.read_namespaced_pod("bystander", namespace)
            assert by.metadata.uid == bystander.metadata.uid and by.status.phase == "Running"
            assert by.metadata.deletion_timestamp is None
        # Out of pressure: check mode lists no node under DiskPressure any more.
        plan = kh.run_module(tmp_path, "broadcast_job", dict(args, name="after"), check=True)
        assert plan["plan"]["disk_pressure"] == [] and plan["plan"]["eligible"] == [real_node.name], plan["plan"]
    finally:
        real_node.import_images(PRUNABLE)


# ---------------------------------------------------------------- the in-cluster runner, really in the cluster


def finished_job(api_client, core, namespace, name):
    """Wait (up to 180 s) for the runner's Job ``name`` to finish; return (the Job, its pods)."""
    from kubernetes import client as k8s

    batch = k8s.BatchV1Api(api_client)

    def finished():
        job = batch.read_namespaced_job(name, namespace)
        return job if (job.status.succeeded or job.status.failed) else None

    job = kh.wait_for("Job %s to finish" % name, finished, timeout=180, interval=1)
    return job, core.list_namespaced_pod(namespace, label_selector="job-name=%s" % name).items


def test_cron_run_now_runs_the_real_runner_in_a_pod_on_the_real_node(tmp_path, api_client, core, namespace,
                                                                     real_node, audit):
    """The CronJob's Job pod runs the runner as its ServiceAccount through the kubernetes Service;
    the runner creates the node pod, it runs, and broadcast_info reads the history it wrote. The node's
    result reaches the runner in the pod status, and the runner's own summary is its termination message."""
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._node.main import parse_result

    args = on_real_node(real_node, namespace, name="nightly", schedule="0 3 * * *", preset="image_prune",
                        image_prune={"dry_run": True}, run_now=True, runner_image=real_node.image,
                        runner_node_selector=real_node.label, runner_tolerations=real_node.tolerations)
    mark = audit.mark()
    try:
        installed = kh.run_module(tmp_path, "cron_broadcast", args)
        assert not installed.get("failed"), installed.get("msg")
        job, runner_pods = finished_job(api_client, core, namespace, installed["job"])
        assert [p.spec.node_name for p in runner_pods] == [real_node.name]
        runner_log = core.read_namespaced_pod_log(runner_pods[0].metadata.name, namespace)
        assert job.status.succeeded == 1, runner_log
        assert "created 1 pods" in runner_log, runner_log
        summary = parse_result(runner_pods[0].status.container_statuses[0].state.terminated.message)
        assert (summary["state"], summary["summary"]["succeeded"]) == ("succeeded", 1), summary
        # The only log read is this test's own, of the runner: none of the node pod.
        assert audit.log_reads_since(mark, user=None, namespace=namespace) == [runner_pods[0].metadata.name]
        info = kh.run_module(tmp_path, "broadcast_info", {"name": "nightly", "namespace": namespace})
        assert not info.get("failed"), info.get("msg")
        last = info["cron_broadcasts"][0]["last_run"]
        assert (last["state"], last["job"]) == ("succeeded", installed["job"])
        rec = [r for r in last["nodes"] if r["node"] == real_node.name][0]
        assert rec["outcome"] == "succeeded", rec
        # A real prune's dry run on a real containerd: its images, with their bytes.
        assert rec["result"]["dry_run"] is True and rec["result"]["bytes_freed"] > 0, rec["result"]
    finally:
        kh.run_module(tmp_path, "cron_broadcast", {"name": "nightly", "namespace": namespace, "state": "absent"})


def test_a_run_due_inside_a_freeze_starts_no_pod_and_the_history_says_why(tmp_path, api_client, core, namespace,
                                                                          real_node, sim_nodes, audit):
    """Issue 27: a freeze that covers today (in the schedule's time zone); run_now's Job runs the real runner in its
    pod on the real node. It creates no pod (the audit log: no pod created by anyone in the namespace but the Job
    controller's runner pod), the history records the run as skipped with the freeze's reason, and broadcast_info
    leaves today's fire times out of next_runs and names the freeze in frozen_runs."""
    from zoneinfo import ZoneInfo

    from ansible_collections.nodeops.kubernetes.plugins.module_utils._report import html

    zone = "Pacific/Kiritimati"   # UTC+14: "today" there is not today in UTC for ten hours of every day
    today = datetime.datetime.now(ZoneInfo(zone)).date()
    nodes = [real_node.name, sim_nodes.add(), sim_nodes.add()]
    # Due only at 00:00-00:20 Kiritimati time (10:00-10:20 UTC), which the freeze covers today and tomorrow: the
    # CronJob's own schedule cannot add a run while the test reads the history.
    args = on_real_node(real_node, namespace, name="frozen", schedule="0,5,10,15,20 0 * * *", time_zone=zone,
                        preset="image_prune", image_prune={"dry_run": True}, nodes=nodes, run_now=True,
                        runner_image=real_node.image, runner_node_selector=real_node.label,
                        runner_tolerations=real_node.tolerations,
                        freeze=[{"start": today.isoformat(), "end": (today + datetime.timedelta(days=1)).isoformat(),
                                 "reason": "release week"}, "2001-01-01"])
    mark = audit.mark()
    try:
        installed = kh.run_module(tmp_path, "cron_broadcast", args)
        assert not installed.get("failed"), installed.get("msg")
        # Every fire time of today and tomorrow is frozen: the next runs are the day after's.
        after = (today + datetime.timedelta(days=2)).isoformat()
        assert [r["local"][:10] for r in installed["next_runs"]] == [after] * 5, installed["next_runs"]
        assert [f["freeze"] for f in installed["frozen_runs"]] == [
            "release week (%s..%s, %s)" % (today, today + datetime.timedelta(days=1), zone)], installed["frozen_runs"]
        job, runner_pods = finished_job(api_client, core, namespace, installed["job"])
        runner_log = core.read_namespaced_pod_log(runner_pods[0].metadata.name, namespace)
        assert job.status.succeeded == 1, runner_log
        assert "skipped (job %s): inside the freeze release week" % installed["job"] in runner_log, runner_log
        # Nothing but the runner's own pod was created in the namespace, by anyone: one pod, by the Job controller
        # (with generateName, so the audit event has no name), none by the runner's ServiceAccount or the module.
        created = audit.creates_since(mark, "pods", namespace)
        assert [user for user, _name in created] == ["system:serviceaccount:kube-system:job-controller"], created
        assert created[0][1] in (None, runner_pods[0].metadata.name), created
        assert [p.metadata.name for p in core.list_namespaced_pod(namespace).items] == [runner_pods[0].metadata.name]
        info = kh.run_module(tmp_path, "broadcast_info", {"name": "frozen", "namespace": namespace})
        assert not info.get("failed"), info.get("msg")
        cron = info["cron_broadcasts"][0]
        last = cron["last_run"]
        assert (last["state"], last["job"], last["nodes"]) == ("skipped", installed["job"], []), last
        assert last["reason"] == "inside the freeze release week (%s..%s, %s)" % (
            today, today + datetime.timedelta(days=1), zone), last
        assert cron["next_runs"] == installed["next_runs"] and cron["frozen_runs"][0]["freeze"].startswith(
            "release week")
        # The report_html filter's page shows the skip and why.
        page = html.render([{"name": None, "info": info}])
        assert 'class="skipped-run"' in page and "inside the freeze release week" in page
    finally:
        kh.run_module(tmp_path, "cron_broadcast", {"name": "frozen", "namespace": namespace, "state": "absent"})


@pytest.mark.parametrize("phase", ["cleanup", "events", "history"])
def test_sigterm_to_the_runner_in_its_pod_while_it_finishes_a_run_loses_nothing(
        tmp_path, api_client, core, namespace, real_node, phase):
    """The runner in its pod on the real node, its run's node failing (so its pod is kept for debugging), and
    SIGTERM delivered as the runner enters ``phase`` (its test hook, set on this Job's pod only): the Job
    ends 143, the history has the run, interrupted, with the node's result, and the kept pod stays owned."""
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron import manifests
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._node.main import parse_result
    from kubernetes import client as k8s

    args = on_real_node(real_node, namespace, name="term", schedule="0 3 * * *", suspend=True,
                        preset="host_command", host_command={"command": "exit 3", "shell": True},
                        runner_image=real_node.image, runner_node_selector=real_node.label,
                        runner_tolerations=real_node.tolerations)
    try:
        installed = kh.run_module(tmp_path, "cron_broadcast", args)
        assert not installed.get("failed"), installed.get("msg")
        cron_job = kh.rest_client().get("/apis/batch/v1/namespaces/%s/cronjobs/term" % namespace)
        job = manifests.job_from_cron(cron_job, "term-" + phase)
        job["spec"]["template"]["spec"]["containers"][0]["env"].append(
            {"name": "NODEOPS_TEST_SIGTERM_AT", "value": phase})
        k8s.BatchV1Api(api_client).create_namespaced_job(namespace, job)
        runner = finished_job(api_client, core, namespace, job["metadata"]["name"])[1][0]
        log = core.read_namespaced_pod_log(runner.metadata.name, namespace)
        terminated = runner.status.container_statuses[0].state.terminated
        assert terminated.exit_code == 143 and "SIGTERM during %s" % phase in log, log
        assert parse_result(terminated.message)["state"] == "interrupted", terminated.message
        info = kh.run_module(tmp_path, "broadcast_info", {"name": "term", "namespace": namespace})
        last = info["cron_broadcasts"][0]["history"][0]
        assert (last["job"], last["state"]) == (job["metadata"]["name"], "interrupted"), last
        rec = [r for r in last["nodes"] if r["node"] == real_node.name][0]
        assert (rec["outcome"], rec["exit_code"]) == ("failed", 3), rec
        kept = core.list_namespaced_pod(namespace, label_selector="nodeops.io/broadcast=term").items
        assert [p.metadata.annotations["nodeops.io/node"] for p in kept] == [real_node.name]
        assert [o.kind for o in kept[0].metadata.owner_references] == ["ConfigMap"]
    finally:
        kh.run_module(tmp_path, "cron_broadcast", {"name": "term", "namespace": namespace, "state": "absent"})


def test_the_runner_in_its_pod_closes_the_window_in_its_time_zone(
        tmp_path, api_client, namespace, real_node, sim_nodes):
    """A cron broadcast with a window ending at a wall-clock time in New York: the runner, in its pod on the
    real node, reads the zone's rules that cron_broadcast shipped with it, starts nodes one by one until
    that moment, and records the rest as not started, with the moment in UTC."""
    import base64
    import datetime
    import json
    import zoneinfo

    from kubernetes import client as k8s

    zone = zoneinfo.ZoneInfo("America/New_York")
    # The next whole minute 70-130 s away: after the first pod starts (the runner starts in seconds), and
    # before the sixth of seven 30-second pods would (150 s in).
    end_local = (datetime.datetime.now(zone) + datetime.timedelta(seconds=130)).replace(second=0, microsecond=0)
    end_utc = end_local.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    nodes = [sim_nodes.add(name="w%d-%s" % (i, uuid.uuid4().hex[:5])) for i in range(7)]
    args = {"name": "windowed", "namespace": namespace, "schedule": "0 3 * * *", "preset": "image_prune",
            "image_prune": {"dry_run": True}, "nodes": nodes, "parallelism": 1, "run_now": True,
            "window": {"end": end_local.strftime("%H:%M"), "time_zone": "America/New_York"},
            "pod_annotations": {"sim.nodeops.io/delay": "30s"}, "runner_image": real_node.image,
            "runner_node_selector": real_node.label, "runner_tolerations": real_node.tolerations}
    try:
        installed = kh.run_module(tmp_path, "cron_broadcast", args)
        assert not installed.get("failed"), installed.get("msg")
        # The zone's rules go with the runner, and its input says to use them.
        code_name = [o["name"] for o in installed["objects"] if o["kind"] == "ConfigMap"][0]
        shipped = k8s.CoreV1Api(api_client).read_namespaced_config_map(code_name, namespace)
        assert base64.b64decode(shipped.binary_data["time-zone.tzif"])[:4] == b"TZif"
        assert json.loads(shipped.data["runner.json"])["time_zone_file"] == "time-zone.tzif"
        batch = k8s.BatchV1Api(api_client)

        def finished():
            status = batch.read_namespaced_job(installed["job"], namespace).status
            return status.succeeded or status.failed

        kh.wait_for("the run_now Job to finish", finished, timeout=300, interval=2)
        info = kh.run_module(tmp_path, "broadcast_info", {"name": "windowed", "namespace": namespace})
        last = info["cron_broadcasts"][0]["last_run"]
        recs = dict((rec["node"], rec) for rec in last["nodes"] if rec["node"] in nodes)
        started = [n for n in nodes if recs[n]["outcome"] == "succeeded"]
        stopped = [n for n in nodes if recs[n]["outcome"] == "not_started"]
        assert started and stopped and len(started) + len(stopped) == 7, recs
        assert started == nodes[:len(started)], "nodes start in order, one at a time"
        for node in stopped:
            assert (recs[node]["reason"], recs[node]["message"]) == (
                "WindowClosed", "not started: maintenance window closed at %s" % end_utc), recs[node]
        # The run is not a failure because of them (fail_on_window_closed is off).
        assert last["state"] == "succeeded", last
    finally:
        kh.run_module(tmp_path, "cron_broadcast", {"name": "windowed", "namespace": namespace, "state": "absent"})


# ---------------------------------------------------------------- faults on the real node


@pytest.mark.parametrize("fault", ["kill-containerd", "remove-container"])
def test_a_fault_on_the_node_mid_run_ends_with_a_clear_outcome_and_loses_no_other_result(
        tmp_path, core, namespace, real_node, sim_nodes, fault):
    import threading

    kwok = [sim_nodes.add(), sim_nodes.add()]
    template = {"spec": {"containers": [{
        "name": "work", "image": real_node.image,
        "command": ["python3", "-u", "-c", "import time; print('started'); time.sleep(20); print('finished')"]}]}}
    args = on_real_node(real_node, namespace, name="fault", pod_template=template, nodes=[real_node.name] + kwok,
                        timeout=150, log_on_success=True)
    del args["image"]

    def break_the_node():
        running = kh.wait_for("the work container running on the real node",
                              lambda: real_node.sh("crictl ps --name work --state Running -q").strip(), timeout=60)
        # ... and known to the kubelet: a container removed before the kubelet has seen it start is one it never
        # had, and it starts another (the 1.34 kubelet did, mostly), which is not the fault under test.
        kh.wait_for("the kubelet to report the work container running", lambda: any(
            (status.container_id or "").startswith("containerd://" + running.split()[0]) and status.state.running
            for pod in core.list_namespaced_pod(namespace).items for status in pod.status.container_statuses or []),
            timeout=60)
        if fault == "kill-containerd":
            real_node.sh("pkill -KILL -x containerd")      # the node's init brings it back, as systemd would
        else:
            real_node.sh("crictl rm -f $(crictl ps --name work -q)")

    breaker = threading.Thread(target=break_the_node)
    breaker.start()
    started = time.monotonic()
    result = kh.run_module(tmp_path, "broadcast_job", args)
    elapsed = time.monotonic() - started
    breaker.join(5)
    records = dict((rec["node"], rec) for rec in result["nodes"])
    assert sorted(records) == sorted([real_node.name] + kwok)
    for node in kwok:
        assert records[node]["outcome"] == "succeeded", records[node]
    real = records[real_node.name]
    if fault == "kill-containerd":
        # The container outlives its runtime's restart, and its result is kept.
        assert real["outcome"] == "succeeded", real
        assert "finished" in real["log"]
    else:
        assert real["outcome"] == "failed" and real["reason"], json.dumps(real)
        assert "finished" not in (real["log"] or "")
    assert elapsed < 120, "the run took %.0fs: it waited for its timeout" % elapsed


def test_stopping_another_versions_cluster_never_takes_this_real_nodes_network(
        tmp_path, core, namespace, real_node, sleeper_pod):
    """The node address on lo, the bridge, the nft table, the kubelet's iptables chains and the sysctls are one
    per host. make cluster-down of another Kubernetes minor, whose state directory holds a real node that does not
    run, must leave them to this one (it took them once: the compatibility suite's real node lost its address and
    every log read failed)."""
    import os
    import shutil
    import subprocess
    import sys

    realnode = kh.local_cluster.realnode
    other_minor = [m for m in kh.local_cluster.supported_minors() if m != kh.local_cluster.K8S_MINOR][0]
    other = tmp_path / "other-cluster"
    # A real node was there once, with what its stop would restore: without the fix, all of it is undone.
    (other / "realnode" / "run").mkdir(parents=True)
    for rel in ("host-before.json", os.path.join("run", "sysctls.json")):
        if os.path.exists(real_node.node.p(rel)):
            shutil.copy(real_node.node.p(rel), str(other / "realnode" / rel))

    def network():
        state = real_node.node.host_state()
        return {"node address": realnode.NODE_IP + "/32" in state["lo_addresses"],
                "bridge": realnode.BRIDGE in state["links"],
                "nft table": any(realnode.NFT_TABLE in t for t in state["nft_tables"]),
                "iptables chains": state["iptables_chains"], "sysctls": state["sysctls"]}

    before = network()
    assert before["node address"] and before["bridge"] and before["nft table"], before
    pid = real_node.node.pid()
    env = dict(os.environ, NODEOPS_K8S_VERSION=other_minor, NODEOPS_CLUSTER_DIR=str(other))
    proc = subprocess.run([sys.executable, os.path.join(kh.REPO, "tools", "localcluster", "cluster.py"), "down"],
                          env=env, capture_output=True, text=True, check=True)
    assert "leaving the host's real-node network to the real node in %s" % real_node.node.root in proc.stdout, (
        proc.stdout + proc.stderr)
    assert network() == before
    assert real_node.node.pid() == pid
    # ... and the apiserver still reaches its kubelet on that address (a log read goes there).
    assert core.read_namespaced_pod_log(sleeper_pod, namespace, _request_timeout=10) is not None
