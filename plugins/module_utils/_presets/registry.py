# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The preset registry. A preset is one module of this package (see ``base.py`` for what it declares).

Each preset is imported here by name, because Ansible packs into a module only the module_utils it
imports by name; a unit test fails when a preset module is missing from ``REGISTRY``. The order is
the order of the documentation. The node pods do not import this: they get their own preset only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets import (
    host_command,
    image_prune,
    journal_vacuum,
    path_cleanup,
)

REGISTRY = dict((preset.NAME, preset) for preset in (image_prune, path_cleanup, host_command, journal_vacuum))
