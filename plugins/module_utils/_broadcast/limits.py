# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""When a run stops starting pods, and when it waits before the next batch: the maintenance window, the
failure budget, the health gate and the batch soak. Pure.

* ``window``: ``{"end": "05:00", "time_zone": "Europe/Berlin"}`` closes at the next 05:00 in that
  zone after the run starts; ``{"duration": "2h"}`` closes that long after it starts.
* ``max_failures``: a number, or a percentage of the eligible nodes. Once more nodes than that
  have failed, no new pod starts. ``failure_policy: fail_fast`` is the budget 0 (and also deletes
  the active pods).
* ``health_gate``: ``{"max_not_ready": 3, "finished_nodes": True}``. No new pod starts once more nodes of the
  cluster than ``max_not_ready`` (a number, or a percentage of the cluster's nodes) are NotReady, or once a
  node whose pod finished in this run (the last batch's, or an earlier one's) went NotReady after it.
* ``batch_soak``: ``"10m"``. After each batch of pods (1, 2, 4, ... up to the parallelism) has finished, the
  run waits this long before the next batch, and the health gate is judged again before it starts.

Pods already running when a run stops starting finish and are reported; the nodes never started
get the outcome ``not_started`` with the reason.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re

from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import InvalidInput

END = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
WINDOW_CLOSED = "WindowClosed"
BUDGET_EXHAUSTED = "FailureBudgetExhausted"
HEALTH_GATE = "HealthGate"
DURATION_ACCEPTED = "a duration such as 90s, 10m, 2h, 1h30m or a number of seconds"


# Time zones read from a file rather than the system's database: the cron runner's, shipped with it.
_ZONE_FILES = {}


def use_zone_file(name, path):
    """Take time zone ``name``'s rules from the TZif file at ``path``, not from this Python's database: the
    rules the controller checked the window against, whatever database the runner's image has (or lacks)."""
    _ZONE_FILES[name] = path


def _zone(name):
    try:
        from zoneinfo import ZoneInfo
        if name in _ZONE_FILES:
            with open(_ZONE_FILES[name], "rb") as f:
                return ZoneInfo.from_file(f, key=name)
        return ZoneInfo(name)
    except Exception:   # noqa: BLE001 -- ZoneInfoNotFoundError, ValueError, no database, an unreadable file
        return None


def parse_window(window):
    """The ``window`` option, checked: None, {"end", "time_zone"} or {"duration_s"}. Raises InvalidInput.

    None is no window; a window given (``window: {}`` too, or only a time_zone) must say when it closes:
    a run that went ahead as if there were none would run past the window its user meant."""
    if window is None:
        return None
    end, duration = window.get("end"), window.get("duration")
    if end is None and duration is None:
        given = dict((k, v) for k, v in window.items() if v is not None)
        raise InvalidInput("window", given, "end (a time of day HH:MM, with an optional time_zone) or duration "
                           "(such as 90m, 2h or 1h30m)", why="it gives neither end nor duration")
    if end is not None and duration is not None:
        raise InvalidInput("window", window, "either end (with time_zone) or duration, not both")
    if duration is not None:
        return {"duration_s": parse_duration("window.duration", duration, least=1)}
    if not isinstance(end, str) or not END.match(end.strip()):
        raise InvalidInput("window.end", end, "a time of day HH:MM, such as 05:00")
    zone = window.get("time_zone") or "UTC"
    if _zone(zone) is None:
        raise InvalidInput("window.time_zone", zone, "an IANA time zone such as Europe/Berlin or UTC")
    return {"end": end.strip(), "time_zone": zone}


def parse_duration(param, value, least=0):
    """Seconds from ``90s``, ``10m``, ``2h``, ``1h30m`` or a whole number of seconds (as a number or text), at
    least ``least``. Raises InvalidInput naming ``param``. Pure."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidInput(param, value, DURATION_ACCEPTED)
    text = str(value).strip()
    match = DURATION.match(text) if not text.isdigit() else None
    if text.isdigit():
        seconds = int(text)
    elif match and any(match.groups()):
        seconds = int(match.group(1) or 0) * 3600 + int(match.group(2) or 0) * 60 + int(match.group(3) or 0)
    else:
        raise InvalidInput(param, value, DURATION_ACCEPTED)
    if seconds < least:
        raise InvalidInput(param, value, DURATION_ACCEPTED, why="it is %d s; at least %d s" % (seconds, least))
    return seconds


def parse_count_or_percent(param, value, least, accepted):
    """("count", n) for a whole number of at least ``least``, or ("percent", p) for "P%" with ``least`` <= P
    <= 100. Whole numbers may come as text, as Ansible passes them. Pure; raises InvalidInput naming ``param``."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidInput(param, value, accepted)
    match = re.match(r"^\s*(\d+)\s*(%?)\s*$", str(value))
    if not match:
        raise InvalidInput(param, value, accepted)
    n = int(match.group(1))
    if n < least or (match.group(2) and n > 100):
        raise InvalidInput(param, value, accepted)
    return ("percent" if match.group(2) else "count", n)


def parse_max_failures(value):
    """None, ("count", n) or ("percent", p). Raises InvalidInput."""
    if value is None:
        return None
    return parse_count_or_percent(
        "max_failures", value, 0,
        "a number of failed nodes of at least 0, or a percentage of the eligible nodes from 0% to 100%")


def parse_health_gate(value):
    """None (no gate) or {"max_not_ready": None | ("count", n) | ("percent", p), "finished_nodes": bool}.
    ``health_gate: {}`` is the gate on finished nodes alone. Raises InvalidInput."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput("health_gate", value, "a dict with max_not_ready and finished_nodes")
    unknown = sorted(set(value) - {"max_not_ready", "finished_nodes"})
    if unknown:
        raise InvalidInput("health_gate", value, "a dict with max_not_ready and finished_nodes",
                           why="it has %s" % ", ".join(unknown))
    max_not_ready = value.get("max_not_ready")
    if max_not_ready is not None:
        max_not_ready = parse_count_or_percent(
            "health_gate.max_not_ready", max_not_ready, 0,
            "a number of NotReady nodes of at least 0, or a percentage of the cluster's nodes from 0% to 100%")
    finished = value.get("finished_nodes")
    if finished is not None and not isinstance(finished, bool):
        raise InvalidInput("health_gate.finished_nodes", finished, "true or false")
    return {"max_not_ready": max_not_ready, "finished_nodes": finished is not False}


def not_ready_allowed(gate, cluster_nodes):
    """How many of the cluster's ``cluster_nodes`` nodes may be NotReady before the gate stops the run
    (None: not checked)."""
    if not gate or gate["max_not_ready"] is None:
        return None
    kind, n = gate["max_not_ready"]
    return n if kind == "count" else cluster_nodes * n // 100


def health_check(gate, not_ready, cluster_nodes, fallen):
    """(HEALTH_GATE, message) when the health gate stops the run starting pods, or None.

    ``not_ready``: the names of the cluster's NotReady nodes now; ``cluster_nodes``: how many nodes it has;
    ``fallen``: the nodes whose pod finished in this run and that went NotReady after it, in the order seen."""
    if not gate:
        return None
    if gate["finished_nodes"] and fallen:
        return HEALTH_GATE, ("not started: health gate: node %s went NotReady after its pod finished in this run%s"
                             % (fallen[0], " (and %s)" % ", ".join(fallen[1:5]) if len(fallen) > 1 else ""))
    allowed = not_ready_allowed(gate, cluster_nodes)
    if allowed is not None and len(not_ready) > allowed:
        names = sorted(not_ready)
        return HEALTH_GATE, ("not started: health gate: %d of the cluster's %d nodes are NotReady (%s%s), more than "
                             "max_not_ready=%d" % (len(names), cluster_nodes, ", ".join(names[:5]),
                                                   " ..." if len(names) > 5 else "", allowed))
    return None


def failure_budget(max_failures, eligible, fail_fast=False):
    """How many nodes may fail before no new pod starts (None: no budget)."""
    if fail_fast:
        return 0
    if max_failures is None:
        return None
    kind, n = max_failures
    return n if kind == "count" else eligible * n // 100


def window_closes_at(window, started):
    """When the window closes (aware UTC datetime) for a run started at ``started``, or None."""
    if not window:
        return None
    if "duration_s" in window:
        return started + datetime.timedelta(seconds=window["duration_s"])
    zone = _zone(window["time_zone"])
    if zone is None:
        raise InvalidInput("window.time_zone", window["time_zone"], "a time zone this Python's zoneinfo knows")
    hour, minute = (int(p) for p in window["end"].split(":"))
    local = started.astimezone(zone)
    end = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if end <= local:
        end = (end.replace(tzinfo=None) + datetime.timedelta(days=1)).replace(tzinfo=zone)
    return end.astimezone(datetime.timezone.utc)


def stop_starting(now, closes_at, failures, budget):
    """(reason, message) when no new pod may start now, or None."""
    if budget is not None and failures > budget:
        return BUDGET_EXHAUSTED, "not started: failure budget of %d exhausted (%d nodes failed)" % (budget, failures)
    if closes_at is not None and now >= closes_at:
        return WINDOW_CLOSED, "not started: maintenance window closed at %s" % closes_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return None
