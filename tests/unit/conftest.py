# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# pytest puts this directory on sys.path for every unit test, so they share module_args.py.
