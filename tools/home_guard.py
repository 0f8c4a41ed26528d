#!/usr/bin/env python3
"""Checks that a command wrote nothing under ~/.ansible.

``make test`` takes a snapshot before it starts and checks it at the end. Every Ansible tool it runs is
pointed at the checkout's .ansible/ (ANSIBLE_HOME in the Makefile); a tool that still writes under
~/.ansible, above all ~/.ansible/collections, where a stray copy of this collection would be found before
the work tree, fails the run here, naming each path.

    home_guard.py snapshot FILE   record every path under ~/.ansible with its type, size and mtime
    home_guard.py check FILE      exit 1, listing what was added, changed or removed since

~/.ansible/tmp is left out: any Ansible run on the machine (another checkout's, a user's) makes and removes
its per-task directories there, so it says nothing about this run; what is found first is collections/
and roles/, which is checked, with everything else under ~/.ansible.
"""

import json
import os
import sys


def ansible_dir():
    return os.path.join(os.path.expanduser("~"), ".ansible")


# Below ~/.ansible, what others use at the same time (see above).
SHARED = ("tmp",)


def snapshot(root):
    """{relative path: [kind, size, mtime_ns]} for root and everything below it but SHARED ({} when root is
    absent). root's own mtime is left out too: it changes when SHARED is made."""
    out = {}
    if not os.path.lexists(root):
        return out
    paths = []
    for d, dirs, files in os.walk(root):
        if d == root:
            dirs[:] = [n for n in dirs if n not in SHARED]
        paths += [os.path.join(d, n) for n in dirs + files]
    for path in paths:
        st = os.lstat(path)
        kind = "dir" if os.path.isdir(path) and not os.path.islink(path) else "file"
        size = st.st_size if kind == "file" else 0
        out[os.path.relpath(path, os.path.dirname(root))] = [kind, size, st.st_mtime_ns]
    return out


def differences(before, after):
    """Lines naming each path added, changed or removed between two snapshots."""
    lines = ["added:   ~/%s" % p for p in sorted(set(after) - set(before))]
    lines += ["changed: ~/%s" % p for p in sorted(set(after) & set(before)) if after[p] != before[p]]
    lines += ["removed: ~/%s" % p for p in sorted(set(before) - set(after))]
    return lines


def main(argv):
    if len(argv) != 3 or argv[1] not in ("snapshot", "check"):
        sys.stderr.write(__doc__)
        return 2
    if argv[1] == "snapshot":
        os.makedirs(os.path.dirname(os.path.abspath(argv[2])), exist_ok=True)
        with open(argv[2], "w") as f:
            json.dump(snapshot(ansible_dir()), f)
        return 0
    with open(argv[2]) as f:
        before = json.load(f)
    lines = differences(before, snapshot(ansible_dir()))
    if lines:
        sys.stderr.write("home_guard: this run wrote under %s; every tool must keep its files in the "
                         "checkout's .ansible/ (ANSIBLE_HOME in the Makefile):\n  %s\n"
                         % (ansible_dir(), "\n  ".join(lines)))
        return 1
    print("home_guard: nothing written under %s" % ansible_dir())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
