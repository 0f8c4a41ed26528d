# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The benchmark harness at a few dozen nodes and Jobs, so it cannot rot between `make bench` runs.

Timings are not asserted (they belong to benchmarks/); what is checked is that
every contender did its whole job, that requests are attributed to the tool
that made them, and that the sweep spared every control Job.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import sys

import kube_helpers as kh

BENCH = os.path.join(kh.REPO, "benchmarks", "bench.py")


def test_bench_smoke_profile_measures_every_contender(tmp_path):
    proc = subprocess.run([sys.executable, BENCH, "--profile", "smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    results = json.loads((tmp_path / "latest.json").read_text())

    fanout = results["fanout"]
    assert {r["contender"] for r in fanout} == {"bare", "engine", "engine-logread", "module", "polling", "serial"}
    for r in fanout:
        assert r["complete"] and r["rc"] == 0, r
        assert r["wall_s"] > 0 and r["peak_rss_mib"] > 5
        rows = r["apiserver_rows"]
        # Every contender made its pods: one create per node reached the apiserver.
        assert rows.get("POST pods", 0) >= r["size"], (r["contender"], rows)
        if r["contender"] in ("engine", "engine-logread", "bare", "polling"):
            assert r["output"]["summary"]["succeeded"] == r["size"]
    for r in (r for r in fanout if r["contender"] in ("engine", "bare")):
        # The apiserver's count of the tool's requests agrees with what its client sent, but for its events
        # requests (one list, one watch, the run's summary event), which cannot be told apart from the
        # scheduler's and the kubelets' own event traffic (harness.TOOL_ROWS), and for watches: kwok, the
        # scheduler and the controllers re-open their pod and node watches now and then, and such a row
        # cannot be told apart from the tool's own watch either.
        watches = sum(count for row, count in r["apiserver_rows"].items() if row.startswith("WATCH "))
        assert -3 <= r["tool_requests"] - r["client_requests"] <= 3 + watches, r
        assert r["requests"] == r["client_requests"] and r["requests_counted_by"] == "client"
    polling = [r for r in fanout if r["contender"] == "polling"]
    assert all(r["requests"] >= 2 * r["size"] for r in polling), polling   # a create and at least one GET each
    engine = [r for r in fanout if r["contender"] == "engine"]
    # One create per node and no log read: every node's result came in its pod's termination message. Plus
    # a handful that does not grow with the nodes or the watch events: lists, watches, the run record, its
    # progress and lease renewals (at most one write per 5 s) and its summary event. Counted as the client sent
    # them: the apiserver's count also holds others' re-opened watches (above), which no budget of ours bounds.
    for r in engine:
        assert r["output"]["results"] == r["size"] and "CONNECT pods/log" not in r["apiserver_rows"], r
        assert r["size"] <= r["client_requests"] <= r["size"] + 15 + r["wall_s"] / 5 + 2, r
    logread = [r for r in fanout if r["contender"] == "engine-logread"]
    assert logread and all(r["output"]["log_tails"] == r["size"] == r["apiserver_rows"].get("CONNECT pods/log")
                           for r in logread), logread
    module = [r for r in fanout if r["contender"] == "module"]
    assert all(r["module_process_peak_rss_mib"] > 5 for r in module)

    sweep = results["sweep"]
    assert {r["contender"] for r in sweep} == {"ours", "pipeline"}
    for r in sweep:
        assert r["complete"] and r["controls_intact"] and r["targets_left"] == 0, r
        assert rows_total(r, "DELETE jobs") >= r["size"]
    assert all(r["output"]["jobs"] == r["size"] for r in sweep if r["contender"] == "ours")

    ours = [r for r in sweep if r["contender"] == "ours" and r["size"] == 120][0]
    # Progress (every 0.05 s here): so far, rate and time left, from the apiserver's remainingItemCount.
    progress = ours["output"]["progress"]
    assert progress and all(0 <= p["taken"] <= p["examined"] for p in progress), progress
    assert any(p["eta_s"] is not None and p["remaining_to_examine"] > 0 for p in progress), progress

    check_calibrated(results)
    check_gentle(results)

    assert results["harness"]["node_creation"] and results["harness"]["job_creation"]
    assert results["machine"]["cores"] >= 1 and results["kubernetes"]["gitVersion"].startswith("v1.")
    assert len(results["targets"]) == 14 and all(isinstance(t["value"], float) for t in results["targets"])
    assert (tmp_path / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "latest-scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| target | value | wanted | met |" in (tmp_path / "latest.md").read_text()
    # Nothing left behind: no bench pods, no bench nodes.
    core = kh.rest_client()
    assert not core.get("/api/v1/namespaces/nodeops-bench/pods")["items"]
    assert not core.get("/api/v1/nodes", {"labelSelector": "bench.nodeops.io/node=true"})["items"]


def rows_total(record, row):
    return record["apiserver_rows"].get(row, 0)


def check_calibrated(results):
    """Pods that take real time: each pod runs at least the calibrated delay, some fail, every node ends."""
    cal = results["calibrated"]
    assert {r["contender"] for r in cal} == {"bare", "engine", "module", "engine-p25%", "engine-p100%", "serial"}
    assert all(r["complete"] and r["rc"] == 0 for r in cal), cal
    ann = results["calibration"]["annotations"]
    delay = int(ann["sim.nodeops.io/delay"].rstrip("ms")) / 1000.0
    assert 0.5 < delay <= int(ann["sim.nodeops.io/delay-max"].rstrip("ms")) / 1000.0 < 10, ann
    assert results["calibration"]["real_node_pod_s"]["min"] > results["calibration"]["kwok_pod_s"]
    for r in cal:
        assert r["wall_s"] >= delay, r   # no pod ended before its delay
    # 25% of 12 nodes is 3 pods at a time: four waves, each at least the delay.
    p25 = [r for r in cal if r["contender"] == "engine-p25%"][0]
    assert p25["wall_s"] >= 4 * delay
    failed = sum(r["output"]["summary"]["failed"] for r in cal if r["contender"] not in ("serial",))
    ended = sum(r["output"]["summary"]["succeeded"] + r["output"]["summary"]["failed"]
                for r in cal if r["contender"] != "serial")
    # 250 per mille of 60 pods: none failing has a chance of 3 in 100 million.
    assert 0 < failed < ended, (failed, ended)
    serial = [r for r in cal if r["contender"] == "serial"][0]
    assert serial["wall_s"] >= serial["size"] * delay   # one node at a time: the delays add up


def delay_of(results):
    return int(results["calibration"]["annotations"]["sim.nodeops.io/delay"].rstrip("ms")) / 1000.0


def check_gentle(results):
    """The module's sweep as a ServiceAccount with a reader alongside, and under a priority level of one seat."""
    gentle = {r["contender"]: r for r in results["gentle"]}
    assert set(gentle) == {"module", "module-uncapped", "module-throttled"}
    for r in gentle.values():
        out = r["output"]
        assert r["complete"] and out["total"] == r["size"] and out["errors_total"] == 0, r
        assert r["controls_intact"] and r["targets_left"] == 0
        # A GET and a LIST every 100 ms: 3 s idle, and the module's own process runs for half a second at least.
        assert r["reader"]["idle"]["samples"] >= 20 and r["reader"]["during"]["samples"] >= 5, r["reader"]
        assert r["reader"]["idle"]["all"]["p99_ms"] > 0 and r["reader_p99_ratio"] > 0
        assert out["pacing"]["ceiling"] == 10 and out["stats"]["examined"] >= r["size"]
    capped = gentle["module"]["output"]
    # The default cap, 150 Jobs per second, held (the first write starts the clock: 300 Jobs take 2 s at least).
    assert capped["pacing"]["rate_cap"] == 150 and capped["stats"]["wall_s"] >= 299 / 150.0, capped
    free = gentle["module-uncapped"]["output"]["pacing"]
    assert free["rate_cap"] is None and free["throttled"] == 0 and free["limit_max"] > 2, free   # it grew from 2
    tight = gentle["module-throttled"]["output"]["pacing"]
    # API Priority and Fairness ran one delete at a time and answered the others 429 with Retry-After (1 s):
    # the sweep waited, shrank to one write in flight, and still took every Job.
    assert tight["throttled"] >= 1 and tight["throttled_wait_s"] >= 0.9 and tight["limit_min"] == 1, tight
    # The apiserver counted the refused deletes too: more deletes than Jobs.
    deletes = gentle["module-throttled"]["apiserver_rows"].get("DELETE jobs", 0)
    assert deletes > gentle["module-throttled"]["size"], gentle["module-throttled"]["apiserver_rows"]
    figures = dict((t["name"], t) for t in results["scale_targets"])
    # Every figure was measured (none None), and the ones with a target say whether it was met.
    assert all(t["value"] is not None for t in figures.values()), figures
    assert all(t["met"] in (True, False) for t in figures.values() if t["target"] != "(reported)"), figures
    reader = [t for name, t in figures.items() if "reader GET p99" in name or "reader LIST p99" in name]
    assert len(reader) == 2 and all(t["value"] > 0 for t in reader), reader
    honoured = [t for name, t in figures.items() if "429s honoured" in name]
    assert len(honoured) == 1 and honoured[0]["met"] is True, honoured
    per_node = figures["one node at a time, measured per node (s)"]["value"]
    assert per_node >= delay_of(results), per_node   # each node of the serial loop waited at least the delay
    assert "engine at parallelism 25%, 12 nodes (s)" in figures, sorted(figures)
