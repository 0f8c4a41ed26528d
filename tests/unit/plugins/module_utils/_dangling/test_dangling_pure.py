# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure parts of dangling_job_ttl: validation, the policy, and which Jobs a sweep takes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._dangling import options, sweep
from ansible_collections.nodeops.kubernetes.plugins.module_utils._dangling import policy as admission
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import InvalidInput, PolicyEngineUnavailable

NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.timezone.utc)


def opts(**overrides):
    params = {"ttl_seconds": 900, "include_namespaces": [], "exclude_namespaces": ["kube-system", "kyverno"],
              "opt_out_label": "nodeops.io/keep-job", "skip_gitops_managed": True}
    params.update(overrides)
    return options.validate(params)


def job(ns="ci", owner=False, finished_minutes_ago=60, labels=None, annotations=None, failed=False):
    status = {}
    if finished_minutes_ago is not None:
        stamp = (NOW - datetime.timedelta(minutes=finished_minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
        status["conditions"] = [{"type": "Failed" if failed else "Complete", "status": "True",
                                 "lastTransitionTime": stamp}]
    meta = {"name": "j", "namespace": ns, "labels": labels or {}, "annotations": annotations or {}}
    if owner:
        meta["ownerReferences"] = [{"kind": "CronJob", "name": "c", "uid": "u", "apiVersion": "batch/v1"}]
    return {"metadata": meta, "status": status}


@pytest.mark.parametrize("the_job, options, expected", [
    (job(), {}, None),
    (job(failed=True), {}, None),
    (job(owner=True), {}, "owned"),
    (job(finished_minutes_ago=None), {}, "not finished"),
    (job(finished_minutes_ago=5), {}, "finished recently"),
    (job(ns="kube-system"), {}, "namespace excluded"),
    (job(ns="ci"), {"include_namespaces": ["prod"]}, "namespace not included"),
    (job(labels={"nodeops.io/keep-job": "yes"}), {}, "opted out"),
    (job(annotations={"argocd.argoproj.io/tracking-id": "app:batch/Job:ci/j"}), {}, "gitops-managed"),
    (job(annotations={"helm.sh/hook": "pre-install"}), {}, "gitops-managed"),
    (job(labels={"app.kubernetes.io/instance": "web"}), {}, "gitops-managed"),
    (job(annotations={"helm.sh/hook": "pre-install"}), {"skip_gitops_managed": False}, None),
    (job(finished_minutes_ago=5), {"ttl_seconds": 60}, None),
    (dict(job(), spec={"ttlSecondsAfterFinished": 3600}), {}, "has a TTL"),
    (dict(job(), metadata=dict(job()["metadata"], deletionTimestamp="2026-11-23T11:00:00Z")), {}, "being deleted"),
])
def test_sweep_verdict(the_job, options, expected):
    assert sweep.sweep_verdict(the_job, NOW, opts(**options)) == expected


@pytest.mark.parametrize("overrides, param", [
    ({"ttl_seconds": -1}, "ttl_seconds"),
    ({"exclude_namespaces": ["Kube_System"]}, "exclude_namespaces"),
    ({"include_namespaces": ["a" * 64]}, "include_namespaces"),
    ({"opt_out_label": "bad label"}, "opt_out_label"),
    ({"sweep_page_size": 0}, "sweep_page_size"),
    ({"policy_name": "Upper_Case"}, "policy_name"),
    ({"policy_name": "x" * 64}, "policy_name"),
    ({"policy_engine": "gatekeeper"}, "policy_engine"),
])
def test_bad_options(overrides, param):
    with pytest.raises(InvalidInput) as info:
        opts(**overrides)
    assert info.value.param == param and info.value.msg.startswith(param + "=")


def test_legacy_policy_shape():
    [policy] = admission.build_policy(opts(ttl_seconds=600, include_namespaces=["ci"]), "kyverno_legacy")
    spec = policy["spec"]
    assert policy["apiVersion"] == "kyverno.io/v1" and policy["kind"] == "ClusterPolicy"
    assert spec["background"] is False and spec["webhookConfiguration"] == {"failurePolicy": "Ignore"}
    assert "failurePolicy" not in spec   # deprecated, and refused by Kyverno 1.19
    rule = spec["rules"][0]
    assert rule["mutate"]["patchStrategicMerge"] == {"spec": {"+(ttlSecondsAfterFinished)": 600}}
    assert rule["match"]["any"][0]["resources"]["namespaces"] == ["ci"]
    excluded = [e["resources"] for e in rule["exclude"]["any"]]
    assert {"namespaces": ["kube-system", "kyverno"]} in excluded
    assert {"annotations": {"helm.sh/hook": "?*"}} in excluded
    [no_gitops] = admission.build_policy(opts(skip_gitops_managed=False, exclude_namespaces=[]), "kyverno_legacy")
    assert len(no_gitops["spec"]["rules"][0]["exclude"]["any"]) == 1   # the opt-out label only


def test_native_policy_and_binding():
    policy, binding = admission.build_policy(opts(ttl_seconds=600, include_namespaces=["ci", "web"]), "native")
    assert (policy["apiVersion"], policy["kind"]) == ("admissionregistration.k8s.io/v1", "MutatingAdmissionPolicy")
    assert binding["kind"] == "MutatingAdmissionPolicyBinding"
    assert binding["spec"]["policyName"] == policy["metadata"]["name"] == "nodeops-dangling-job-ttl"
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Ignore"
    assert spec["matchConstraints"]["resourceRules"] == [
        {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["jobs"]}]
    assert spec["mutations"][0]["jsonPatch"]["expression"] == (
        '[JSONPatch{op: "add", path: "/spec/ttlSecondsAfterFinished", value: 600}]')
    names = [c["name"] for c in spec["matchConditions"]]
    assert names == ["no-owner-references", "no-ttl-of-its-own", "not-opted-out", "not-gitops-managed"]
    gitops = spec["matchConditions"][-1]["expression"]
    for marker in admission.GITOPS_ANNOTATIONS + admission.GITOPS_LABELS:
        assert "'%s' in object.metadata." % marker in gitops
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["ci", "web"]},
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "kyverno"]}]}
    for obj in (policy, binding):
        assert obj["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "nodeops.kubernetes",
                                             "nodeops.io/dangling-job-ttl": "nodeops-dangling-job-ttl"}


def test_kyverno_mutating_policy_matches_native():
    [mpol] = admission.build_policy(opts(skip_gitops_managed=False, exclude_namespaces=[]), "kyverno")
    policy, _binding = admission.build_policy(opts(skip_gitops_managed=False, exclude_namespaces=[]), "native")
    assert (mpol["apiVersion"], mpol["kind"]) == ("policies.kyverno.io/v1", "MutatingPolicy")
    assert mpol["spec"]["matchConditions"] == policy["spec"]["matchConditions"]
    assert [c["name"] for c in mpol["spec"]["matchConditions"]][-1] == "not-opted-out"   # no gitops condition
    assert mpol["spec"]["mutations"] == policy["spec"]["mutations"]
    assert mpol["spec"]["matchConstraints"]["namespaceSelector"] == {}
    assert mpol["spec"]["evaluation"]["mutateExisting"] == {"enabled": False}


V1, V1BETA1 = admission.NATIVE_API_VERSIONS
SERVED_ALL = {"native": V1, "kyverno": "policies.kyverno.io/v1", "kyverno_legacy": "kyverno.io/v1"}


@pytest.mark.parametrize("requested, served, engine, reason", [
    ("auto", SERVED_ALL, "native", "serves admissionregistration.k8s.io/v1 mutatingadmissionpolicies (Kubernetes 1.36"),
    ("auto", dict(SERVED_ALL, native=V1BETA1), "native",
     "serves admissionregistration.k8s.io/v1beta1 mutatingadmissionpolicies (beta: Kubernetes 1.34 or 1.35"),
    ("auto", dict(SERVED_ALL, native=False), "kyverno", "MutatingPolicy CRD is served"),
    ("auto", dict(SERVED_ALL, native=False, kyverno=False), "kyverno_legacy", "ClusterPolicy CRD is served"),
    ("kyverno_legacy", SERVED_ALL, "kyverno_legacy", "ClusterPolicy CRD is served"),
    ("native", dict(SERVED_ALL, native=V1BETA1), "native", "serves admissionregistration.k8s.io/v1beta1"),
])
def test_choose_engine(requested, served, engine, reason):
    chosen, why = admission.choose_engine(requested, served)
    assert chosen == engine and why.startswith("auto: " if requested == "auto" else "asked for; ")
    assert reason in why, why


def test_choose_engine_names_the_three_ways_when_none_is_served():
    with pytest.raises(PolicyEngineUnavailable) as info:
        admission.choose_engine("auto", {"native": False, "kyverno": False, "kyverno_legacy": False})
    for way in ("native needs Kubernetes 1.36", "1.34 or 1.35 with the MutatingAdmissionPolicy feature gate",
                "kyverno needs", "kyverno_legacy needs", "policy=false"):
        assert way in info.value.msg
    with pytest.raises(PolicyEngineUnavailable) as info:
        admission.choose_engine("native", dict(SERVED_ALL, native=False))
    assert info.value.msg.startswith("policy_engine=native cannot be used here")
    assert "admissionregistration.k8s.io/v1beta1 (Kubernetes 1.34 and 1.35" in info.value.msg


def test_native_v1beta1_has_the_same_fields_as_v1():
    args = opts(ttl_seconds=600, include_namespaces=["ci"])
    v1 = admission.build_policy(args, "native")
    beta = admission.build_policy(args, "native", V1BETA1)
    assert [o["apiVersion"] for o in beta] == [V1BETA1, V1BETA1]
    assert [dict(o, apiVersion=None) for o in beta] == [dict(o, apiVersion=None) for o in v1]
    with pytest.raises(ValueError, match="v1alpha1.*expected one of admissionregistration.k8s.io/v1, "):
        admission.build_policy(args, "native", "admissionregistration.k8s.io/v1alpha1")


def test_ours_takes_this_policy_name_and_objects_of_older_releases():
    def item(name, created=True, manager="nodeops.kubernetes", **labels):
        meta = {"name": name, "labels": labels, "managedFields": [{"manager": manager}]}
        if created:
            meta["annotations"] = {"nodeops.io/created-by": "nodeops.kubernetes"}
        return {"metadata": meta}
    managed = {"app.kubernetes.io/managed-by": "nodeops.kubernetes"}
    assert admission.ours(item("p", **dict(managed, **{"nodeops.io/dangling-job-ttl": "p"})), "p")
    assert not admission.ours(item("q", **dict(managed, **{"nodeops.io/dangling-job-ttl": "q"})), "p")
    assert admission.ours(item("p", created=False, **managed), "p")   # written before the label and annotation
    assert not admission.ours(item("p"), "p")                 # not ours: someone else's policy of that name


def test_a_policy_that_only_carries_our_labels_is_never_ours_to_delete():
    """Invariant: state=absent (or an engine switch) never deletes someone else's policy that copied our
    labels: neither our created-by annotation nor our field manager is on it."""
    labels = {"app.kubernetes.io/managed-by": "nodeops.kubernetes", "nodeops.io/dangling-job-ttl": "p"}
    theirs = {"metadata": {"name": "p", "labels": labels, "managedFields": [{"manager": "kubectl"}]}}
    assert not admission.ours(theirs, "p")


class PagedJobs:
    """A stand-in for the API's paginated Job list whose first continue token has expired (410)."""

    def __init__(self, jobs, page_size):
        self.jobs = list(jobs)
        self.page_size = page_size
        self.expired_once = False
        self.deleted = []

    @staticmethod
    def group_path(group_version, resource, namespace=None, name=None):
        return "/apis/%s/%s/%s/%s" % (group_version, namespace, resource, name)

    def get(self, path, query, timeout=None):
        from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import WatchExpired

        after = query.get("continue")   # like the API's tokens: "after this key", not an offset
        if after and not self.expired_once:
            self.expired_once = True
            raise WatchExpired("continue token expired", status=410)
        live = sorted((j for j in self.jobs if j["metadata"]["name"] not in self.deleted),
                      key=lambda j: j["metadata"]["name"])
        if after:
            live = [j for j in live if j["metadata"]["name"] > after]
        page = live[:self.page_size]
        more = len(live) > self.page_size
        return {"items": page, "metadata": {"continue": page[-1]["metadata"]["name"] if more else None}}

    def delete(self, path, propagation=None):
        self.deleted.append(path.rsplit("/", 1)[-1])


def test_sweep_restarts_the_list_when_the_continue_token_expires():
    jobs = []
    for i in range(10):
        j = job(ns="ci")
        j["metadata"]["name"] = "j%d" % i
        jobs.append(j)
    client = PagedJobs(jobs, page_size=3)
    result = sweep.run(client, opts(), "delete", check_mode=False, page_size=3, concurrency=1, now=NOW)
    assert result["stats"]["restarts"] == 1
    assert result["total"] == 10
    assert sorted(client.deleted) == sorted("j%d" % i for i in range(10))


class _Client:
    """Lists two pages of Jobs and records writes; the second delete fails."""

    def __init__(self):
        self.writes = []

    @staticmethod
    def group_path(api_version, resource, namespace=None, name=None):
        return "/".join(p for p in ("/apis", api_version, "namespaces" if namespace else None, namespace, resource,
                                    name) if p)

    def get(self, path, query, timeout=None):
        jobs = [job(ns="ci") for _index in range(4)]
        for i, j in enumerate(jobs):
            j["metadata"]["name"] = "j%d" % i
        if "continue" in query:
            return {"items": jobs[2:], "metadata": {}}
        return {"items": jobs[:2], "metadata": {"continue": "next"}}

    def delete(self, path, propagation=None):
        from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import Forbidden
        self.writes.append(path)
        if path.endswith("/j1"):
            raise Forbidden("forbidden", status=403)


def test_a_job_counts_as_taken_only_once_its_write_succeeded():
    client = _Client()
    result = sweep.Sweep(client, opts(), "delete", False, now=NOW, concurrency=1).run()
    assert result["total"] == 3 and result["names"] == ["ci/j0", "ci/j2", "ci/j3"]
    assert len(result["errors"]) == 1 and "ci/j1" in result["errors"][0]


def test_a_sweep_asked_to_stop_takes_no_further_job_and_keeps_its_counts():
    client = _Client()
    sweeper = sweep.Sweep(client, opts(), "delete", False, now=NOW, concurrency=1,
                          should_stop=lambda: sweeper.stats["examined"] >= 2)
    with pytest.raises(sweep.Stopped):
        sweeper.run()
    assert len(client.writes) == 2 and sweeper.result()["total"] == 1 and sweeper.stats["examined"] == 2
