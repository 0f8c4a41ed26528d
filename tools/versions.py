#!/usr/bin/env python3
"""What the integration tier runs on, read from the pins, and the module notes that say so.

    python3 tools/versions.py          rewrite plugins/doc_fragments/tested_versions.py and the README's
                                       support matrix
    python3 tools/versions.py --check  exit 1 if either differs (the unit tests check this too)

Each version comes from the file that decides it: Kubernetes and etcd from tools/k8s/v1.NN/go.mod (the
default, newest minor, and the compatibility suite's, COMPAT_K8S in the Makefile), kwok,
Kyverno, containerd and runc from the scripts that build them, ansible-core from requirements-test.txt.
tests/integration/test_documented_versions.py fails when the running cluster says otherwise. Every module
takes its notes from the one fragment this writes.
"""

import os
import re
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools", "localcluster"))
from k8s_modules import default_minor, gomod_pin  # noqa: E402  (reads no environment, unlike cluster.py)
FRAGMENT = os.path.join(REPO, "plugins", "doc_fragments", "tested_versions.py")
README = os.path.join(REPO, "README.md")
MATRIX_START, MATRIX_END = "<!-- support-matrix:start (tools/versions.py) -->", "<!-- support-matrix:end -->"
# The real node's other runtime (NODEOPS_CONTAINERD=1.6): Debian 12's package, which nothing here pins
# (checked against the node by the integration tier when it runs that runtime).
DEBIAN_CONTAINERD = "1.6.20"
DEBIAN_RUNC = "1.1.5"


def _read(*path):
    with open(os.path.join(REPO, *path)) as f:
        return f.read()


def _assignment(text, name):
    return re.search(r'^%s = "([^"]+)"' % name, text, re.M).group(1)


def _runtime_pin(text, name):
    """The version of ``name`` (containerd, runc) in realnode.py's default runtime."""
    default = _assignment(text, "DEFAULT_RUNTIME")
    block = re.search(r'^    "%s": \{(.*?)\n    "' % re.escape(default), text, re.M | re.S).group(1)
    return re.search(r'"%s": "(v[0-9.]+)"' % name, block).group(1)


def pins():
    """{name: version} for everything the integration tier's notes name."""
    reqs = _read("requirements-test.txt")
    realnode_text = _read("tools", "localcluster", "realnode.py")
    default, compat = default_minor(), re.search(r"^COMPAT_K8S := ([0-9.]+)$", _read("Makefile"), re.M).group(1)
    compat_runtime = re.search(r'^RUNTIME_OF_K8S_MINOR = \{[^}]*"%s": "([0-9.]+)"' % re.escape(compat),
                               realnode_text, re.M).group(1)
    assert compat_runtime == "1.6", "the compatibility cluster's real node runs Debian's containerd"
    return {
        "kubernetes": gomod_pin(default, "k8s.io/kubernetes"),
        "etcd": gomod_pin(default, "go.etcd.io/etcd/server/v3"),
        "compat_kubernetes": gomod_pin(compat, "k8s.io/kubernetes"),
        "compat_etcd": gomod_pin(compat, "go.etcd.io/etcd/server/v3"),
        "compat_minor": compat,
        "kwok": _assignment(_read("tools", "localcluster", "cluster.py"), "KWOK_VERSION"),
        "kyverno": _assignment(_read("tools", "localcluster", "kyverno_tools.py"), "KYVERNO_VERSION"),
        "ansible_core": re.search(r"^ansible-core==([0-9.]+)$", reqs, re.M).group(1),
        "ansible": re.search(r"^ansible==([0-9.]+)$", reqs, re.M).group(1),
        "oldest_core": re.search(r'^requires_ansible: ">=([0-9]+\.[0-9]+)', _read("meta", "runtime.yml"), re.M).group(1),
        "oldest_core_pin": re.search(r"^OLDEST_CORE := ([0-9.]+)$", _read("Makefile"), re.M).group(1),
        "debian_runc": DEBIAN_RUNC,
        "containerd": _runtime_pin(realnode_text, "containerd"),
        "runc": _runtime_pin(realnode_text, "runc"),
        "debian_containerd": DEBIAN_CONTAINERD,
    }


def notes(v):
    """The notes every module carries, as a list of sentences."""
    return [
        "Tested only on the local cluster of this collection's integration tier (C(make test)). Its control plane "
        "is Kubernetes %(kubernetes)s (kube-apiserver, kube-controller-manager and kube-scheduler) with etcd "
        "%(etcd)s, built from the upstream Go modules." % v,
        "kwok %(kwok)s simulates nine of its nodes (a control-plane node and eight workers). Pods there run "
        "nothing, so runs on them prove the API side only (plans, pods, watches, outcomes)." % v,
        "One real node runs kubelet and kube-proxy %(kubernetes)s with containerd %(containerd)s and runc "
        "%(runc)s (built from their Go modules). Its pods run on a real host, from a locally built Debian 12 "
        "Python image rather than the default C(python:3.13-slim)." % v,
        "The controller runs ansible-core %(ansible_core)s. A compatibility suite runs on Kubernetes "
        "%(compat_kubernetes)s (etcd %(compat_etcd)s), whose real node runs containerd %(debian_containerd)s (Debian "
        "12's), and the unit and sanity tests on ansible-core %(oldest_core)s; the README's support matrix says what "
        "proves each combination. Other versions are not tested." % v,
    ]


def render(v):
    body = "".join(textwrap.fill(note, 108, initial_indent="  - ", subsequent_indent="    ",
                                 break_on_hyphens=False, break_long_words=False) + "\n" for note in notes(v))
    return '''# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Generated by tools/versions.py from the pins; do not edit.

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # What every module is tested on (the notes of each module that extends this fragment).
    DOCUMENTATION = r"""
options: {}
notes:
%s"""
''' % body


def matrix(v):
    """The README's support matrix: each cell says how it is proven, and whether CI runs it."""
    core, oldest = v["ansible_core"], v["oldest_core"]
    rows = [
        ("Kubernetes %(kubernetes)s, containerd %(containerd)s + runc %(runc)s (built from their Go modules; "
         "the default real node)" % v,
         "everything `make test` runs: unit, integration (kwok nodes and the real node), molecule, lint, "
         "sanity; benchmarks with `make bench` (CI: yes, but not the benchmarks)",
         "unit and sanity (`make oldest-core`; no cluster) (CI: yes)"),
        ("Kubernetes %(compat_kubernetes)s (`NODEOPS_K8S_VERSION=%(compat_minor)s`; etcd %(compat_etcd)s), "
         "containerd %(debian_containerd)s + runc %(debian_runc)s (Debian 12's packages, that cluster's real node)" % v,
         "the compatibility suite (`make k8s-compat`): every integration test that uses the real node (every "
         "preset, the cron runner in its pod, the AWX and trust tests there) but the runner's time-zone window test; "
         "the tests marked `k8s_compat`: 17 of broadcast_job's on simulated nodes (fan-out, results, budgets, "
         "skips, lost nodes, resume, check mode, absent, concurrency, 200 nodes), cron_broadcast's idempotence, "
         "stored schedule and bad input, every dry-run refusal, all of dangling_job_ttl's (MutatingAdmissionPolicy is off there: the "
         "documented fallback) with its sweep and the TTL-engine playbook; the role through molecule; then, restarted "
         "with `NODEOPS_MUTATING_ADMISSION_POLICY_BETA=1`, dangling_job_ttl's engine choice and native engine end to "
         "end on MutatingAdmissionPolicy v1beta1 (CI: yes)",
         "not run"),
        ("Kubernetes %(kubernetes)s, containerd %(debian_containerd)s + runc %(debian_runc)s "
         "(`NODEOPS_CONTAINERD=1.6`)" % v,
         "every integration test that uses the real node, but the runner's time-zone window test "
         "(`make runtime-compat`) (CI: no; `make test` proves this runtime on Kubernetes %(compat_minor)s)" % v,
         "not run"),
    ]
    lines = ["| Cluster | ansible-core %s (default; the `ansible` %s package's kubernetes.core) | ansible-core %s.x "
             "(the oldest `meta/runtime.yml` declares; %s in CI) |" % (core, v["ansible"], oldest, v["oldest_core_pin"]),
             "|---|---|---|"]
    lines += ["| %s | %s | %s |" % row for row in rows]
    lines += ["", "Code shipped to pods (the cron runner and everything it imports, the node script, every "
              "preset) is checked to need nothing newer than Python 3.9 (vermin, in the unit tests); on the real "
              "node it runs on Debian 12's Python 3.11."]
    return "\n".join(lines) + "\n"


def _with_matrix(readme, v):
    start, end = readme.index(MATRIX_START) + len(MATRIX_START), readme.index(MATRIX_END)
    return readme[:start] + "\n" + matrix(v) + readme[end:]


def main(argv):
    v = pins()
    want = {FRAGMENT: render(v), README: _with_matrix(_read("README.md"), v)}
    if "--check" in argv:
        stale = [path for path, text in want.items()
                 if not os.path.exists(path) or _read(os.path.relpath(path, REPO)) != text]
        for path in stale:
            sys.stderr.write("%s is stale: run python3 tools/versions.py\n" % path)
        return 1 if stale else 0
    for path, text in want.items():
        with open(path, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
