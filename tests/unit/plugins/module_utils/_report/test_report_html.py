# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HTML report, pure: its rows, cells, bars and chart from a broadcast_info result."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
from html.parser import HTMLParser

import pytest

from ansible_collections.nodeops.kubernetes.plugins.filter.report_html import report_html
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import history
from ansible_collections.nodeops.kubernetes.plugins.module_utils._report import html


def node(name, outcome, freed=None, reason=None):
    rec = {"node": name, "outcome": outcome, "reason": reason}
    if freed is not None:
        rec["result"] = {"bytes_freed": freed, "images_removed": ["x:1"]}
    return rec


INFO = {"cron_broadcasts": [{"name": "nightly", "schedule": "0 3 * * *", "history": [
    {"run_id": "r2", "state": "failed", "started_at": "2026-11-24T03:00:00Z", "summary": {"succeeded": 1, "failed": 1},
     "removed": {"bytes_freed": 3072}, "nodes": [
         node("a", "succeeded", 3072), node("b", "failed", reason="Error"), node("cp", "skipped", reason="control plane"),
         node("<x>", "skipped", reason="untolerated taint a=b:NoSchedule")]},
    {"run_id": "r1", "state": "succeeded", "started_at": "2026-11-23T03:00:00Z", "summary": {"succeeded": 3},
     "nodes": [node("a", "succeeded", 1024), node("b", "succeeded", 0), node("c", "succeeded", 5)]}]}]}


class Elements(HTMLParser):
    """Every start tag with its attributes, and whether any would fetch something."""

    def __init__(self):
        HTMLParser.__init__(self)
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def find(self, tag, cls=None):
        return [a for t, a in self.tags if t == tag and (cls is None or cls in (a.get("class") or "").split())]


def parse(text):
    parser = Elements()
    parser.feed(text)
    return parser


def test_one_row_per_node_any_run_did_not_skip_and_one_coloured_cell_per_run():
    page = parse(report_html(INFO, generated_at="now"))
    rows = page.find("tr", "node-row")
    assert [r["data-node"] for r in rows] == ["a", "b", "c"]
    cells = page.find("td", "cell")
    assert [(c["data-run"], c["class"]) for c in cells] == [
        ("r2", "cell outcome-succeeded"), ("r1", "cell outcome-succeeded"),
        ("r2", "cell outcome-failed"), ("r1", "cell outcome-succeeded"),
        ("r2", "cell outcome-none"), ("r1", "cell outcome-succeeded")]


def test_bars_chart_and_skipped_nodes():
    page = parse(report_html(INFO))
    bars = page.find("div", "bar-row")
    assert [(b["data-node"], b["data-bytes"]) for b in bars] == [("a", "3072"), ("b", "0")]
    fills = page.find("div", "fill")
    assert fills[0]["style"] == "width:100.0%" and fills[1]["style"] == "width:0.0%"
    # Oldest first; a run without ``removed`` totals is summed from its nodes.
    assert [(r["data-run"], r["data-bytes"]) for r in page.find("rect", "run-bar")] == [("r1", "1029"), ("r2", "3072")]
    assert [(r["data-reason"], r["data-count"]) for r in page.find("tr", "skipped-row")] == [
        ("control plane", "1"), ("untolerated taint a=b:NoSchedule", "1")]
    assert [s["data-node"] for s in page.find("span", "skipped-node")] == ["cp", "<x>"]


def test_skipped_nodes_are_grouped_by_reason_and_their_names_bounded():
    many = {"run_id": "r", "nodes": [node("n%04d" % i, "skipped", reason="not selected") for i in range(120)]
            + [node("cp", "skipped", reason="control plane")]}
    assert [(reason, count, len(nodes)) for reason, count, nodes in html.skipped_by_reason(many)] == [
        ("not selected", 120, 120), ("control plane", 1, 1)]
    page = parse(report_html({"cron_broadcasts": [{"name": "x", "history": [many]}]}))
    assert len(page.find("span", "skipped-node")) == html.SKIPPED_NAMES_SHOWN + 1


def test_skipped_nodes_folded_by_the_history_cap_are_shown_as_counts_per_reason():
    """A capped history keeps a run's skipped nodes only as ``skipped_by_reason``: the report counts them, not
    "None"."""
    ran = [{"node": "w%d" % i, "outcome": "succeeded", "reason": "Completed", "log": "ok"} for i in range(3)]
    skipped = ([{"node": "n%04d" % i, "outcome": "skipped", "reason": "not selected"} for i in range(400)]
               + [{"node": "cp", "outcome": "skipped", "reason": "control plane"}])
    newest = history.history_entry("r2", "job", "a", "b", "succeeded", {"summary": {"succeeded": 3}, "nodes": ran + skipped})
    older = history.history_entry("r1", "job", "a", "b", "succeeded", {"summary": {"succeeded": 3}, "nodes": ran + skipped[:50]})
    runs = history.cap_history([newest, older], keep=2, max_bytes=len(json.dumps([newest, older])) // 4)
    assert "skipped_by_reason" in runs[0] and not [r for r in runs[0]["nodes"] if r["outcome"] == "skipped"]
    assert html.skipped_by_reason(runs[0]) == [("not selected", 400, []), ("control plane", 1, [])]
    text = report_html({"cron_broadcasts": [{"name": "x", "history": runs}]})
    page = parse(text)
    assert [(r["data-reason"], r["data-count"]) for r in page.find("tr", "skipped-row")] == [
        ("not selected", "400"), ("control plane", "1")]
    assert [s["data-count"] for s in page.find("span", "skipped-unnamed")] == ["400", "1"]
    assert not page.find("span", "skipped-node") and "<p>None.</p>" not in text
    # Names still there and counts folded for the same reason add up.
    both = {"nodes": [node("cp2", "skipped", reason="control plane")], "skipped_by_reason": {"control plane": 2}}
    assert html.skipped_by_reason(both) == [("control plane", 3, ["cp2"])]


def test_the_page_is_self_contained_and_escapes_what_it_shows():
    text = report_html(INFO)
    page = parse(text)
    assert not page.find("script") and not page.find("link") and not page.find("img")
    assert not re.search(r"(src|href)\s*=|url\(|@import", text)
    assert "<x>" not in text.replace('data-node="&lt;x&gt;"', "") and "&lt;x&gt;" in text


def test_many_clusters_one_page_and_a_cluster_that_failed():
    text = report_html([{"name": "eu", "info": INFO}, {"name": "us", "error": "connection refused"}])
    page = parse(text)
    assert [s["data-cluster"] for s in page.find("section", "broadcast")] == ["eu", "us"]
    assert "connection refused" in text


def test_bad_input_is_refused_with_what_is_accepted():
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match="broadcast_info result"):
        report_html(["x"])


@pytest.mark.parametrize("n, text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (232000000, "221.3 MiB"),
                                     (None, "-")])
def test_human_bytes(n, text):
    assert html.human_bytes(n) == text


def test_a_dry_run_shows_what_it_would_free_never_as_freed():
    dry = {"run_id": "d1", "state": "succeeded", "summary": {"succeeded": 1},
           "removed": {"bytes_freed": 0, "would_free_bytes": 2048},
           "nodes": [{"node": "a", "outcome": "succeeded",
                      "result": {"dry_run": True, "bytes_freed": 2048, "images_removed": ["x:1"]}}]}
    text = report_html({"cron_broadcasts": [{"name": "n", "history": [dry]}]})
    page = parse(text)
    [row] = page.find("div", "bar-row")
    assert (row["data-bytes"], row["data-dry-run"]) == ("2048", "true")
    assert page.find("div", "dry-run") and "would free 2.0 KiB (dry run)" in text
    [column] = page.find("rect", "run-bar")
    assert (column["data-bytes"], column["data-would-free"]) == ("0", "2048") and page.find("rect", "run-bar-dry")
    assert html.freed_label(1024, 0) == "1.0 KiB" and html.freed_label(1024, 2048).startswith("1.0 KiB, would free")


def test_quotes_and_markup_in_reasons_and_titles_are_escaped():
    run = {"run_id": 'r"1', "nodes": [
        {"node": "a", "outcome": "failed", "reason": 'Error "x" <b>', "message": "it's <bad> & \"worse\""},
        {"node": "s", "outcome": "skipped", "reason": 'taint a="b":NoSchedule'}]}
    text = report_html({"cron_broadcasts": [{"name": "n", "history": [run]}]})
    page = parse(text)
    [cell] = page.find("td", "cell")
    assert cell["data-run"] == 'r"1' and cell["title"] == 'Error "x" <b>: it\'s <bad> & "worse"'
    assert page.find("tr", "skipped-row")[0]["data-reason"] == 'taint a="b":NoSchedule'
    assert "<bad>" not in text and '"x" <b>' not in text and "&lt;bad&gt;" in text


def test_a_scheduled_sweep_has_one_row_per_sweep_with_what_it_took_and_spared():
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._dangling import sweep_runner

    took = {"action": "delete", "total": 12, "per_namespace": {"ci": 12}, "names": [], "names_truncated": True,
            "spared": {"owned": 3, "<b>odd</b>": 1}, "errors": [], "stats": {"examined": 16}}
    runs = [sweep_runner.history_entry("r2", "j2", "2026-12-05T03:00:00Z", "t", "interrupted", dict(took, total=4)),
            sweep_runner.history_entry("r1", "j1", "2026-12-04T03:00:00Z", "t", "succeeded", took)]
    page = html.render([{"name": "prod", "info": {"cron_broadcasts": [], "sweeps": [
        {"name": "ttl", "schedule": "0 3 * * *", "time_zone": "Europe/Berlin", "history": runs}]}}])
    rows = re.findall(r'<tr class="sweep-row" data-run="([^"]+)" data-state="([^"]+)" data-taken="(\d+)">', page)
    assert rows == [("r2", "interrupted", "4"), ("r1", "succeeded", "12")]
    assert 'data-sweep="ttl"' in page and "Europe/Berlin" in page and "No cron broadcasts" not in page
    assert "<b>odd</b>" not in page and "&lt;b&gt;odd&lt;/b&gt;: 1" in page and "owned: 3" in page
    empty = html.render([{"name": "prod", "info": {"cron_broadcasts": [], "sweeps": [{"name": "ttl", "history": []}]}}])
    assert "No sweeps recorded yet." in empty
