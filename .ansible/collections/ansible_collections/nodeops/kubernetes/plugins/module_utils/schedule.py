# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CronJob schedules: what Kubernetes accepts, checked up front, and the next fire times.

croniter knows more syntax than Kubernetes (seconds and year fields, L, W,
#, H, R). ``check_schedule`` first restricts the expression to what the
CronJob controller's parser takes, then lets croniter check the fields.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re

from ansible_collections.nodeops.kubernetes.plugins.module_utils.errors import InvalidInput, MissingDependency

MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
EXAMPLE = "e.g. '30 2 * * *' (02:30 every day) or '@daily'"
_FIELD = re.compile(r"^[0-9A-Za-z*/,\-?]+$")
_NAMES = re.compile(r"[A-Za-z]+")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# Bounds of the parser Kubernetes uses; croniter is wider (it takes 7 for Sunday).
BOUNDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 6))


def _reject(expr, why):
    raise InvalidInput("schedule", expr, "a 5-field cron expression or one of %s, %s" % (", ".join(MACROS), EXAMPLE),
                       why=why)


def check_schedule(expr):
    """Raise InvalidInput unless Kubernetes and croniter both accept ``expr``. Returns it normalised."""
    if not isinstance(expr, str) or not expr.strip():
        _reject(expr, "it is empty")
    text = " ".join(expr.split())
    if re.match(r"^(CRON_)?TZ=", text):
        _reject(expr, "a TZ= or CRON_TZ= prefix is not allowed in Kubernetes; use time_zone")
    if text.startswith("@"):
        if text.lower() not in MACROS:
            _reject(expr, "%s is not a macro Kubernetes documents" % text.split()[0])
        return text.lower()
    fields = text.split(" ")
    if len(fields) != 5:
        _reject(expr, "it has %d fields; Kubernetes takes exactly 5 (no seconds, no year)" % len(fields))
    for index, field in enumerate(fields):
        if not _FIELD.match(field):
            _reject(expr, "field %d (%r) has characters cron does not allow" % (index + 1, field))
        names = [n.lower() for n in _NAMES.findall(field)]
        allowed = MONTHS if index == 3 else DAYS if index == 4 else ()
        for name in names:
            if name not in allowed:
                _reject(expr, "field %d (%r): %r is not allowed (no L, W, #, H or R in Kubernetes)"
                        % (index + 1, field, name))
        if "?" in field and index not in (2, 4):
            _reject(expr, "field %d (%r): '?' is only allowed for day of month or day of week" % (index + 1, field))
        label, low, high = BOUNDS[index]
        for number in re.findall(r"\d+", field.split("/")[0]):
            if not low <= int(number) <= high:
                _reject(expr, "%s %s is out of range %d-%d" % (label, number, low, high))
    try:
        from croniter import croniter
    except ImportError:
        raise MissingDependency("the Python package 'croniter' is needed to check schedules: pip install croniter")
    if not croniter.is_valid(text.replace("?", "*")):
        _reject(expr, "croniter cannot parse it")
    return text


def check_time_zone(tz):
    if tz is None:
        return None
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    except ImportError:  # Python < 3.9
        raise MissingDependency("time_zone needs Python 3.9 or newer (zoneinfo)")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidInput("time_zone", tz, "an IANA time zone name such as 'Europe/Berlin' or 'UTC'")
    return tz


def next_runs(expr, tz=None, now=None, count=5):
    """The next ``count`` fire times, each as {"local": ISO in tz, "utc": ISO in UTC}."""
    from croniter import croniter
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz or "UTC")
    now = (now or datetime.datetime.now(datetime.timezone.utc)).astimezone(zone)
    it = croniter(expr.replace("?", "*"), now)
    out = []
    for _i in range(count):
        fire = it.get_next(datetime.datetime)
        out.append({"local": fire.isoformat(), "utc": fire.astimezone(datetime.timezone.utc).isoformat()})
    return out
