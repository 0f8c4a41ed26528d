# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CronJob schedules: Kubernetes is the judge, croniter only previews.

The apiserver decides which schedules a CronJob takes (its parser accepts
``@every 1h`` and ``?``, refuses reversed ranges and upper-case macros, and
changes between releases). So the module keeps the schedule exactly as
written, rejects locally only what no apiserver takes (nothing at all), and
asks the apiserver with a server-side dry run before anything is written;
``refused_by_apiserver`` turns its refusal into an InvalidInput that names
the parameter. croniter computes the next fire times where it can.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import freeze as freeze_rules
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import InvalidInput, MissingDependency

ACCEPTED = "a schedule the Kubernetes CronJob takes, e.g. '30 2 * * *' (02:30 every day) or '@daily'"
# CronJob fields the apiserver may refuse, and the module option that sets each.
FIELD_PARAMS = {"spec.schedule": "schedule", "spec.timeZone": "time_zone"}
# A freeze's hidden fire times are counted up to this many ("hidden" says at least that many).
MAX_HIDDEN_COUNTED = 1000


def check_schedule(expr):
    """Refuse only what the apiserver refuses too (no schedule at all). Returns ``expr`` as written."""
    if not isinstance(expr, str) or not expr.strip():
        raise InvalidInput("schedule", expr, ACCEPTED, why="it is empty")
    return expr


def refused_by_apiserver(exc, values):
    """The InvalidInput for a dry run the apiserver refused over the schedule or time zone; else ``exc``.

    ``values`` maps the module options (schedule, time_zone) to what the user gave.
    """
    body = exc.body if isinstance(getattr(exc, "body", None), dict) else {}
    if getattr(exc, "status", None) != 422:
        return exc
    for cause in (body.get("details") or {}).get("causes") or []:
        param = FIELD_PARAMS.get(cause.get("field"))
        if param:
            accepted = ACCEPTED if param == "schedule" else "an IANA time zone name such as 'Europe/Berlin'"
            return InvalidInput(param, values.get(param), accepted,
                                why="the apiserver refused it: %s" % cause.get("message"))
    return exc


def check_time_zone(tz):
    if tz is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidInput("time_zone", tz, "an IANA time zone name such as 'Europe/Berlin' or 'UTC'")
    return tz


def next_runs(expr, tz=None, now=None, count=5, freeze=None):
    """The next ``count`` fire times, each as {"local": ISO in tz, "utc": ISO in UTC}, leaving out those inside
    a freeze (``freeze``: parsed by ``_broadcast.freeze.parse_freeze``; see ``frozen_runs``).

    Empty where croniter does not know the syntax (``@every 1h``); the CronJob still runs.
    """
    return preview(expr, tz, now, count, freeze)[0]


def preview(expr, tz=None, now=None, count=5, freeze=None):
    """(``next_runs``, the fire times it left out): for each freeze that hides fire times before the last of
    ``next_runs``, the first it hides, as {"local", "utc", "freeze": its reason and days, "hidden": how many,
    counted up to MAX_HIDDEN_COUNTED}."""
    try:
        from croniter import croniter
    except ImportError:
        raise MissingDependency("the Python package 'croniter' is needed to preview schedules: pip install croniter")
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz or "UTC")
    now = (now or datetime.datetime.now(datetime.timezone.utc)).astimezone(zone)
    try:
        it = croniter(expr.strip().replace("?", "*"), now)
    except (ValueError, KeyError, TypeError):
        return [], []
    out, hidden, fire = [], {}, None
    try:
        while len(out) < count:
            fire = fire or it.get_next(datetime.datetime)
            entry = freeze_rules.frozen_at(freeze, fire)
            shown = {"local": fire.isoformat(), "utc": fire.astimezone(datetime.timezone.utc).isoformat()}
            if entry is None:
                out.append(shown)
                fire = None
                continue
            key = (entry["from_utc"], entry["until_utc"], entry["reason"])
            note = hidden.setdefault(key, dict(shown, freeze=freeze_rules.describe(entry), hidden=0))
            # Count the fire times the freeze hides, up to a bound, then go on from its end (a schedule of every
            # minute in a two-week freeze is not walked minute by minute). ``fire`` is the first after it.
            thaw = freeze_rules.thaw_after(entry)
            while fire < thaw and note["hidden"] < MAX_HIDDEN_COUNTED:
                note["hidden"] += 1
                fire = it.get_next(datetime.datetime)
            if fire < thaw:
                it = croniter(expr.strip().replace("?", "*"), (thaw - datetime.timedelta(seconds=1)).astimezone(zone))
                fire = None
    except (ValueError, OverflowError, KeyError):   # croniter's end of time (year 9999), or a date it cannot make
        pass
    return out, [hidden[k] for k in sorted(hidden)]
