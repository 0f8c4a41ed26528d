# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Exceptions the patched AnsibleModule raises in unit tests (see conftest.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class Exit(Exception):
    pass


class Fail(Exception):
    pass
