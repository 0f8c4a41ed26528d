# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Freeze dates of a scheduled broadcast: days on which a run that is due starts no pod. Pure, standard library.

The ``freeze`` option is a list; each entry is a date (``"2026-12-24"``), a range of dates, both days
included (``"2026-12-24..2026-12-26"``), or a dict ``{start, end, reason}``. The dates are days of the
schedule's time zone. ``parse_freeze`` checks them on the controller and turns each into the UTC instants it
covers (from the start day's local midnight to the local midnight after the end day), so that the in-cluster
runner compares its clock with two instants and needs no time zone database; ``frozen_at`` is that comparison.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import re

from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import InvalidInput

ACCEPTED = ("a list of dates YYYY-MM-DD, ranges 'YYYY-MM-DD..YYYY-MM-DD' (both days included) or dicts "
            "{start: YYYY-MM-DD, end: YYYY-MM-DD, reason: text}")
UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_ENTRIES = 100
# The years a freeze may name: the UTC instants are written YYYY-MM-DDTHH:MM:SSZ, and a typo such as 0226 is
# an error, not a freeze nobody will see.
YEARS = (1970, 9998)
MAX_REASON = 200
# The cron broadcast's freezes (JSON, as parse_freeze returns them) on its CronJob, for broadcast_info; the runner
# reads its own copy in runner.json.
ANNOTATION = "nodeops.io/freeze"


def _date(param, value):
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        value = value.isoformat()   # YAML reads an unquoted 2026-12-24 as a date
    if not isinstance(value, str) or not _DATE.match(value.strip()):
        raise InvalidInput(param, value, "a date YYYY-MM-DD, such as 2026-12-24")
    try:
        day = datetime.date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(param, value, "a date YYYY-MM-DD that exists, such as 2026-12-24")
    if not YEARS[0] <= day.year <= YEARS[1]:
        raise InvalidInput(param, value, "a date in the years %d to %d" % YEARS)
    return day


def _local_midnight_utc(day, zone):
    """The instant (aware UTC) of ``day``'s first moment in ``zone``. Where midnight does not exist (a zone
    that springs forward at 00:00), zoneinfo reads it with the offset before the change: the day's first
    instant that exists."""
    return datetime.datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(datetime.timezone.utc)


def parse_freeze(given, time_zone=None):
    """The ``freeze`` option, checked: a list of {"start", "end", "reason", "from_utc", "until_utc"}, sorted,
    ``until_utc`` excluded. ``time_zone`` is the schedule's (None: UTC). Raises InvalidInput naming the entry."""
    if given is None:
        return []
    if not isinstance(given, list):
        raise InvalidInput("freeze", given, ACCEPTED)
    if len(given) > MAX_ENTRIES:
        raise InvalidInput("freeze", "%d entries" % len(given), "at most %d entries" % MAX_ENTRIES)
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(time_zone or "UTC")
    out = []
    for i, entry in enumerate(given):
        param = "freeze[%d]" % i
        reason = None
        if isinstance(entry, datetime.date):   # YAML reads an unquoted 2026-12-24 as a date
            entry = entry.isoformat()[:10] if not isinstance(entry, datetime.datetime) else entry.isoformat()
        if isinstance(entry, str):
            parts = entry.split("..")
            if len(parts) > 2:
                raise InvalidInput(param, entry, "a date YYYY-MM-DD or a range YYYY-MM-DD..YYYY-MM-DD")
            start = _date(param, parts[0])
            end = _date(param, parts[1]) if len(parts) == 2 else start
        elif isinstance(entry, dict):
            unknown = sorted(set(entry) - {"start", "end", "reason"})
            if unknown:
                raise InvalidInput(param, entry, "a dict with start, end and reason only (not %s)" % ", ".join(unknown))
            start = _date(param + ".start", entry.get("start"))
            end = _date(param + ".end", entry["end"]) if entry.get("end") is not None else start
            reason = entry.get("reason")
            if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
                raise InvalidInput(param + ".reason", reason, "a text of at most %d characters" % MAX_REASON)
        else:
            raise InvalidInput(param, entry, ACCEPTED)
        if end < start:
            raise InvalidInput(param, entry, "an end on or after its start (%s)" % start.isoformat())
        out.append({"start": start.isoformat(), "end": end.isoformat(),
                    "reason": (reason or "").strip() or "change freeze",
                    "time_zone": time_zone or "UTC",
                    "from_utc": _local_midnight_utc(start, zone).strftime(UTC_FORMAT),
                    "until_utc": _local_midnight_utc(end + datetime.timedelta(days=1), zone).strftime(UTC_FORMAT)})
    return sorted(out, key=lambda f: (f["from_utc"], f["until_utc"]))


def _instant(text):
    return datetime.datetime.strptime(text, UTC_FORMAT).replace(tzinfo=datetime.timezone.utc)


def frozen_at(freeze, when):
    """The freeze entry that covers ``when`` (an aware datetime), or None."""
    for entry in freeze or []:
        if _instant(entry["from_utc"]) <= when < _instant(entry["until_utc"]):
            return entry
    return None


def describe(entry):
    """One line for logs, history and reports: the reason and the days it covers."""
    span = entry["start"] if entry["start"] == entry["end"] else "%s..%s" % (entry["start"], entry["end"])
    return "%s (%s, %s)" % (entry["reason"], span, entry.get("time_zone") or "UTC")


def thaw_after(entry):
    """The first instant after the freeze (aware UTC)."""
    return _instant(entry["until_utc"])


def freeze_of(cron_job):
    """The freezes a CronJob we installed carries (its ANNOTATION), or []."""
    text = ((cron_job.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION)
    try:
        found = json.loads(text) if text else []
    except ValueError:
        return []
    return [f for f in found if isinstance(f, dict) and "from_utc" in f and "until_utc" in f] \
        if isinstance(found, list) else []
