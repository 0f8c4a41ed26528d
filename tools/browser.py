#!/usr/bin/env python3
"""Headless Chromium for the report's browser test, from Debian's packages (no browser download).

    browser.py ensure   install chromium (and a font) with apt-get if it is missing; first time only
    browser.py path     print the chromium binary, or why there is none (exit 1)

Only the standard library: it runs before the virtualenv exists.
"""

import os
import shutil
import subprocess
import sys

PACKAGES = ["chromium", "fonts-dejavu-core"]
CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
# Chromium on a closed network: no background connections, no sandbox (root, no user namespaces needed).
HEADLESS_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def log(msg):
    sys.stdout.write("[browser] %s\n" % msg)
    sys.stdout.flush()


def binary():
    for path in CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium")


def unavailable_reason():
    """Why chromium cannot be had here, or None (it is there, or apt-get can install it)."""
    if binary():
        return None
    if not shutil.which("apt-get"):
        return "no chromium and no apt-get to install it (Debian's package: chromium)"
    if os.geteuid() != 0:
        return "no chromium, and installing it needs root (apt-get install chromium)"
    return None


def ensure():
    if binary():
        return 0
    why = unavailable_reason()
    if why:
        log("skipped: %s; the report's browser test will skip" % why)
        return 0
    log("installing Debian's %s for the report's browser test (first time only)" % " ".join(PACKAGES))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + PACKAGES, check=True, env=env)
    if not binary():
        sys.exit("[browser] chromium is still missing after apt-get install")
    log("chromium at %s" % binary())
    return 0


def main(argv):
    if argv[1:] == ["ensure"]:
        return ensure()
    if argv[1:] == ["path"]:
        path = binary()
        print(path or unavailable_reason() or "no chromium (run: tools/browser.py ensure)")
        return 0 if path else 1
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
