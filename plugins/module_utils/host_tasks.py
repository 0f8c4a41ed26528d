# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the preset pods do on each node, and the pure decisions behind it.

This file is shipped *as source* into the preset pods (``python3 -c``), so it
imports nothing but the standard library and nothing from the collection.
The decisions (which images to prune, which files to remove, which paths are
too dangerous to touch) are pure functions, unit-tested on real-shaped
``crictl`` output; ``main()`` only gathers facts, applies the decision and
prints one ``NODEOPS_RESULT {json}`` line, which the engine parses from the
pod's log.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import json
import os
import posixpath
import subprocess
import sys
import time

RESULT_MARKER = "NODEOPS_RESULT "
MAX_LISTED = 50

# Host paths path_cleanup never touches, nor anything inside them, nor any of
# their parents (cleaning /var would reach /var/lib/kubelet).
DANGEROUS_PATHS = (
    "/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/root", "/run", "/sbin",
    "/sys", "/usr", "/var/lib/kubelet", "/var/lib/containerd", "/var/lib/docker", "/var/lib/etcd",
    "/var/lib/cri-o", "/var/lib/containers", "/var/run", "/opt/cni", "/etc/kubernetes",
)


# ------------------------------------------------------------------ path safety


def path_cleanup_refusal(path):
    """Return why ``path`` may not be cleaned, or None if it may."""
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


# ------------------------------------------------------------------ image prune


def _refs(image):
    return list(image.get("repoTags") or []) + list(image.get("repoDigests") or [])


def _short_id(image_id):
    return image_id.split(":", 1)[-1]


def images_in_use(containers):
    """Every id, tag and digest that a container (in any state) refers to."""
    used = set()
    for c in containers or []:
        for ref in (c.get("imageRef"), (c.get("image") or {}).get("image")):
            if ref:
                used.add(ref)
                used.add(_short_id(ref))
    return used


def sandbox_images(info):
    """The pause image(s) named in ``crictl info -o json`` (containerd 1.x and 2.x layouts)."""
    found = set()
    config = (info or {}).get("config") or {}
    for value in (config.get("sandboxImage"), (config.get("pinnedImages") or {}).get("sandbox"),
                  ((info or {}).get("sandboxImage"))):
        if value:
            found.add(value)
    return found


def plan_image_prune(images, containers, info=None, include=None, exclude=None):
    """Decide which images to remove. Pure.

    Kept, always: pinned images, the sandbox (pause) image, and every image a
    container uses. With ``include`` only images with a tag or digest matching
    one of its patterns are considered; ``exclude`` patterns keep images.
    Returns {"remove": [...], "kept": [{"id", "refs", "why"}]}.
    """
    used = images_in_use(containers)
    sandbox = sandbox_images(info)
    remove, kept = [], []
    for image in images or []:
        image_id = image.get("id") or ""
        refs = _refs(image)
        entry = {"id": image_id, "refs": refs, "size": int(image.get("size") or 0)}
        names = set(refs) | {image_id, _short_id(image_id)}
        why = None
        if image.get("pinned"):
            why = "pinned"
        elif names & sandbox or any(r.startswith("registry.k8s.io/pause:") for r in refs):
            why = "sandbox image"
        elif names & used:
            why = "in use"
        elif exclude and any(fnmatch.fnmatchcase(r, p) for r in refs for p in exclude):
            why = "excluded"
        elif include and not any(fnmatch.fnmatchcase(r, p) for r in refs for p in include):
            why = "not included"
        if why:
            kept.append({"id": image_id, "refs": refs, "why": why})
        else:
            remove.append(entry)
    return {"remove": remove, "kept": kept}


# ------------------------------------------------------------------ path cleanup


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


# ------------------------------------------------------------------ in the pod


class HostProblem(Exception):
    """The node's host cannot do what the task needs (no crictl, no runtime): a clear, final error."""


def crictl_problem(args, returncode, stderr):
    """Say in words a person understands why ``crictl ARGS`` failed on the host. Pure."""
    stderr = (stderr or "").strip()
    last = stderr.splitlines()[-1] if stderr else ""
    if returncode == 127 or "failed to execute crictl" in stderr:
        return "crictl is not installed on the node's host (not on its PATH); image_prune needs it"
    if "connect" in stderr or "validate service connection" in stderr or "connection refused" in stderr:
        return "crictl cannot reach the container runtime on the node's host: %s" % last
    return "crictl %s exited %d: %s" % (" ".join(args), returncode, last)


def _crictl(*args):
    proc = subprocess.run(["nsenter", "--target", "1", "--mount", "--", "crictl"] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise HostProblem(crictl_problem(args, proc.returncode, proc.stderr.decode("utf-8", "replace")))
    out = proc.stdout
    return json.loads(out.decode("utf-8")) if out.strip() else {}


def run_image_prune(task):
    images = _crictl("images", "-o", "json").get("images") or []
    containers = _crictl("ps", "-a", "-o", "json").get("containers") or []
    try:
        info = _crictl("info", "-o", "json")
    except (HostProblem, ValueError):
        info = {}
    plan = plan_image_prune(images, containers, info, task.get("include"), task.get("exclude"))
    removed, errors = [], []
    for image in plan["remove"]:
        label = image["refs"][0] if image["refs"] else image["id"]
        if task.get("dry_run"):
            _say("would remove %s (%d bytes)" % (label, image["size"]))
            removed.append(image)
            continue
        rc = subprocess.call(["nsenter", "--target", "1", "--mount", "--", "crictl", "rmi", image["id"]])
        if rc == 0:
            _say("removed %s (%d bytes)" % (label, image["size"]))
            removed.append(image)
        else:
            errors.append("crictl rmi %s exited %d" % (image["id"], rc))
    return {"preset": "image_prune", "dry_run": bool(task.get("dry_run")),
            "images_removed": [(i["refs"][0] if i["refs"] else i["id"]) for i in removed][:MAX_LISTED],
            "images_removed_count": len(removed), "bytes_freed": sum(i["size"] for i in removed),
            "images_kept": len(plan["kept"]), "errors": errors}


def run_path_cleanup(task):
    refusal = path_cleanup_refusal(task.get("path"))
    if refusal:
        raise SystemExit("refusing to clean %r: %s" % (task.get("path"), refusal))
    root = task["mount"]
    plan = plan_path_cleanup(scan_tree(root), time.time(), task.get("older_than_days"), task.get("patterns"))
    removed, errors = [], []
    for entry in plan:
        if task.get("dry_run"):
            removed.append(entry)
            continue
        try:
            os.unlink(os.path.join(root, entry["path"]))
            removed.append(entry)
        except OSError as exc:
            errors.append("%s: %s" % (entry["path"], exc.strerror))
    for entry in removed[:MAX_LISTED]:
        verb = "would remove" if task.get("dry_run") else "removed"
        _say("%s %s (%d bytes)" % (verb, entry["path"], entry["size"]))
    return {"preset": "path_cleanup", "dry_run": bool(task.get("dry_run")), "path": task["path"],
            "files_removed": [e["path"] for e in removed][:MAX_LISTED], "files_removed_count": len(removed),
            "bytes_freed": sum(e["size"] for e in removed), "errors": errors}


def _say(text):
    # The pod's output is its report (this runs in the pod, not as an Ansible module).
    sys.stdout.write(text + "\n")


def main():
    task = json.loads(os.environ["NODEOPS_TASK"])
    runner = {"image_prune": run_image_prune, "path_cleanup": run_path_cleanup}[task["preset"]]
    try:
        result = runner(task)
    except HostProblem as exc:
        sys.stdout.write("error: %s\n" % exc)
        result = {"preset": task["preset"], "errors": [str(exc)]}
        _say(RESULT_MARKER + json.dumps(result, sort_keys=True))
        raise SystemExit(2)
    sys.stdout.flush()
    _say(RESULT_MARKER + json.dumps(result, sort_keys=True))
    raise SystemExit(1 if result.get("errors") else 0)


def parse_result(log_text):
    """The last NODEOPS_RESULT object in a log, or None."""
    for line in reversed((log_text or "").splitlines()):
        if line.startswith(RESULT_MARKER):
            try:
                return json.loads(line[len(RESULT_MARKER):])
            except ValueError:
                return None
    return None


if __name__ == "__main__":
    main()
