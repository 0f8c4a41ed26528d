# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``make lint`` writes nothing outside the checkout.

ansible-lint's set-up used to build this collection and install the copy into ~/.ansible/collections
(its cache, when ANSIBLE_COLLECTIONS_PATH is set, as the Makefile sets it). The copy then came first:
ansible-lint warned "Another version of 'nodeops.kubernetes' ... only the first one will be used" and
checked that copy, not the work tree. Here it runs as ``make test`` runs it, with HOME a fresh directory.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# What would send its writes elsewhere than the defaults under HOME, or tie it to a calling make.
NOT_PASSED = ("ANSIBLE_HOME", "ANSIBLE_CONFIG", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME",
              "MAKEFLAGS", "MFLAGS", "MAKELEVEL")


def written_below(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, subdirs, files in os.walk(root)
                  for f in files + subdirs)


def test_make_lint_writes_nothing_under_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = dict((k, v) for k, v in os.environ.items() if k not in NOT_PASSED)
    env["HOME"] = str(home)
    proc = subprocess.run(["make", "--no-print-directory", "-C", REPO, "lint"], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=900, check=False)
    assert "files processed" in proc.stdout, proc.stdout      # it did lint
    assert "Another version of 'nodeops.kubernetes'" not in proc.stdout, proc.stdout
    assert written_below(str(home / ".ansible" / "collections")) == []
    assert written_below(str(home)) == []
