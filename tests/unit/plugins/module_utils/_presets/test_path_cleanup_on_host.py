# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""path_cleanup judges the real path, on the node.

Each test builds a fake host under tmp_path (``host``), with real symbolic links, and runs ``on_node`` as
the node pod runs it: the host's root seen at ``host_root`` (the pod's read-only hostPath of ``/``), and
the directory the kubelet mounted for the path, after following its links, at ``mount``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets import path_cleanup
from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets.base import OptionError

KUBELET_FILES = ["kubelet.log", "pods/abc/state.json"]


def old_file(path, text="x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(str(path), (0, 0))     # the epoch: older than any older_than_days
    return path


@pytest.fixture
def host(tmp_path):
    """A host root with a kubelet directory full of old files and an empty /var/tmp."""
    root = tmp_path / "host"
    for name in KUBELET_FILES:
        old_file(root / "var/lib/kubelet" / name)
    (root / "var/tmp").mkdir(parents=True)
    return root


def both_stages(params):
    """The node side as the pod runs it: the judging stage (init container: the host at ``host_root``,
    no mount), then the cleaning one (the mount and the verdict, no host). Returns the cleaning result."""
    verdict = os.path.join(os.path.dirname(params["host_root"].rstrip("/")) or "/", "verdict-%s.json" % os.getpid())
    judged = path_cleanup.on_node({"stage": "judge", "path": params["path"], "host_root": params["host_root"],
                                   "verdict": verdict})
    assert judged["errors"] == [] and judged["stage"] == "judge"
    cleaning = dict((k, v) for k, v in params.items() if k != "host_root")
    return path_cleanup.on_node(dict(cleaning, verdict=verdict))


def on_node(host, path, mounted, **opts):
    """Run the node side for ``path``; ``mounted`` is the host directory the kubelet bound (links followed)."""
    params = {"path": path, "host_root": str(host), "mount": str(host / mounted.lstrip("/")),
              "older_than_days": 1, "patterns": [], "dry_run": False}
    params.update(opts)
    return both_stages(params)


def kubelet_files(host):
    top = host / "var/lib/kubelet"
    return sorted(os.path.relpath(os.path.join(d, f), str(top)) for d, _dirs, files in os.walk(str(top))
                  for f in files)


def assert_refused(result, capsys, *fragments):
    assert result["files_removed"] == [] and result["files_removed_count"] == 0 and result["bytes_freed"] == 0
    for fragment in fragments:
        assert fragment in result["refused"], result["refused"]
    assert result["errors"] == ["refusing to clean %s: %s" % (result["path"], result["refused"])]
    out = capsys.readouterr().out
    assert "remove" not in out, "something was listed: %s" % out


@pytest.mark.parametrize("target", ["/var/lib/kubelet", "../lib/kubelet"], ids=["absolute", "relative"])
def test_a_link_into_the_kubelet_dir_is_refused_before_anything_is_listed_or_removed(host, capsys, target):
    (host / "var/tmp/x").symlink_to(target)
    result = on_node(host, "/var/tmp/x", "/var/lib/kubelet", dry_run=True)
    assert_refused(result, capsys, "/var/tmp/x resolves to /var/lib/kubelet on the host",
                   "the protected path /var/lib/kubelet")
    assert result["resolved"] == "/var/lib/kubelet"
    result = on_node(host, "/var/tmp/x", "/var/lib/kubelet")
    assert_refused(result, capsys, "/var/lib/kubelet")
    assert kubelet_files(host) == sorted(KUBELET_FILES)


def test_a_link_above_a_protected_path_is_refused(host, capsys):
    old_file(host / "var/lib/app.log")
    (host / "var/tmp/up").symlink_to("/var/lib")
    result = on_node(host, "/var/tmp/up", "/var/lib", patterns=["*.log"])
    assert_refused(result, capsys, "resolves to /var/lib on the host", "contains the protected path /var/lib/kubelet")
    assert (host / "var/lib/app.log").exists() and kubelet_files(host) == sorted(KUBELET_FILES)


def test_a_directory_on_the_way_that_is_a_link_is_resolved_too(host, capsys):
    (host / "var/tmp/d").symlink_to("/var/lib")
    result = on_node(host, "/var/tmp/d/kubelet/pods", "/var/lib/kubelet/pods")
    assert_refused(result, capsys, "resolves to /var/lib/kubelet/pods on the host",
                   "inside the protected path /var/lib/kubelet")
    assert kubelet_files(host) == sorted(KUBELET_FILES)


def test_a_protected_path_that_is_a_link_on_the_host_is_judged_where_it_leads(tmp_path, capsys):
    # The kubelet's directory moved to a data disk, with a link left at /var/lib/kubelet: the string
    # /data/kubelet/pods passes the controller's check, the host says it is the kubelet's.
    host = tmp_path / "host"
    old_file(host / "data/kubelet/pods/abc/state.json")
    (host / "var/lib").mkdir(parents=True)
    (host / "var/lib/kubelet").symlink_to("/data/kubelet")
    assert path_cleanup.path_cleanup_refusal("/data/kubelet/pods") is None
    result = on_node(host, "/data/kubelet/pods", "/data/kubelet/pods")
    assert_refused(result, capsys, "/data/kubelet/pods", "inside the protected path /var/lib/kubelet",
                   "/data/kubelet on this host")
    assert (host / "data/kubelet/pods/abc/state.json").exists()


def test_a_link_to_an_unprotected_directory_is_followed_and_cleaned(host, capsys):
    old_file(host / "srv/logs/old.log", "12345")
    (host / "srv/logs/new.log").write_text("fresh")
    (host / "var/tmp/logs").symlink_to("../../srv/logs")
    result = on_node(host, "/var/tmp/logs", "/srv/logs")
    assert result["resolved"] == "/srv/logs" and result["errors"] == [] and "refused" not in result
    assert result["files_removed"] == ["old.log"] and result["bytes_freed"] == 5
    assert sorted(os.listdir(str(host / "srv/logs"))) == ["new.log"]
    assert "removed old.log (5 bytes)" in capsys.readouterr().out


def test_a_mount_that_is_not_the_resolved_directory_is_refused(host, capsys):
    # The link changed after the kubelet mounted it: what is mounted is not what the path names now.
    old_file(host / "srv/a/old.log")
    old_file(host / "srv/b/old.log")
    (host / "var/tmp/x").symlink_to("/srv/a")
    result = on_node(host, "/var/tmp/x", "/srv/b")
    assert_refused(result, capsys, "is not /srv/a on the host")
    assert (host / "srv/a/old.log").exists() and (host / "srv/b/old.log").exists()


def test_a_link_loop_is_refused_after_a_bounded_number_of_hops(host, capsys):
    (host / "var/tmp/a").symlink_to("b")
    (host / "var/tmp/b").symlink_to("/var/tmp/a")
    result = on_node(host, "/var/tmp/a", "/var/tmp")
    assert_refused(result, capsys, "more than %d symbolic links" % path_cleanup.MAX_LINK_HOPS)


@pytest.mark.parametrize("path, links, resolved", [
    ("/var/tmp/x", {"/var/tmp/x": "/var/lib/kubelet"}, "/var/lib/kubelet"),
    ("/var/tmp/x", {"/var/tmp/x": "../lib/kubelet"}, "/var/lib/kubelet"),
    ("/var/tmp/x/pods", {"/var/tmp/x": "../lib/kubelet"}, "/var/lib/kubelet/pods"),
    # ".." at the host's root stays there, as it does on the host: never out of the host mount.
    ("/var/tmp/x", {"/var/tmp/x": "../../../../../etc"}, "/etc"),
    ("/a/b", {"/a": "/x/./y/", "/x/y/b": "c"}, "/x/y/c"),
    ("/a", {"/a": "/x/l/..", "/x/l": "/p/q"}, "/p"),     # ".." after a link goes up from its target
    ("//var//log/./app", {}, "/var/log/app"),
])
def test_resolve_host_path_follows_links_as_the_host_would(path, links, resolved):
    assert path_cleanup.resolve_host_path(path, links.get) == resolved


def test_resolve_host_path_stops_after_a_bounded_number_of_hops():
    with pytest.raises(path_cleanup.LinkLoop):
        path_cleanup.resolve_host_path("/a", {"/a": "/a"}.get)
    chain = dict(("/l%d" % i, "/l%d" % (i + 1)) for i in range(path_cleanup.MAX_LINK_HOPS))
    assert path_cleanup.resolve_host_path("/l0", chain.get) == "/l%d" % path_cleanup.MAX_LINK_HOPS


def test_a_file_that_vanishes_between_the_listing_and_its_stat_is_skipped(host, monkeypatch):
    logs = host / "srv/logs"
    old_file(logs / "rotated.log")
    old_file(logs / "old.log")
    real_lstat = os.lstat

    def rotate_then_lstat(path, *args, **kwargs):
        if os.path.basename(str(path)) == "rotated.log" and (logs / "rotated.log").exists():
            (logs / "rotated.log").unlink()      # logrotate got there first
        return real_lstat(path, *args, **kwargs)
    monkeypatch.setattr(os, "lstat", rotate_then_lstat)
    result = on_node(host, "/srv/logs", "/srv/logs")
    assert result["files_removed"] == ["old.log"] and result["errors"] == []


def test_a_file_that_vanishes_before_its_unlink_is_skipped(host, monkeypatch):
    logs = host / "srv/logs"
    old_file(logs / "rotated.log")
    old_file(logs / "old.log")
    real_unlink = os.unlink

    def rotate_then_unlink(path, *args, **kwargs):
        if os.path.basename(str(path)) == "rotated.log" and (logs / "rotated.log").exists():
            real_unlink(str(logs / "rotated.log"))
        return real_unlink(path, *args, **kwargs)
    monkeypatch.setattr(os, "unlink", rotate_then_unlink)
    result = on_node(host, "/srv/logs", "/srv/logs")
    assert result["files_removed"] == ["old.log"] and result["errors"] == []
    assert os.listdir(str(logs)) == []


def test_a_directory_swapped_for_a_link_after_the_scan_is_not_followed_when_removing(host, monkeypatch):
    # Between the scan and the unlink, sub/ becomes a link into the kubelet's directory: removing
    # sub/kubelet.log must not go through it.
    logs = host / "srv/logs"
    old_file(logs / "sub/kubelet.log")
    real_plan = path_cleanup.plan_path_cleanup

    def plan_then_swap(*args, **kwargs):
        plan = real_plan(*args, **kwargs)
        (logs / "sub/kubelet.log").unlink()
        (logs / "sub").rmdir()
        (logs / "sub").symlink_to("../../var/lib/kubelet")     # relative: the fake host's, not this machine's
        return plan
    monkeypatch.setattr(path_cleanup, "plan_path_cleanup", plan_then_swap)
    result = on_node(host, "/srv/logs", "/srv/logs")
    assert result["files_removed"] == [] and len(result["errors"]) == 1, result
    assert result["errors"][0].startswith("sub/kubelet.log: ")
    assert kubelet_files(host) == sorted(KUBELET_FILES)


def test_a_link_in_the_tree_is_removed_not_entered(host, capsys):
    logs = host / "srv/logs"
    old_file(logs / "old.log")
    (logs / "kubelet").symlink_to("../../var/lib/kubelet")
    os.utime(str(logs / "kubelet"), (0, 0), follow_symlinks=False)
    result = on_node(host, "/srv/logs", "/srv/logs", older_than_days=0, patterns=["*"])
    assert sorted(result["files_removed"]) == ["kubelet", "old.log"], result
    assert os.listdir(str(logs)) == [] and kubelet_files(host) == sorted(KUBELET_FILES)


def test_a_protected_directory_met_during_the_walk_is_not_entered(host):
    # A bind mount of a protected directory below the path, on the same filesystem, has its identity.
    logs = host / "srv/logs"
    old_file(logs / "old.log")
    old_file(logs / "bound/state.json")
    st = os.stat(str(logs / "bound"))
    entries = path_cleanup.scan_tree(str(logs), {(st.st_dev, st.st_ino): "/var/lib/kubelet"})
    assert [e[0] for e in entries] == ["old.log"]


@pytest.mark.parametrize("path, refused", [
    ("/var/lib/cni", "protected"), ("/var/lib/cni/networks", "inside"), ("/var/lib/dpkg", "protected"),
    ("/var/lib/rpm", "protected"), ("/var/lib/rancher", "protected"), ("/var/lib/rancher/k3s", "inside"),
    ("/var/log/pods", "protected"), ("/var/log/pods/ns_pod_uid", "inside"), ("/var/log/containers", "protected"),
    ("/var/log", "contains"), ("/var/log/app", None), ("/var/lib/cni-backup", None),
])
def test_path_cleanup_refuses_the_added_protected_paths(path, refused):
    why = path_cleanup.path_cleanup_refusal(path)
    assert (why is None) if refused is None else (why is not None and refused in why), why


def test_older_than_days_zero_with_no_patterns_is_refused_before_anything_is_written():
    with pytest.raises(OptionError) as info:
        path_cleanup.pod({"path": "/var/log/app", "older_than_days": 0, "patterns": []})
    assert (info.value.param, info.value.value) == ("path_cleanup.older_than_days", 0)
    assert "would empty /var/log/app" in str(info.value) and ">= 1" in info.value.accepted
    assert "patterns" in info.value.accepted
    assert path_cleanup.pod({"path": "/var/log/app", "older_than_days": 0, "patterns": ["*.gz"]})["params"]
    assert "refused without I(patterns)" in path_cleanup.DOCUMENTATION


def test_older_than_days_zero_with_no_patterns_is_refused_on_the_node_too(host, capsys):
    old_file(host / "srv/logs/old.log")
    result = on_node(host, "/srv/logs", "/srv/logs", older_than_days=0)
    assert_refused(result, capsys, "would empty /srv/logs")
    assert (host / "srv/logs/old.log").exists()


def test_only_the_unprivileged_judge_sees_the_host_and_the_cleaner_mounts_only_the_path():
    """The host's root (read-only, but with the runtime's sockets in it) is seen only by the judging init
    container, as nobody with no capabilities; the cleaning container, root, sees the path and the verdict."""
    part = path_cleanup.pod({"path": "/var/log/app", "older_than_days": 3, "dry_run": False})
    assert part["volumes"] == [{"name": "target", "hostPath": {"path": "/var/log/app", "type": "Directory"}},
                               {"name": "host", "hostPath": {"path": "/", "type": "Directory"}},
                               {"name": "verdict", "emptyDir": {"sizeLimit": "1Mi"}}]
    mounts = dict((m["name"], m) for m in part["container"]["volumeMounts"])
    assert sorted(mounts) == ["target", "verdict"]
    assert mounts["target"] == {"name": "target", "mountPath": path_cleanup.MOUNT, "readOnly": False}
    assert mounts["verdict"]["readOnly"] is True
    assert "host_root" not in part["params"] and part["params"]["mount"] == path_cleanup.MOUNT
    assert "securityContext" not in part["container"] and part["host_pid"] is False
    [judge] = part["init"]
    assert judge["security"]["runAsUser"] == 65534 and judge["security"]["capabilities"] == {"drop": ["ALL"]}
    assert judge["security"]["allowPrivilegeEscalation"] is False and judge["security"]["runAsNonRoot"] is True
    judge_mounts = dict((m["name"], m) for m in judge["mounts"])
    assert judge_mounts["host"] == {"name": "host", "mountPath": path_cleanup.HOST_ROOT, "readOnly": True,
                                    "recursiveReadOnly": "IfPossible"}
    assert "target" not in judge_mounts and judge["params"]["stage"] == "judge"
    dry = path_cleanup.pod({"path": "/var/log/app", "older_than_days": 3, "dry_run": True})
    assert all(m["readOnly"] for m in dry["container"]["volumeMounts"])


def test_a_cleaning_stage_without_a_verdict_refuses(tmp_path, capsys):
    result = path_cleanup.on_node({"path": "/var/log/app", "mount": str(tmp_path), "older_than_days": 1,
                                   "verdict": str(tmp_path / "none.json")})
    assert_refused(result, capsys, "no verdict on the host path")


def test_a_verdict_about_another_path_is_not_taken(tmp_path, capsys):
    (tmp_path / "v.json").write_text('{"path": "/srv/other", "resolved": "/srv/other", "refusal": null}')
    result = path_cleanup.on_node({"path": "/var/log/app", "mount": str(tmp_path), "older_than_days": 1,
                                   "verdict": str(tmp_path / "v.json")})
    assert_refused(result, capsys, "the verdict is about '/srv/other'")
