# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One process drives a run at a time (issue 22, item 4), on the real control plane with kwok nodes.

Two processes given one run_id, under adversarial timing: each test holds one of them at a chosen
point with a gate in its client (the real client, whose calls pass through once the gate opens), never
by sleeping and hoping. What must never happen: a second pod on a node, a result lost or made wrong, a
pod or record deleted under the process that drives the run.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading
import time

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import lease, naming
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.engine import Engine
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import ApiUnavailable, RunHeld

import kube_helpers as kh


def opts(namespace, **overrides):
    return kh.engine_opts(namespace, **dict(dict(name="ls", timeout=180, pending_timeout=60, parallelism="100%"), **overrides))


class Gated:
    """The real RestClient of one process, with two test hooks: calls for which ``hold`` is true wait until
    ``gate`` is set (``held`` tells the test it is waiting), and lease renewals raise ApiUnavailable while
    ``refuse_renewals`` is set (so are its other conditional writes to the record: all are JSON patches).
    Every write it tries is recorded in ``attempts``, and in ``writes`` once it succeeded."""

    def __init__(self, hold=None):
        self._client = kh.rest_client()
        self.hold = hold or (lambda verb, path: False)
        self.gate, self.held, self.refuse_renewals = threading.Event(), threading.Event(), threading.Event()
        self.writes, self.attempts = [], []

    def __getattr__(self, name):
        return getattr(self._client, name)

    def _pass(self, verb, path, call, *args, **kwargs):
        if self.hold(verb, path):
            self.held.set()
            assert self.gate.wait(120), "the test never opened the gate"
        if not kwargs.get("dry_run"):
            self.attempts.append((verb, path))
        answer = call(path, *args, **kwargs)
        if not kwargs.get("dry_run"):
            self.writes.append((verb, path))
        return answer

    def create(self, path, body, **kwargs):
        return self._pass("create", path, self._client.create, body, **kwargs)

    def delete(self, path, **kwargs):
        return self._pass("delete", path, self._client.delete, **kwargs)

    def merge_patch(self, path, body):
        return self._pass("patch", path, self._client.merge_patch, body)

    def request(self, method, path, **kwargs):
        if kwargs.get("content_type") == "application/json-patch+json" and self.refuse_renewals.is_set():
            raise ApiUnavailable("connection refused (the test cut this process off)", status=None)
        if method == "GET":
            return self._client.request(method, path, **kwargs)
        return self._pass(method.lower(), path, lambda at, **kw: self._client.request(method, at, **kw), **kwargs)


def in_thread(target):
    box = {}

    def run():
        try:
            box["result"] = target()
        except BaseException as exc:   # noqa: B902 -- the test asserts on it
            box["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def record_of(core, namespace, run_id, name="ls"):
    found = [c for c in core.list_namespaced_config_map(namespace, label_selector="nodeops.io/kind=run-record").items
             if c.metadata.name == naming.record_name(name, run_id)]
    return found[0] if found else None


@pytest.fixture
def three_nodes(sim_nodes):
    tag = kh.unique("lease")
    names = [sim_nodes.add(name="%s-%d" % (tag, i), labels={"nodeops-test": tag}) for i in range(3)]
    return {"nodeops-test": tag}, names


def running(core, namespace, count):
    return lambda: len([p for p in kh.managed_pods(core, namespace) if p.status.phase == "Running"]) == count


def test_a_second_process_on_a_run_being_driven_fails_at_once_naming_the_holder_and_writes_nothing(
        core, namespace, three_nodes, audit):
    selector, names = three_nodes
    spec = opts(namespace, node_selector=selector, pod_annotations={"sim.nodeops.io/delay": "20s"})
    mark = audit.mark()
    first, box = in_thread(lambda: Engine(kh.rest_client()).run(spec, "held1"))
    try:
        kh.wait_for("the first process's pods to run", running(core, namespace, 3), timeout=60)
        second = Gated()
        with pytest.raises(RunHeld) as raised:
            Engine(second).run(spec, "held1")
        holder = record_of(core, namespace, "held1").metadata.annotations[lease.ANNOTATION_HOLDER]
        assert holder in raised.value.msg and "new run_id" in raised.value.msg
        assert second.attempts == [("create", "/api/v1/namespaces/%s/configmaps" % namespace)], second.attempts
        assert second.writes == [], "the second process wrote %s" % second.writes   # its record create: 409
    finally:
        first.join(120)
    assert "error" not in box, box.get("error")
    assert box["result"]["summary"]["succeeded"] == 3
    assert len(kh.pod_creates(audit, mark, namespace)) == 3


def test_a_process_held_while_the_other_finishes_and_deletes_the_record_makes_nothing_and_loses_nothing(
        core, namespace, three_nodes, audit):
    """The first process is held just before it deletes its record, its pods done; the second plans then (it
    sees those pods and the record) and is held just before it writes the record, until the first has deleted
    the record (and so, through the garbage collector, the pods). Let go, the second must not adopt the dying
    pods (it would report them lost) nor run the nodes again."""
    selector, names = three_nodes
    spec = opts(namespace, node_selector=selector)
    record_path = "/api/v1/namespaces/%s/configmaps/%s" % (namespace, naming.record_name("ls", "gone1"))
    mark = audit.mark()
    finisher = Gated(hold=lambda verb, path: verb == "delete" and path == record_path)
    first, box = in_thread(lambda: Engine(finisher).run(spec, "gone1"))
    late = None
    try:
        assert finisher.held.wait(60), "the first process never reached its record's delete"
        second = Gated(hold=lambda verb, path: verb == "create" and path.endswith("/configmaps"))
        late, late_box = in_thread(lambda: Engine(second).run(spec, "gone1"))
        assert second.held.wait(60), "the second process never reached its record"
        finisher.gate.set()
        first.join(60)
        assert "error" not in box, box.get("error")
        assert record_of(core, namespace, "gone1") is None   # the first finished and deleted it
    finally:
        finisher.gate.set()
        if late is not None:
            second.gate.set()
            late.join(120)
    assert box["result"]["summary"]["succeeded"] == 3
    assert isinstance(late_box.get("error"), RunHeld), late_box
    assert "run record was deleted" in late_box["error"].msg
    # The second process made a record, saw it could not be the first one's, and took it back: nothing else.
    assert [verb for verb, _path in second.writes] == ["create", "delete"], second.writes
    assert all("/configmaps" in path for _verb, path in second.writes)
    assert record_of(core, namespace, "gone1") is None
    assert len(kh.pod_creates(audit, mark, namespace)) == 3
    kh.wait_for("the pods to be garbage-collected", lambda: kh.managed_pods(core, namespace) == [])


@pytest.mark.parametrize("where", ["this-host", "another-host"])
def test_a_resume_after_the_holder_was_killed_takes_the_run_over_once_it_is_known_gone(
        tmp_path, core, namespace, three_nodes, audit, where):
    """A playbook is killed mid-run. On this host the resume sees that the holder's process has exited, and
    takes over at once. As on another controller (the test makes its lease name another host), it cannot see
    that, and watches the lease stay silent for a whole lease first. Either way it adopts the pods and
    finishes the run, making none again."""
    selector, names = three_nodes
    args = {"name": "ls", "namespace": namespace, "preset": "image_prune", "node_selector": selector,
            "run_id": "silent1", "parallelism": 3, "pod_annotations": {"sim.nodeops.io/delay": "3s"}}
    mark = audit.mark()
    killed = kh.kill_playbook_mid_run(tmp_path, args, lambda: len(kh.managed_pods(core, namespace)) == 3,
                                      "all three pods", timeout=60)
    assert len(killed) >= 3, "the module's own process was not among those killed: %s" % killed
    record = record_of(core, namespace, "silent1")
    assert record.data["state"] == "running"
    if where == "another-host":
        core.patch_namespaced_config_map(record.metadata.name, namespace, {"metadata": {"annotations": {
            lease.ANNOTATION_HOLDER: "another-controller/4242/dead00/boot0-1"}}})
    began = time.monotonic()
    result = Engine(kh.rest_client()).run(opts(namespace, node_selector=selector), "silent1")
    waited = time.monotonic() - began
    assert result["summary"]["succeeded"] == 3
    if where == "another-host":
        assert waited >= lease.LEASE_SECONDS - 1, "took the run over after %.1f s, before its lease ran out" % waited
    else:
        assert waited < lease.LEASE_SECONDS, "waited %.1f s for a holder whose process had exited" % waited
    assert len(kh.pod_creates(audit, mark, namespace)) == 3   # the resume made none


@pytest.mark.parametrize("comes_back", [True, False], ids=["renewals-come-back", "renewals-never-come-back"])
def test_a_holder_cut_off_for_longer_than_its_lease_hands_the_run_over_and_deletes_nothing(
        core, namespace, three_nodes, audit, comes_back):
    """The first process cannot renew (the test cuts its conditional writes off, the rest gets through) for
    longer than the lease: a second process takes the run over, adopts the pods and finishes it. The first
    must delete no pod and no record, whether its renewals come back while the pods run (it then finds the
    run held by the other) or never (its pods end under it, and it cannot prove it still holds the run)."""
    selector, names = three_nodes
    spec = opts(namespace, node_selector=selector, pod_annotations={"sim.nodeops.io/delay": "30s"})
    mark = audit.mark()
    cut = Gated()
    first, box = in_thread(lambda: Engine(cut).run(spec, "cut1"))
    try:
        kh.wait_for("the first process's pods to run", running(core, namespace, 3), timeout=60)
        writes_before = len(cut.attempts)
        first_holder = record_of(core, namespace, "cut1").metadata.annotations[lease.ANNOTATION_HOLDER]
        cut.refuse_renewals.set()
        taker = Gated()
        second, second_box = in_thread(lambda: Engine(taker).run(spec, "cut1"))
        kh.wait_for("the second process to take the run over", lambda: record_of(
            core, namespace, "cut1").metadata.annotations[lease.ANNOTATION_HOLDER] != first_holder,
            timeout=lease.LEASE_SECONDS + 20)
        holder = record_of(core, namespace, "cut1").metadata.annotations[lease.ANNOTATION_HOLDER]
        if comes_back:
            cut.refuse_renewals.clear()
        first.join(90)
        assert not first.is_alive()
    finally:
        cut.refuse_renewals.clear()
        first.join(60)
    deleted = [(verb, path) for verb, path in cut.attempts[writes_before:] if verb == "delete"]
    assert deleted == [], "the process that lost the run deleted %s" % deleted
    if comes_back:
        # It learns who holds the run now, and hands the nodes it had not seen end over to it.
        assert isinstance(box.get("error"), RunHeld), box
        assert holder in box["error"].msg
        nodes = dict((rec["node"], rec) for rec in box["error"].result["nodes"] if rec["outcome"] != "skipped")
        assert all(rec["outcome"] == "cancelled" and rec["reason"] == "HandedOver" for rec in nodes.values())
    else:
        # It saw its pods end (that is still true), but cannot prove it holds the run: it says so, and
        # deletes nothing.
        assert "error" not in box, box.get("error")
        nodes = dict((rec["node"], rec) for rec in box["result"]["nodes"] if rec["outcome"] != "skipped")
        assert all(rec["outcome"] == "succeeded" for rec in nodes.values())
        assert any("could not prove it still holds run cut1" in w for w in box["result"]["warnings"]), box["result"]
    assert sorted(nodes) == sorted(names)
    second.join(120)
    assert "error" not in second_box, second_box.get("error")
    assert second_box["result"]["summary"]["succeeded"] == 3
    assert len(kh.pod_creates(audit, mark, namespace)) == 3
    assert record_of(core, namespace, "cut1") is None   # the second process finished the run and deleted it
