# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The benchmark's arithmetic: metric deltas, what is charged to the tool, and the target ratios."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import bench  # noqa: E402  pylint: disable=import-error
import harness  # noqa: E402  pylint: disable=import-error

METRICS = """# HELP apiserver_request_total [STABLE] Counter of apiserver requests
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 100
apiserver_request_total{code="201",component="apiserver",dry_run="All",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 1
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="binding",verb="POST",version="v1"} 100
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="",scope="",subresource="",verb="GET",version=""} 7
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 50
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="DELETE",version="v1"} 101
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="log",verb="CONNECT",version="v1"} 100
"""


class FakeGet:
    def __init__(self, text):
        self.text = text

    def get(self, path, timeout=None):
        assert path == "/metrics"
        return self.text


def test_scrape_sums_label_variants_and_delta_drops_the_scrape_itself():
    after = harness.scrape(FakeGet(METRICS))
    assert after[("POST", "pods", "")] == 101          # dry run and real creates together
    rows = harness.delta({("POST", "pods", ""): 1, ("GET", "", ""): 3}, after)
    assert rows == {"CONNECT pods/log": 100, "DELETE pods": 101, "POST pods": 100, "POST pods/binding": 100,
                    "PUT leases": 50}


def test_tool_requests_leave_out_the_clusters_own_reaction():
    rows = harness.delta({}, harness.scrape(FakeGet(METRICS)))
    # Creates (dry run included) and log reads; bindings, leases and the mixed "DELETE pods" row are not the tool's.
    assert harness.tool_requests(rows) == 201


def run(kind, contender, size, wall, rss=30.0, per=2.0, **extra):
    rec = {"contender": contender, "size": size, "wall_s": wall, "peak_rss_mib": rss, "requests_per_unit": per,
           "tool_requests": int(per * size), "complete": True}
    rec.update(extra)
    return rec


def synthetic():
    p = bench.PROFILES["full"]
    fanout = [run("fanout", "bare", 1000, w) for w in (10.0, 12.0, 11.0)]
    fanout += [run("fanout", "engine", 1000, w) for w in (13.0, 12.0, 30.0)]   # median 13, not mean
    fanout += [run("fanout", "engine", 5000, 60.0, rss=140.0), run("fanout", "engine", 100, 2.0, per=2.1),
               run("fanout", "module", 1000, 15.0), run("fanout", "module", 5000, 90.0, module_process_peak_rss_mib=160.0),
               run("fanout", "serial", 50, 100.0), run("fanout", "engine", 50, 1.0, per=2.4),
               run("fanout", "module", 100, 3.0, per=3.5)]
    sweep = [run("sweep", "pipeline", 5000, 600.0), run("sweep", "ours", 5000, 10.0),
             run("sweep", "ours", 1000, 2.0, rss=30.0), run("sweep", "ours", 10000, 20.0, rss=33.0)]
    return {"fanout": fanout, "sweep": sweep}, p


def test_targets_are_ratios_of_medians_in_the_same_run():
    results, p = synthetic()
    got = dict((t["name"], t) for t in bench.targets(results, p))
    assert got["engine / bare loop at 1000 nodes"]["value"] == pytest.approx(13.0 / 11.0, abs=1e-3)
    assert got["engine / bare loop at 1000 nodes"]["met"] is True
    assert got["module / bare loop at 1000 nodes"]["met"] is False         # 15 / 11 > 1.3
    assert got["one-node-at-a-time / engine at 50 nodes"]["value"] == 100.0
    assert got["engine t(5000) / t(1000)"]["value"] == pytest.approx(60.0 / 13.0, abs=1e-3)
    assert got["module t(5000) / t(1000)"]["value"] == 6.0 and got["module t(5000) / t(1000)"]["met"] is False
    # Worst per-node request count over the fan-out sizes (the 50-node comparison run is not one of them).
    assert got["engine/module API requests per node (worst run)"]["value"] == 3.5
    assert got["engine peak RSS at 5000 nodes (MiB)"]["met"] is True
    assert got["module process peak RSS at 5000 nodes (MiB)"]["met"] is False
    assert got["sweep: pipeline / ours at 5000 Jobs"]["value"] == 60.0
    assert got["sweep peak RSS change 1000 -> 10000 Jobs"]["value"] == pytest.approx(0.1)


def test_missing_measurements_are_reported_not_invented():
    results, p = synthetic()
    results["sweep"] = [r for r in results["sweep"] if r["contender"] != "pipeline"]
    got = dict((t["name"], t) for t in bench.targets(results, p))
    assert got["sweep: pipeline / ours at 5000 Jobs"] == dict(got["sweep: pipeline / ours at 5000 Jobs"],
                                                              value=None, met=None)


def test_table_marks_incomplete_runs_and_missed_targets():
    results, p = synthetic()
    results["fanout"][0]["complete"] = False
    results["targets"] = bench.targets(results, p)
    results.update(profile="full", finished_at="2026-11-23T00:00:00Z", duration_s=1.0,
                   machine={"cores": 2, "memory_gib": 24.0}, kubernetes={"gitVersion": "v1.37.2", "kwok": "v0.8.0"})
    text = bench.table(results)
    assert "| fanout | bare | 1000 | 10.00 (incomplete) |" in text
    assert "| module / bare loop at 1000 nodes | 1.364 | <= 1.3 | **no** |" in text


def test_render_writes_table_json_and_plot_from_an_earlier_run(tmp_path):
    import json

    results, _p = synthetic()
    for r in results["fanout"] + results["sweep"]:
        r.update(apiserver_rows={}, output={"client_requests": r["tool_requests"]} if r["contender"] != "module" else {})
    results.update(profile="full", finished_at="2026-11-23T00:00:00Z", duration_s=1.0,
                   machine={"cores": 2, "memory_gib": 24.0}, kubernetes={"gitVersion": "v1.37.2", "kwok": "v0.8.0"})
    src = tmp_path / "in.json"
    src.write_text(json.dumps(results))
    assert bench.main(["--render", str(src), "--out", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "latest.json").read_text())
    assert out["fanout"][0]["requests_counted_by"] == "client"
    assert {r["requests_counted_by"] for r in out["fanout"] if r["contender"] == "module"} == {"apiserver"}
    assert (tmp_path / "latest.png").read_bytes()[:4] == b"\x89PNG"
    assert "| sweep: pipeline / ours at 5000 Jobs | 60.0 | >= 30.0 | yes |" in (tmp_path / "latest.md").read_text()


def _run(kind, contender, size, wall, complete=True, **extra):
    rec = {"contender": contender, "size": size, "wall_s": wall, "complete": complete, "requests_per_unit": 1.01,
           "peak_rss_mib": 60.0}
    rec.update(extra)
    return rec


def test_scale_figures_take_get_and_list_apart_count_only_complete_runs_and_miss_what_was_not_measured():
    window = lambda get, lst: {"samples": 100, "get": {"p50_ms": 1, "p99_ms": get},  # noqa: E731
                               "list": {"p50_ms": 1, "p99_ms": lst}, "all": {"p50_ms": 1, "p99_ms": lst}}
    gentle = _run("gentle", "module", 1000, 10.0, output={"total": 1000},
                  reader={"idle": window(5.0, 80.0), "during": window(15.0, 96.0)})
    results = {"gentle": [gentle], "sweep": [], "calibrated": [
        _run("calibrated", "bare", 100, 10.0), _run("calibrated", "engine", 100, 12.0),
        _run("calibrated", "engine", 100, 99.0, complete=False),   # an incomplete run is not in the median
        _run("calibrated", "module", 100, 14.0)],
        "calibration": {"annotations": {}}, "fanout": [_run("fanout", "bare", 10000, 100.0)]}
    figures = dict((t["name"], t) for t in bench.scale_targets(results, dict(bench.PROFILES["scale"])))
    get, lst = figures["sweep of 1000 Jobs: reader GET p99 during / idle"], \
        figures["sweep of 1000 Jobs: reader LIST p99 during / idle"]
    assert (get["value"], get["met"]) == (3.0, False) and (lst["value"], lst["met"]) == (1.2, True)
    assert figures["pods that take real time: engine / bare loop at 100 nodes"]["value"] == 1.2
    assert figures["sweep of 1000 Jobs: Jobs per second"]["met"] is None   # reported, no target
    # The 10,000-node figures the issue requires: the engine never ran there, so they are missed, not "n/a".
    missed = figures["engine / bare loop at 10000 nodes"]
    assert missed["value"] is None and missed["met"] is False and missed["how"].startswith("not measured")
