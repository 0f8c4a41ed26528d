# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._node import main as node_main
from ansible_collections.nodeops.kubernetes.plugins.module_utils._node.main import HostProblem, parse_result
from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets import base, image_prune, path_cleanup

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "fixtures")


def load(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)


IMAGES = load("crictl_images.json")["images"]
CONTAINERS = load("crictl_ps_a.json")["containers"]
INFO = load("crictl_info.json")


def removed_tags(plan):
    return sorted((i["refs"] or [i["id"]])[0] for i in plan["remove"])


def test_prune_keeps_pause_in_use_and_exited_container_images():
    plan = image_prune.plan_image_prune(IMAGES, CONTAINERS, INFO)
    assert removed_tags(plan) == [
        "docker.io/library/nginx:1.25",
        "quay.io/prometheus/node-exporter@sha256:bbbb00000000000000000000000000000000000000000000000000000000bbbb",
        "registry.example.com/base/python:3.12",
    ]
    why = dict(((k["refs"] or [k["id"]])[0], k["why"]) for k in plan["kept"])
    assert why == {"registry.k8s.io/pause:3.10": "pinned", "docker.io/library/nginx:1.27": "in use",
                   "quay.io/coreos/etcd:v3.5.0": "in use"}


def test_unpinned_sandbox_image_is_kept_from_crictl_info():
    images = [dict(IMAGES[0], pinned=False, repoTags=["registry.example.com/pause:3.9"])]
    info = {"config": {"sandboxImage": "registry.example.com/pause:3.9"}}
    assert image_prune.plan_image_prune(images, [], info)["remove"] == []


def runtime_fixture(runtime, name):
    with open(os.path.join(FIXTURES, "containerd-" + runtime, name)) as f:
        return json.load(f)


@pytest.mark.parametrize("runtime, why", [("1.6", "sandbox image"), ("2.4", "pinned")])
def test_each_containerd_generation_keeps_its_pause_image_and_says_why(runtime, why):
    """What crictl says on the real node: 1.6 names the sandbox image in crictl info and does not pin it;
    2.4 names it nowhere there and pins it. Either way pause is kept, for the reason that runtime gives."""
    images = runtime_fixture(runtime, "crictl_images.json")["images"]
    info = runtime_fixture(runtime, "crictl_info.json")
    plan = image_prune.plan_image_prune(images, [], info)
    assert [r["refs"] for r in plan["remove"]] == [["nodeops.local/prune-test-a:1"]]
    assert [(k["refs"], k["why"]) for k in plan["kept"]] == [(["nodeops.local/pause:1"], why)]
    assert image_prune.sandbox_images(info) == ({"nodeops.local/pause:1"} if runtime == "1.6" else set())


@pytest.mark.parametrize("include, exclude, expected", [
    (["docker.io/*"], [], ["docker.io/library/nginx:1.25"]),
    ([], ["registry.example.com/base/*"], [
        "docker.io/library/nginx:1.25",
        "quay.io/prometheus/node-exporter@sha256:bbbb00000000000000000000000000000000000000000000000000000000bbbb"]),
    (["*nginx*"], ["*:1.25"], []),
    (["*nginx:1.27"], [], []),  # matches, but in use
])
def test_prune_include_and_exclude_patterns(include, exclude, expected):
    assert removed_tags(image_prune.plan_image_prune(IMAGES, CONTAINERS, INFO, include, exclude)) == expected


def test_prune_sizes_sum_to_bytes_freed(monkeypatch, capsys):
    outputs = {("images", "-o", "json"): {"images": IMAGES}, ("ps", "-a", "-o", "json"): {"containers": CONTAINERS},
               ("info", "-o", "json"): INFO}
    monkeypatch.setattr(image_prune, "_crictl", lambda *args, **kwargs: outputs.get(args, {}))
    result = image_prune.on_node({"dry_run": True})
    assert result["images_removed_count"] == 3
    assert result["bytes_freed"] == 70000000 + 12000000 + 150000000
    assert result["images_kept"] == 3
    assert result["images_kept_by_reason"] == {"pinned": 1, "in use": 2}
    assert "would remove docker.io/library/nginx:1.25 (70000000 bytes)" in capsys.readouterr().out


def test_main_prints_a_parseable_result_line(monkeypatch, capsys):
    params = {"dry_run": True, "include": ["docker.io/*"]}
    monkeypatch.setenv(node_main.ENV, json.dumps({"preset": "image_prune", "params": params}))
    outputs = {("images", "-o", "json"): {"images": IMAGES}, ("ps", "-a", "-o", "json"): {"containers": CONTAINERS},
               ("info", "-o", "json"): INFO}
    monkeypatch.setattr(image_prune, "_crictl", lambda *args, **kwargs: outputs.get(args, {}))
    assert node_main.main() == 0
    parsed = parse_result(capsys.readouterr().out)
    assert parsed["images_removed"] == ["docker.io/library/nginx:1.25"] and parsed["bytes_freed"] == 70000000


@pytest.mark.parametrize("path, refused", [
    ("/", "protected"), ("/etc", "protected"), ("/etc/ssl", "inside"), ("/usr", "protected"),
    ("/boot", "protected"), ("/proc/1", "inside"), ("/sys", "protected"), ("/dev", "protected"),
    ("/var/lib/kubelet", "protected"), ("/var/lib/kubelet/pods", "inside"), ("/var/lib/containerd", "protected"),
    ("/var/lib/etcd", "protected"), ("/var", "contains"), ("/var/lib", "contains"), ("var/log", "relative"),
    ("/var/log/../lib", ".."), ("", "required"), ("//etc", "protected"), ("/etc/", "protected"),
    ("/var/log/app", None), ("/tmp/cache", None), ("/var/lib/app-data", None), ("/home/ci/.cache", None),
])
def test_path_cleanup_refuses_dangerous_paths(path, refused):
    why = path_cleanup.path_cleanup_refusal(path)
    if refused is None:
        assert why is None
    else:
        assert why is not None and refused in why


def test_plan_path_cleanup_age_and_patterns():
    now = 1000 * 86400
    entries = [("a.log", 10, now - 8 * 86400, True), ("b.log", 20, now - 1 * 86400, True),
               ("sub/c.gz", 30, now - 30 * 86400, True), ("keep.txt", 40, now - 30 * 86400, True),
               ("dir-like", 0, now - 99 * 86400, False)]
    assert [e["path"] for e in path_cleanup.plan_path_cleanup(entries, now, 7, ["*.log", "*.gz"])] == ["a.log", "sub/c.gz"]
    assert [e["path"] for e in path_cleanup.plan_path_cleanup(entries, now, 7)] == ["a.log", "sub/c.gz", "keep.txt"]
    assert [e["path"] for e in path_cleanup.plan_path_cleanup(entries, now, None, ["sub/*"])] == ["sub/c.gz"]


def test_path_cleanup_removes_files_not_symlink_targets(tmp_path, monkeypatch):
    host = tmp_path / "host"                        # the host's root, as the pod sees it
    root = host / "var/log/app"                     # the directory the kubelet mounted
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "precious.log"
    outside.write_text("keep me")
    old = root / "old.log"
    old.write_text("x" * 100)
    os.utime(str(old), (0, 0))
    (root / "sub" / "new.log").write_text("fresh")
    link = root / "link.log"
    link.symlink_to(outside)
    os.utime(str(link), (0, 0), follow_symlinks=False)
    from test_path_cleanup_on_host import both_stages

    result = both_stages({"path": "/var/log/app", "host_root": str(host), "mount": str(root),
                          "older_than_days": 1, "patterns": ["*.log"]})
    assert sorted(result["files_removed"]) == ["link.log", "old.log"]
    assert outside.read_text() == "keep me"
    assert (root / "sub" / "new.log").exists() and not old.exists()
    assert result["bytes_freed"] == 100 + len(str(outside))


def test_pod_side_refuses_dangerous_path_too(capsys):
    result = path_cleanup.on_node({"path": "/etc", "host_root": "/nonexistent", "mount": "/nonexistent",
                                   "older_than_days": 1})
    assert result["refused"] == "/etc is a protected system path" and result["files_removed"] == []
    assert result["errors"] == ["refusing to clean /etc: /etc is a protected system path"]


@pytest.mark.parametrize("returncode, stderr, expected", [
    (127, "nsenter: failed to execute crictl: No such file or directory", "crictl is not installed"),
    (1, 'time="x" level=fatal msg="validate service connection: validate CRI v1 image API for endpoint '
        '\\"unix:///run/containerd/containerd.sock\\": rpc error: code = Unavailable desc = connection error: '
        'desc = \\"transport: Error while dialing: dial unix /run/containerd/containerd.sock: connect: no such '
        'file or directory\\""', "crictl cannot reach the container runtime"),
    (3, "something else\nthe last line", "crictl images -o json exited 3: the last line"),
])
def test_crictl_problems_are_said_plainly(returncode, stderr, expected):
    assert image_prune.crictl_problem(("images", "-o", "json"), returncode, stderr).startswith(expected)


def test_a_host_without_crictl_gives_a_result_with_the_error(monkeypatch, capsys):
    def no_crictl(*args, **kwargs):
        raise HostProblem(image_prune.crictl_problem(args, 127, "nsenter: failed to execute crictl"))
    monkeypatch.setattr(image_prune, "_crictl", no_crictl)
    monkeypatch.setenv(node_main.ENV, json.dumps({"preset": "image_prune", "params": {}}))
    assert node_main.main() == 2
    result = parse_result(capsys.readouterr().out)
    assert result["errors"] == ["crictl is not installed on the node's host (not on its PATH); image_prune needs it"]


def test_journal_vacuum_command_and_sizes():
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets import journal_vacuum

    part = journal_vacuum.pod({"max_size": "500M", "max_age": "2weeks", "max_files": None})
    assert part["params"] == {"max_size": "500M", "max_age": "2weeks"} and part["host_pid"] is True
    assert journal_vacuum.vacuum_argv(part["params"]) == ["journalctl", "--vacuum-size=500M", "--vacuum-time=2weeks"]
    assert journal_vacuum.vacuum_argv({"max_files": 3}) == ["journalctl", "--vacuum-files=3"]
    assert journal_vacuum.parse_sizes("300\n200\n\n") == (500, 2)
    assert journal_vacuum.parse_sizes("") == (0, 0)


def test_journal_vacuum_says_plainly_when_the_host_has_no_journalctl(monkeypatch, capsys):
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets import journal_vacuum

    def host_run(argv):
        if argv[0] == "find":
            return 0, b"10\n", ""
        return 127, b"", "nsenter: failed to execute journalctl: No such file or directory"
    monkeypatch.setattr(journal_vacuum, "host_run", host_run)
    monkeypatch.setenv(node_main.ENV, json.dumps({"preset": "journal_vacuum", "params": {"max_size": "1G"}}))
    assert node_main.main() == 2
    result = parse_result(capsys.readouterr().out)
    assert result["errors"] == ["journalctl is not installed on the node's host (not on its PATH); "
                                "journal_vacuum needs it"]


MOUNTPOINT = "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs"
IMAGEFS = {"status": {"imageFilesystems": [{"timestamp": "1", "usedBytes": {"value": "1"},
                                            "fsId": {"mountpoint": MOUNTPOINT}}]}}


def test_image_filesystem_usage_as_df_computes_it():
    assert image_prune.imagefs_mountpoint(IMAGEFS) == "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs"
    assert image_prune.imagefs_mountpoint({}) is None
    # 4096-byte blocks: 1000 in all, 200 free, 150 available to non-root: used 800 of 950 usable.
    assert image_prune.usage_percent("4096 1000 200 150\n") == 84.2


@pytest.mark.parametrize("threshold, pruned", [(85, False), (84, True), (0, True), (100, False)])
def test_prune_only_at_or_above_the_threshold(monkeypatch, capsys, threshold, pruned):
    outputs = {("images", "-o", "json"): {"images": IMAGES}, ("ps", "-a", "-o", "json"): {"containers": CONTAINERS},
               ("info", "-o", "json"): INFO, ("imagefsinfo", "-o", "json"): IMAGEFS}
    calls = []

    def crictl(*args, **kwargs):
        calls.append((args, kwargs.get("endpoint")))
        return outputs[args]
    monkeypatch.setattr(image_prune, "_crictl", crictl)
    monkeypatch.setattr(image_prune, "host_run", lambda argv: (0, b"4096 1000 200 150\n", ""))
    result = image_prune.on_node({"dry_run": True, "disk_usage_above": threshold,
                                  "runtime_endpoint": "unix:///run/crio/crio.sock"})
    assert result["disk_usage_before"] == 84.2 and result["skipped_below_threshold"] is (not pruned)
    assert result["images_removed_count"] == (3 if pruned else 0)
    assert all(endpoint == "unix:///run/crio/crio.sock" for _args, endpoint in calls)
    assert (("images", "-o", "json"), "unix:///run/crio/crio.sock") in calls if pruned else len(calls) == 1


@pytest.mark.parametrize("ref, normal", [
    ("nginx", "docker.io/library/nginx:latest"), ("nginx:1.25", "docker.io/library/nginx:1.25"),
    ("bitnami/redis:7", "docker.io/bitnami/redis:7"), ("quay.io/prometheus/node-exporter", "quay.io/prometheus/node-exporter:latest"),
    ("localhost:5000/app:1", "localhost:5000/app:1"), ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
    ("nginx@sha256:abc", "docker.io/library/nginx@sha256:abc"),
])
def test_image_references_are_compared_as_the_runtime_lists_them(ref, normal):
    assert base.normalize_ref(ref) == normal


def test_images_the_cluster_refers_to_are_kept():
    plan = image_prune.plan_image_prune(IMAGES, CONTAINERS, INFO, keep_refs=["nginx:1.25"])
    assert "docker.io/library/nginx:1.25" not in removed_tags(plan)
    assert ("docker.io/library/nginx:1.25", "used in the cluster") in [((k["refs"] or [k["id"]])[0], k["why"])
                                                                       for k in plan["kept"]]
    part = image_prune.pod({"keep_images_in_cluster": True})
    assert part["inputs"] == ["cluster_images"] and part["params"]["keep_images_file"] == "cluster-images.json"
    assert image_prune.pod({})["inputs"] == []


def test_every_crictl_call_goes_to_the_same_endpoint_rmi_too(monkeypatch):
    """A real (not dry) run: the listing calls and each rmi name the endpoint, for both of crictl's services."""
    argvs = []

    def host_run(argv):
        argvs.append(tuple(argv))
        if argv[-1] == "json":
            return 0, json.dumps({("images",): {"images": IMAGES}, ("ps",): {"containers": CONTAINERS},
                                  ("info",): INFO, ("imagefsinfo",): IMAGEFS}[(argv[5],)]).encode(), ""
        return 0, b"4096 1000 200 150\n" if argv[0] == "stat" else b"", ""
    monkeypatch.setattr(image_prune, "host_run", host_run)
    result = image_prune.on_node({"runtime_endpoint": "unix:///run/crio/crio.sock"})
    rmis = [a for a in argvs if "rmi" in a]
    assert len(rmis) == result["images_removed_count"] == 3
    endpoint = ("crictl", "--runtime-endpoint", "unix:///run/crio/crio.sock", "--image-endpoint",
                "unix:///run/crio/crio.sock")
    assert all(a[:5] == endpoint for a in argvs if a[0] == "crictl")
    assert image_prune.crictl_argv(None, "rmi", "x") == ("crictl", "rmi", "x")


def test_the_cluster_images_input_is_compact_and_keeps_what_the_refs_would_keep():
    """keep_images_in_cluster ships fixed-size keys, not refs: 20,000 distinct images fit the 1 MiB of the
    run's code ConfigMap with the node script, and an image is kept exactly when one of its refs is listed."""
    import json

    from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import options, pods

    import hashlib

    # Digest-pinned, as GitOps writes them: about 2.5 MB as refs, far over a ConfigMap's 1 MiB.
    refs = ["registry.example.com/platform-team-%d/service-%d@sha256:%s" % (
        i % 97, i, hashlib.sha256(str(i).encode()).hexdigest()) for i in range(19999)]
    refs.append("registry.example/team-5/app-5:v5")
    assert len(json.dumps(refs)) > 2 * 1024 * 1024
    opts = options.validate({"name": "prune", "namespace": "ops", "preset": "image_prune",
                             "image_prune": {"keep_images_in_cluster": True}})
    shipped = json.dumps(base.compact_images(refs), separators=(",", ":"))
    code = pods.node_code(opts["workload"], shipped)
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "nodeops-run-prune-r", "uid": "u"}
    config_map = pods.code_config_map(opts, "0123456789abcdef", code, owner)
    size = len(json.dumps(config_map).encode("utf-8"))
    assert size < 1024 * 1024 - 64 * 1024, "code ConfigMap is %d bytes at 20,000 images" % size
    images = [{"id": "sha256:aa", "repoTags": ["registry.example/team-5/app-5:v5"], "size": 1},
              {"id": "sha256:bb", "repoTags": ["registry.example/other:1"], "size": 2}]
    plan = image_prune.plan_image_prune(images, [], keep_refs=json.loads(shipped))
    assert [e["id"] for e in plan["remove"]] == ["sha256:bb"]
    assert plan["kept"] == [{"id": "sha256:aa", "refs": ["registry.example/team-5/app-5:v5"], "why": "used in the cluster"}]
    # The same decision as from the refs themselves.
    assert image_prune.plan_image_prune(images, [], keep_refs=refs) == plan
