# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which option made the part of a pod that the API server refused in a dry run. Pure.

A refusal names a field of the pod, not an option: a validation error (422) lists the fields in
``details.causes[].field`` (``spec.containers[0].resources.requests``); an admission plugin's refusal
(403) says it in words only (the ServiceAccount plugin's "error looking up service account", the
Priority plugin's "no PriorityClass with name ... was found"); a body that cannot be decoded (400)
names neither. ``refused_fields`` reads the field paths out of a Status, ``option_for_field`` maps one
to the option that set it, and ``blame`` makes the InvalidInput that names that option and its value
(``service_account='x' is invalid``) rather than the whole preset or pod template.

Some fields hold both what an option set and what the collection added: the labels and annotations (the
run's and the node's) and the tolerations (the real-node, cordon and control-plane ones). There the option is
named only for what it set: a label or annotation whose key or value is the one the API server quotes, a
toleration at the index it names that is one of the option's.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import re

from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import InvalidInput

# Refusals that carry no field path, and the field their words are about.
_WORDS = [
    (re.compile(r"error looking up service account"), "spec.serviceAccountName"),
    (re.compile(r"no PriorityClass with name"), "spec.priorityClassName"),
    # The quantity parser's words when a request or limit is not a quantity (400: the pod was not decoded).
    (re.compile(r"quantities must match the regular expression"), "spec.containers[].resources"),
]

_INDEX = re.compile(r"\[[^\]]*\]")
_FIRST_INDEX = re.compile(r"\[(\d+)\]")
# The value a validation cause quotes: Invalid value: "a b": ... (Go's %q, which escapes ", \ and controls).
_QUOTED = re.compile(r'^(?:Invalid|Unsupported) value: "((?:[^"\\]|\\.)*)"')
# The API server's limit on all of a pod's annotations together (keys and values), in bytes.
ANNOTATIONS_LIMIT = 256 * 1024


# The pod fields options set: (a field path with its list indexes emptied, the option, the workloads in whose
# pods the option alone sets that field, what the option should be instead). A path below one belongs to it.
FIELD_OPTIONS = [
    ("spec.serviceAccountName", "service_account", ("preset", "pod_template"),
     "the name of a ServiceAccount that exists in namespace %(namespace)s"),
    ("spec.priorityClassName", "priority_class_name", ("preset", "pod_template"),
     "the name of an existing PriorityClass (kubectl get priorityclasses)"),
    ("spec.containers[].image", "image", ("preset",),
     "an image reference the API server accepts, such as python:3.13-slim (no spaces)"),
    ("spec.initContainers[].image", "image", ("preset",),
     "an image reference the API server accepts, such as python:3.13-slim (no spaces)"),
    ("spec.containers[].resources", "resources", ("preset",),
     "requests and limits the API server accepts: quantities such as 250m or 256Mi, and no request above its limit"),
    ("spec.tolerations", "tolerations", ("preset", "pod_template"), "tolerations the API server accepts"),
    ("metadata.labels", "pod_labels", ("preset", "pod_template"), "labels the API server accepts"),
    ("metadata.annotations", "pod_annotations", ("preset", "pod_template"),
     "annotations the API server accepts, %d bytes at most in all" % ANNOTATIONS_LIMIT),
]


def refused_fields(status):
    """The field paths a refusal's Status body names, in its order: its causes' fields, else the field its
    words are about (an admission plugin's). Each comes with the API server's words about it."""
    if not isinstance(status, dict):
        return []
    message = status.get("message") or ""
    causes = (status.get("details") or {}).get("causes") or []
    fields = [(c["field"], "%s: %s" % (c["field"], c.get("message") or message))
              for c in causes if isinstance(c, dict) and c.get("field")]
    if fields:
        return fields
    return [(field, message) for words, field in _WORDS if words.search(message)]


def _option_value(option, opts):
    if option == "image":
        return opts["workload"]["container"].get("image")
    return opts.get(option)


def _quoted(words, field):
    """The value a cause's words quote, unescaped as Go's %q escaped it, or None."""
    found = _QUOTED.search(words[len(field) + 2:] if words.startswith(field + ": ") else words)
    if not found:
        return None
    try:
        return ast.literal_eval('"%s"' % found.group(1))
    except (SyntaxError, ValueError):
        return found.group(1)


def _size(mapping):
    return sum(len(str(k).encode("utf-8")) + len(str(v).encode("utf-8")) for k, v in mapping.items())


def _set_by_option(option, value, field, words, pod):
    """Whether the part of a shared field (labels, annotations, tolerations) that was refused is the option's
    rather than the collection's or the pod template's. Other fields are the option's alone."""
    if option in ("pod_labels", "pod_annotations"):
        quoted = _quoted(words, field)
        if quoted is None:
            # "Too long: must have at most 262144 bytes" quotes nothing: the user's, if theirs alone are too many.
            return option == "pod_annotations" and "Too long" in words and _size(value) > ANNOTATIONS_LIMIT
        return any(quoted in (str(k), str(v)) for k, v in value.items())
    if option == "tolerations":
        index = _FIRST_INDEX.search(field)
        tolerations = ((pod or {}).get("spec") or {}).get("tolerations") or []
        return bool(index) and int(index.group(1)) < len(tolerations) and tolerations[int(index.group(1))] in value
    return True


def option_for_field(field, opts, words="", pod=None):
    """(option, value, what it should be) for the option that set ``field`` (a pod field path such as
    ``spec.containers[0].image``) in ``pod``, built from ``opts``, or None: a field no option sets, an
    option not given, a field the pod template set itself, or the collection's part of a shared field
    (``words``, the API server's, say which part was refused)."""
    path = _INDEX.sub("[]", field or "")
    kind = opts["workload"]["kind"]
    for prefix, option, kinds, accepted in FIELD_OPTIONS:
        if path != prefix and not path.startswith(prefix + ".") and not path.startswith(prefix + "["):
            continue
        value = _option_value(option, opts) if kind in kinds else None
        if value in (None, "", {}, []) or not _set_by_option(option, value, field, words, pod):
            return None   # the pod template (or the collection) set it, not an option
        return option, value, accepted % {"namespace": opts["namespace"]}
    return None


def blame(status, opts, what, pod=None):
    """The InvalidInput for the first option that set a field of a refusal (of ``pod``, ``what``: "the pods
    of preset x"): that option, its value, the API server's words about every field of it that was refused,
    and what the option should be. None when no option set any of the refused fields."""
    blamed, all_words = None, []
    for field, words in refused_fields(status):
        found = option_for_field(field, opts, words, pod)
        if found and (blamed is None or found[0] == blamed[0]):
            blamed = found
            all_words.append(words)
    if blamed is None:
        return None
    option, value, accepted = blamed
    return InvalidInput(option, value, accepted,
                        why="the API server refused a dry run of %s: %s" % (what, "; ".join(all_words)))
