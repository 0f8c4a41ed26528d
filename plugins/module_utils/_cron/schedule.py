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

from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import InvalidInput, MissingDependency

ACCEPTED = "a schedule the Kubernetes CronJob takes, e.g. '30 2 * * *' (02:30 every day) or '@daily'"
# CronJob fields the apiserver may refuse, and the module option that sets each.
FIELD_PARAMS = {"spec.schedule": "schedule", "spec.timeZone": "time_zone"}


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


def next_runs(expr, tz=None, now=None, count=5):
    """The next ``count`` fire times, each as {"local": ISO in tz, "utc": ISO in UTC}.

    Empty where croniter does not know the syntax (``@every 1h``); the CronJob still runs.
    """
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
        return []
    out = []
    for _i in range(count):
        fire = it.get_next(datetime.datetime)
        out.append({"local": fire.isoformat(), "utc": fire.astimezone(datetime.timezone.utc).isoformat()})
    return out
