# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: report_html
author: nodeops.kubernetes contributors
version_added: "0.1.0"
short_description: A self-contained HTML report of cron broadcasts' run histories
description:
  - Turns what M(nodeops.kubernetes.broadcast_info) returns into one HTML page with its style inline and its
    charts as inline SVG. It has no script, font, image or link to fetch, so it opens the same off-line.
  - Per cron broadcast it shows the last runs with one row per node and one coloured cell per run
    (class C(outcome-<outcome>)). It also shows the bytes each node freed in the newest run as bars, the bytes
    each run freed as a column chart, and the nodes the newest run skipped, with the reason.
  - The input is either one broadcast_info result, or a list of C({name, info, error}) entries, one per cluster
    (each C(info) a broadcast_info result read from that cluster, or C(error) saying why there is none), to put
    several clusters on one page.
  - A dry run's bytes are shown as what it would free (pale blue), never as freed.
  - A run that fell due inside a freeze (cron_broadcast's I(freeze)) started no pod; its column is marked
    skipped and a line under the cards gives the freeze's reason.
options:
  _input:
    description: A broadcast_info result (with C(cron_broadcasts)), or a list of C({name, info, error}) per cluster.
    type: raw
    required: true
  title:
    description: The page's title.
    type: str
    default: Node maintenance report
  generated_at:
    description: When the report was made, shown under the title.
    type: str
  cluster:
    description: The cluster's name, when the input is one broadcast_info result.
    type: str
"""

EXAMPLES = r"""
- name: Read the history
  nodeops.kubernetes.broadcast_info:
    namespace: node-maintenance
    runs: 5
  register: info

- name: Write the report
  ansible.builtin.copy:
    content: "{{ info | nodeops.kubernetes.report_html(generated_at=now(utc=true).isoformat()) }}"
    dest: /tmp/nodeops-report.html
    mode: "0644"
"""

RETURN = r"""
_value:
  description: The HTML document.
  type: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.nodeops.kubernetes.plugins.module_utils._report import html


def report_html(data, title="Node maintenance report", generated_at=None, cluster=None):
    if isinstance(data, dict) and "cron_broadcasts" in data:
        clusters = [{"name": cluster, "info": data}]
    elif isinstance(data, list) and all(isinstance(c, dict) and ("info" in c or "error" in c) for c in data):
        clusters = data
    else:
        raise AnsibleFilterError(
            "report_html: the input must be a broadcast_info result (a dict with cron_broadcasts) or a list of "
            "{name, info, error} per cluster; got %s" % type(data).__name__)
    return html.render(clusters, title=title, generated_at=generated_at)


class FilterModule(object):
    def filters(self):
        return {"report_html": report_html}
