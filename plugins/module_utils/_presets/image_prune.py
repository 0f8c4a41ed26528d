# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preset image_prune: remove the images no container on the node uses, through the host's crictl.

The decision (``plan_image_prune``) is pure and unit-tested on real-shaped crictl output; the node
side only gathers facts, applies it and reports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import json
import re

from ansible_collections.nodeops.kubernetes.plugins.module_utils._node.main import (
    MAX_LISTED,
    HostProblem,
    host_run,
    input_path,
    missing_tool,
    say,
)
from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets.base import (
    CLUSTER_IMAGES,
    CLUSTER_IMAGES_FILE,
    HOST_PRIVILEGED,
    OptionError,
    image_key,
    pod_part,
)

NAME = "image_prune"
SUMMARY = ("C(image_prune) removes images no container on the node uses, through the host's C(crictl). "
           "The pod runs privileged with the host PID namespace (C(nsenter) into PID 1's mount namespace).")
OPTIONS = dict(
    include=dict(type="list", elements="str", default=[]),
    exclude=dict(type="list", elements="str", default=[]),
    dry_run=dict(type="bool", default=False),
    disk_usage_above=dict(type="int"),
    keep_images_in_cluster=dict(type="bool", default=False),
    runtime_endpoint=dict(type="str"),
)
DOCUMENTATION = r"""
description:
  - Options of the C(image_prune) preset. The sandbox (pause) image, pinned images and
    every image a container uses (in any state) are always kept.
type: dict
suboptions:
  include:
    description:
      - Only images with a tag or digest matching one of these shell patterns are pruned.
    type: list
    elements: str
    default: []
  exclude:
    description:
      - Images with a tag or digest matching one of these shell patterns are kept.
    type: list
    elements: str
    default: []
  dry_run:
    description:
      - List what would be removed and remove nothing.
    type: bool
    default: false
  disk_usage_above:
    description:
      - Prune only on nodes whose image filesystem is at least this full, in percent (C(80)). The node reads where
        the runtime keeps its images (C(crictl imagefsinfo)) and that filesystem's usage (C(stat -f)). Below it,
        nothing is removed and the result says C(skipped_below_threshold) with the usage seen.
      - The usage before and after is reported on every run, with or without this option.
    type: int
  keep_images_in_cluster:
    description:
      - Also keep every image a Pod, Deployment, DaemonSet, StatefulSet, ReplicaSet, Job or CronJob in the cluster
        refers to, even when nothing runs it now (a Deployment scaled to zero, a suspended CronJob). The engine lists
        them, cluster-wide and a page at a time, at the start of each run, and passes them to the node script.
      - Needs C(list) on those kinds cluster-wide; cron_broadcast gives its runner these read-only rights only when
        this is on.
    type: bool
    default: false
  runtime_endpoint:
    description:
      - The CRI socket C(crictl) talks to, for example C(unix:///run/containerd/containerd.sock) (containerd) or
        C(unix:///var/run/crio/crio.sock) (CRI-O). By default crictl finds it itself (its config file, then the
        usual sockets).
    type: str
"""


def pod(opts):
    params = {"include": list(opts.get("include") or []), "exclude": list(opts.get("exclude") or []),
              "dry_run": bool(opts.get("dry_run"))}
    threshold = opts.get("disk_usage_above")
    if threshold is not None:
        if not 0 <= threshold <= 100:
            raise OptionError("image_prune.disk_usage_above", threshold, "a percentage from 0 to 100")
        params["disk_usage_above"] = threshold
    endpoint = opts.get("runtime_endpoint")
    if endpoint is not None:
        if not re.match(r"^(unix|npipe|tcp)://\S+$", endpoint):
            raise OptionError("image_prune.runtime_endpoint", endpoint,
                              "a CRI endpoint such as unix:///run/containerd/containerd.sock")
        params["runtime_endpoint"] = endpoint
    wanted = []
    if opts.get("keep_images_in_cluster"):
        params["keep_images_file"] = CLUSTER_IMAGES_FILE
        wanted = [CLUSTER_IMAGES]
    return pod_part("image-prune", params=params, host_pid=True, security=HOST_PRIVILEGED, inputs=wanted,
                    disk_relief=True)


# ------------------------------------------------------------------ the decision (pure)


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
    """The pause image(s) ``crictl info -o json`` names, for runtimes that do not pin it.

    containerd 1.x names it in ``config.sandboxImage`` and reports the image as not pinned. containerd 2.x
    names it nowhere in ``crictl info``: it pins the image instead (``"pinned": true`` in ``crictl images``),
    which plan_image_prune keeps first, as "pinned". Both are tested on the real node.
    """
    value = ((info or {}).get("config") or {}).get("sandboxImage")
    return {value} if value else set()


def keep_keys(keep):
    """The image keys to keep, from the cluster_images input ({"keys": [...]}) or a list of refs. Pure."""
    if isinstance(keep, dict):
        return set(keep.get("keys") or [])
    return set(image_key(r) for r in keep or [])


def plan_image_prune(images, containers, info=None, include=None, exclude=None, keep_refs=None):
    """Decide which images to remove. Pure.

    Kept, always: pinned images, the sandbox (pause) image, and every image a
    container uses. With ``include`` only images with a tag or digest matching
    one of its patterns are considered; ``exclude`` patterns keep images.
    ``keep_refs`` are images the cluster's workloads refer to (keep_images_in_cluster).
    Returns {"remove": [...], "kept": [{"id", "refs", "why"}]}.
    """
    used = images_in_use(containers)
    wanted = keep_keys(keep_refs)
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
        elif wanted & set(image_key(r) for r in refs):
            why = "used in the cluster"
        elif exclude and any(fnmatch.fnmatchcase(r, p) for r in refs for p in exclude):
            why = "excluded"
        elif include and not any(fnmatch.fnmatchcase(r, p) for r in refs for p in include):
            why = "not included"
        if why:
            kept.append({"id": image_id, "refs": refs, "why": why})
        else:
            remove.append(entry)
    return {"remove": remove, "kept": kept}


def kept_by_reason(kept):
    """{why: how many} of a plan's kept images ("pinned", "sandbox image", "in use", ...). Pure."""
    counts = {}
    for image in kept:
        counts[image["why"]] = counts.get(image["why"], 0) + 1
    return counts


def crictl_problem(args, returncode, stderr):
    """Say in words a person understands why ``crictl ARGS`` failed on the host. Pure."""
    stderr = (stderr or "").strip()
    last = stderr.splitlines()[-1] if stderr else ""
    if missing_tool(returncode, stderr):
        return "crictl is not installed on the node's host (not on its PATH); image_prune needs it"
    if "connect" in stderr or "validate service connection" in stderr or "connection refused" in stderr:
        return "crictl cannot reach the container runtime on the node's host: %s" % last
    return "crictl %s exited %d: %s" % (" ".join(args), returncode, last)


# ------------------------------------------------------------------ in the node pod


def imagefs_mountpoint(info):
    """Where the runtime keeps its images, from ``crictl imagefsinfo -o json``, or None. Pure."""
    for fs in ((info or {}).get("status") or {}).get("imageFilesystems") or []:
        mountpoint = (fs.get("fsId") or {}).get("mountpoint")
        if mountpoint:
            return mountpoint
    return None


def usage_percent(stat_f_output):
    """Percent used, as df computes it, from ``stat -f -c '%S %b %f %a'`` (block size, blocks, free, available).
    Pure."""
    size, blocks, free, avail = (int(v) for v in stat_f_output.split()[:4])
    used = blocks - free
    if used + avail <= 0:
        return 0.0
    return round(100.0 * used / (used + avail), 1)


def crictl_argv(endpoint, *args):
    """crictl with ``args``, at ``endpoint`` (for both its runtime and image services) when one is given,
    else wherever crictl's own detection finds a runtime. Pure."""
    prefix = ("crictl", "--runtime-endpoint", endpoint, "--image-endpoint", endpoint) if endpoint else ("crictl",)
    return prefix + tuple(args)


def _crictl(*args, **kwargs):
    returncode, out, err = host_run(crictl_argv(kwargs.get("endpoint"), *args))
    if returncode != 0:
        raise HostProblem(crictl_problem(args, returncode, err))
    return json.loads(out.decode("utf-8")) if out.strip() else {}


def _disk_usage(endpoint):
    """(mountpoint, percent used) of the image filesystem, or (None, None) if the runtime does not say."""
    try:
        mountpoint = imagefs_mountpoint(_crictl("imagefsinfo", "-o", "json", endpoint=endpoint))
    except (HostProblem, ValueError):
        return None, None
    if not mountpoint:
        return None, None
    code, out, err = host_run(["stat", "-f", "-c", "%S %b %f %a", mountpoint])
    if code != 0:
        return mountpoint, None
    return mountpoint, usage_percent(out.decode("utf-8", "replace"))


def on_node(params):
    endpoint = params.get("runtime_endpoint")
    mountpoint, before = _disk_usage(endpoint)
    usage = {"imagefs_mountpoint": mountpoint, "disk_usage_before": before}
    threshold = params.get("disk_usage_above")
    if threshold is not None:
        if before is None:
            raise HostProblem("disk_usage_above=%d needs the image filesystem's usage, and the runtime did not say "
                              "where it keeps its images (crictl imagefsinfo)" % threshold)
        if before < threshold:
            say("image filesystem %s is %.1f%% full, below %d%%: nothing to prune" % (mountpoint, before, threshold))
            return dict(usage, preset=NAME, dry_run=bool(params.get("dry_run")), skipped_below_threshold=True,
                        disk_usage_after=before, images_removed=[], images_removed_count=0, bytes_freed=0,
                        images_kept=None, images_kept_by_reason=None, errors=[])
    images = _crictl("images", "-o", "json", endpoint=endpoint).get("images") or []
    containers = _crictl("ps", "-a", "-o", "json", endpoint=endpoint).get("containers") or []
    try:
        info = _crictl("info", "-o", "json", endpoint=endpoint)
    except (HostProblem, ValueError):
        info = {}
    keep_refs = None
    if params.get("keep_images_file"):
        # Laid next to the node script by the run record (the cluster_images input).
        with open(input_path(params["keep_images_file"])) as f:
            keep_refs = json.load(f)
        say("keeping the %d images the cluster's workloads refer to" % len(keep_keys(keep_refs)))
    plan = plan_image_prune(images, containers, info, params.get("include"), params.get("exclude"), keep_refs)
    removed, errors = [], []
    for image in plan["remove"]:
        label = image["refs"][0] if image["refs"] else image["id"]
        if params.get("dry_run"):
            say("would remove %s (%d bytes)" % (label, image["size"]))
            removed.append(image)
            continue
        returncode, _out, err = host_run(crictl_argv(endpoint, "rmi", image["id"]))
        if returncode == 0:
            say("removed %s (%d bytes)" % (label, image["size"]))
            removed.append(image)
        else:
            errors.append("crictl rmi %s exited %d: %s" % (image["id"], returncode, err.strip()))
    usage["disk_usage_after"] = _disk_usage(endpoint)[1] if removed and not params.get("dry_run") else before
    return dict(usage, preset=NAME, dry_run=bool(params.get("dry_run")), skipped_below_threshold=False,
                images_removed=[(i["refs"][0] if i["refs"] else i["id"]) for i in removed][:MAX_LISTED],
                images_removed_count=len(removed), bytes_freed=sum(i["size"] for i in removed),
                images_kept=len(plan["kept"]), images_kept_by_reason=kept_by_reason(plan["kept"]), errors=errors)
