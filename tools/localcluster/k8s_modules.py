#!/usr/bin/env python3
"""The Kubernetes minors there is a Go module for (tools/k8s/v1.NN), and the versions each go.mod pins.

go.mod is the one source of a minor's version. Standard library only, and nothing read from the
environment, so tools/versions.py and cluster.py share it.
"""

import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K8S_MODULES = os.path.join(REPO, "tools", "k8s")


def supported_minors():
    """The Kubernetes minors there is a module for (tools/k8s/v1.NN), oldest first."""
    found = [name[1:] for name in os.listdir(K8S_MODULES)
             if re.match(r"^v1\.\d+$", name) and os.path.isfile(os.path.join(K8S_MODULES, name, "go.mod"))]
    return sorted(found, key=lambda minor: tuple(int(part) for part in minor.split(".")))


def default_minor():
    """The newest minor the project supports: what the cluster runs unless NODEOPS_K8S_VERSION says otherwise."""
    return supported_minors()[-1]


def gomod_pin(minor, module):
    """The version of ``module`` that tools/k8s/v<minor>/go.mod requires."""
    with open(os.path.join(K8S_MODULES, "v" + minor, "go.mod")) as f:
        return re.search(r"^\s*%s (v[0-9.]+)$" % re.escape(module), f.read(), re.M).group(1)


def module_version(minor):
    """The k8s.io/kubernetes version of that minor's go.mod: the one source of the version."""
    return gomod_pin(minor, "k8s.io/kubernetes")


def make_prefix(minor):
    """How a command names this minor's cluster: with NODEOPS_K8S_VERSION unless it is the default."""
    return "" if minor == default_minor() else "NODEOPS_K8S_VERSION=%s " % minor
