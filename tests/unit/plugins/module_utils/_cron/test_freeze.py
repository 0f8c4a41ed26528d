# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Freeze dates of a cron broadcast: the option, the instants each covers, next_runs without frozen fire times,
and the runner that starts no pod inside a freeze (and records why)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import datetime
import json

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import freeze, history, options, runner
from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron import manifests, schedule
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import InvalidInput
from ansible_collections.nodeops.kubernetes.plugins.module_utils._report import html

UTC = datetime.timezone.utc


def at(*args):
    return datetime.datetime(*args, tzinfo=UTC)


def test_dates_ranges_and_dicts_become_the_local_days_in_utc_instants():
    got = freeze.parse_freeze(["2026-12-24..2026-12-26", {"start": "2027-01-01", "reason": "new year"},
                               datetime.date(2026, 7, 1)], "Europe/Berlin")
    assert [(f["start"], f["end"], f["reason"]) for f in got] == [
        ("2026-07-01", "2026-07-01", "change freeze"), ("2026-12-24", "2026-12-26", "change freeze"),
        ("2027-01-01", "2027-01-01", "new year")]
    # Berlin is UTC+2 in July and UTC+1 in winter: each day starts at its own local midnight.
    assert (got[0]["from_utc"], got[0]["until_utc"]) == ("2026-06-30T22:00:00Z", "2026-07-01T22:00:00Z")
    assert (got[1]["from_utc"], got[1]["until_utc"]) == ("2026-12-23T23:00:00Z", "2026-12-26T23:00:00Z")
    assert freeze.parse_freeze(["2026-12-24"])[0]["from_utc"] == "2026-12-24T00:00:00Z"   # no time zone: UTC
    assert freeze.parse_freeze(None) == freeze.parse_freeze([]) == []


def test_a_day_whose_clocks_change_is_covered_whole():
    # Europe/Berlin springs forward on 2027-03-28 (23 hours) and falls back on 2027-10-31 (25 hours).
    spring, autumn = freeze.parse_freeze(["2027-03-28", "2027-10-31"], "Europe/Berlin")

    def span(f):
        return freeze._instant(f["until_utc"]) - freeze._instant(f["from_utc"])
    assert span(spring) == datetime.timedelta(hours=23) and span(autumn) == datetime.timedelta(hours=25)


@pytest.mark.parametrize("given, param, accepted", [
    ("2026-12-24", "freeze", "a list of dates"),
    (["2026-13-01"], "freeze[0]", "a date YYYY-MM-DD that exists"),
    (["24.12.2026"], "freeze[0]", "a date YYYY-MM-DD, such as 2026-12-24"),
    (["2026-12-26..2026-12-24"], "freeze[0]", "an end on or after its start (2026-12-26)"),
    (["2026-12-24..2026-12-25..2026-12-26"], "freeze[0]", "a range YYYY-MM-DD..YYYY-MM-DD"),
    (["2026-12-24", {"start": "2026-12-24", "until": "2026-12-25"}], "freeze[1]", "not until"),
    ([{"end": "2026-12-25"}], "freeze[0].start", "a date YYYY-MM-DD"),
    ([{"start": "2026-12-24", "reason": "x" * 201}], "freeze[0].reason", "at most 200 characters"),
    ([7], "freeze[0]", "a list of dates"),
    (["2026-12-24"] * 101, "freeze", "at most 100 entries"),
    (["9999-12-31"], "freeze[0]", "a date in the years 1970 to 9998"),
    (["0226-12-24"], "freeze[0]", "a date in the years 1970 to 9998"),   # a typo, not a freeze nobody sees
    ([{"start": "2026-12-24", "end": "0226-12-25"}], "freeze[0].end", "a date in the years 1970 to 9998"),
])
def test_a_bad_freeze_names_the_entry_the_value_and_what_is_accepted(given, param, accepted):
    with pytest.raises(InvalidInput) as info:
        freeze.parse_freeze(given, "UTC")
    assert info.value.param == param and accepted in info.value.msg, info.value.msg


def test_frozen_at_covers_from_the_first_midnight_to_the_last_excluded():
    f = freeze.parse_freeze([{"start": "2026-12-24", "end": "2026-12-26", "reason": "holidays"}], "Europe/Berlin")
    assert freeze.frozen_at(f, at(2026, 12, 23, 22, 59, 59)) is None
    assert freeze.frozen_at(f, at(2026, 12, 23, 23, 0, 0))["reason"] == "holidays"
    assert freeze.frozen_at(f, at(2026, 12, 26, 22, 59, 59)) is not None
    assert freeze.frozen_at(f, at(2026, 12, 26, 23, 0, 0)) is None
    assert freeze.frozen_at([], at(2026, 12, 25)) is None
    assert freeze.describe(f[0]) == "holidays (2026-12-24..2026-12-26, Europe/Berlin)"


def test_next_runs_leave_frozen_fire_times_out_and_say_which():
    f = freeze.parse_freeze(["2026-12-24..2026-12-26", {"start": "2027-01-01", "reason": "new year"}], "Europe/Berlin")
    runs, hidden = schedule.preview("30 2 * * *", "Europe/Berlin", at(2026, 12, 22, 12), 4, f)
    assert [r["local"][:10] for r in runs] == ["2026-12-23", "2026-12-27", "2026-12-28", "2026-12-29"]
    assert hidden == [{"local": "2026-12-24T02:30:00+01:00", "utc": "2026-12-24T01:30:00+00:00", "hidden": 3,
                       "freeze": "change freeze (2026-12-24..2026-12-26, Europe/Berlin)"}]
    assert schedule.next_runs("30 2 * * *", "Europe/Berlin", at(2026, 12, 22, 12), 4, f) == runs
    # Without the freeze, the same schedule fires on the frozen days.
    assert [r["local"][:10] for r in schedule.next_runs("30 2 * * *", "Europe/Berlin", at(2026, 12, 22, 12), 2)] == [
        "2026-12-23", "2026-12-24"]


def test_two_freezes_back_to_back_and_a_fire_time_right_at_the_thaw():
    f = freeze.parse_freeze(["2026-12-24", {"start": "2026-12-25", "reason": "second"}], "UTC")
    runs, hidden = schedule.preview("0 0 * * *", "UTC", at(2026, 12, 23, 12), 2, f)
    # Midnight of the 26th is the first instant after both: it fires then, not a day later.
    assert [r["utc"] for r in runs] == ["2026-12-26T00:00:00+00:00", "2026-12-27T00:00:00+00:00"]
    assert [(h["freeze"][:6], h["hidden"]) for h in hidden] == [("change", 1), ("second", 1)]


def test_a_schedule_of_every_minute_jumps_over_a_long_freeze():
    f = freeze.parse_freeze(["2026-12-01..2026-12-31"], "UTC")
    runs, hidden = schedule.preview("* * * * *", "UTC", at(2026, 11, 30, 23, 58), 3, f)
    assert [r["utc"] for r in runs] == ["2026-11-30T23:59:00+00:00", "2027-01-01T00:00:00+00:00",
                                        "2027-01-01T00:01:00+00:00"]
    assert hidden[0]["hidden"] == schedule.MAX_HIDDEN_COUNTED   # counted up to the cap, not walked for a month


CRON = {"name": "nightly", "schedule": "30 2 * * *", "time_zone": "Europe/Berlin", "concurrency_policy": "Forbid",
        "starting_deadline_seconds": 120, "successful_jobs_history_limit": 3, "failed_jobs_history_limit": 1,
        "history_limit": 10, "suspend": False, "runner_image": "python:3.13-slim"}


def opts():
    params = dict((k, copy.deepcopy(v.get("default"))) for k, v in options.BROADCAST_OPTIONS.items())
    params.update(name="nightly", namespace="ops", preset="image_prune",
                  image_prune={"include": [], "exclude": [], "dry_run": False})
    return options.validate(params)


def test_the_freeze_goes_to_the_runner_and_on_the_cronjob_and_nothing_changes_without_one():
    f = freeze.parse_freeze(["2026-12-24"], "Europe/Berlin")
    objs = manifests.build_objects(dict(CRON, freeze=f), opts(), sources={"e.py": "# c"})
    cron_job, config_map = objs[-1], objs[-2]
    assert json.loads(config_map["data"]["runner.json"])["freeze"] == f
    assert freeze.freeze_of(cron_job) == f
    plain = manifests.build_objects(dict(CRON, freeze=[]), opts(), sources={"e.py": "# c"})
    same = manifests.build_objects(CRON, opts(), sources={"e.py": "# c"})
    # A cron broadcast without freezes keeps its runner's digest and has no annotation.
    assert plain == same and "annotations" not in plain[-1]["metadata"]
    assert "freeze" not in plain[-2]["data"]["runner.json"]
    assert freeze.freeze_of(plain[-1]) == [] and freeze.freeze_of({"metadata": {"annotations": {
        freeze.ANNOTATION: "not json"}}}) == []


class Recorded(Exception):
    pass


class EngineBuilt(object):
    def __init__(self, *args, **kwargs):
        raise Recorded("an engine was built")


def run_runner(tmp_path, monkeypatch, freezes, frozen=True):
    """runner.main with a runner.json holding ``freezes``; the client and the history write are recorders. An
    engine that is built fails the test when the run is ``frozen``, and raises Recorded otherwise."""
    (tmp_path / "runner.json").write_text(json.dumps({
        "cron": "nightly", "options": opts(), "history": {"configmap": "nodeops-nightly-history", "keep": 5},
        "freeze": freezes}))
    written = []

    class NoEngine(object):
        def __init__(self, *args, **kwargs):
            raise AssertionError("a run inside a freeze built an engine")

    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setattr(runner, "Engine", NoEngine if frozen else EngineBuilt)
    monkeypatch.setattr(runner, "RestClient", lambda config: object())
    monkeypatch.setattr(history, "record_history", lambda client, ns, cm, entry, keep, labels: written.append(entry))
    code = runner.main({"NODEOPS_RUNNER_INPUT": str(tmp_path / "runner.json"), "NODEOPS_RUN_ID": "r1",
                        "NODEOPS_JOB_NAME": "nightly-manual-1", "NODEOPS_TERMINATION_LOG": str(tmp_path / "term")})
    return code, written


def test_a_run_due_inside_a_freeze_starts_nothing_and_records_the_skip(tmp_path, monkeypatch, capsys):
    today = datetime.datetime.now(UTC).date()
    f = freeze.parse_freeze([{"start": (today - datetime.timedelta(days=1)).isoformat(),
                              "end": (today + datetime.timedelta(days=1)).isoformat(), "reason": "release week"}])
    code, written = run_runner(tmp_path, monkeypatch, f)
    assert code == 0 and len(written) == 1
    entry = written[0]
    assert entry["state"] == "skipped" and entry["nodes"] == [] and entry["summary"] is None
    assert entry["reason"].startswith("inside the freeze release week (")
    out = capsys.readouterr().out
    assert "skipped (job nightly-manual-1): inside the freeze release week" in out and "no pod started" in out
    assert json.loads(out.strip().splitlines()[-1])["state"] == "skipped"


def test_a_freeze_that_does_not_cover_now_lets_the_run_go(tmp_path, monkeypatch):
    past = freeze.parse_freeze(["2001-01-01"])
    with pytest.raises(Recorded):   # the engine is built: the run goes ahead
        run_runner(tmp_path, monkeypatch, past, frozen=False)


def test_the_report_shows_a_skipped_run_and_its_reason():
    runs = [history.history_entry("r2", "j2", "2026-12-24T01:30:00Z", "2026-12-24T01:30:01Z", "skipped", None,
                                  reason="inside the freeze holidays (2026-12-24, UTC)"),
            history.history_entry("r1", "j1", "2026-12-23T01:30:00Z", "2026-12-23T01:31:00Z", "succeeded",
                                  {"summary": {"succeeded": 1}, "nodes": [{"node": "n1", "outcome": "succeeded"}]})]
    page = html._broadcast("", {"name": "nightly", "schedule": "30 2 * * *", "history": runs})
    assert '<p class="skipped-run" data-run="r2">' in page and "inside the freeze holidays (2026-12-24, UTC)" in page
    assert page.count('class="skipped-run"') == 1 and 'skipped-run" data-run="r1"' not in page
    assert 'data-state="skipped"' in page and "reason" not in runs[1]
    # The cards are the newest run that ran: its node succeeded (a skipped run's would all be 0).
    assert '<div class="card">last run<b>skipped</b></div>' in page
    assert '<div class="card">last ran<b>2026-12-23T01:30:00Z</b></div>' in page
    assert '<div class="card">succeeded<b>1</b></div>' in page


def test_consecutive_skips_of_one_freeze_are_one_history_entry_and_push_no_run_out():
    def skip(i, reason="inside the freeze holidays (2026-12-24..2027-01-02, UTC)"):
        return history.history_entry("s%d" % i, "j%d" % i, "2026-12-%02dT01:30:00Z" % (20 + i), "x", "skipped", None,
                                     reason=reason)
    ran = history.history_entry("r0", "j0", "2026-12-19T01:30:00Z", "x", "succeeded",
                                {"summary": {"succeeded": 1}, "nodes": [{"node": "n1", "outcome": "succeeded"}]})
    runs = [ran]
    for i in range(1, 8):
        runs = history.cap_history(history.with_run(runs, skip(i)), 3)
    assert [r["run_id"] for r in runs] == ["s7", "r0"]
    assert (runs[0]["skipped_runs"], runs[0]["first_skipped_at"]) == (7, "2026-12-21T01:30:00Z")
    # Another freeze's skip, or a run that ran, is an entry of its own.
    runs = history.with_run(runs, skip(8, reason="inside the freeze other (2027-01-05, UTC)"))
    assert [r["run_id"] for r in runs] == ["s8", "s7", "r0"] and "skipped_runs" not in runs[0]
    assert [r["run_id"] for r in history.with_run(runs, ran)][:2] == ["r0", "s8"]


def test_cron_broadcast_refuses_a_freeze_without_a_time_zone_before_anything_is_written():
    from ansible_collections.nodeops.kubernetes.plugins.modules import cron_broadcast

    spec = cron_broadcast.build_argument_spec()
    params = dict((k, copy.deepcopy(v.get("default"))) for k, v in spec.items())
    params.update(name="nightly", namespace="ops", schedule="30 2 * * *", preset="image_prune",
                  image_prune={"include": [], "exclude": [], "dry_run": False}, freeze=["2026-12-24"])
    with pytest.raises(InvalidInput) as info:
        cron_broadcast.validate(params)
    assert info.value.param == "time_zone" and "when freeze is set" in info.value.msg
    cron, _opts = cron_broadcast.validate(dict(params, time_zone="Europe/Berlin"))
    assert cron["freeze"][0]["from_utc"] == "2026-12-23T23:00:00Z"
    cron, _opts = cron_broadcast.validate(dict(params, freeze=[]))   # no freeze: no time zone needed
    assert cron["freeze"] == []
