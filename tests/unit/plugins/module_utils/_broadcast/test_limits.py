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
    ({"end": None, "duration": None, "time_zone": None}, None),
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


@pytest.mark.parametrize("value, parsed", [(None, None), (0, ("count", 0)), ("5", ("count", 5)), ("10%", ("percent", 10))])
def test_max_failures_options(value, parsed):
    assert limits.parse_max_failures(value) == parsed


@pytest.mark.parametrize("value", [-1, "150%", "lots", True])
def test_bad_max_failures(value):
    with pytest.raises(InvalidInput) as info:
        limits.parse_max_failures(value)
    assert info.value.param == "max_failures"
