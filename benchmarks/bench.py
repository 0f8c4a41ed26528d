"""nodeops.kubernetes benchmarks: fan-out and sweep, each against baselines measured in the same run.

    make bench                                  # the full profile, about 55 minutes on 2 cores
    python benchmarks/bench.py --profile smoke --out DIR   # seconds; run by `make test`

Runs against the local control plane (``make cluster``): real kube-apiserver,
etcd, controller-manager and scheduler, with kwok as the kubelet of every
simulated node. Prints a table, writes ``results/latest.json``,
``results/latest.md`` and ``results/latest.png`` (or the same under --out).
See benchmarks/README.md for what each figure means.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import contenders as programs  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FANOUT_NS = "nodeops-bench"
JOB_NS = ("bench-jobs-a", "bench-jobs-b")
CONTROL_NS = "bench-jobs-keep"

PROFILES = {
    # sizes: fan-out node counts; repeat: runs of each contender at a size (medians are compared),
    # and of ours and the bare loop at the one-node-at-a-time comparison
    "full": {"sizes": [100, 1000, 5000], "ratio_size": 1000, "repeat": {1000: 3, 5000: 2, 50: 3},
             "serial_nodes": 50,
             "polling_nodes": 100, "sweep_sizes": [1000, 5000, 10000], "pipeline_size": 5000, "controls": 1000},
    # The engine/bare ratio at 1,000 nodes alone (what a change to the engine reports), other parts at smoke size.
    "ratio": {"sizes": [1000], "ratio_size": 1000, "repeat": {1000: 3}, "serial_nodes": 4, "polling_nodes": 10,
              "sweep_sizes": [30, 120], "pipeline_size": 30, "controls": 15},
    "smoke": {"sizes": [10, 40], "ratio_size": 40, "repeat": {}, "serial_nodes": 4, "polling_nodes": 10,
              "sweep_sizes": [30, 120], "pipeline_size": 30, "controls": 15},
}

TARGETS = {
    "fanout_vs_bare": 1.3, "serial_speedup": 50.0, "scaling_5x": 5.5, "requests_per_node": 1.2,
    "peak_rss_mib": 150.0, "sweep_speedup": 30.0, "sweep_rss_flat": 0.20,
}


GOJQ = "github.com/itchyny/gojq/cmd/gojq@v0.12.17"


def ensure_jq(path):
    """The sweep pipeline needs jq. Without one on PATH, build gojq (a jq in Go) once from the Go module
    proxy into the project's cache and return the directory that holds it as ``jq``."""
    if shutil.which("jq", path=path):
        return None
    cache = os.path.join(os.path.expanduser("~"), ".cache", "nodeops", "gojq-v0.12.17")
    jq = os.path.join(cache, "jq")
    if not os.path.exists(jq):
        log("no jq on PATH: building %s (once)" % GOJQ)
        subprocess.run(["go", "install", GOJQ], check=True, env=dict(os.environ, GOBIN=cache, CGO_ENABLED="0"))
        os.symlink(os.path.join(cache, "gojq"), jq)
    return cache


def log(msg):
    sys.stderr.write("[bench] %s\n" % msg)
    sys.stderr.flush()


class Bench:
    def __init__(self, profile, out_dir, keep_nodes=False, profile_engine=False):
        self.name = profile
        self.p = PROFILES[profile]
        self.out = out_dir
        self.keep_nodes = keep_nodes
        self.profile_engine = profile_engine
        self.api = harness.client()
        self.env = harness.python_env()
        self.env["PATH"] = os.pathsep.join([harness.local_cluster.path("bin"), os.path.dirname(sys.executable),
                                            self.env.get("PATH", "")])
        jq_dir = ensure_jq(self.env["PATH"])
        if jq_dir:
            self.env["PATH"] = jq_dir + os.pathsep + self.env["PATH"]
        self.tmp = tempfile.mkdtemp(prefix="nodeops-bench-")
        self.results = {"fanout": [], "sweep": [], "harness": {"node_creation": [], "job_creation": []}}

    # ------------------------------------------------------------ measuring

    def measure(self, kind, contender, size, cmd, expect, parse_stdout=True, extra=None):
        """Run one contender as its own process with apiserver metrics taken before and after."""
        before = harness.scrape(self.api)
        stdout_path = os.path.join(self.tmp, "stdout.json")
        run = harness.run_measured(cmd, env=dict(self.env, **(extra or {})), stdout_path=stdout_path)
        after = harness.scrape(self.api)
        rows = harness.delta(before, after)
        out = {}
        if parse_stdout and run["rc"] == 0:
            with open(stdout_path) as f:
                out = json.loads(f.read() or "{}")
        tool = harness.tool_requests(rows)
        # In-process contenders count what their own client sent (exact); the others are counted at the
        # apiserver, from the rows only a tool makes (see harness.TOOL_ROWS).
        sent = out.get("client_requests")
        requests = sent if sent is not None else tool
        rec = {"contender": contender, "size": size, "wall_s": round(run["wall_s"], 3),
               "peak_rss_mib": round(run["peak_rss_mib"], 1), "rc": run["rc"],
               "tool_requests": tool, "requests": requests, "requests_counted_by": "client" if sent is not None
               else "apiserver", "requests_per_unit": round(requests / float(size), 3) if size else None,
               "client_requests": out.get("client_requests"), "apiserver_rows": rows, "output": out}
        if run["rc"] != 0:
            rec["stderr"] = run["stderr"]
            log("%s %s at %d FAILED rc=%s: %s" % (kind, contender, size, run["rc"], run["stderr"][-1500:]))
        ok = expect(out) if run["rc"] == 0 else False
        rec["complete"] = bool(ok)
        log("%-6s %-8s %6d  %8.2fs  rss %6.1f MiB  %5d requests (%s/unit)%s" % (
            kind, contender, size, run["wall_s"], run["peak_rss_mib"], requests, rec["requests_per_unit"],
            "" if ok else "  INCOMPLETE"))
        self.results[kind].append(rec)
        return rec

    # ------------------------------------------------------------ fan-out

    def contender_cmd(self, name, selector, *more):
        return [sys.executable, os.path.join(HERE, "contenders.py"), name, "--namespace", FANOUT_NS,
                "--selector", selector] + list(more)

    def fanout_engine(self, size, selector):
        more = []
        if self.profile_engine:
            more = ["--profile", os.path.join(self.out, "profile-engine-%d.txt" % size)]
        return self.measure("fanout", "engine", size, self.contender_cmd("engine", selector, *more),
                            lambda o: o.get("summary", {}).get("succeeded") == o.get("results") == size)

    def fanout_engine_logread(self, size, selector):
        """The engine reading every node's log as well (log_on_success): how results came before they
        came in the pod status, one log read per node."""
        return self.measure("fanout", "engine-logread", size,
                            self.contender_cmd("engine", selector, "--log-on-success"),
                            lambda o: o.get("summary", {}).get("succeeded") == o.get("results") == o.get("log_tails")
                            == size)

    def fanout_bare(self, size, selector):
        return self.measure("fanout", "bare", size, self.contender_cmd("bare", selector),
                            lambda o: o.get("summary", {}).get("succeeded") == size)

    def fanout_module(self, size, selector):
        key, _, value = selector.partition("=")
        play = [{"hosts": "localhost", "gather_facts": False, "connection": "local", "tasks": [
            {"name": "broadcast", "nodeops.kubernetes.broadcast_job": {
                "name": "bench-module", "namespace": FANOUT_NS, "preset": "image_prune", "image_prune": {"dry_run": True},
                "pod_annotations": {programs.SIM_MESSAGE: programs.RESULT_MESSAGE},
                "node_selector": {key: value}, "parallelism": "100%", "timeout": 3600, "pending_timeout": 1800},
             "register": "r"},
            {"name": "every node succeeded, with its result", "ansible.builtin.assert": {"that": [
                "r.summary.succeeded == %d" % size,
                "r.nodes | selectattr('result', 'defined') | list | length == %d" % size], "quiet": True}},
            {"name": "keep the summary", "ansible.builtin.copy": {
                "content": "{{ r.summary | to_json }}", "dest": os.path.join(self.tmp, "module-summary.json")}},
        ]}]
        playbook = os.path.join(self.tmp, "module-%d.yml" % size)
        with open(playbook, "w") as f:
            json.dump(play, f)
        rss_file = os.path.join(self.tmp, "module-rss-%d" % size)
        if os.path.exists(rss_file):
            os.unlink(rss_file)
        cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
               "-e", "ansible_python_interpreter=" + os.path.join(HERE, "rss_python.py"), playbook]
        rec = self.measure("fanout", "module", size, cmd, lambda o: True, parse_stdout=False,
                           extra={"NODEOPS_BENCH_PYTHON": sys.executable, "NODEOPS_BENCH_RSS_FILE": rss_file})
        if os.path.exists(rss_file):
            with open(rss_file) as f:
                runs = [line.split() for line in f if line.strip()]
            # The play runs two modules through the wrapper: broadcast_job, and copy (seconds less).
            module = max(runs, key=lambda r: float(r[1]))
            rec["module_process_peak_rss_mib"] = round(int(module[0]) / 1024.0, 1)
            rec["module_process_wall_s"] = float(module[1])
        summary = os.path.join(self.tmp, "module-summary.json")
        if os.path.exists(summary):
            rec["output"] = {"summary": harness.read_json(summary)}
            os.unlink(summary)
        return rec

    def fanout_polling(self, size, selector):
        return self.measure("fanout", "polling", size, self.contender_cmd("polling", selector),
                            lambda o: o.get("summary", {}).get("succeeded") == size)

    def fanout_serial(self, size, selector):
        pod_dir = os.path.join(self.tmp, "serial-pods")
        shutil.rmtree(pod_dir, ignore_errors=True)
        subprocess.run(self.contender_cmd("pods", selector, "--out", pod_dir), env=self.env, check=True,
                       stdout=subprocess.DEVNULL)
        cmd = ["bash", os.path.join(HERE, "baselines", "one_node_at_a_time.sh"), pod_dir, FANOUT_NS]
        return self.measure("fanout", "serial", size, cmd, lambda o: True, parse_stdout=False)

    def between(self):
        """Wait (untimed) for the last contender's pods to go. Pods it left behind are recorded, then removed.

        The bare loop and the polling baseline do no cleanup by design: their pods are removed here.
        """
        if self.results["fanout"] and self.results["fanout"][-1]["contender"] in ("bare", "polling"):
            harness.remove_leftovers(self.api, FANOUT_NS)
        try:
            harness.wait_pods_gone(self.api, FANOUT_NS, timeout=300)
        except RuntimeError:
            last = self.results["fanout"][-1]
            last["left_pods"] = len(harness.list_names(self.api, "/api/v1/namespaces/%s/pods" % FANOUT_NS))
            last["complete"] = False
            log("%s left %d pods behind; removing them" % (last["contender"], last["left_pods"]))
            harness.remove_leftovers(self.api, FANOUT_NS)
            harness.wait_pods_gone(self.api, FANOUT_NS, timeout=600)
        harness.settle(self.api)

    def fanout(self):
        harness.ensure_namespace(self.api, FANOUT_NS)
        all_nodes = harness.BENCH_LABEL + "=true"
        for size in self.p["sizes"]:
            seconds, made = harness.grow_nodes(self.api, size)
            self.results["harness"]["node_creation"].append(
                {"nodes": size, "created": made, "seconds": round(seconds, 2),
                 "per_s": round(made / seconds, 1) if made and seconds else None})
            log("%d bench nodes Ready (%d created in %.1fs)" % (size, made, seconds))
            self.between()
            contenders = [self.fanout_bare, self.fanout_engine, self.fanout_module]
            if size == self.p["ratio_size"]:
                contenders.insert(2, self.fanout_engine_logread)
            for i in range(self.p["repeat"].get(size, 1)):
                # The order turns on every repeat: on this cluster a run is slower the more pods the
                # runs before it created and deleted, so no contender should always go last.
                for measure in contenders[i % len(contenders):] + contenders[:i % len(contenders)]:
                    measure(size, all_nodes)
                    self.between()
            if size >= self.p["polling_nodes"] and not self._has("fanout", "polling"):
                sel = harness.FIRST_LABEL % 100 + "=true" if self.p["polling_nodes"] == 100 else all_nodes
                if self.p["polling_nodes"] == size or self.p["polling_nodes"] == 100:
                    self.fanout_polling(self.p["polling_nodes"], sel)
                    self.between()
            if size >= self.p["serial_nodes"] and not self._has("fanout", "serial"):
                n = self.p["serial_nodes"]
                sel = harness.FIRST_LABEL % 50 + "=true" if n == 50 else self._first_label(n)
                self.fanout_serial(n, sel)
                self.between()
                for _ in range(self.p["repeat"].get(n, 1)):
                    self.fanout_engine(n, sel)   # ours on the same nodes, for the ratio (median)
                    self.between()
                    self.fanout_bare(n, sel)     # and the practical limit on them
                    self.between()

    def _first_label(self, n):
        """Label the first n bench nodes (the smoke profile's small baselines)."""
        key = "bench.nodeops.io/first-n"
        for i in range(n):
            name = harness.node_body(i)["metadata"]["name"]
            self.api.merge_patch("/api/v1/nodes/" + name, {"metadata": {"labels": {key: str(n)}}})
        return "%s=%d" % (key, n)

    def _has(self, kind, contender):
        return any(r["contender"] == contender for r in self.results[kind])

    # ------------------------------------------------------------ sweep

    def sweep(self):
        for ns in JOB_NS + (CONTROL_NS,):
            harness.ensure_namespace(self.api, ns)
        seconds, made = harness.make_controls(self.api, CONTROL_NS, JOB_NS, self.p["controls"])
        self.results["harness"]["job_creation"].append(
            {"jobs": made, "kind": "controls", "seconds": round(seconds, 2), "per_s": round(made / seconds, 1)})
        sizes = sorted(set(self.p["sweep_sizes"]) | {self.p["pipeline_size"]})
        for size in sizes:
            if size == self.p["pipeline_size"]:
                self._sweep_data(size)
                self.measure("sweep", "pipeline", size,
                             ["bash", os.path.join(HERE, "baselines", "sweep_pipeline.sh"), CONTROL_NS],
                             lambda o: True, parse_stdout=False)
                self._after_sweep("pipeline", size)
            self._sweep_data(size)
            self.measure("sweep", "ours", size,
                         [sys.executable, os.path.join(HERE, "contenders.py"), "sweep", "--exclude", CONTROL_NS],
                         lambda o: o.get("jobs") == size and o.get("errors") == 0)
            self._after_sweep("ours", size)

    def _sweep_data(self, size):
        seconds = harness.make_finished_jobs(self.api, JOB_NS, size)
        self.results["harness"]["job_creation"].append(
            {"jobs": size, "kind": "finished ownerless", "seconds": round(seconds, 2),
             "per_s": round(size / seconds, 1)})
        log("%d finished ownerless Jobs created in %.1fs (%.0f/s)" % (size, seconds, size / seconds))
        harness.settle(self.api)

    def _after_sweep(self, contender, size):
        rec = self.results["sweep"][-1]
        left = harness.count_jobs(self.api, JOB_NS)
        controls = harness.count_controls(self.api, CONTROL_NS, JOB_NS)
        rec["targets_left"] = left
        rec["controls_left"] = controls
        rec["controls_intact"] = controls == self.p["controls"]
        if contender == "pipeline":
            rec["complete"] = rec["rc"] == 0 and left == 0
        if left:
            harness.delete_jobs(self.api, JOB_NS)   # leave nothing behind for the next round

    # ------------------------------------------------------------ report

    def cleanup(self):
        harness.remove_leftovers(self.api, FANOUT_NS)
        harness.wait_pods_gone(self.api, FANOUT_NS)
        if not self.keep_nodes:
            harness.grow_nodes(self.api, 0)
        harness.delete_jobs(self.api, JOB_NS + (CONTROL_NS,))
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run(self):
        started = time.monotonic()
        try:
            self.fanout()
            self.sweep()
        finally:
            self.cleanup()
        self.results.update(meta(self.name, time.monotonic() - started, self.api))
        self.results["targets"] = targets(self.results, self.p)
        return self.results


# ---------------------------------------------------------------- analysis

def _runs(results, kind, contender, size=None):
    return [r for r in results[kind] if r["contender"] == contender and (size is None or r["size"] == size)]


def _median_wall(results, kind, contender, size):
    runs = _runs(results, kind, contender, size)
    return statistics.median(r["wall_s"] for r in runs) if runs else None


def _target(name, value, target, comparison, how):
    met = None if value is None else (value <= target if comparison == "<=" else value >= target)
    return {"name": name, "value": None if value is None else round(value, 3), "target": "%s %s" % (
        comparison, target), "met": met, "how": how}


def targets(results, p):
    out = []
    size = p["ratio_size"]
    bare, eng, mod = (_median_wall(results, "fanout", c, size) for c in ("bare", "engine", "module"))
    out.append(_target("engine / bare loop at %d nodes" % size, eng / bare if eng and bare else None,
                       TARGETS["fanout_vs_bare"], "<=", "median wall time of %d runs each, cleanup included"
                       % p["repeat"].get(size, 1)))
    logread = _median_wall(results, "fanout", "engine-logread", size)
    out.append(_target("engine reading every log / bare loop at %d nodes" % size,
                       logread / bare if logread and bare else None, TARGETS["fanout_vs_bare"], "<=",
                       "log_on_success: a log read per node, as results came before the termination message"))
    out.append(_target("module / bare loop at %d nodes" % size, mod / bare if mod and bare else None,
                       TARGETS["fanout_vs_bare"], "<=", "ansible-playbook start-up included"))
    own = [r["module_process_wall_s"] for r in _runs(results, "fanout", "module", size) if r.get("module_process_wall_s")]
    out.append(_target("module's own process / bare loop at %d nodes" % size,
                       statistics.median(own) / bare if own and bare else None, TARGETS["fanout_vs_bare"], "<=",
                       "without ansible-playbook's start-up and the play's other tasks"))
    n = p["serial_nodes"]
    serial, eng_n = _median_wall(results, "fanout", "serial", n), _median_wall(results, "fanout", "engine", n)
    out.append(_target("one-node-at-a-time / engine at %d nodes" % n, serial / eng_n if serial and eng_n else None,
                       TARGETS["serial_speedup"], ">=", "speed-up, same nodes; engine: median of %d runs"
                       % p["repeat"].get(n, 1)))
    bare_n = _median_wall(results, "fanout", "bare", n)
    if bare_n:
        out.append(_target("one-node-at-a-time / bare loop at %d nodes" % n, serial / bare_n if serial else None,
                           TARGETS["serial_speedup"], ">=", "the ceiling this cluster allows (bare loop, same nodes)"))
    sizes = p["sizes"]
    big, mid = sizes[-1], sizes[-2] if len(sizes) > 1 else None
    for c in ("engine", "module", "bare") if mid else ():   # a one-size profile has no scaling figure
        t_big, t_mid = _median_wall(results, "fanout", c, big), _median_wall(results, "fanout", c, mid)
        out.append(_target("%s t(%d) / t(%d)" % (c, big, mid), t_big / t_mid if t_big and t_mid else None,
                           TARGETS["scaling_5x"], "<=", "%.0fx the nodes%s" % (
                               big / float(mid), "; the bare loop: how this cluster itself scales" if c == "bare"
                               else "")))
    per_node = [r["requests_per_unit"] for r in results["fanout"]
                if r["contender"] in ("engine", "module") and r["size"] in sizes]
    out.append(_target("engine/module API requests per node (worst run)", max(per_node) if per_node else None,
                       TARGETS["requests_per_node"], "<=", "engine: its client's count, checked against "
                       "apiserver_request_total; module: apiserver_request_total, the tool's rows"))
    rss = [r["peak_rss_mib"] for r in _runs(results, "fanout", "engine", big)]
    out.append(_target("engine peak RSS at %d nodes (MiB)" % big, max(rss) if rss else None,
                       TARGETS["peak_rss_mib"], "<=", "the engine's own process"))
    mrss = [r.get("module_process_peak_rss_mib") for r in _runs(results, "fanout", "module", big)]
    mrss = [x for x in mrss if x]
    out.append(_target("module process peak RSS at %d nodes (MiB)" % big, max(mrss) if mrss else None,
                       TARGETS["peak_rss_mib"], "<=", "the module's process under ansible-playbook"))
    ps = p["pipeline_size"]
    pipe, ours = _median_wall(results, "sweep", "pipeline", ps), _median_wall(results, "sweep", "ours", ps)
    out.append(_target("sweep: pipeline / ours at %d Jobs" % ps, pipe / ours if pipe and ours else None,
                       TARGETS["sweep_speedup"], ">=", "speed-up, identical data"))
    lo, hi = min(p["sweep_sizes"]), max(p["sweep_sizes"])
    r_lo = [r["peak_rss_mib"] for r in _runs(results, "sweep", "ours", lo)]
    r_hi = [r["peak_rss_mib"] for r in _runs(results, "sweep", "ours", hi)]
    change = (r_hi[0] - r_lo[0]) / r_lo[0] if r_lo and r_hi else None
    out.append(_target("sweep peak RSS change %d -> %d Jobs" % (lo, hi), abs(change) if change is not None else None,
                       TARGETS["sweep_rss_flat"], "<=", "relative change (flat within 20%)"))
    return out


def meta(profile, seconds, api):
    version = api.get("/version")
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {
        "profile": profile,
        "finished_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration_s": round(seconds, 1),
        "machine": {"cores": os.cpu_count(), "memory_gib": round(mem_kib / 1048576.0, 1),
                    "kernel": platform.release(), "python": platform.python_version()},
        "kubernetes": {"gitVersion": version.get("gitVersion"), "goVersion": version.get("goVersion"),
                       "kwok": harness.local_cluster.KWOK_VERSION},
        "commands": {
            "all": "make bench   (= python benchmarks/bench.py --profile full)",
            "engine": "python benchmarks/contenders.py engine --namespace %s --selector %s=true"
                      % (FANOUT_NS, harness.BENCH_LABEL),
            "bare": "python benchmarks/contenders.py bare --namespace %s --selector %s=true"
                    % (FANOUT_NS, harness.BENCH_LABEL),
            "polling": "python benchmarks/contenders.py polling --namespace %s --selector %s=true"
                       % (FANOUT_NS, harness.FIRST_LABEL % 100),
            "module": "ansible-playbook -i localhost, <play: nodeops.kubernetes.broadcast_job image_prune dry run,"
                      " parallelism 100%%, node_selector %s=true>" % harness.BENCH_LABEL,
            "serial": "bash benchmarks/baselines/one_node_at_a_time.sh <pod dir> %s" % FANOUT_NS,
            "sweep_ours": "python benchmarks/contenders.py sweep --exclude %s" % CONTROL_NS,
            "sweep_pipeline": "bash benchmarks/baselines/sweep_pipeline.sh %s" % CONTROL_NS,
        },
    }


def _requests(r):
    """Requests as counted: by the contender's own client, else at the apiserver (a lower bound for
    the shell baselines, whose pod reads and deletes share rows with the cluster's own)."""
    n = r.get("requests", r["tool_requests"])
    if r.get("requests_counted_by") == "apiserver" and r["contender"] == "serial":
        return ">= %d" % n
    return "%d" % n


def table(results):
    lines = ["| benchmark | contender | size | wall s | peak RSS MiB | API requests | per node or Job |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for kind in ("fanout", "sweep"):
        for r in results[kind]:
            rss = r["peak_rss_mib"]
            if r.get("module_process_peak_rss_mib"):
                rss = "%s (module %s)" % (rss, r["module_process_peak_rss_mib"])
            lines.append("| %s | %s | %d | %.2f%s | %s | %s | %s |" % (
                kind, r["contender"], r["size"], r["wall_s"], "" if r["complete"] else " (incomplete)", rss,
                _requests(r), r["requests_per_unit"]))
    lines += ["", "| target | value | wanted | met |", "|---|---:|---|---|"]
    for t in results["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append("| %s | %s | %s | %s |" % (t["name"], t["value"], t["target"], met))
    m = results["machine"]
    lines += ["", "Why a target is missed, and what the benchmark made us fix: benchmarks/results/NOTES.md."]
    lines += ["", "%s profile, %s; %d cores, %s GiB, Kubernetes %s, kwok %s; run took %.0f s." % (
        results["profile"], results["finished_at"], m["cores"], m["memory_gib"], results["kubernetes"]["gitVersion"],
        results["kubernetes"]["kwok"], results["duration_s"])]
    return "\n".join(lines) + "\n"


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    styles = {"engine": "o-", "module": "s-", "bare": "^--", "serial": "X", "polling": "D", "engine-logread": "v",
              "ours": "o-", "pipeline": "X"}
    for ax, kind, xlabel in ((ax1, "fanout", "nodes"), (ax2, "sweep", "finished ownerless Jobs")):
        for contender in sorted(set(r["contender"] for r in results[kind])):
            sizes = sorted(set(r["size"] for r in _runs(results, kind, contender)))
            walls = [_median_wall(results, kind, contender, s) for s in sizes]
            ax.plot(sizes, walls, styles.get(contender, "o-"), label=contender, markersize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("wall time, s (log)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    ax1.set_title("broadcast to every node: full results, cleanup included")
    ax2.set_title("sweep of finished ownerless Jobs")
    fig.suptitle("nodeops.kubernetes benchmarks (%s, %d cores, Kubernetes %s)" % (
        results["finished_at"], results["machine"]["cores"], results["kubernetes"]["gitVersion"]))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


def update_readme(readme, table_text):
    with open(readme) as f:
        text = f.read()
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    with open(readme, "w") as f:
        f.write(text[:start] + "\n" + table_text + text[end:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--update-readme", action="store_true", help="put the table in README.md")
    parser.add_argument("--keep-nodes", action="store_true", help="leave the bench nodes for the next run")
    parser.add_argument("--profile-engine", action="store_true", help="write a pyinstrument profile per engine run")
    parser.add_argument("--render", metavar="JSON",
                        help="do not measure: re-render table, targets and plot from an earlier run's results file")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.render:
        results = harness.read_json(args.render)
        for r in results["fanout"] + results["sweep"]:   # files written before these fields existed
            sent = (r.get("output") or {}).get("client_requests")
            r.setdefault("requests", sent if sent is not None else r["tool_requests"])
            r.setdefault("requests_counted_by", "client" if sent is not None else "apiserver")
            r["requests_per_unit"] = round(r["requests"] / float(r["size"]), 3)
        results["targets"] = targets(results, PROFILES[results["profile"]])
    else:
        results = Bench(args.profile, args.out, args.keep_nodes, args.profile_engine).run()
    text = table(results)
    with open(os.path.join(args.out, "latest.json"), "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    with open(os.path.join(args.out, "latest.md"), "w") as f:
        f.write(text)
    plot(results, os.path.join(args.out, "latest.png"))
    if args.update_readme:
        update_readme(os.path.join(harness.REPO, "README.md"), text)
    sys.stdout.write(text)
    incomplete = [r for kind in ("fanout", "sweep") for r in results[kind]
                  if not r["complete"] or r.get("controls_intact") is False]
    if incomplete:
        log("%d measurement(s) did not complete their work; see latest.json" % len(incomplete))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
