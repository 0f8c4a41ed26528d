# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The example playbooks run against the local cluster."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import sys

import kube_helpers as kh


def playbook(name, *extra):
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
               "-e", "ansible_python_interpreter=" + sys.executable,
               os.path.join(kh.REPO, "playbooks", name)] + list(extra)
    return subprocess.run(command, env=dict(os.environ, KUBECONFIG=kh.KUBECONFIG, ANSIBLE_NOCOLOR="1"),
                          capture_output=True, text=True, timeout=300, check=False)


def test_prune_images_playbook_prints_a_table_per_node(namespace, cluster):
    proc = playbook("prune_images.yml", "-e", "prune_namespace=" + namespace)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "NODE                   OUTCOME" in proc.stdout
    for i in range(1, 9):
        assert "kwok-worker-%d " % i in proc.stdout
    assert "control plane" in proc.stdout
