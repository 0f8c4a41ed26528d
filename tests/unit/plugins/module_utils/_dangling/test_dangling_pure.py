# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure parts of dangling_job_ttl: validation, the policy, and which Jobs a sweep takes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import threading
import time

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._dangling import options, sweep
from ansible_collections.nodeops.kubernetes.plugins.module_utils._dangling import policy as admission
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube import pacing
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import (
    ApiError, Forbidden, InvalidInput, NotFound, PolicyEngineUnavailable, TooManyRequests)

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
    ({"sweep_rate_limit": -1.0}, "sweep_rate_limit"),
    ({"sweep_rate_limit": float("nan")}, "sweep_rate_limit"),
    ({"sweep_rate_limit": float("inf")}, "sweep_rate_limit"),
    ({"sweep_concurrency": 0}, "sweep_concurrency"),
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

    def get(self, path, query, timeout=None, retry_for=None):
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

    def delete(self, path, propagation=None, retry_for=None, missing_ok=True):
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

    def get(self, path, query, timeout=None, retry_for=None):
        jobs = [job(ns="ci") for _index in range(4)]
        for i, j in enumerate(jobs):
            j["metadata"]["name"] = "j%d" % i
        if "continue" in query:
            return {"items": jobs[2:], "metadata": {}}
        return {"items": jobs[:2], "metadata": {"continue": "next"}}

    def delete(self, path, propagation=None, retry_for=None, missing_ok=True):
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
    # The second Job was examined before the stop came: its write was sent (and refused) or, if its pool thread
    # had not taken a slot yet, left for the next sweep. No Job examined after the stop is written.
    assert [w.rsplit("/", 1)[-1] for w in client.writes] in (["j0"], ["j0", "j1"])
    assert sweeper.result()["total"] == 1 and sweeper.stats["examined"] == 2


class _ManyJobs:
    """One page of ``count`` finished ownerless Jobs (with the apiserver's remainingItemCount when paged);
    deletes run ``outcome(name, attempt)``: None (done) or an exception to raise. Records when each was sent."""

    def __init__(self, count, outcome=None, page_size=None):
        self.names = ["j%03d" % i for i in range(count)]
        self.outcome = outcome or (lambda name, attempt: None)
        self.page_size = page_size or count
        self.sent, self.attempts = [], {}
        self._lock = threading.Lock()

    group_path = staticmethod(_Client.group_path)

    def get(self, path, query, timeout=None, retry_for=None):
        start = int(query.get("continue") or 0)
        names = self.names[start:start + self.page_size]
        items = []
        for name in names:
            j = job(ns="ci")
            j["metadata"]["name"] = name
            items.append(j)
        end = start + len(names)
        meta = {"continue": str(end), "remainingItemCount": len(self.names) - end} if end < len(self.names) else {}
        return {"items": items, "metadata": meta}

    def delete(self, path, propagation=None, retry_for=None, missing_ok=True):
        assert retry_for == 0   # the sweep, not the client, decides about retries (the pacer must see a 429)
        name = path.rsplit("/", 1)[-1]
        with self._lock:
            attempt = self.attempts[name] = self.attempts.get(name, 0) + 1
            self.sent.append((time.monotonic(), name))
        exc = self.outcome(name, attempt)
        if exc is not None:
            raise exc


def test_a_429_pauses_every_write_for_its_retry_after_and_the_job_is_taken_on_retry():
    refused = []

    def outcome(name, attempt):
        if name == "j005" and attempt == 1:
            refused.append(time.monotonic())
            return TooManyRequests("too many requests", retry_after=0.4, status=429)
        return None
    client = _ManyJobs(30, outcome)
    sweeper = sweep.Sweep(client, opts(), "delete", False, now=NOW, concurrency=4)
    result = sweeper.run()
    assert result["total"] == 30 and not result["errors"] and client.attempts["j005"] == 2
    assert result["pacing"]["throttled"] == 1 and result["pacing"]["decreases"] >= 1
    # Nothing started during the pause: the writes sent in it are at most those that had their slot before the
    # pacer took the 429 in (the ceiling, 4, less the refused one).
    pause_began = sweeper.pacer.paused_until - 0.4
    during = [(t, name) for t, name in client.sent if pause_began < t < sweeper.pacer.paused_until - 0.01]
    assert len(during) <= 3, during
    assert max(t for t, _name in client.sent) >= sweeper.pacer.paused_until - 0.01


def test_a_job_refused_with_429_for_too_long_is_an_error_not_a_hang(monkeypatch):
    monkeypatch.setattr(sweep, "THROTTLED_GIVE_UP_S", 0.3)
    client = _ManyJobs(3, lambda name, attempt: TooManyRequests("throttled", retry_after=0.1, status=429)
                       if name == "j001" else None)
    result = sweep.Sweep(client, opts(), "delete", False, now=NOW, concurrency=2).run()
    assert result["total"] == 2 and result["errors_total"] == 1 and "429" in result["errors"][0]
    assert client.attempts["j001"] >= 2


def test_a_server_error_is_tried_again_then_reported():
    client = _ManyJobs(4, lambda name, attempt: ApiError("etcdserver: leader changed", status=500)
                       if name == "j000" or (name == "j001" and attempt == 1) else None)
    result = sweep.Sweep(client, opts(), "delete", False, now=NOW, concurrency=2).run()
    assert client.attempts["j001"] == 2 and client.attempts["j000"] == 1 + sweep.SERVER_ERROR_RETRIES
    assert result["total"] == 3 and result["errors_total"] == 1 and "ci/j000" in result["errors"][0]
    # Backed off from, and counted apart from 429s.
    assert result["pacing"]["server_errors"] == 1 + sweep.SERVER_ERROR_RETRIES and result["pacing"]["throttled"] == 0


def test_a_job_someone_else_deleted_is_not_counted_as_taken():
    client = _ManyJobs(3, lambda name, attempt: NotFound("jobs.batch \"j001\" not found", status=404)
                       if name == "j001" else None)
    result = sweep.Sweep(client, opts(), "delete", False, now=NOW, concurrency=1).run()
    assert result["total"] == 2 and "ci/j001" not in result["names"] and result["errors_total"] == 0


def test_an_unexpected_error_in_a_write_frees_its_slot_and_sends_nothing_more():
    """A write that raises something else than an API error (a credential refresh that failed, a bug) ends
    the sweep with that error, promptly, and the writes that were waiting for a slot are not sent."""
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import ConnectionConfigError

    def outcome(name, attempt):
        if name == "j003":
            raise ConnectionConfigError("the API server refused the token and a new one could not be had")
        time.sleep(0.05)
        return None
    client = _ManyJobs(40, outcome)
    sweeper = sweep.Sweep(client, opts(), "delete", False, now=NOW, concurrency=1)
    started = time.monotonic()
    with pytest.raises(ConnectionConfigError):
        sweeper.run()
    assert time.monotonic() - started < 5
    assert sweeper.pacer.in_flight == 0
    sent = [name for _t, name in client.sent]
    assert "j003" in sent and len(sent) <= 6, sent   # j004 at most, queued before the error was seen


def stopped_quickly(outcome, concurrency, stop):
    """Sweep 20 Jobs that ``outcome`` answers until ``stop`` holds something: the sweep must raise Stopped
    within 3 s (not wait out a Retry-After). Returns the client and the sweep."""
    client = _ManyJobs(20, outcome)
    sweeper = sweep.Sweep(client, opts(), "delete", False, now=NOW, concurrency=concurrency,
                          should_stop=lambda: bool(stop))
    started = time.monotonic()
    with pytest.raises(sweep.Stopped):
        sweeper.run()
    assert time.monotonic() - started < 3, "the stop waited for the Retry-After"
    return client, sweeper


def test_a_stop_during_the_last_writes_is_heard_and_sends_nothing_more():
    stop = []

    def outcome(name, attempt):
        if name == "j019":
            stop.append(True)   # the last Job: the stop comes while the final drain waits
            return TooManyRequests("throttled", retry_after=5, status=429)
        return None
    client, sweeper = stopped_quickly(outcome, 2, stop)
    assert client.attempts["j019"] == 1 and sweeper.result()["errors_total"] == 0


def test_errors_are_counted_all_and_kept_few():
    client = _ManyJobs(50, lambda name, attempt: Forbidden("jobs is forbidden", status=403))
    result = sweep.Sweep(client, opts(), "delete", False, now=NOW, concurrency=3).run()
    assert result["total"] == 0 and result["errors_total"] == 50 and len(result["errors"]) == sweep.MAX_ERRORS


def test_progress_says_so_far_the_rate_and_the_time_left():
    clock = FakeClock(step=0.5)   # every look at the clock is half a second later
    seen = []
    client = _ManyJobs(40, page_size=10)
    result = sweep.Sweep(client, opts(), "delete", True, now=NOW, concurrency=2, progress=seen.append,
                         progress_every_s=5, clock=clock).run()
    assert result["total"] == 40 and seen and result["progress"] == seen
    first, last = seen[0], seen[-1]
    assert 0 < first["examined"] < 40 and first["taken"] == first["examined"]
    # The time left is the Jobs left to examine at the rate so far.
    assert first["remaining_to_examine"] == 40 - first["examined"]
    assert first["eta_s"] == pytest.approx(first["remaining_to_examine"] * first["elapsed_s"] / first["examined"],
                                           rel=0.05)
    assert last["examined"] > first["examined"] and first["jobs_per_s"] > 0


def test_progress_kept_in_the_result_is_bounded():
    clock = FakeClock(step=1.0)
    result = sweep.Sweep(_ManyJobs(400, page_size=7), opts(), "delete", True, now=NOW, progress_every_s=1,
                         clock=clock).run()
    assert 2 <= len(result["progress"]) <= sweep.MAX_PROGRESS
    assert result["progress"][-1]["examined"] > 300


def test_a_stop_during_a_429_pause_sends_nothing_more_and_counts_nothing_unsent():
    stop = []

    def outcome(name, attempt):
        stop.append(True)   # the first write is refused, and the sweep is asked to stop meanwhile
        return TooManyRequests("throttled", retry_after=5, status=429)
    client, sweeper = stopped_quickly(outcome, 1, stop)
    assert len(client.sent) == 1 and sweeper.result()["total"] == 0 and sweeper.result()["errors_total"] == 0


class FakeClock:
    def __init__(self, step):
        self.t, self.step = 1000.0, step

    def __call__(self):
        self.t += self.step
        return self.t


def full_rounds(p, rounds, latency):
    """``rounds`` rounds of as many writes as the limit allows, each taking ``latency`` seconds."""
    for _round in range(rounds):
        n = int(p.limit)
        for _write in range(n):
            assert p.acquire()
        for _write in range(n):
            p.release(latency)


def test_pacer_grows_to_the_ceiling_while_latency_stays_at_the_baseline():
    p = pacing.Pacer(ceiling=8, clock=FakeClock(0))
    full_rounds(p, 40, 0.010)
    assert p.limit == 8 and p.stats["decreases"] == 0 and p.baseline == pytest.approx(0.010)


def test_pacer_backs_off_when_latency_rises_and_never_below_one():
    p = pacing.Pacer(ceiling=10, start=10, clock=FakeClock(0))
    for latency in (0.010,) * 10 + (0.100,) * 200:   # the apiserver gets ten times slower
        assert p.acquire()
        p.release(latency)
    assert p.limit == 1 and p.stats["decreases"] >= 5
    # A rise within the slack is noise, not load: 3 ms to 8 ms does not shrink the limit.
    q = pacing.Pacer(ceiling=4, start=4, clock=FakeClock(0))
    for latency in (0.003,) * 4 + (0.008,) * 40:
        assert q.acquire()
        q.release(latency)
    assert q.limit == 4 and q.stats["decreases"] == 0


def test_pacer_429_halves_the_limit_and_holds_every_start_for_the_retry_after():
    clock = FakeClock(0)
    p = pacing.Pacer(ceiling=10, start=8, clock=clock)
    assert p.acquire() and p.acquire()
    p.release(0.01, throttled_for=2.0)
    assert p.limit == 4 and p._wait_needed(clock()) == pytest.approx(2.0)
    clock.t += 0.5   # a second write, sent before the pause, is refused half a second into it: no halving
    p.release(0.01, throttled_for=2.0)
    assert p.limit == 4 and p.stats["throttled"] == 2 and p.stats["decreases"] == 1
    clock.t += 2.0   # its Retry-After extended the pause to 2 s after it
    assert p._wait_needed(clock()) == 0.0
    p2 = pacing.Pacer(ceiling=4, clock=FakeClock(0))
    assert p2.acquire()
    p2.release(0.01, throttled_for=0)   # no Retry-After: the default pause
    assert p2.paused_until - p2.clock.t == pytest.approx(pacing.DEFAULT_RETRY_AFTER_S)
    # After the 429 the limit grows back to 7 at most (one less than where it came) until the cool-down is over.
    full_rounds(p, 20, 0.01)
    assert p.limit == 7
    clock.t += pacing.DEFAULT_COOL_DOWN_S
    full_rounds(p, 5, 0.01)
    assert p.limit == 10
    p3 = pacing.Pacer(ceiling=4, clock=FakeClock(0))
    assert p3.acquire()
    p3.release(0.01, throttled_for=3600)   # a huge Retry-After waits the cap
    assert p3.paused_until - p3.clock.t == pytest.approx(pacing.MAX_RETRY_AFTER_S)


def test_pacer_rate_cap_spaces_the_starts():
    clock = FakeClock(0)
    p = pacing.Pacer(ceiling=10, start=10, rate=4, clock=clock)
    assert p.acquire()
    assert p._wait_needed(clock()) == pytest.approx(0.25)
    clock.t += 0.25
    assert p._wait_needed(clock()) == 0.0 and p.acquire()
    # Measured with the real clock: 9 starts at 20 per second take at least 0.4 s.
    real = pacing.Pacer(ceiling=10, start=10, rate=20)
    started = time.monotonic()
    for _write in range(9):
        assert real.acquire()
        real.release(0.001)
    assert time.monotonic() - started >= 0.39


def test_pacer_grows_back_to_the_ceiling_after_a_fractional_decrease():
    for ceiling in (2, 3, 10):
        p = pacing.Pacer(ceiling=ceiling, start=ceiling, cool_down_s=0, clock=FakeClock(0))
        for latency in (0.002,) * ceiling + (0.5,) * ceiling + (0.002,) * 400:
            assert p.acquire()
            p.release(latency)
        assert p.stats["decreases"] >= 1 and p.limit == ceiling, (ceiling, p.limit)


def test_pacer_acquire_returns_false_when_asked_to_stop():
    p = pacing.Pacer(ceiling=1, clock=FakeClock(0))
    assert p.acquire()
    assert p.acquire(stop=lambda: True, poll_s=0.01) is False and p.in_flight == 1


def test_a_sweep_refused_with_429_for_too_long_stops_instead_of_waiting_that_long_per_job(monkeypatch):
    """Every write refused (a priority level with no seat): the first Job given up stops the sweep. It does not
    wait THROTTLED_GIVE_UP_S again for each of the other Jobs; it reports the error and the Jobs it left."""
    monkeypatch.setattr(sweep, "THROTTLED_GIVE_UP_S", 0.5)
    client = _ManyJobs(40, lambda name, attempt: TooManyRequests("throttled", retry_after=1, status=429))
    started = time.monotonic()
    result = sweep.Sweep(client, opts(), "delete", False, now=NOW, concurrency=2).run()   # no Stopped: returned
    took = time.monotonic() - started
    assert took < 6, "the sweep waited per Job (%.1f s)" % took
    assert result["total"] == 0 and 1 <= result["errors_total"] <= 2, result["errors"]
    assert "so the sweep stopped" in result["errors"][0]
    assert result["stats"]["stopped_throttled"] is True
    # Every Job is accounted for: given up (an error), left for the next sweep, or never reached by the list.
    assert result["errors_total"] + result["stats"]["left_for_next"] <= 40
    assert len(set(name for _t, name in client.sent)) < 40   # it did not go on trying the rest


def test_a_sweep_that_was_throttled_but_got_through_is_not_stopped():
    def outcome(name, attempt):
        return TooManyRequests("throttled", retry_after=1, status=429) if attempt == 1 and name == "j001" else None
    result = sweep.Sweep(_ManyJobs(5, outcome), opts(), "delete", False, now=NOW, concurrency=2).run()
    assert result["total"] == 5 and result["stats"]["stopped_throttled"] is False and result["stats"]["left_for_next"] == 0


def test_a_sigterm_during_a_throttled_sweep_stays_a_stop(monkeypatch):
    """SIGTERM first, then a write still in its 429 loop passes the give-up: the sweep raises Stopped (the runner
    records it as interrupted), not a throttled failure."""
    monkeypatch.setattr(sweep, "THROTTLED_GIVE_UP_S", 0.5)
    stop = []

    def outcome(name, attempt):
        stop.append(True)   # asked to stop as soon as the first write is refused
        return TooManyRequests("throttled", retry_after=1, status=429)
    sweeper = sweep.Sweep(_ManyJobs(20, outcome), opts(), "delete", False, now=NOW, concurrency=2,
                          should_stop=lambda: bool(stop))
    with pytest.raises(sweep.Stopped):
        sweeper.run()
    assert sweeper.result()["stats"]["stopped_throttled"] is False
