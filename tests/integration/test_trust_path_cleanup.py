# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Invariant: path_cleanup never lists or removes anything in a protected directory a link leads to.

On the real node's host, a symbolic link under /var/tmp leads into /var/lib/kubelet. The path's text
passes the controller's check; the kubelet follows the link when it mounts the hostPath, so the pod
gets the kubelet's own directory. The node pod must resolve the path on the host and refuse. The host is
read through the node's own namespaces (``real_node.sh``), never through the collection.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import uuid

import pytest

import kube_helpers as kh

pytestmark = pytest.mark.usefixtures("real_node")

KUBELET = "/var/lib/kubelet"


on_real_node = kh.on_real_node


def kubelet_files(real_node):
    """The regular files directly in the kubelet's directory (its state files, and the canary)."""
    return sorted(real_node.sh("find %s -maxdepth 1 -type f" % KUBELET).split())


@pytest.mark.parametrize("link_target, below", [
    (KUBELET, ""),                 # absolute: resolved from the host's root, not the pod's
    ("../lib/kubelet", ""),        # relative to the link's directory, /var/tmp
    ("/var/lib", "/kubelet"),      # a directory on the way is the link
], ids=["absolute", "relative", "directory-on-the-way"])
def test_a_link_into_the_kubelets_directory_is_refused_on_the_node_and_nothing_is_touched(
        tmp_path, namespace, real_node, link_target, below):
    tag = uuid.uuid4().hex[:8]
    link = "/var/tmp/nodeops-trust-%s" % tag
    # An old file the run's options match: were the link followed, this is what would go. The patterns
    # name only it, so that a regression costs the canary and nothing of the kubelet's.
    canary = "%s/nodeops-canary-%s.log" % (KUBELET, tag)
    real_node.sh("set -e; echo keep > {c}; touch -d @0 {c}; ln -s {t} {l}".format(c=canary, t=link_target, l=link))
    try:
        before = kubelet_files(real_node)
        assert canary in before
        args = on_real_node(real_node, namespace, path_cleanup={
            "path": link + below, "older_than_days": 1, "patterns": ["nodeops-canary-*.log"], "dry_run": False},
            preset="path_cleanup")
        rec = kh.run_module(tmp_path, "broadcast_job", args)["nodes"][0]

        assert rec["outcome"] == "failed", rec
        result = rec["result"]
        assert result["resolved"] == KUBELET, result
        assert "%s resolves to %s on the host" % (link + below, KUBELET) in result["refused"], result
        assert "the protected path %s" % KUBELET in result["refused"], result
        assert result["errors"] == ["refusing to clean %s: %s" % (link + below, result["refused"])], result
        assert result["files_removed"] == [] and result["files_removed_count"] == 0 and result["bytes_freed"] == 0
        log = (rec.get("log") or "").splitlines()
        listed = [line for line in log if line.startswith(("removed ", "would remove "))]
        assert listed == [], rec["log"]
        gone = sorted(set(before) - set(kubelet_files(real_node)))
        assert gone == [], "files in the kubelet's directory went: %s" % gone
        assert real_node.sh("cat %s" % canary).strip() == "keep"
    finally:
        real_node.sh("rm -f %s %s" % (link, canary))   # the link itself, never its target
