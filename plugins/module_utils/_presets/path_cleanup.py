# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preset path_cleanup: remove old or matching files under one host directory, the only thing it mounts.

Which paths may never be cleaned is decided twice, by the same pure function: on the controller
before anything is written, and in the node pod before anything is removed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import os
import posixpath
import time

from ansible_collections.nodeops.kubernetes.plugins.module_utils._node.main import MAX_LISTED, say
from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets.base import OptionError, pod_part

NAME = "path_cleanup"
SUMMARY = "C(path_cleanup) removes old or matching files under one host directory, which is the only thing it mounts."
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
    C(/proc), C(/sys), C(/dev), C(/var/lib/kubelet), C(/var/lib/containerd), C(/var/lib/etcd), ...).
  - Symbolic links are removed, never followed; other filesystems mounted below the path are not entered.
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

# Host paths path_cleanup never touches, nor anything inside them, nor any of
# their parents (cleaning /var would reach /var/lib/kubelet).
DANGEROUS_PATHS = (
    "/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/root", "/run", "/sbin",
    "/sys", "/usr", "/var/lib/kubelet", "/var/lib/containerd", "/var/lib/docker", "/var/lib/etcd",
    "/var/lib/cri-o", "/var/lib/containers", "/var/run", "/opt/cni", "/etc/kubernetes",
)


def path_cleanup_refusal(path):
    """Return why ``path`` may not be cleaned, or None if it may. Pure."""
    if not isinstance(path, str) or not path:
        return "a path is required"
    if not path.startswith("/"):
        return "it is relative; give an absolute path"
    if ".." in path.split("/"):
        return "it contains '..'"
    norm = posixpath.normpath(path)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    for danger in DANGEROUS_PATHS:
        if norm == danger:
            return "%s is a protected system path" % danger
        if danger != "/" and norm.startswith(danger + "/"):
            return "it is inside the protected path %s" % danger
        if danger.startswith(norm.rstrip("/") + "/"):
            return "it contains the protected path %s" % danger
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
    params = {"path": path, "mount": MOUNT, "older_than_days": opts.get("older_than_days"),
              "patterns": list(opts.get("patterns") or []), "dry_run": bool(opts.get("dry_run"))}
    # Only the one directory is mounted; no host namespaces, no privilege.
    return pod_part("path-cleanup", params=params,
                    volumes=[{"name": "target", "hostPath": {"path": path, "type": "Directory"}}],
                    mounts=[{"name": "target", "mountPath": MOUNT, "readOnly": bool(opts.get("dry_run"))}])


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


def scan_tree(root):
    """(relative path, size, mtime, is_file) for everything under root, on root's filesystem only."""
    root_dev = os.lstat(root).st_dev
    entries = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        # Never cross into another filesystem (a bind or volume mounted below the path).
        dirnames[:] = [d for d in dirnames if os.lstat(os.path.join(dirpath, d)).st_dev == root_dev]
        for name in filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            is_file = (st.st_mode & 0o170000) in (0o100000, 0o120000)  # regular file or symlink
            entries.append((os.path.relpath(full, root), st.st_size, st.st_mtime, is_file))
    return entries


def on_node(params):
    refusal = path_cleanup_refusal(params.get("path"))
    if refusal:
        raise SystemExit("refusing to clean %r: %s" % (params.get("path"), refusal))
    root = params["mount"]
    plan = plan_path_cleanup(scan_tree(root), time.time(), params.get("older_than_days"), params.get("patterns"))
    removed, errors = [], []
    for entry in plan:
        if params.get("dry_run"):
            removed.append(entry)
            continue
        try:
            os.unlink(os.path.join(root, entry["path"]))
            removed.append(entry)
        except OSError as exc:
            errors.append("%s: %s" % (entry["path"], exc.strerror))
    for entry in removed[:MAX_LISTED]:
        verb = "would remove" if params.get("dry_run") else "removed"
        say("%s %s (%d bytes)" % (verb, entry["path"], entry["size"]))
    return {"preset": NAME, "dry_run": bool(params.get("dry_run")), "path": params["path"],
            "files_removed": [e["path"] for e in removed][:MAX_LISTED], "files_removed_count": len(removed),
            "bytes_freed": sum(e["size"] for e in removed), "errors": errors}
