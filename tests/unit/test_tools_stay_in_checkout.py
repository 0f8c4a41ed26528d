# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``make lint`` writes nothing outside the checkout, and ``make test`` checks that nothing did.

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
              "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "ANSIBLE_CORE", "NODEOPS_K8S_VERSION", "NODEOPS_CLUSTER_DIR")


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


def guard(*args, **kw):
    return subprocess.run([os.path.join(REPO, "tools", "home_guard.py")] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False, **kw)


def test_home_guard_names_every_write_under_ansible_home(tmp_path):
    """What `make test` ends with: a file added under ~/.ansible/collections fails the run, named."""
    home = tmp_path / "home"
    (home / ".ansible" / "tmp").mkdir(parents=True)
    (home / ".ansible" / "tmp" / "old").write_text("x")
    env = dict(os.environ, HOME=str(home))
    snap = str(tmp_path / "before.json")
    assert guard("snapshot", snap, env=env).returncode == 0
    clean = guard("check", snap, env=env)
    assert clean.returncode == 0 and "nothing written" in clean.stdout, clean.stdout
    stray = home / ".ansible" / "collections" / "ansible_collections" / "nodeops" / "kubernetes"
    stray.mkdir(parents=True)
    (stray / "MANIFEST.json").write_text("{}")
    (home / ".ansible" / "tmp" / "old").unlink()     # another Ansible run's temporary files: not this run's
    (home / ".ansible" / "tmp" / "new").write_text("x")
    dirty = guard("check", snap, env=env)
    assert dirty.returncode == 1, dirty.stdout
    assert "added:   ~/.ansible/collections/ansible_collections/nodeops/kubernetes/MANIFEST.json" in dirty.stdout
    assert "~/.ansible/tmp" not in dirty.stdout, dirty.stdout


def test_home_guard_sees_a_first_write_on_a_machine_with_no_ansible_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home))
    snap = str(tmp_path / "before.json")
    guard("snapshot", snap, env=env)
    (home / ".ansible" / "roles").mkdir(parents=True)
    dirty = guard("check", snap, env=env)
    assert dirty.returncode == 1 and "added:   ~/.ansible/roles" in dirty.stdout, dirty.stdout
    (home / ".ansible" / "roles").rmdir()
    (home / ".ansible" / "tmp").mkdir()
    assert guard("check", snap, env=env).returncode == 0


def recipe(target):
    """The recipe lines of ``target`` as the Makefile writes them. Read, not run: ``make -n`` still runs every
    line that calls $(MAKE), which for `make test` would start the cluster."""
    with open(os.path.join(REPO, "Makefile")) as f:
        text = f.read()
    body = text.split("\n%s:" % target, 1)[1].split("\n", 1)[1]
    lines = []
    for line in body.splitlines():
        if not line.startswith("\t"):
            break
        lines.append(line.strip())
    return lines


def test_make_test_ends_with_the_guard_and_every_tool_is_pointed_into_the_checkout():
    """The guard is the last step of `make test`, after the snapshot that is its first."""
    steps = recipe("test")
    assert "home_guard.py snapshot" in steps[0] and "home_guard.py check" in steps[-1], steps
    # ... and between them, unit and sanity also run on the oldest ansible-core meta/runtime.yml declares.
    assert "$(MAKE) --no-print-directory oldest-core" in steps, steps
    # ... and the compatibility suite on the older Kubernetes minor, after the full suite on the default one.
    assert steps.index("$(MAKE) --no-print-directory k8s-compat") > steps.index("$(MAKE) --no-print-directory integration")
    with open(os.path.join(REPO, "meta", "runtime.yml")) as f:
        oldest = [ln.split(">=")[1].strip().strip('"') for ln in f if ln.startswith("requires_ansible:")][0]
    printed = subprocess.run(["make", "--no-print-directory", "-C", REPO, "-p", "-n", "help"], stdout=subprocess.PIPE,
                             universal_newlines=True, check=True,
                             env=dict((k, v) for k, v in os.environ.items() if k not in NOT_PASSED)).stdout
    assert "OLDEST_CORE := %s." % oldest.rsplit(".", 1)[0] in printed
    assert "unit sanity ANSIBLE_CORE='$(OLDEST_CORE)'" in " ".join(recipe("oldest-core"))
    assert "ANSIBLE_HOME := %s/.ansible" % REPO in printed
    assert "NODEOPS_KUBECONFIG := %s/.cluster/kubeconfig" % REPO in printed
    assert "COMPAT_K8S := 1.34" in printed
    assert "ANSIBLE_REMOTE_TMP := %s/.ansible/tmp" % REPO in printed


def test_another_ansible_core_is_for_unit_and_sanity_only_and_from_the_command_line():
    env = dict((k, v) for k, v in os.environ.items() if k not in NOT_PASSED)
    wrong_target = subprocess.run(["make", "--no-print-directory", "-C", REPO, "-n", "integration",
                                   "ANSIBLE_CORE=2.16.*"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  universal_newlines=True, env=env, check=False)
    assert wrong_target.returncode != 0
    assert "ANSIBLE_CORE=2.16.* is for make unit and make sanity only, not integration" in wrong_target.stdout
    from_env = subprocess.run(["make", "--no-print-directory", "-C", REPO, "-n", "unit"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True,
                              env=dict(env, ANSIBLE_CORE="2.16.*"), check=False)
    assert from_env.returncode != 0 and "ANSIBLE_CORE is set in the environment" in from_env.stdout
