# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The README's table of what the cron runner is granted, read as data, so tests compare it with the
objects cron_broadcast builds and with what the API server says the runner may do."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
START, END = "<!-- runner-rights:start -->", "<!-- runner-rights:end -->"
ALWAYS, NODE_EVENTS, KEEP_IMAGES = "always", "`node_events` is not `none`", "`keep_images_in_cluster`"
DISK_PRESSURE = "`disk_pressure` (image_prune, path_cleanup, journal_vacuum)"
# A row with this ``when`` is not granted: it follows from a right that is (FOLLOWS).
THROUGH_PODS = "through `create pods`"
# What Kubernetes makes follow from a right, whoever is granted it: a pod may mount any Secret of its
# namespace as a volume (or read one into its environment), and the pod's process reads it.
FOLLOWS = {("", "pods", "create"): [("", "secrets", "get")]}


def _cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


# The scheduled sweep's table (dangling_job_ttl's sweep_schedule), in the same format.
SWEEP_START, SWEEP_END = "<!-- sweep-rights:start -->", "<!-- sweep-rights:end -->"
ALL_NAMESPACES, SOME_NAMESPACES = "`include_namespaces` is empty", "`include_namespaces` is given"
DELETE, SET_TTL = "`sweep_action=delete`", "`sweep_action=set_ttl`"


def rows(path=README, table="runner"):
    """[{where, group, resources, verbs, names, when}] from the table (``runner``: cron_broadcast's runner;
    ``sweep``: the scheduled sweep's), one row per table line. A ``when`` of several conditions joined by
    ``, and `` holds when each does."""
    with open(path) as f:
        text = f.read()
    start, end = (START, END) if table == "runner" else (SWEEP_START, SWEEP_END)
    table = text[text.index(start) + len(start):text.index(end)].strip().splitlines()[2:]
    out = []
    for line in table:
        where, group, resources, verbs, names, when = _cells(line)[:6]
        out.append({"where": where, "group": "" if group == "core" else group,
                    "resources": [r.strip() for r in resources.split(",")],
                    "verbs": [v.strip() for v in verbs.split(",")],
                    "names": re.findall(r"`([^`]+)`", names), "when": when})
    return out


def rights(table_rows, conditions, name="<name>"):
    """The set of (where, group, resource, verb, resourceName or '') the rows grant under ``conditions``
    (the ``when`` values that hold; ``always`` always does). ``<name>`` in a name is the cron's name."""
    out = set()
    for row in table_rows:
        if row["when"] != ALWAYS and not all(part in conditions for part in row["when"].split(", and ")):
            continue
        for resource in row["resources"]:
            for verb in row["verbs"]:
                for res_name in row["names"] or [""]:
                    out.add((row["where"], row["group"], resource, verb, res_name.replace("<name>", name)))
    return out


def implied(table_rows, name="<name>"):
    """The rights the table lists as following from another one (``when`` is THROUGH_PODS), as ``rights``."""
    return rights(table_rows, [THROUGH_PODS], name) - rights(table_rows, [], name)


def follows_from(granted):
    """The rights that ``granted`` (a set as ``rights`` returns) gives without naming them (FOLLOWS)."""
    out = set()
    for where, group, resource, verb, _name in granted:
        for implied_group, implied_resource, implied_verb in FOLLOWS.get((group, resource, verb), []):
            out.add((where, implied_group, implied_resource, implied_verb, ""))
    return out


def from_rules(where, rules):
    """The same set from RBAC rules (dicts as a Role holds them)."""
    out = set()
    for rule in rules:
        for group in rule.get("apiGroups") or [""]:
            for resource in rule.get("resources") or []:
                for verb in rule.get("verbs") or []:
                    for res_name in rule.get("resourceNames") or [""]:
                        out.add((where, group, resource, verb, res_name))
    return out
