"""Stand-in for the get-pip bootstrap script that ansible-test downloads.

ansible-test fetches get-pip.py from ci-files.testing.ansible.com to put pip
into each sanity virtualenv. That host is not reachable from our machines, so
`make sanity` saves this file where ansible-test caches the download. It
installs pip from the interpreter's bundled wheel (ensurepip), then has that
pip install the exact versions ansible-test asked for, from PyPI.
"""

import subprocess
import sys

# get-pip's own flags; pip itself does not know them.
OWN_FLAGS = {"--no-setuptools", "--no-wheel"}

args = [a for a in sys.argv[1:] if a not in OWN_FLAGS]
# ensurepip in a child process: in-process it points PIP_CONFIG_FILE at /dev/null,
# which would hide the machine's pip configuration (index, CA bundle) from us.
rc = subprocess.call([sys.executable, "-m", "ensurepip", "--upgrade"])
rc = rc or subprocess.call([sys.executable, "-m", "pip", "install"] + args)
if rc == 0 and "--no-setuptools" in sys.argv:
    # ensurepip brings setuptools along; ansible-test asked for a venv without it.
    rc = subprocess.call([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", "setuptools"])
sys.exit(rc)
