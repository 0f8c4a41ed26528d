# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preset path_cleanup: remove old or matching files under one host directory.

Which paths may never be cleaned is decided twice. On the controller, before anything is written, on
the path's text: an early, clear error. In the node pod, before anything is listed, on the host itself,
which is the check that counts: a path's text says nothing of the symbolic links on its way, and the
kubelet follows them when it mounts a hostPath, so ``/var/tmp/x`` may well mount ``/var/lib/kubelet``.
So the pod judges first, in an init container that sees the host's root read-only and resolves the path
there as the host would. That stage runs as nobody, with no capabilities: a read-only view of the host
still holds sockets (the container runtime's), which root could connect to. It writes its verdict to an
emptyDir. The cleaning container, root but with only the directory itself mounted, reads the verdict,
checks that the directory the kubelet mounted is the one judged, and only then lists anything.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import errno
import fnmatch
import json
import os
import posixpath
import stat
import time

from ansible_collections.nodeops.kubernetes.plugins.module_utils._node.main import MAX_LISTED, say
from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets.base import OptionError, pod_part

NAME = "path_cleanup"
SUMMARY = ("C(path_cleanup) removes old or matching files under one host directory. It mounts that directory; "
           "an unprivileged init container (nobody, no capabilities) sees the host's root read-only to resolve "
           "the path as the host does.")
OPTIONS = dict(
    path=dict(type="str", required=True),
    older_than_days=dict(type="int"),
    patterns=dict(type="list", elements="str", default=[]),
    dry_run=dict(type="bool", default=False),
)
DOCUMENTATION = r"""
description:
  - Options of the C(path_cleanup) preset.
  - Refused before anything is written for relative paths, paths with C(..), and protected
    system paths, what is inside them and what contains them (C(/), C(/etc), C(/usr), C(/boot),
    C(/proc), C(/sys), C(/dev), C(/var/lib/kubelet), C(/var/lib/containerd), C(/var/lib/etcd),
    C(/var/lib/cni), C(/var/lib/dpkg), C(/var/lib/rpm), C(/var/lib/rancher), C(/var/log/pods), ...;
    so C(/var/log) is refused too).
  - The node pod then judges the real path before it lists anything. An init container, running as
    nobody with no capabilities, sees the host's root read-only, resolves the path there as the host
    would (every symbolic link on the way, at most 40) and refuses,
    with the resolved path and the protected path in the node's C(errors), when the path leads to,
    into or above a protected path (also one the host moved elsewhere with a link), when it loops, or
    when the directory the kubelet mounted is not the one the path leads to.
  - Symbolic links found under the path are removed, never followed, and no directory on the way to a
    file is followed through a link when it is removed; other filesystems mounted below the path are not
    entered. A file that disappears while the pod works (log rotation) is skipped.
type: dict
suboptions:
  path:
    description:
      - Absolute host directory to clean.
    type: str
    required: true
  older_than_days:
    description:
      - Remove files last modified more than this many days ago.
      - C(0) matches every file, so it is refused without I(patterns) (it would empty the directory);
        with I(patterns) it removes every file that matches them.
    type: int
  patterns:
    description:
      - Remove only files whose name or relative path matches one of these shell patterns.
      - With I(older_than_days), files must match both. At least one of the two is required.
    type: list
    elements: str
    default: []
  dry_run:
    description:
      - List what would be removed and remove nothing. The directory is then mounted read-only.
    type: bool
    default: false
"""
MOUNT = "/host-target"
HOST_ROOT = "/host"
# The judge's verdict, from the init container to the cleaning one, through an emptyDir.
VERDICT_DIR = "/nodeops-verdict"
VERDICT = VERDICT_DIR + "/verdict.json"
# The judging stage sees the whole host (read-only): it may read what nobody may, and nothing more.
JUDGE_SECURITY = {"runAsUser": 65534, "runAsGroup": 65534, "runAsNonRoot": True, "allowPrivilegeEscalation": False,
                  "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
# As Linux's MAXSYMLINKS: more links than this on the way to one path is a loop, or a trap.
MAX_LINK_HOPS = 40
# Never through a link: how every directory below the mounted path is opened, one component at a time.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)

# Host paths path_cleanup never touches, nor anything inside them, nor any of
# their parents (cleaning /var would reach /var/lib/kubelet).
DANGEROUS_PATHS = (
    "/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/root", "/run", "/sbin",
    "/sys", "/usr", "/var/lib/kubelet", "/var/lib/containerd", "/var/lib/docker", "/var/lib/etcd",
    "/var/lib/cri-o", "/var/lib/containers", "/var/run", "/opt/cni", "/etc/kubernetes",
    # CNI state (IP allocations), the package databases, k3s/RKE2, and the kubelet's container logs and
    # the links to them that log shippers read.
    "/var/lib/cni", "/var/lib/dpkg", "/var/lib/rpm", "/var/lib/rancher", "/var/log/pods", "/var/log/containers",
)


class LinkLoop(ValueError):
    """More than MAX_LINK_HOPS symbolic links on the way to a path."""


def _normal(path):
    norm = posixpath.normpath(path)
    return "/" + norm.lstrip("/") if norm.startswith("//") else norm


def relation(path, danger):
    """How a normalized absolute ``path`` stands to the protected path ``danger``: "is", "inside",
    "contains" or None. Pure."""
    if path == danger:
        return "is"
    if danger != "/" and path.startswith(danger + "/"):
        return "inside"
    if danger.startswith(path.rstrip("/") + "/"):
        return "contains"
    return None


def path_cleanup_refusal(path):
    """Return why ``path`` may not be cleaned, judged on its text, or None if it may. Pure."""
    if not isinstance(path, str) or not path:
        return "a path is required"
    if not path.startswith("/"):
        return "it is relative; give an absolute path"
    if ".." in path.split("/"):
        return "it contains '..'"
    norm = _normal(path)
    for danger in DANGEROUS_PATHS:
        how = relation(norm, danger)
        if how == "is":
            return "%s is a protected system path" % danger
        if how == "inside":
            return "it is inside the protected path %s" % danger
        if how == "contains":
            return "it contains the protected path %s" % danger
    return None


def emptying_refusal(path, older_than_days, patterns):
    """Why these options would remove every file under ``path``, or None. Pure.

    Every file is older than 0 days: without patterns, ``older_than_days: 0`` is "empty the directory",
    which nobody should get by setting a threshold to its smallest value.
    """
    if older_than_days == 0 and not patterns:
        return "older_than_days: 0 with no patterns would empty %s; give patterns, or older_than_days >= 1" % path
    return None


def pod(opts):
    path = opts.get("path")
    refusal = path_cleanup_refusal(path)
    if refusal:
        raise OptionError("path_cleanup.path", path, "an absolute host path outside the protected system paths",
                          why=refusal)
    if opts.get("older_than_days") is not None and opts["older_than_days"] < 0:
        raise OptionError("path_cleanup.older_than_days", opts["older_than_days"], "a number of days >= 0")
    if opts.get("older_than_days") is None and not opts.get("patterns"):
        raise OptionError("path_cleanup", opts, "older_than_days and/or patterns, so that not every file goes")
    emptying = emptying_refusal(path, opts.get("older_than_days"), opts.get("patterns"))
    if emptying:
        raise OptionError("path_cleanup.older_than_days", opts["older_than_days"],
                          "older_than_days >= 1, or patterns that name the files to remove", why=emptying)
    params = {"path": path, "mount": MOUNT, "verdict": VERDICT, "older_than_days": opts.get("older_than_days"),
              "patterns": list(opts.get("patterns") or []), "dry_run": bool(opts.get("dry_run"))}
    judge = {"stage": "judge", "path": path, "host_root": HOST_ROOT, "verdict": VERDICT}
    verdict = {"name": "verdict", "mountPath": VERDICT_DIR}
    # The cleaning container: the directory itself, written through (read-only with dry_run), and the
    # verdict. The judge: the host's root, read-only, to resolve the path as the host does (the kubelet has
    # already followed its links for the directory), as nobody. No host namespaces, no privilege.
    return pod_part("path-cleanup", params=params,
                    volumes=[{"name": "target", "hostPath": {"path": path, "type": "Directory"}},
                             {"name": "host", "hostPath": {"path": "/", "type": "Directory"}},
                             {"name": "verdict", "emptyDir": {"sizeLimit": "1Mi"}}],
                    mounts=[{"name": "target", "mountPath": MOUNT, "readOnly": bool(opts.get("dry_run"))},
                            dict(verdict, readOnly=True)],
                    init=[{"name": "path-cleanup-judge", "params": judge, "security": JUDGE_SECURITY,
                           "mounts": [{"name": "host", "mountPath": HOST_ROOT, "readOnly": True,
                                       "recursiveReadOnly": "IfPossible"}, verdict]}],
                    disk_relief=True)


# ---------------------------------------------------------------- the host's view (in the node pod)


def _parts(path):
    return [part for part in path.split("/") if part not in ("", ".")]


def resolve_host_path(path, readlink, max_hops=MAX_LINK_HOPS):
    """Where ``path`` leads on the host, as its kernel would walk it. Pure but for ``readlink``.

    ``readlink(host path)`` returns a link's target, or None for anything else (missing included: the
    rest is then taken by name). An absolute target starts again from the host's root, a relative one
    from the link's directory; ".." goes up from where the walk has got to, and at the root stays there,
    so the result never leaves the host. Raises LinkLoop after ``max_hops`` links.
    """
    todo = _parts(path)[::-1]
    done = []
    hops = 0
    while todo:
        part = todo.pop()
        if part == "..":
            done = done[:-1]
            continue
        target = readlink("/" + "/".join(done + [part]))
        if target is None:
            done.append(part)
            continue
        hops += 1
        if hops > max_hops:
            raise LinkLoop("more than %d symbolic links on the way to %s (a loop?)" % (max_hops, path))
        if target.startswith("/"):
            done = []
        todo.extend(_parts(target)[::-1])
    return "/" + "/".join(done)


def real_path_refusal(path, resolved, locations):
    """Why the host path ``resolved``, where ``path`` leads, may not be cleaned, or None. Pure.

    ``locations`` pairs each protected path with where it leads on this host: both are protected, since
    a host may have moved /var/lib/kubelet to a data disk and left a link.
    """
    head = "%s resolves to %s on the host, which" % (path, resolved)
    for danger, location in locations:
        for place in (danger, location) if location != danger else (danger,):
            how = relation(resolved, place)
            if not how:
                continue
            where = "" if place == danger else " (%s on this host)" % location
            text = {"is": "is", "inside": "is inside", "contains": "contains"}[how]
            return "%s %s the protected path %s%s" % (head, text, danger, where)
    return None


def host_readlink(host_root):
    """``readlink`` for resolve_host_path, on the host seen at ``host_root``."""
    def readlink(path):
        try:
            return os.readlink(host_root.rstrip("/") + path)
        except OSError:
            return None     # not a link (EINVAL), or not there: resolution goes on by name
    return readlink


def _host_lstat(host_root, resolved):
    # ``resolved`` has no links left on its way, so lstat sees the host's object, not the pod's.
    try:
        return os.lstat(host_root.rstrip("/") + resolved)
    except OSError:
        return None


def _identity(st):
    return (st.st_dev, st.st_ino)


def protected_ids(host_root, locations):
    """{(device, inode): protected path} of the protected directories on this host, to recognize them
    under another name (a bind mount)."""
    ids = {}
    for danger, location in locations:
        st = _host_lstat(host_root, location)
        if st is not None and stat.S_ISDIR(st.st_mode):
            ids.setdefault(_identity(st), danger)
    return ids


def alias_refusal(resolved, host_root, ids):
    """Why the host's ``resolved`` may not be cleaned although its name is not protected, or None: it is
    not a directory, or it or a directory above it is a protected one under another name (a bind mount)."""
    here = _host_lstat(host_root, resolved)
    if here is None or not stat.S_ISDIR(here.st_mode):
        return "%s is not a directory on the host" % resolved
    parts = _parts(resolved)
    for depth in range(len(parts), 0, -1):
        above = "/" + "/".join(parts[:depth])
        st = _host_lstat(host_root, above)
        danger = ids.get(_identity(st)) if st is not None else None
        if danger and danger != "/":
            inside = "is" if depth == len(parts) else "is inside %s, which is" % above
            return "%s %s the protected path %s under another name" % (resolved, inside, danger)
    return None


def judge_on_host(path, host_root):
    """Resolve ``path`` on the host and judge it: {path, resolved, refusal, identity (device, inode) of the
    resolved directory, protected: [[device, inode, protected path]]}, all JSON, for the verdict file."""
    readlink = host_readlink(host_root)
    try:
        resolved = resolve_host_path(path, readlink)
        locations = [(danger, resolve_host_path(danger, readlink)) for danger in DANGEROUS_PATHS]
    except LinkLoop as exc:
        return {"path": path, "resolved": None, "refusal": str(exc), "identity": None, "protected": []}
    ids = protected_ids(host_root, locations)
    refusal = real_path_refusal(path, resolved, locations) or alias_refusal(resolved, host_root, ids)
    here = _host_lstat(host_root, resolved)
    return {"path": path, "resolved": resolved, "refusal": refusal,
            "identity": list(_identity(here)) if here is not None else None,
            "protected": [[dev, ino, danger] for (dev, ino), danger in sorted(ids.items())]}


def write_verdict(params):
    """The judging stage (init container): judge the path and leave the verdict for the cleaning one."""
    verdict = judge_on_host(params["path"], params["host_root"])
    with open(params["verdict"], "w") as f:
        json.dump(verdict, f)
    say("judged %s: %s" % (params["path"], verdict["refusal"] or "may be cleaned (%s)" % verdict["resolved"]))
    # Never a failure here: a refusal is the cleaning stage's result, reported as the node's.
    return {"preset": NAME, "stage": "judge", "resolved": verdict["resolved"], "refused": verdict["refusal"],
            "errors": []}


def read_verdict(params):
    """(verdict, refusal or None) for the cleaning stage: the judge's verdict on this path, and that the
    directory mounted here is the one it judged (the path may have changed after the kubelet mounted it)."""
    try:
        with open(params["verdict"]) as f:
            verdict = json.load(f)
    except (OSError, ValueError) as exc:
        return None, "no verdict on the host path from the judging stage (%s)" % exc
    if verdict.get("path") != params.get("path"):
        return None, "the verdict is about %r, not this path" % verdict.get("path")
    if verdict.get("refusal"):
        return verdict, verdict["refusal"]
    try:
        mounted = os.stat(params["mount"])
    except OSError as exc:
        return verdict, "nothing is mounted at %s: %s" % (params["mount"], exc.strerror)
    if list(_identity(mounted)) != verdict.get("identity"):
        return verdict, "the directory mounted at %s is not %s on the host (the path changed after it was mounted)" \
            % (params["mount"], verdict.get("resolved"))
    return verdict, None


def plan_path_cleanup(entries, now, older_than_days=None, patterns=None):
    """Decide which files to remove from (relative path, size, mtime, is_file) entries. Pure."""
    cutoff = now - older_than_days * 86400 if older_than_days is not None else None
    remove = []
    for rel, size, mtime, is_file in entries:
        if not is_file:
            continue
        if cutoff is not None and mtime > cutoff:
            continue
        if patterns and not any(fnmatch.fnmatchcase(posixpath.basename(rel), p) or fnmatch.fnmatchcase(rel, p)
                                for p in patterns):
            continue
        remove.append({"path": rel, "size": size})
    return remove


def open_below(root_fd, rel):
    """A descriptor of the directory ``rel`` below ``root_fd``, opened one component at a time and never
    through a symbolic link (ELOOP or ENOTDIR instead), so nothing swapped in on the way leads out."""
    fd = os.dup(root_fd)
    for part in _parts(rel):
        try:
            child = os.open(part, DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = child
    return fd


def _enter(root_fd, rel, root_dev, protected, seen):
    """An open descriptor of the directory ``rel``, or None when the walk must not go in: it is gone or
    no longer a directory, on another filesystem (a bind or a volume mounted below the path), a protected
    directory under another name, or one already walked (a bind mount of itself)."""
    try:
        fd = open_below(root_fd, rel)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None
        raise
    ident = _identity(os.fstat(fd))
    if ident[0] != root_dev or ident in protected or ident in seen:
        if ident in protected:
            say("not entering %s: it is the protected path %s" % (rel, protected[ident]))
        os.close(fd)
        return None
    seen.add(ident)
    return fd


def _list_dir(fd, rel, entries, subdirs):
    try:
        with os.scandir(fd) as listing:
            names = sorted(entry.name for entry in listing)
    except FileNotFoundError:
        return          # removed since it was opened
    for name in names:
        try:
            st = os.lstat(name, dir_fd=fd)
        except FileNotFoundError:
            continue    # removed since the listing (log rotation)
        path = posixpath.join(rel, name) if rel else name
        if stat.S_ISDIR(st.st_mode):
            subdirs.append(path)
        else:
            is_file = stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)   # a link goes, its target stays
            entries.append((path, st.st_size, st.st_mtime, is_file))


def scan_tree(root, protected=None):
    """(relative path, size, mtime, is_file) for everything under root, on root's filesystem only.

    ``protected`` ({(device, inode): protected path}) names directories never to enter.
    """
    root_fd = os.open(root, DIR_FLAGS)
    try:
        root_dev = os.fstat(root_fd).st_dev
        entries, pending, seen = [], collections.deque([""]), set()
        while pending:
            rel = pending.popleft()
            fd = _enter(root_fd, rel, root_dev, protected or {}, seen)
            if fd is None:
                continue
            try:
                _list_dir(fd, rel, entries, pending)
            finally:
                os.close(fd)
        return entries
    finally:
        os.close(root_fd)


def remove_below(root_fd, rel):
    """Unlink ``rel`` below ``root_fd``: the entry itself (a link, not its target), reached without
    following any link on the way."""
    head, name = posixpath.split(rel)
    fd = open_below(root_fd, head)
    try:
        os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)


def remove_planned(root, plan):
    """Remove the planned entries under ``root``: (removed entries, errors). One that is gone already
    (log rotation) is neither; a directory on its way that became a link is an error, and nothing is
    removed through it."""
    removed, errors = [], []
    root_fd = os.open(root, DIR_FLAGS)
    try:
        for entry in plan:
            try:
                remove_below(root_fd, entry["path"])
                removed.append(entry)
            except FileNotFoundError:
                continue
            except OSError as exc:
                errors.append("%s: %s" % (entry["path"], exc.strerror))
    finally:
        os.close(root_fd)
    return removed, errors


def refused(params, resolved, refusal):
    say("refusing to clean %s: %s" % (params.get("path"), refusal))
    return {"preset": NAME, "dry_run": bool(params.get("dry_run")), "path": params.get("path"),
            "resolved": resolved, "refused": refusal, "files_removed": [], "files_removed_count": 0,
            "bytes_freed": 0, "errors": ["refusing to clean %s: %s" % (params.get("path"), refusal)]}


def on_node(params):
    if params.get("stage") == "judge":
        return write_verdict(params)
    path = params.get("path")
    refusal = path_cleanup_refusal(path) or emptying_refusal(path, params.get("older_than_days"),
                                                             params.get("patterns"))
    if refusal:
        return refused(params, None, refusal)
    # Judged before anything is listed: where the path really leads, and that this is what is mounted.
    verdict, refusal = read_verdict(params)
    if refusal:
        return refused(params, (verdict or {}).get("resolved"), refusal)
    resolved = verdict["resolved"]
    protected = dict(((dev, ino), danger) for dev, ino, danger in verdict["protected"])
    root = params["mount"]
    plan = plan_path_cleanup(scan_tree(root, protected), time.time(), params.get("older_than_days"),
                             params.get("patterns"))
    removed, errors = (plan, []) if params.get("dry_run") else remove_planned(root, plan)
    for entry in removed[:MAX_LISTED]:
        verb = "would remove" if params.get("dry_run") else "removed"
        say("%s %s (%d bytes)" % (verb, entry["path"], entry["size"]))
    return {"preset": NAME, "dry_run": bool(params.get("dry_run")), "path": path, "resolved": resolved,
            "files_removed": [e["path"] for e in removed][:MAX_LISTED], "files_removed_count": len(removed),
            "bytes_freed": sum(e["size"] for e in removed), "errors": errors}
