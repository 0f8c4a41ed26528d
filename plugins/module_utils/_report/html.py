# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HTML report of cron broadcasts' run histories: one self-contained page. Pure, standard library.

Input: what ``broadcast_info`` returns (``cron_broadcasts``, each with its ``history``), for one
cluster or several (``clusters``: a list of ``{"name", "info"}``). Output: one HTML document with its
style inline and its charts as inline SVG: no script, no font, no image, nothing fetched, so it
opens the same in an air-gapped cluster's bastion and attached to a ticket.

Per broadcast it shows:
* the last runs, one row per node and one column per run, each cell coloured by the outcome
  (class ``outcome-<outcome>``);
* the bytes each node freed in the newest run, as bars (a dry run's, what it would free, in pale blue);
* the bytes each run freed over the history, as a small column chart (dry runs stacked in pale blue);
* the nodes the newest run skipped, counted per reason, with their names where the history kept them.

Per scheduled sweep of ownerless Jobs (``sweeps``): its recent sweeps, one row each, with how many Jobs it
took and what it spared, by reason.

The elements a test or a script may look for carry classes and ``data-`` attributes: section
``broadcast[data-cluster][data-broadcast]``, rows ``tr.node-row[data-node]``, cells
``td.cell.outcome-*[data-run]``, bars ``div.bar-row[data-node][data-bytes]``, chart columns
``rect.run-bar[data-run][data-bytes]``, skipped nodes by reason ``tr.skipped-row[data-reason][data-count]``
with ``span.skipped-node[data-node]`` (at most 50 names per reason: a selector may skip thousands) and,
where the history's size cap kept only a count per reason, ``span.skipped-unnamed[data-count]``; the newest
run's limits ``p.limits[data-stopped]`` (why it stopped starting pods: HealthGate, WindowClosed, ...).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from html import escape

OUTCOME_COLOURS = {
    "succeeded": "#2e7d32", "failed": "#c62828", "timed_out": "#ef6c00", "lost": "#6a1b9a",
    "unschedulable": "#ad1457", "not_started": "#757575", "cancelled": "#9e9d24", "skipped": "#b0bec5", "none": "#eceff1",
}
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px;color:#1f2933;
background:#fafbfc}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 6px}h3{font-size:14px;margin:18px 0 6px;color:#52606d}
.meta{color:#52606d;font-size:13px;margin:0 0 12px}
section.broadcast{background:#fff;border:1px solid #d9e2ec;border-radius:6px;padding:12px 18px 18px;margin:18px 0}
section.broadcast h2{margin-top:4px}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #d9e2ec;border-radius:4px;padding:6px 10px;
font-size:13px}.card b{display:block;font-size:16px}
table{border-collapse:collapse;font-size:13px}th,td{padding:3px 8px;text-align:left;white-space:nowrap}
table.skipped td{white-space:normal;vertical-align:top}.skipped-node{font-family:monospace;font-size:12px}
table.runs th.run{font-weight:normal;font-size:11px;color:#52606d}
td.cell{color:#fff;text-align:center;min-width:84px;border:2px solid #fff}
td.outcome-none{color:#9aa5b1}td.outcome-skipped{color:#1f2933}
.bar-row{display:flex;align-items:center;gap:8px;font-size:13px;margin:2px 0}
.bar-row .name{width:220px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.bar{width:360px;height:12px;background:#eceff1;border-radius:2px}.fill{height:12px;background:#1565c0;border-radius:2px}
.fill.dry-run{background:#90caf9}
.legend span{display:inline-block;margin-right:10px;font-size:12px}.legend i{display:inline-block;width:10px;
height:10px;margin-right:4px;vertical-align:middle}
.cluster-error{color:#c62828}
"""
STYLE += "".join("td.outcome-%s{background:%s}" % (k, v) for k, v in sorted(OUTCOME_COLOURS.items()))
UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(n):
    """1536 -> '1.5 KiB'. Pure."""
    if n is None:
        return "-"
    value, unit = float(n), 0
    while value >= 1024 and unit < len(UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return ("%d %s" if unit == 0 else "%.1f %s") % (value, UNITS[unit])


def _bytes_freed(rec):
    """What a node's preset freed, or with dry_run would have freed."""
    return ((rec.get("result") or {}).get("bytes_freed")) or 0


def _is_dry(rec):
    return bool((rec.get("result") or {}).get("dry_run"))


def _runs_freed(run):
    """(freed, would free) by a run: from its ``removed`` totals, or summed from its nodes."""
    removed = run.get("removed") or {}
    if "bytes_freed" in removed:
        return removed["bytes_freed"] or 0, removed.get("would_free_bytes") or 0
    nodes = run.get("nodes") or []
    return (sum(_bytes_freed(r) for r in nodes if not _is_dry(r)), sum(_bytes_freed(r) for r in nodes if _is_dry(r)))


def freed_label(freed, would):
    """'3.0 KiB', 'would free 3.0 KiB (dry run)', or both. Pure."""
    if would and not freed:
        return "would free %s (dry run)" % human_bytes(would)
    if would:
        return "%s, would free %s more (dry run)" % (human_bytes(freed), human_bytes(would))
    return human_bytes(freed)


def grid(history):
    """Rows of the last-runs table: (node, [(run_id, outcome, title) per run]), for every node that any of
    the runs did not skip; runs newest first, as the history keeps them. Pure."""
    nodes = sorted({rec["node"] for run in history for rec in run.get("nodes") or []
                    if rec.get("outcome") != "skipped"})
    by_run = [(run.get("run_id"), dict((rec["node"], rec) for rec in run.get("nodes") or [])) for run in history]
    rows = []
    for node in nodes:
        cells = []
        for run_id, recs in by_run:
            rec = recs.get(node)
            if rec is None:
                cells.append((run_id, "none", "not in this run"))
                continue
            title = rec.get("reason") or ""
            if rec.get("message"):
                title = "%s: %s" % (title, rec["message"]) if title else rec["message"]
            if (rec.get("result") or {}).get("bytes_freed") is not None:
                what = ("would free %s (dry run)" if _is_dry(rec) else "freed %s") % human_bytes(_bytes_freed(rec))
                title = "%s (%s)" % (title, what) if title else what
            cells.append((run_id, rec.get("outcome") or "none", title))
        rows.append((node, cells))
    return rows


def _chart(history, width=520, height=120):
    """Freed bytes per run, oldest to newest, as SVG columns."""
    runs = list(reversed(history))
    top = max([sum(_runs_freed(r)) for r in runs] + [1])
    slot = float(width) / max(len(runs), 1)
    bar_w = min(48.0, max(4.0, slot * 0.6))
    parts = ['<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" '
             'aria-label="bytes freed per run">' % (width, height + 30)]
    parts.append('<line x1="0" y1="%d" x2="%d" y2="%d" stroke="#9aa5b1"/>' % (height, width, height))
    for i, run in enumerate(runs):
        freed, would = _runs_freed(run)
        x = i * slot + (slot - bar_w) / 2
        h_freed = 0 if not freed else max(1.0, height * float(freed) / top)
        h_would = 0 if not would else max(1.0, height * float(would) / top)
        label = escape(str(run.get("started_at") or run.get("run_id")))
        # Freed in solid blue; what a dry run would have freed, stacked on it in pale blue.
        parts.append('<rect class="run-bar" data-run="%s" data-bytes="%d" data-would-free="%d" x="%.1f" y="%.1f" '
                     'width="%.1f" height="%.1f" fill="#1565c0"><title>%s: %s</title></rect>' % (
                         escape(str(run.get("run_id"))), freed, would, x, height - h_freed, bar_w, h_freed, label,
                         escape(freed_label(freed, would))))
        if h_would:
            parts.append('<rect class="run-bar-dry" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#90caf9">'
                         '<title>%s: %s</title></rect>' % (
                             x, height - h_freed - h_would, bar_w, h_would, label, escape(freed_label(freed, would))))
        parts.append('<text x="%.1f" y="%d" font-size="10" text-anchor="middle" fill="#52606d">%s</text>' % (
            x + bar_w / 2, height + 14, escape(human_bytes(freed + would))))
    parts.append('<text x="0" y="%d" font-size="10" fill="#52606d">oldest</text>' % (height + 28))
    parts.append('<text x="%d" y="%d" font-size="10" text-anchor="end" fill="#52606d">newest</text>'
                 % (width, height + 28))
    parts.append("</svg>")
    return "".join(parts)


def _bars(newest):
    recs = [rec for rec in newest.get("nodes") or [] if rec.get("outcome") != "skipped"]
    top = max([_bytes_freed(rec) for rec in recs] + [1])
    out = []
    for rec in sorted(recs, key=lambda r: (-_bytes_freed(r), r["node"])):
        freed, dry = _bytes_freed(rec), _is_dry(rec)
        out.append('<div class="bar-row" data-node="%s" data-bytes="%d" data-dry-run="%s"><span class="name">%s</span>'
                   '<div class="bar"><div class="fill%s" style="width:%.1f%%"></div></div><span>%s</span></div>' % (
                       escape(rec["node"]), freed, "true" if dry else "false", escape(rec["node"]),
                       " dry-run" if dry else "", 100.0 * freed / top,
                       escape(freed_label(0, freed) if dry else human_bytes(freed))))
    return "".join(out) or "<p>No node ran.</p>"


SKIPPED_NAMES_SHOWN = 50


def skipped_by_reason(newest):
    """[(reason, count, [node, ...])] of the nodes a run skipped, the most common reason first. Pure.

    When the history's size cap has folded a run's skipped nodes into ``skipped_by_reason`` (a count per
    reason, see ``_broadcast/history.cap_history``), their names are gone: ``count`` still has them all,
    the list of names only those kept.
    """
    counts, names = {}, {}
    for reason, count in (newest.get("skipped_by_reason") or {}).items():
        counts[reason or ""] = counts.get(reason or "", 0) + (count or 0)
    for rec in newest.get("nodes") or []:
        if rec.get("outcome") == "skipped":
            reason = rec.get("reason") or ""
            counts[reason] = counts.get(reason, 0) + 1
            names.setdefault(reason, []).append(rec["node"])
    return sorted(((reason, count, sorted(names.get(reason, []))) for reason, count in counts.items()),
                  key=lambda g: (-g[1], g[0]))


def _skipped(newest):
    groups = skipped_by_reason(newest)
    if not groups:
        return "<p>None.</p>"
    rows = []
    for reason, count, nodes in groups:
        names = "".join('<span class="skipped-node" data-node="%s">%s</span> ' % (escape(n), escape(n))
                        for n in nodes[:SKIPPED_NAMES_SHOWN])
        if len(nodes) > SKIPPED_NAMES_SHOWN:
            names += "and %d more " % (len(nodes) - SKIPPED_NAMES_SHOWN)
        unnamed = count - len(nodes)     # folded by the history's size cap: only their count was kept
        if unnamed:
            names += ('<span class="skipped-unnamed" data-count="%d">%s%d not named (the history kept only their count)'
                      '</span>' % (unnamed, "and " if nodes else "", unnamed))
        rows.append('<tr class="skipped-row" data-reason="%s" data-count="%d"><td>%s</td><td>%d</td><td>%s</td></tr>'
                    % (escape(reason), count, escape(reason), count, names))
    return ('<table class="skipped"><thead><tr><th>Reason</th><th>Nodes</th><th>Which</th></tr></thead><tbody>%s'
            '</tbody></table>' % "".join(rows))


def _legend():
    return '<p class="legend">%s</p>' % "".join(
        '<span><i style="background:%s"></i>%s</span>' % (colour, name.replace("_", " "))
        for name, colour in OUTCOME_COLOURS.items() if name != "none")


def _broadcast(cluster, cron):
    history = cron.get("history") or []
    name = cron.get("name") or "?"
    head = '<section class="broadcast" data-cluster="%s" data-broadcast="%s"><h2>%s%s</h2>' % (
        escape(cluster or ""), escape(name), escape(name), (" <small>on %s</small>" % escape(cluster)) if cluster else "")
    schedule = "schedule <code>%s</code>%s%s" % (
        escape(str(cron.get("schedule") or "?")), (" (%s)" % escape(cron["time_zone"])) if cron.get("time_zone") else "",
        " &middot; suspended" if cron.get("suspended") else "")
    if not history:
        return head + '<p class="meta">%s</p><p>No runs recorded yet.</p></section>' % schedule
    last = history[0]
    # A run skipped inside a freeze started no pod: the cards, bars and skipped nodes are those of the newest run
    # that ran (the columns and the lines under the cards show the skips).
    newest = next((run for run in history if run.get("state") != "skipped"), last)
    summary = newest.get("summary") or {}
    cards = "".join('<div class="card">%s<b>%s</b></div>' % (label, escape(str(value))) for label, value in [
        ("last run", last.get("state")), ("last ran" if newest is not last else "started", newest.get("started_at")),
        ("succeeded", summary.get("succeeded", 0)),
        ("failed", sum(summary.get(k, 0) for k in ("failed", "timed_out", "lost", "unschedulable"))),
        ("not started", summary.get("not_started", 0)), ("cancelled", summary.get("cancelled", 0)), ("disk space", freed_label(*_runs_freed(newest)))])
    columns = "".join('<th class="run" data-state="%s" title="%s">%s<br>%s%s</th>' % (
        escape(str(run.get("state"))), escape(run.get("reason") or str(run.get("state"))),
        escape(str(run.get("run_id"))), escape(str(run.get("started_at") or "")),
        "<br><small>skipped</small>" if run.get("state") == "skipped" else "") for run in history)

    def cell(run_id, outcome, title):
        shown = outcome.replace("_", " ") if outcome != "none" else "-"
        return '<td class="cell outcome-%s" data-run="%s" title="%s">%s</td>' % (
            escape(outcome), escape(str(run_id)), escape(title), escape(shown))

    rows = "".join('<tr class="node-row" data-node="%s"><th>%s</th>%s</tr>' % (
        escape(node), escape(node), "".join(cell(*c) for c in cells)) for node, cells in grid(history))
    skips = "".join('<p class="skipped-run" data-run="%s">Run %s (%s) was skipped%s: %s. It started no pod.</p>' % (
        escape(str(run.get("run_id"))), escape(str(run.get("run_id"))), escape(str(run.get("started_at") or "")),
        (", with %d runs before it since %s" % (run["skipped_runs"] - 1, escape(str(run.get("first_skipped_at"))))
         if (run.get("skipped_runs") or 1) > 1 else ""),
        escape(run.get("reason") or "no reason recorded")) for run in history if run.get("state") == "skipped")
    return "".join([
        head, '<p class="meta">%s</p>' % schedule, '<div class="cards">%s</div>' % cards, _limits(newest),
        _pressure(newest), skips,
        "<h3>Last %d runs, node by node (newest first)</h3>" % len(history), _legend(),
        '<table class="runs"><thead><tr><th>Node</th>%s</tr></thead><tbody>%s</tbody></table>' % (columns, rows),
        "<h3>Bytes freed per node, newest run</h3>", _bars(newest),
        "<h3>Bytes freed per run</h3>", _chart(history),
        '<p class="meta">Pale blue: what a dry run would free; it removed nothing.</p>',
        "<h3>Skipped nodes, newest run</h3>", _skipped(newest), "</section>"])


def _pressure(newest):
    """The newest run's nodes under DiskPressure (``p.pressure[data-nodes][data-still]``), and which of them still
    were when it ended. Empty when none was."""
    seen = newest.get("disk_pressure") or {}
    if not seen.get("nodes"):
        return ""
    still = seen.get("still") or []
    return ('<p class="pressure meta" data-nodes="%d" data-still="%d">Under DiskPressure during the run: '
            '%s; still under it when the run ended: %s.</p>' % (
                len(seen["nodes"]), len(still), escape(", ".join(seen["nodes"][:20]) + (
                    " and %d more" % (len(seen["nodes"]) - 20) if len(seen["nodes"]) > 20 else "")),
                escape(", ".join(still[:20]) + (" and %d more" % (len(still) - 20) if len(still) > 20 else "")
                       if still else "none")))


def _limits(newest):
    """The newest run's limits (``p.limits[data-stopped]``): why it stopped starting pods, if it did, and the
    window, failure budget, batch soak and health gate it ran under. Empty for a run recorded without them."""
    lim = newest.get("limits")
    if not lim:
        return ""
    parts = []
    if lim.get("stopped_starting"):
        parts.append('<b class="stopped">stopped starting pods: %s</b> (%s)' % (
            escape(lim["stopped_starting"]), escape(str(lim.get("stopped_message") or ""))))
    if lim.get("window_closes_at"):
        parts.append("window closing at %s" % escape(lim["window_closes_at"]))
    if lim.get("failure_budget") is not None:
        parts.append("failure budget %d" % lim["failure_budget"])
    if lim.get("batch_soak_s"):
        parts.append("batch soak %d s" % lim["batch_soak_s"])
    gate = lim.get("health_gate")
    if gate:
        parts.append("health gate: %s%s" % (
            "at most %d NotReady nodes" % gate["max_not_ready"] if gate.get("max_not_ready") is not None
            else "NotReady count not checked",
            ", finished nodes must stay Ready" if gate.get("finished_nodes") else ""))
    if not parts:
        return ""
    stopped = escape(lim.get("stopped_starting") or "")
    return '<p class="limits meta" data-stopped="%s">%s</p>' % (stopped, " &middot; ".join(parts))


def _sweep(cluster, sweep):
    """A scheduled sweep of ownerless Jobs: its recent sweeps, one row each (``tr.sweep-row[data-run][data-state]
    [data-taken]``)."""
    history = sweep.get("history") or []
    name = sweep.get("name") or "?"
    head = ('<section class="broadcast sweep" data-cluster="%s" data-sweep="%s"><h2>Sweep of ownerless Jobs: %s%s</h2>'
            % (escape(cluster or ""), escape(name), escape(name), (" <small>on %s</small>" % escape(cluster))
               if cluster else ""))
    schedule = '<p class="meta">schedule <code>%s</code>%s</p>' % (
        escape(str(sweep.get("schedule") or "?")), (" (%s)" % escape(sweep["time_zone"])) if sweep.get("time_zone")
        else "")
    if not history:
        return head + schedule + "<p>No sweeps recorded yet.</p></section>"
    rows = []
    for run in history:
        summary = run.get("summary") or {}
        spared = ", ".join("%s: %d" % (escape(reason), count)
                           for reason, count in sorted((run.get("spared_by_reason") or {}).items()))
        rows.append('<tr class="sweep-row" data-run="%s" data-state="%s" data-taken="%d"><td>%s</td><td>%s</td>'
                    '<td>%s</td><td>%d</td><td>%s</td><td>%d</td></tr>' % (
                        escape(str(run.get("run_id"))), escape(str(run.get("state"))), summary.get("taken", 0),
                        escape(str(run.get("started_at") or "")), escape(str(run.get("state"))),
                        escape(str(summary.get("action") or "")), summary.get("taken", 0), spared or "-",
                        summary.get("errors", 0)))
    return "".join([head, schedule, "<h3>Last %d sweeps (newest first)</h3>" % len(history),
                    '<table class="sweeps"><thead><tr><th>started</th><th>state</th><th>action</th><th>Jobs taken</th>'
                    '<th>spared, by reason</th><th>errors</th></tr></thead><tbody>%s</tbody></table></section>'
                    % "".join(rows)])


def render(clusters, title="Node maintenance report", generated_at=None):
    """The report's HTML. ``clusters``: a list of ``{"name": str or None, "info": <broadcast_info result>,
    "error": str or None}``; a cluster with an error is shown with it. Pure."""
    body = []
    for cluster in clusters:
        name = cluster.get("name")
        if cluster.get("error"):
            body.append('<section class="broadcast" data-cluster="%s"><h2>%s</h2><p class="cluster-error">%s</p>'
                        '</section>' % (escape(name or ""), escape(name or "cluster"), escape(cluster["error"])))
            continue
        crons = (cluster.get("info") or {}).get("cron_broadcasts") or []
        sweeps = (cluster.get("info") or {}).get("sweeps") or []
        if not crons and not sweeps:
            body.append('<section class="broadcast" data-cluster="%s"><h2>%s</h2><p>No cron broadcasts.</p>'
                        '</section>' % (escape(name or ""), escape(name or "cluster")))
        body.extend(_broadcast(name, cron) for cron in crons)
        body.extend(_sweep(name, sweep) for sweep in sweeps)
    return "".join([
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>%s</title><style>%s</style></head><body>" % (escape(title), STYLE),
        "<h1>%s</h1>" % escape(title),
        '<p class="meta">%s</p>' % ("generated %s" % escape(generated_at) if generated_at else ""),
        "".join(body), "</body></html>\n"])
