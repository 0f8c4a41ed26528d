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

    assert results["harness"]["node_creation"] and results["harness"]["job_creation"]
    assert results["machine"]["cores"] >= 1 and results["kubernetes"]["gitVersion"].startswith("v1.")
    assert len(results["targets"]) == 14 and all(isinstance(t["value"], float) for t in results["targets"])
    assert (tmp_path / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| target | value | wanted | met |" in (tmp_path / "latest.md").read_text()
    # Nothing left behind: no bench pods, no bench nodes.
    core = kh.rest_client()
    assert not core.get("/api/v1/namespaces/nodeops-bench/pods")["items"]
    assert not core.get("/api/v1/nodes", {"labelSelector": "bench.nodeops.io/node=true"})["items"]


def rows_total(record, row):
    return record["apiserver_rows"].get(row, 0)
