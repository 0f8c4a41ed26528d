# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cron_broadcast's install steps around ``apply.ensure``: the pods' dry run before any write, and the
runner code ConfigMaps that a new install leaves behind. Explicit arguments, no ``module.params``."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.engine import Engine, new_run_id
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.naming import LABEL_CRON
from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron import manifests
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube import apply

# The node a node pod is built for in the install's dry run (any name does: it is not scheduled).
PREFLIGHT_NODE = "nodeops-preflight"


def preflight(client, desired, opts):
    """Dry-run a node pod and the runner pod, before any write and in check mode too. Returns the API
    server's warnings about them.

    Pod Security enforces a namespace's level on Pods only: it takes a CronJob whose pods it would
    refuse, which then fails at its first run, at night. So the pods themselves are asked now. A
    missing namespace fails here (NamespaceMissing), in check mode too: every object's dry run
    needs it, so this only says it first and plainly.
    """
    engine = Engine(client)
    # Any node name does: a dry-run pod is not scheduled. A fresh run id, as a run would have.
    engine.preflight(opts, new_run_id(), PREFLIGHT_NODE)
    # The runner's pod is the collection's own (it fits restricted): what a user changes in it, and what
    # an image policy's webhook refuses, is its image.
    runner = manifests.runner_pod(desired)
    return list(engine.preflight_warnings) + engine.dry_run_pod(
        runner, "runner_image", runner["spec"]["containers"][0]["image"], "the runner pods of this cron broadcast")


def stale_runner_code(client, name, namespace, desired, check_mode):
    """Delete the runner code ConfigMaps of earlier versions (content-addressed: a change of code or options
    is a new one), once the CronJob points at the new one. Returns their refs."""
    names = manifests.object_names(name, namespace)
    current = [o["metadata"]["name"] for o in desired if o["kind"] == "ConfigMap"]
    legacy = names["config_map_prefix"].rstrip("-")   # one mutable ConfigMap, before code was content-addressed
    return apply.delete_labelled(client, [("v1", "ConfigMap")], "%s=%s" % (LABEL_CRON, name), namespace, check_mode,
                                 name_filter=lambda kind, n: n not in current and (
                                     n.startswith(names["config_map_prefix"]) or n == legacy))
