# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nodes under DiskPressure: which they are, the pod that may run there, and whether it fits. Pure.

The node that most needs a prune is the one whose disk is full, and there the kubelet admits only critical
pods (priority of at least 2,000,000,000: the ``system-node-critical`` and ``system-cluster-critical``
PriorityClasses; user-made classes cannot go that high), and the node lifecycle controller taints the node
``node.kubernetes.io/disk-pressure:NoSchedule``. So a pod of a preset that frees disk space (``disk_relief``:
image_prune, path_cleanup, journal_vacuum) carries, with ``disk_pressure: true`` (the default):

* on every node, the toleration of that taint, and of no other (``NoSchedule`` only: the kubelet's eviction of
  pods under pressure is not a taint, and nothing of ours tolerates ``NoExecute`` for it);
* on a node under DiskPressure when its pod is made (as the nodes' watch last saw it, whatever it was when the run
  planned), ``priorityClassName: system-node-critical`` unless ``priority_class_name`` names a critical class
  itself. Only there: a critical pod may preempt others, so pods elsewhere keep the cluster's default priority.

A critical pod that does not fit would make room by preempting a lower-priority pod (the scheduler does, or with
``pin: node_name`` the kubelet's critical-pod admission). So a node under DiskPressure gets its pod only if the
pod fits beside the pods already there (``room``, asked when the run plans and again right before the pod is
made): every resource the pod requests against the node's allocatable, less the requests of its pods not
terminated (those being deleted included), counted as the scheduler counts them. Preset pods request nothing
unless ``resources`` says so. (A LimitRange's default requests are not seen here: the pod's own are.)

A node under DiskPressure is never skipped silently: the plan lists it (``pressure``), a skip or a ``not_started``
says why, and each node's result says whether the condition held when the run ended (``after``). A ``pod_template``,
or ``priority_class_name``, that names a critical class makes every pod of the run critical, and only those of
nodes under DiskPressure are checked for room: that choice is the user's.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import InvalidInput

CONDITION = "DiskPressure"
TAINT = "node.kubernetes.io/disk-pressure"
TOLERATION = {"key": TAINT, "operator": "Exists", "effect": "NoSchedule"}
CRITICAL_CLASS = "system-node-critical"
CRITICAL_CLASSES = ("system-node-critical", "system-cluster-critical")
# What the ResourceQuota admission plugin says when it refuses a pod of a critical class: a quota whose scope
# matches it is full ("exceeded quota: <name>, ..."), or the API server's admission configuration limits the
# class to namespaces with a matching quota and this namespace has none ("insufficient quota to match ...").
_QUOTA_FULL = re.compile(r"exceeded quota: ([^,\s]+)")
_QUOTA_SCOPE = "insufficient quota to match these scopes"


def condition(node):
    """The node's DiskPressure condition: "True", "False", "Unknown", or None when it reports none."""
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == CONDITION:
            return cond.get("status")
    return None


def under_pressure(node):
    """Whether the node is under DiskPressure: its condition says so, or the taint the node lifecycle
    controller puts on for it is there (the two follow each other by a moment)."""
    if condition(node) == "True":
        return True
    return any(t.get("key") == TAINT for t in (node.get("spec") or {}).get("taints") or [])


def relieves(opts):
    """Whether this run's pods free disk space and may run on a node under DiskPressure (``disk_pressure``)."""
    return bool(opts.get("disk_pressure"))


def priority_class(opts, pressured):
    """The priorityClassName the pod of a node carries: ``priority_class_name``; else, for a pod that relieves a
    node under pressure, ``system-node-critical``; else none (the cluster's default)."""
    if opts.get("priority_class_name"):
        return opts["priority_class_name"]
    if pressured and relieves(opts):
        return CRITICAL_CLASS
    return None


def critical_possible(opts):
    """Whether this run may make a critical pod on a node under DiskPressure (then it checks the room there)."""
    template = opts["workload"].get("template") or {}
    return relieves(opts) or refusal(opts) is None and (
        opts.get("priority_class_name") in CRITICAL_CLASSES
        or (template.get("spec") or {}).get("priorityClassName") in CRITICAL_CLASSES)


def refusal(opts):
    """Why a node under DiskPressure gets no pod of this run, or None. Pure."""
    workload = opts["workload"]
    if opts.get("priority_class_name") in CRITICAL_CLASSES:
        return None   # the user's own critical pods (and tolerations): the kubelet admits them there
    if workload["kind"] == "pod_template":
        # build_pod puts priority_class_name over the template's own.
        klass = opts.get("priority_class_name") or (workload["template"].get("spec") or {}).get("priorityClassName")
        if klass in CRITICAL_CLASSES:
            return None
        return ("under DiskPressure: the kubelet admits only critical pods there (priorityClassName %s), and this "
                "pod_template's is %s" % (" or ".join(CRITICAL_CLASSES), klass or "not set"))
    if not workload.get("disk_relief"):
        return ("under DiskPressure: the kubelet admits only critical pods there, and preset %s frees no disk "
                "space, so it does not run as one" % workload["preset"])
    if not relieves(opts):
        return "under DiskPressure, and disk_pressure=false keeps this run off such nodes"
    klass = priority_class(opts, True)
    if klass not in CRITICAL_CLASSES:
        return ("under DiskPressure: the kubelet admits only critical pods there (priorityClassName %s), and "
                "priority_class_name=%s is not one" % (" or ".join(CRITICAL_CLASSES), klass))
    return None


_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_SUFFIX = {None: 1, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}


def quantity(value, param="resources"):
    """A Kubernetes quantity (``250m``, ``1.5``, ``128Mi``, ``1e3``) as a float. Raises InvalidInput."""
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise InvalidInput(param, value, "a quantity such as 250m, 2, 128Mi or 1G")
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def _requests(container):
    return dict((k, quantity(v)) for k, v in ((container.get("resources") or {}).get("requests") or {}).items())


def _add(total, more):
    for resource, value in more.items():
        total[resource] = total.get(resource, 0.0) + value
    return total


def pod_requests(pod):
    """What a pod asks the scheduler for, as the scheduler counts it: per resource, the larger of its containers
    together (with its sidecars, init containers that keep running) and any one init container (with the sidecars
    started before it); a pod-level ``spec.resources`` instead where one is set; its ``spec.overhead`` on top; and
    one pod."""
    spec = pod.get("spec") or {}
    sidecars, peak = {}, {}
    for init in spec.get("initContainers") or []:
        if init.get("restartPolicy") == "Always":
            _add(sidecars, _requests(init))
        else:
            for resource, value in _add(dict(sidecars), _requests(init)).items():
                peak[resource] = max(peak.get(resource, 0.0), value)
    total = dict(sidecars)
    for container in spec.get("containers") or []:
        _add(total, _requests(container))
    for resource, value in peak.items():
        total[resource] = max(total.get(resource, 0.0), value)
    pod_level = dict((k, quantity(v)) for k, v in ((spec.get("resources") or {}).get("requests") or {}).items())
    total.update(pod_level)
    _add(total, dict((k, quantity(v)) for k, v in (spec.get("overhead") or {}).items()))
    total["pods"] = 1.0
    return total


def room(node, pods_there, pod):
    """Why ``pod`` (the one this run would put on ``node``) does not fit beside ``pods_there`` (the node's pods not
    terminated, those being deleted included: the scheduler counts them until they are gone), or None. Every
    resource the pod requests is checked; one the node does not list as allocatable has none. A critical pod that
    does not fit would preempt one of the others."""
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    wanted = dict((k, v) for k, v in pod_requests(pod).items() if v)
    used = dict((resource, 0.0) for resource in wanted)
    for other in pods_there:
        asked = pod_requests(other)
        for resource in wanted:
            used[resource] += asked.get(resource, 0.0)
    for resource in sorted(wanted, key=lambda r: (r != "pods", r)):
        have = quantity(allocatable[resource], "allocatable") if resource in allocatable else 0.0
        if used[resource] + wanted[resource] > have:
            return ("under DiskPressure and full: its pod (a critical one, which would preempt another to make room) "
                    "needs %s %s, and %s of its %s allocatable are taken" % (
                        _show(resource, wanted[resource]), resource, _show(resource, used[resource]),
                        allocatable.get(resource, "0")))
    return None


def _show(resource, value):
    if resource == "cpu":
        return "%dm" % round(value * 1000)
    if resource == "memory" or resource == "ephemeral-storage" or resource.startswith("hugepages-"):
        return "%dMi" % round(value / 2 ** 20)
    return "%g" % value


def refused_critical(detail):
    """The reason a node under DiskPressure gets no pod when the API server refuses its critical pod."""
    return "under DiskPressure, and the API server refuses its critical pod: %s" % detail


def room_unknown(detail):
    """The reason a node under DiskPressure gets no pod when whether its pod fits could not be judged."""
    return "under DiskPressure, and whether its pod fits there could not be judged: %s" % detail


def quota_refusal(message):
    """The ResourceQuota behind an admission refusal of a critical pod: ("quota", its name), ("scope", the
    API server's words) when its admission configuration limits the class to namespaces with a matching quota,
    or None when ``message`` is not a quota refusal."""
    found = _QUOTA_FULL.search(message or "")
    if found:
        return "quota", found.group(1)
    if _QUOTA_SCOPE in (message or ""):
        return "scope", message
    return None


def slim_status(node):
    """What of a node's status the plan keeps for a node under pressure, besides its conditions: what ``room``
    reads (its allocatable)."""
    return {"allocatable": dict((node.get("status") or {}).get("allocatable") or {})}
