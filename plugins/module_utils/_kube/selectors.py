# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes label selectors and taint tolerations, as pure functions.

``parse_label_selector`` accepts the string syntax kubectl takes
(``zone in (a,b),!gpu,tier=web``) and returns requirements; ``matches``
applies them to a label dict. ``tolerates`` follows the scheduler's rules.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# Kubernetes' own name rules, in one place: label keys, DNS-1123 labels (namespaces and most names).
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                       r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_KEY = LABEL_KEY
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SET = re.compile(r"^\s*(\S+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ = re.compile(r"^\s*([^!=\s]+)\s*(==|=|!=)\s*(\S*)\s*$")


class SelectorError(ValueError):
    """The selector string is not valid; the message says which part."""


def _split_top_level(text):
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _check_key(key, part):
    if len(key.split("/")[-1]) > 63 or not _KEY.match(key):
        raise SelectorError("%r: %r is not a valid label key" % (part.strip(), key))


def _check_value(value, part):
    if len(value) > 63 or not _VALUE.match(value):
        raise SelectorError("%r: %r is not a valid label value" % (part.strip(), value))


def parse_label_selector(text):
    """Parse a selector string into a list of (key, operator, values) tuples.

    Operators: In, NotIn, Exists, DoesNotExist. Raises SelectorError.
    """
    requirements = []
    if text is None or not text.strip():
        return requirements
    for part in _split_top_level(text):
        if not part.strip():
            raise SelectorError("empty requirement in %r" % text)
        m = _SET.match(part)
        if m:
            key, op, raw = m.group(1), m.group(2), m.group(3)
            values = [v.strip() for v in raw.split(",")]
            if not raw.strip() or any(v == "" for v in values):
                raise SelectorError("%r: a set needs one or more values" % part.strip())
            _check_key(key, part)
            for v in values:
                _check_value(v, part)
            requirements.append((key, "In" if op == "in" else "NotIn", sorted(set(values))))
            continue
        m = _EQ.match(part)
        if m:
            key, op, value = m.group(1), m.group(2), m.group(3)
            _check_key(key, part)
            _check_value(value, part)
            requirements.append((key, "NotIn" if op == "!=" else "In", [value]))
            continue
        stripped = part.strip()
        if stripped.startswith("!"):
            _check_key(stripped[1:], part)
            requirements.append((stripped[1:], "DoesNotExist", []))
            continue
        if re.match(r"^[^\s=!()]+$", stripped):
            _check_key(stripped, part)
            requirements.append((stripped, "Exists", []))
            continue
        raise SelectorError("cannot parse %r" % stripped)
    return requirements


def matches(requirements, labels):
    labels = labels or {}
    for key, op, values in requirements:
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def tolerates(toleration, taint):
    """Whether one toleration tolerates one taint (the scheduler's rule)."""
    effect = toleration.get("effect")
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key")
    operator = toleration.get("operator") or "Equal"
    if not key:
        return operator == "Exists"
    if key != taint.get("key"):
        return False
    if operator == "Exists":
        return True
    return (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated_taints(taints, tolerations):
    """Taints that keep a pod off a node: NoSchedule/NoExecute ones no toleration covers."""
    out = []
    for taint in taints or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(tolerates(t, taint) for t in tolerations or []):
            out.append(taint)
    return out


def taint_str(taint):
    value = taint.get("value")
    return "%s%s:%s" % (taint.get("key"), "=" + value if value else "", taint.get("effect"))


def _expression_matches(expr, value, present):
    op, values = expr.get("operator"), [str(v) for v in expr.get("values") or []]
    if op == "In":
        return present and value in values
    if op == "NotIn":
        return not present or value not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and len(values) == 1:
        try:
            left, right = int(value), int(values[0])
        except ValueError:
            return False
        return left > right if op == "Gt" else left < right
    return False


def term_matches(term, node_name, labels):
    """Whether one required nodeSelectorTerm matches a node (its requirements are ANDed).

    ``matchExpressions`` are on the node's labels, ``matchFields`` on ``metadata.name``;
    a term with no requirement matches nothing, as in the scheduler.
    """
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    for expr in expressions:
        key = expr.get("key")
        if not _expression_matches(expr, labels.get(key), key in labels):
            return False
    for expr in fields:
        if expr.get("key") != "metadata.name" or not _expression_matches(expr, node_name, True):
            return False
    return True
