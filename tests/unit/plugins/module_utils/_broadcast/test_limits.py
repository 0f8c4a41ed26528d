# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The maintenance window and the failure budget, decided with an injected clock."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import limits
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import InvalidInput

from test_run_steps import FakeClock

UTC = datetime.timezone.utc


def at(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC)


@pytest.mark.parametrize("window, started, closes", [
    # 02:30 in Berlin is 01:30 UTC in November (CET): the window closes at 05:00 CET, 04:00 UTC.
    ({"end": "05:00", "time_zone": "Europe/Berlin"}, "2026-11-24T01:30", "2026-11-24T04:00"),
    # Started after 05:00 local: the next 05:00, tomorrow.
    ({"end": "05:00", "time_zone": "Europe/Berlin"}, "2026-11-24T05:30", "2026-11-25T04:00"),
    # Started at 23:00 UTC, ends 02:00 UTC: over midnight.
    ({"end": "02:00", "time_zone": "UTC"}, "2026-11-23T23:00", "2026-11-24T02:00"),
    # Summer time: 05:00 CEST is 03:00 UTC.
    ({"end": "05:00", "time_zone": "Europe/Berlin"}, "2026-07-01T00:00", "2026-07-01T03:00"),
    ({"duration_s": 5400}, "2026-11-24T01:30", "2026-11-24T03:00"),
])
def test_the_window_closes_at_the_next_end_in_its_time_zone(window, started, closes):
    assert limits.window_closes_at(window, at(started)) == at(closes)
    assert limits.window_closes_at(None, at(started)) is None


def test_no_pod_starts_once_the_window_has_closed():
    clock = FakeClock()
    closes = limits.window_closes_at(limits.parse_window({"duration": "90s"}), clock.now())
    clock.advance(89)
    assert limits.stop_starting(clock.now(), closes, 0, None) is None
    clock.advance(1)
    reason, message = limits.stop_starting(clock.now(), closes, 0, None)
    assert reason == "WindowClosed" and message == "not started: maintenance window closed at 2026-11-23T02:31:30Z"


@pytest.mark.parametrize("max_failures, eligible, fail_fast, budget", [
    (None, 100, False, None), (("count", 3), 100, False, 3), (("percent", 10), 95, False, 9),
    (("percent", 0), 10, False, 0), (None, 10, True, 0),
])
def test_the_failure_budget(max_failures, eligible, fail_fast, budget):
    assert limits.failure_budget(max_failures, eligible, fail_fast) == budget


def test_more_failures_than_the_budget_stop_new_pods():
    assert limits.stop_starting(at("2026-11-24T01:00"), None, 3, 3) is None
    assert limits.stop_starting(at("2026-11-24T01:00"), None, 4, 3) == (
        "FailureBudgetExhausted", "not started: failure budget of 3 exhausted (4 nodes failed)")
    assert limits.stop_starting(at("2026-11-24T01:00"), None, 0, 0) is None   # fail_fast, no failure yet


@pytest.mark.parametrize("window, parsed", [
    ({"end": "05:00", "time_zone": "Europe/Berlin"}, {"end": "05:00", "time_zone": "Europe/Berlin"}),
    ({"end": "23:59"}, {"end": "23:59", "time_zone": "UTC"}),
    ({"duration": "1h30m"}, {"duration_s": 5400}),
    ({"duration": "45"}, {"duration_s": 45}),
    (None, None),
])
def test_window_options(window, parsed):
    assert limits.parse_window(window) == parsed


@pytest.mark.parametrize("window, param", [
    ({"end": "5am"}, "window.end"), ({"end": "24:00"}, "window.end"),
    ({"end": "05:00", "time_zone": "Mars/Olympus"}, "window.time_zone"),
    ({"duration": "soon"}, "window.duration"), ({"duration": "0"}, "window.duration"),
    ({"end": "05:00", "duration": "2h"}, "window"),
])
def test_bad_windows_name_the_option(window, param):
    with pytest.raises(InvalidInput) as info:
        limits.parse_window(window)
    assert info.value.param == param


@pytest.mark.parametrize("window, given", [
    ({}, {}),
    ({"end": None, "duration": None, "time_zone": None}, {}),   # window: {} as AnsibleModule hands it over
    ({"end": None, "duration": None, "time_zone": "Europe/Berlin"}, {"time_zone": "Europe/Berlin"}),
])
def test_a_window_that_says_neither_when_it_ends_nor_how_long_it_lasts_is_refused(window, given):
    """Not a run as if no window had been given: the user meant one."""
    with pytest.raises(InvalidInput) as info:
        limits.parse_window(window)
    assert info.value.param == "window" and info.value.value == given
    assert info.value.msg.startswith("window=%r is invalid: it gives neither end nor duration; expected end " % given)
    assert "duration (such as 90m" in info.value.msg


@pytest.mark.parametrize("value, parsed", [(None, None), (0, ("count", 0)), ("5", ("count", 5)), ("10%", ("percent", 10))])
def test_max_failures_options(value, parsed):
    assert limits.parse_max_failures(value) == parsed


@pytest.mark.parametrize("param, least, value, parsed", [
    ("parallelism", 1, 3, ("count", 3)), ("parallelism", 1, " 7 ", ("count", 7)), ("parallelism", 1, "100%", ("percent", 100)),
    ("parallelism", 1, "5 %", ("percent", 5)), ("max_failures", 0, "0%", ("percent", 0)), ("max_failures", 0, 0, ("count", 0)),
    ("parallelism", 1, 0, None), ("parallelism", 1, "0%", None), ("parallelism", 1, "101%", None),
    ("parallelism", 1, 2.5, None), ("parallelism", 1, "2.5", None), ("parallelism", 1, "-3", None),
    ("parallelism", 1, False, None), ("parallelism", 1, None, None), ("parallelism", 1, "%", None),
])
def test_one_count_or_percent_parser_for_parallelism_and_the_budget(param, least, value, parsed):
    if parsed is not None:
        assert limits.parse_count_or_percent(param, value, least, "x") == parsed
        return
    with pytest.raises(InvalidInput) as info:
        limits.parse_count_or_percent(param, value, least, "what is accepted")
    assert (info.value.param, info.value.accepted) == (param, "what is accepted")


@pytest.mark.parametrize("value", [-1, "150%", "lots", True, 2.5])
def test_bad_max_failures(value):
    with pytest.raises(InvalidInput) as info:
        limits.parse_max_failures(value)
    assert info.value.param == "max_failures"


def test_a_zone_the_database_lacks_comes_from_the_file_cron_broadcast_ships(tmp_path):
    """The runner's image may have no time zone database: the zone's TZif file, shipped beside its input,
    gives the same closing time as the database does."""
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron import manifests

    tzif = manifests.zone_file("Europe/Berlin")
    assert tzif and tzif[:4] == b"TZif"
    started = datetime.datetime(2026, 7, 1, 1, 0, tzinfo=datetime.timezone.utc)
    expected = limits.window_closes_at({"end": "05:00", "time_zone": "Europe/Berlin"}, started)
    assert expected == datetime.datetime(2026, 7, 1, 3, 0, tzinfo=datetime.timezone.utc)   # CEST, UTC+2
    unknown = "Nodeops/Nowhere"
    with pytest.raises(InvalidInput):
        limits.window_closes_at({"end": "05:00", "time_zone": unknown}, started)
    (tmp_path / "zone.tzif").write_bytes(tzif)
    limits.use_zone_file(unknown, str(tmp_path / "zone.tzif"))
    try:
        assert limits.window_closes_at({"end": "05:00", "time_zone": unknown}, started) == expected
        # The shipped rules win over the database's: a file with other rules gives another time.
        (tmp_path / "tokyo.tzif").write_bytes(manifests.zone_file("Asia/Tokyo"))
        limits.use_zone_file(unknown, str(tmp_path / "tokyo.tzif"))
        assert limits.window_closes_at({"end": "05:00", "time_zone": unknown}, started) == datetime.datetime(
            2026, 7, 1, 20, 0, tzinfo=datetime.timezone.utc)
    finally:
        limits._ZONE_FILES.pop(unknown)
