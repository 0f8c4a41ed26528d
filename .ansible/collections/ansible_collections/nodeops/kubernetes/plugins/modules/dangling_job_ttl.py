#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: dangling_job_ttl
short_description: Give ownerless Jobs a TTL with a Kyverno policy, and sweep the finished ones already there
version_added: 0.1.0
description:
  - Jobs created without C(ownerReferences) (not by a CronJob or another controller) are never cleaned up.
    This module installs a Kyverno C(ClusterPolicy) that adds C(spec.ttlSecondsAfterFinished) to such Jobs
    at admission when the field is absent (C(background=false), C(failurePolicy=Ignore)).
  - With I(sweep=true) it also handles the Jobs that exist already. It takes only Jobs with no ownerReferences,
    finished (Complete or Failed) more than I(ttl_seconds) ago, in an included and not excluded namespace,
    without the opt-out label, and, with I(skip_gitops_managed), without Argo CD tracking or Helm hook markers.
    It never touches running Jobs. It lists a page at a time and writes with bounded concurrency.
  - The sweep works without Kyverno; set I(policy=false) where Kyverno is not installed.
author:
  - nodeops maintainers (@nodeops)
extends_documentation_fragment:
  - nodeops.kubernetes.k8s_auth
options:
  state:
    description:
      - Whether the policy should exist. C(absent) removes it (the sweep still runs if asked for).
    type: str
    default: present
    choices: [ present, absent ]
  policy:
    description:
      - Manage the Kyverno policy. With C(false) only the sweep runs, and Kyverno is not needed.
    type: bool
    default: true
  policy_name:
    description:
      - Name of the ClusterPolicy.
    type: str
    default: nodeops-dangling-job-ttl
  ttl_seconds:
    description:
      - TTL the policy adds; the sweep takes Jobs finished longer ago than this.
    type: int
    default: 900
  include_namespaces:
    description:
      - Only Jobs in these namespaces. All namespaces when empty.
    type: list
    elements: str
    default: []
  exclude_namespaces:
    description:
      - Never Jobs in these namespaces.
    type: list
    elements: str
    default: [kube-system, kyverno]
  opt_out_label:
    description:
      - A Job carrying this label (any value) is left alone by the policy and the sweep.
    type: str
    default: nodeops.io/keep-job
  skip_gitops_managed:
    description:
      - Leave alone Jobs with Argo CD tracking (annotation C(argocd.argoproj.io/tracking-id), label
        C(argocd.argoproj.io/instance) or C(app.kubernetes.io/instance)) or a Helm hook annotation
        (C(helm.sh/hook)). Argo CD re-creates or flags Jobs deleted under it.
    type: bool
    default: true
  sweep:
    description:
      - Also sweep the finished ownerless Jobs that exist now.
    type: bool
    default: false
  sweep_action:
    description:
      - C(delete) deletes them with background propagation, so their pods go too.
      - C(set_ttl) sets their C(ttlSecondsAfterFinished) to I(ttl_seconds) and lets the TTL controller delete them.
    type: str
    default: delete
    choices: [ delete, set_ttl ]
  sweep_page_size:
    description:
      - Jobs per list page.
    type: int
    default: 500
  sweep_concurrency:
    description:
      - Writes in flight at once.
    type: int
    default: 10
  sweep_max_names:
    description:
      - At most this many Job names in the result.
    type: int
    default: 100
requirements:
  - python >= 3.9
  - kubernetes (Python package), only to read kubeconfig files
attributes:
  check_mode:
    description: The policy is compared with a server-side dry run and the sweep lists what it would take; nothing is written.
    support: full
  diff_mode:
    description: Shows the policy before and after.
    support: full
"""

EXAMPLES = r"""
- name: TTL of 15 minutes for new ownerless Jobs
  nodeops.kubernetes.dangling_job_ttl:
    ttl_seconds: 900

- name: See which finished ownerless Jobs a sweep would delete
  nodeops.kubernetes.dangling_job_ttl:
    policy: false
    sweep: true
  check_mode: true
  register: preview

- name: Delete them, 20 at a time
  nodeops.kubernetes.dangling_job_ttl:
    policy: false
    sweep: true
    sweep_concurrency: 20

- name: Let the TTL controller remove old Jobs, except in the batch namespace
  nodeops.kubernetes.dangling_job_ttl:
    ttl_seconds: 3600
    exclude_namespaces: [kube-system, kyverno, batch]
    sweep: true
    sweep_action: set_ttl

- name: Remove the policy
  nodeops.kubernetes.dangling_job_ttl:
    state: absent
"""

RETURN = r"""
policy:
  description: The ClusterPolicy as it is (or would be) in the cluster.
  returned: when policy=true and state=present
  type: dict
sweep:
  description: What the sweep did, or would do in check mode.
  returned: when sweep=true
  type: dict
  contains:
    action:
      description: delete or set_ttl.
      type: str
    total:
      description: Jobs taken.
      type: int
    per_namespace:
      description: Jobs taken per namespace.
      type: dict
    names:
      description: C(namespace/name) of the Jobs taken, at most I(sweep_max_names).
      type: list
      elements: str
    names_truncated:
      description: Whether more Jobs were taken than listed.
      type: bool
    spared:
      description: Jobs left alone, counted by reason (owned, not finished, finished recently, namespace excluded, ...).
      type: dict
    errors:
      description: Writes that failed.
      type: list
      elements: str
  sample: {action: delete, total: 2, per_namespace: {ci: 2}, names: [ci/build-1, ci/build-2], names_truncated: false,
           spared: {owned: 12, "not finished": 1}, errors: []}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nodeops.kubernetes.plugins.module_utils import dangling, objects
from ansible_collections.nodeops.kubernetes.plugins.module_utils.errors import NodeopsError
from ansible_collections.nodeops.kubernetes.plugins.module_utils.module_runner import (
    argument_spec,
    client_from_params,
    run_module,
)

KYVERNO_CRD = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/clusterpolicies.kyverno.io"


class KyvernoMissing(NodeopsError):
    """The Kyverno CRDs are not installed."""


def build_argument_spec():
    return argument_spec(
        state=dict(type="str", default="present", choices=["present", "absent"]),
        policy=dict(type="bool", default=True),
        policy_name=dict(type="str", default=dangling.DEFAULT_POLICY_NAME),
        ttl_seconds=dict(type="int", default=900),
        include_namespaces=dict(type="list", elements="str", default=[]),
        exclude_namespaces=dict(type="list", elements="str", default=list(dangling.DEFAULT_EXCLUDED_NAMESPACES)),
        opt_out_label=dict(type="str", default=dangling.DEFAULT_OPT_OUT_LABEL),
        skip_gitops_managed=dict(type="bool", default=True),
        sweep=dict(type="bool", default=False),
        sweep_action=dict(type="str", default="delete", choices=["delete", "set_ttl"]),
        sweep_page_size=dict(type="int", default=500),
        sweep_concurrency=dict(type="int", default=10),
        sweep_max_names=dict(type="int", default=100),
    )


def manage_policy(module, client, opts, result):
    if client.get_or_none(KYVERNO_CRD) is None:
        if module.params["state"] == "absent":
            return
        raise KyvernoMissing("Kyverno is not installed in this cluster (no clusterpolicies.kyverno.io CRD), so the "
                             "TTL policy cannot be created. Install Kyverno, or set policy=false to only sweep.")
    policy = dangling.build_policy(opts)
    if module.params["state"] == "absent":
        path = objects.object_path(client, policy)
        current = client.get_or_none(path)
        if current is not None:
            result["changed"] = True
            if module._diff:
                result["diff"] = {"before": objects.normalize(current), "after": None}
            if not module.check_mode:
                client.delete(path)
        return
    changed, diff, results = objects.ensure(client, [policy], module.check_mode)
    result["policy"] = results[0]
    if changed:
        result["changed"] = True
        if module._diff:
            result["diff"] = {"before": diff["before"][0], "after": diff["after"][0]}


def action(module):
    p = module.params
    opts = dangling.validate(p)
    client = client_from_params(p)
    result = {"changed": False}
    if p["policy"]:
        manage_policy(module, client, opts, result)
    if p["sweep"]:
        swept = dangling.sweep(client, opts, p["sweep_action"], module.check_mode, page_size=p["sweep_page_size"],
                               concurrency=p["sweep_concurrency"], max_names=p["sweep_max_names"])
        result["sweep"] = swept
        result["changed"] = result["changed"] or swept["total"] > 0
        if swept["errors"]:
            raise NodeopsError("the sweep could not write %d Jobs: %s" % (len(swept["errors"]), swept["errors"][0]),
                               **result)
    return result


def main():
    module = AnsibleModule(argument_spec=build_argument_spec(), supports_check_mode=True)
    run_module(module, action)


if __name__ == "__main__":
    main()
