# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options shared by the TTL policy and the sweep of ownerless Jobs: their defaults and their validation. Pure."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import InvalidInput
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.selectors import DNS_LABEL, LABEL_KEY
from ansible_collections.nodeops.kubernetes.plugins.module_utils._dangling import policy

DEFAULT_POLICY_NAME = "nodeops-dangling-job-ttl"
DEFAULT_EXCLUDED_NAMESPACES = ["kube-system", "kyverno"]
DEFAULT_OPT_OUT_LABEL = "nodeops.io/keep-job"
DEFAULT_TTL_SECONDS = 900
# Jobs per second a sweep writes at most (why this number: dangling_job_ttl's documentation).
DEFAULT_SWEEP_RATE = 150.0


def validate(params):
    """Check the options; return them as a plain dict. Raises InvalidInput before any request."""
    ttl = params.get("ttl_seconds")
    if ttl is None or ttl < 0:
        raise InvalidInput("ttl_seconds", ttl, "a number of seconds of at least 0")
    for key in ("include_namespaces", "exclude_namespaces"):
        for ns in params.get(key) or []:
            if not isinstance(ns, str) or len(ns) > 63 or not DNS_LABEL.match(ns):
                raise InvalidInput(key, ns, "namespace names (DNS-1123 labels: lowercase letters, digits, '-')")
    label = params.get("opt_out_label")
    if not label or not LABEL_KEY.match(label):
        raise InvalidInput("opt_out_label", label, "a label key such as 'nodeops.io/keep-job'")
    name = params.get("policy_name") or DEFAULT_POLICY_NAME
    if len(name) > 63 or not DNS_LABEL.match(name):
        raise InvalidInput("policy_name", name, "a DNS-1123 label of at most 63 characters (it is also a label value)")
    engine = params.get("policy_engine") or "auto"
    if engine not in policy.ENGINE_CHOICES:
        raise InvalidInput("policy_engine", engine, "one of " + ", ".join(policy.ENGINE_CHOICES))
    for key, low in (("sweep_page_size", 1), ("sweep_concurrency", 1), ("sweep_max_names", 0)):
        if params.get(key) is not None and params[key] < low:
            raise InvalidInput(key, params[key], "a number of at least %d" % low)
    rate = params.get("sweep_rate_limit")
    if rate is not None and not (0 <= rate < float("inf")):   # NaN too
        raise InvalidInput("sweep_rate_limit", rate, "a number of writes per second of at least 0 (0: no cap)")
    return {
        "ttl_seconds": ttl,
        "include_namespaces": sorted(set(params.get("include_namespaces") or [])),
        "exclude_namespaces": sorted(set(params.get("exclude_namespaces") or [])),
        "opt_out_label": label,
        "skip_gitops_managed": params.get("skip_gitops_managed", True) is not False,
        "policy_name": name,
        "policy_engine": engine,
    }
