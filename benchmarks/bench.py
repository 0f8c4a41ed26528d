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
              "sweep_sizes": [30, 120], "pipeline_size": 30, "controls": 15, "progress_every": 0.05,
              # The scale profile's new parts at a few dozen (make test): pods that take real time (with failures),
              # parallelism, the gentle sweep with a reader, and a sweep that API Priority and Fairness throttles.
              "calibrated": {"size": 12, "repeat": 1, "serial_nodes": 3, "parallelism": ["25%", "100%"],
                             "fail_permille": 250},
              "gentle": {"sizes": [300], "idle_s": 3, "throttled_size": 120,
                         "variants": [("module-uncapped", 150, {"sweep_rate_limit": 0})]}},
    # Issue 26: the seeds' sizes. 100,000 finished ownerless Jobs swept by the module while a reader measures
    # what other clients feel; the pipeline at 5,000 as the baseline rate; 10,000 nodes; pods that take as
    # long as on the real node at 1,000 nodes. `make bench-scale`, not part of `make test`.
    "scale": {"sizes": [10000], "ratio_size": 10000, "repeat": {10000: 2}, "serial_nodes": 0, "polling_nodes": 0,
              "sweep_sizes": [5000], "pipeline_size": 5000, "controls": 1000, "no_logread": True,
              "fanout_last": True, "budget_s": 3360,
              # Simulated kubelets renew their lease every quarter of this (a kubelet's: 40 s). At 10 s renewals
              # 10,000 simulated nodes alone would take both cores (harness.node_lease in scale.json measures it).
              "node_lease_s": 1200,
              "calibrated": {"size": 1000, "repeat": 1, "serial_nodes": 20, "parallelism": ["10%", "25%", "100%"],
                             "fail_permille": 10},
              # And at 10,000 with a cap twice the default, and with none: what the latency and 429s alone allow.
              "gentle": {"sizes": [10000, 100000], "idle_s": 30, "variants": [
                  ("module-rate300", 10000, {"sweep_rate_limit": 300}),
                  ("module-uncapped", 10000, {"sweep_rate_limit": 0})]}},
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
    def __init__(self, profile, out_dir, keep_nodes=False, profile_engine=False, real_node_json=None):
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
        self._controls_made = False
        self.real_node_json = real_node_json or os.path.join(HERE, "results", "real_node.json")
        self.results = {"fanout": [], "sweep": [], "calibrated": [], "gentle": [],
                        "harness": {"node_creation": [], "job_creation": []}}

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
        self._last, self._last_kind = rec, kind
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

    def fanout_module(self, size, selector, kind="fanout", contender="module", annotations=None, parallelism="100%",
                      max_failures=None):
        key, _, value = selector.partition("=")
        args = {"name": "bench-module", "namespace": FANOUT_NS, "preset": "image_prune", "image_prune": {"dry_run": True},
                "pod_annotations": dict(annotations or {}, **{programs.SIM_MESSAGE: programs.RESULT_MESSAGE}),
                "node_selector": {key: value}, "parallelism": parallelism, "timeout": 3600, "pending_timeout": 1800}
        if max_failures is not None:
            args["max_failures"] = max_failures
        ended = "r.summary.succeeded == %d" % size if max_failures is None else \
            "r.summary.succeeded + r.summary.failed == %d" % size
        tasks = [
            dict({"name": "broadcast", "nodeops.kubernetes.broadcast_job": args, "register": "r"},
                 # Nodes that fail fail the task (the collection's contract); here they are expected: pods that
                 # take real time fail now and then (fail-permille). The assert below checks every node ended.
                 **({"failed_when": "r.summary is not defined"} if max_failures is not None else {})),
            {"name": "every node ended, with its result", "ansible.builtin.assert": {"that": [
                ended, "r.nodes | selectattr('outcome', 'in', ['succeeded', 'failed']) | list | length == %d" % size],
                "quiet": True}},
            {"name": "keep the summary", "ansible.builtin.copy": {
                "content": "{{ r.summary | to_json }}", "dest": os.path.join(self.tmp, "module-out.json")}},
        ]
        rec = self.playbook(kind, contender, size, tasks)
        if rec.get("output"):
            rec["output"] = {"summary": rec["output"]}
        return rec

    def playbook(self, kind, contender, size, tasks, extra=None):
        """Run ``tasks`` with ansible-playbook, measured; the module's own process is measured too, through
        rss_python.py as the interpreter. The last task writes the output kept (module-out.json)."""
        play = [{"hosts": "localhost", "gather_facts": False, "connection": "local", "tasks": tasks}]
        playbook = os.path.join(self.tmp, "%s-%s-%d.yml" % (kind, contender, size))
        with open(playbook, "w") as f:
            json.dump(play, f)
        rss_file = os.path.join(self.tmp, "module-rss")
        out_file = os.path.join(self.tmp, "module-out.json")
        for old in (rss_file, out_file):
            if os.path.exists(old):
                os.unlink(old)
        cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
               "-e", "ansible_python_interpreter=" + os.path.join(HERE, "rss_python.py"), playbook]
        rec = self.measure(kind, contender, size, cmd, lambda o: True, parse_stdout=False,
                           extra=dict(extra or {}, NODEOPS_BENCH_PYTHON=sys.executable,
                                      NODEOPS_BENCH_RSS_FILE=rss_file))
        if os.path.exists(rss_file):
            with open(rss_file) as f:
                runs = [line.split() for line in f if line.strip()]
            # The play runs the measured module and small ones (assert runs in the controller; copy: seconds less).
            module = max(runs, key=lambda r: float(r[1]))
            rec["module_process_peak_rss_mib"] = round(int(module[0]) / 1024.0, 1)
            rec["module_process_wall_s"] = float(module[1])
        if os.path.exists(out_file):
            rec["output"] = harness.read_json(out_file)
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
        last = getattr(self, "_last", None)
        # The baselines clean nothing up; broadcast_job keeps the pods of failed nodes (pods that take real time
        # fail now and then): removed here, untimed.
        if last and (last["contender"] in ("bare", "polling") or self._last_kind == "calibrated"):
            harness.remove_leftovers(self.api, FANOUT_NS)
        try:
            harness.wait_pods_gone(self.api, FANOUT_NS, timeout=300)
        except RuntimeError:
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
            if self._out_of_time("fanout (nodes not created)", size):
                continue
            seconds, made = harness.grow_nodes(self.api, size)
            self.results["harness"]["node_creation"].append(
                {"nodes": size, "created": made, "seconds": round(seconds, 2),
                 "per_s": round(made / seconds, 1) if made and seconds else None})
            log("%d bench nodes Ready (%d created in %.1fs)" % (size, made, seconds))
            self.between()
            if self.p.get("node_lease_s"):
                idle = dict(harness.control_plane_cpu(15), nodes=size, lease_s=self.p["node_lease_s"])
                self.results["harness"].setdefault("node_lease", {}).setdefault("idle_at_size", []).append(idle)
                log("idle control plane at %d nodes: %.2f cores" % (size, idle["total_cores"]))
            contenders = [self.fanout_bare, self.fanout_engine, self.fanout_module]
            if size == self.p["ratio_size"] and not self.p.get("no_logread"):
                contenders.insert(2, self.fanout_engine_logread)
            for i in range(self.p["repeat"].get(size, 1)):
                # The order turns on every repeat: on this cluster a run is slower the more pods the
                # runs before it created and deleted, so no contender should always go last.
                for measure in contenders[i % len(contenders):] + contenders[:i % len(contenders)]:
                    if self._out_of_time(measure.__name__, size):
                        continue
                    measure(size, all_nodes)
                    self.between()
            if self.p["polling_nodes"] and size >= self.p["polling_nodes"] and not self._has("fanout", "polling"):
                sel = harness.FIRST_LABEL % 100 + "=true" if self.p["polling_nodes"] == 100 else all_nodes
                if self.p["polling_nodes"] == size or self.p["polling_nodes"] == 100:
                    self.fanout_polling(self.p["polling_nodes"], sel)
                    self.between()
            if self.p["serial_nodes"] and size >= self.p["serial_nodes"] and not self._has("fanout", "serial"):
                n = self.p["serial_nodes"]
                sel = harness.FIRST_LABEL % 50 + "=true" if n == 50 else self._first_label(n)
                self.fanout_serial(n, sel)
                self.between()
                for _ in range(self.p["repeat"].get(n, 1)):
                    self.fanout_engine(n, sel)   # ours on the same nodes, for the ratio (median)
                    self.between()
                    self.fanout_bare(n, sel)     # and the practical limit on them
                    self.between()

    def _out_of_time(self, what, size):
        """The profile's time budget (``budget_s``): a run that would likely end past it is skipped, and
        recorded as skipped, so the whole profile ends in time. Its estimate: the longest run at this size."""
        budget = self.p.get("budget_s")
        if not budget:
            return False
        longest = max([r["wall_s"] for r in self.results["fanout"] if r["size"] == size] or [0])
        left = budget - (time.monotonic() - self.started)
        if longest * 1.2 < left and (longest or left > 600):
            return False
        self.results.setdefault("skipped", []).append(
            {"what": what, "size": size, "left_s": round(left), "estimate_s": round(longest * 1.2)})
        log("skipped %s at %d: %.0f s of the budget left, the longest run so far took %.0f s" % (
            what, size, left, longest))
        return True

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
        self._controls_made = True
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
                         [sys.executable, os.path.join(HERE, "contenders.py"), "sweep", "--exclude", CONTROL_NS,
                          "--progress-every", str(self.p.get("progress_every", 10))],
                         lambda o: o.get("jobs") == size and o.get("errors") == 0)
            self._after_sweep("ours", size)

    def _sweep_data(self, size):
        seconds = harness.make_finished_jobs(self.api, JOB_NS, size)
        self.results["harness"]["job_creation"].append(
            {"jobs": size, "kind": "finished ownerless", "seconds": round(seconds, 2),
             "per_s": round(size / seconds, 1)})
        log("%d finished ownerless Jobs created in %.1fs (%.0f/s)" % (size, seconds, size / seconds))
        harness.settle(self.api)

    def _after_sweep(self, contender, size, kind="sweep"):
        rec = self.results[kind][-1]
        left = harness.count_jobs(self.api, JOB_NS)
        controls = harness.count_controls(self.api, CONTROL_NS, JOB_NS)
        rec["targets_left"] = left
        rec["controls_left"] = controls
        rec["controls_intact"] = controls == self.p["controls"]
        if contender == "pipeline":
            rec["complete"] = rec["rc"] == 0 and left == 0
        if left:
            harness.delete_jobs(self.api, JOB_NS)   # leave nothing behind for the next round

    # ------------------------------------------------------------ pods that take real time

    def calibrated(self):
        """Pods that take as long as on the real node (harness.calibration): engine, module and bare loop; the
        engine at several parallelisms; the one-node-at-a-time loop on a few nodes, reported per node."""
        c = self.p["calibrated"]
        cal = harness.calibration(self.real_node_json, c["fail_permille"])
        self.results["calibration"] = cal
        ann = cal["annotations"]
        notes = ["--annotate=%s=%s" % kv for kv in sorted(ann.items())]
        size, all_nodes = c["size"], harness.BENCH_LABEL + "=true"
        harness.grow_nodes(self.api, size)
        self.between()
        log("pods that take real time: %s" % ", ".join("%s=%s" % kv for kv in sorted(ann.items())))
        budget = ["--max-failures", "100%"]
        runs = [
            lambda: self.measure("calibrated", "bare", size, self.contender_cmd("bare", all_nodes, *notes),
                                 lambda o: o.get("outcomes") == size),
            lambda: self.measure("calibrated", "engine", size, self.contender_cmd("engine", all_nodes, *(notes + budget)),
                                 lambda o: o.get("outcomes") == size),
            lambda: self.fanout_module(size, all_nodes, kind="calibrated", annotations=ann, max_failures="100%"),
        ]
        for i in range(c["repeat"]):
            for run in runs[i % 3:] + runs[:i % 3]:
                run()
                self.between()
        for par in c["parallelism"]:
            rec = self.measure("calibrated", "engine-p" + par, size,
                               self.contender_cmd("engine", all_nodes, "--parallelism", par, *(notes + budget)),
                               lambda o: o.get("outcomes") == size)
            rec["parallelism"] = par
            self.between()
        n = c["serial_nodes"]
        sel = self._first_label(n)
        pod_dir = os.path.join(self.tmp, "serial-pods")
        shutil.rmtree(pod_dir, ignore_errors=True)
        # The shell loop waits for Succeeded: its pods take the real time but do not fail.
        delay_only = [a for a in notes if harness.SIM_FAIL not in a]
        subprocess.run(self.contender_cmd("pods", sel, "--out", pod_dir, *delay_only), env=self.env, check=True,
                       stdout=subprocess.DEVNULL)
        serial = ["bash", os.path.join(HERE, "baselines", "one_node_at_a_time.sh"), pod_dir, FANOUT_NS]
        self.measure("calibrated", "serial", n, serial, lambda o: True, parse_stdout=False)
        self.between()

    # ------------------------------------------------------------ the gentle sweep: what others feel

    def gentle(self):
        """dangling_job_ttl (sweep: true, delete) through ansible-playbook, as a ServiceAccount (subject to API
        Priority and Fairness), on finished ownerless Jobs plus the controls, while a reader times a GET and a
        small LIST every 100 ms: idle first, then during the sweep."""
        g = self.p["gentle"]
        for ns in JOB_NS + (CONTROL_NS,):
            harness.ensure_namespace(self.api, ns)
        if not self._controls_made:
            harness.make_controls(self.api, CONTROL_NS, JOB_NS, self.p["controls"])
            self._controls_made = True
        identity = harness.sweeper_identity(self.api)
        reader_api = harness.reader_client()
        for size in g["sizes"]:
            self._sweep_data(size)
            self._gentle_run("module", size, identity, reader_api, g["idle_s"])
        if not self.p.get("fanout_last"):
            self.gentle_variants(identity, reader_api)
        if g.get("throttled_size"):
            size = g["throttled_size"]
            self._sweep_data(size)
            remove = harness.tight_priority_level(self.api, harness.SWEEPER)
            try:
                self._gentle_run("module-throttled", size, identity, reader_api, g["idle_s"])
            finally:
                remove()

    def gentle_variants(self, identity=None, reader_api=None):
        """The module's sweep with other caps (``variants``): what the latency and 429s alone allow."""
        g = self.p["gentle"]
        if not g.get("variants"):
            return
        if identity is None:
            # After the fan-out (the scale profile): the node count and leases the other sweeps ran beside.
            harness.grow_nodes(self.api, (self.p.get("calibrated") or {}).get("size") or 0)
            self.between()
            identity, reader_api = harness.sweeper_identity(self.api), harness.reader_client()
        for contender, size, module_args in g.get("variants", []):
            left = self.p.get("budget_s", 0) - (time.monotonic() - self.started)
            if self.p.get("budget_s") and left < 240:
                self.results.setdefault("skipped", []).append(
                    {"what": "gentle " + contender, "size": size, "left_s": round(left), "estimate_s": 240})
                log("skipped gentle %s at %d: %.0f s of the budget left" % (contender, size, left))
                continue
            self._sweep_data(size)
            self._gentle_run(contender, size, identity, reader_api, g["idle_s"], module_args)

    def node_lease(self):
        """Lengthen the simulated nodes' leases (``node_lease_s``), measuring the idle control plane's CPU at the
        calibrated size before and after: the cores 10 s renewals take are not the tools' to pay for."""
        size = (self.p.get("calibrated") or {}).get("size") or 1000
        harness.grow_nodes(self.api, size)
        time.sleep(10)
        before = harness.control_plane_cpu(20)
        harness.local_cluster.set_node_lease(self.p["node_lease_s"])
        harness.grow_nodes(self.api, size)   # Ready again under the new kwok
        time.sleep(10)
        after = harness.control_plane_cpu(20)
        self.results["harness"]["node_lease"] = {
            "nodes": size, "default_lease_s": harness.local_cluster.DEFAULT_NODE_LEASE_SECONDS,
            "lease_s": self.p["node_lease_s"], "idle_default": before, "idle_lengthened": after}
        log("idle control plane at %d nodes: %.2f cores with %d s leases, %.2f with %d s" % (
            size, before["total_cores"], harness.local_cluster.DEFAULT_NODE_LEASE_SECONDS, after["total_cores"],
            self.p["node_lease_s"]))

    def _gentle_run(self, contender, size, identity, reader_api, idle_s, module_args=None):
        # The reader runs from the idle window to the sweep's end only: the harness's settle() before it
        # waits for a quiet cluster, which a reader listing 10 times a second is not.
        reader = harness.Reader(reader_api)
        reader.start()
        try:
            return self._gentle_measure(contender, size, identity, reader, idle_s, module_args or {})
        finally:
            reader.stop()

    def _gentle_measure(self, contender, size, identity, reader, idle_s, module_args):
        # The apiserver's metrics are scraped before the idle window, not inside it: a scrape costs the
        # apiserver CPU, and the reader would feel it as "idle" latency.
        waits = harness.read_waits(self.api)
        idle_start = time.monotonic()
        time.sleep(idle_s)
        args = dict(identity, policy=False, sweep=True, sweep_action="delete", exclude_namespaces=[CONTROL_NS],
                    **dict(self.p["gentle"].get("module_args", {}), **module_args))
        tasks = [
            {"name": "sweep", "nodeops.kubernetes.dangling_job_ttl": args, "register": "r"},
            {"name": "keep the sweep's result", "ansible.builtin.copy": {
                "content": "{{ r.sweep | to_json }}", "dest": os.path.join(self.tmp, "module-out.json")}},
        ]
        started = idle_end = time.monotonic()
        rec = self.playbook("gentle", contender, size, tasks)
        ended = time.monotonic()
        # "During" is the module's own process (its wall time, ending when ansible-playbook's task did), not
        # Ansible's start-up, when nothing is swept yet.
        if rec.get("module_process_wall_s"):
            started = max(started, ended - rec["module_process_wall_s"])
        rec["module_args"] = module_args
        # Why the reader's LIST slows whenever anything is written: a consistent LIST is served from the watch
        # cache once it has caught up with etcd's current revision, and a cache that sees no writes of its own
        # resource waits for etcd's progress notification.
        rec["configmaps_watch_cache_read_wait"] = harness.read_waits(self.api, since=waits)
        out = rec.get("output") or {}
        rec["output"] = dict((k, v) for k, v in out.items() if k != "names")
        rec["reader"] = {"idle": reader.window(idle_start, idle_end), "during": reader.window(started, ended),
                         "timeline": reader.timeline(idle_start), "sweep_started_s": round(started - idle_start, 2),
                         "sweep_ended_s": round(ended - idle_start, 2), "errors": reader.errors}
        idle99, during99 = rec["reader"]["idle"]["all"]["p99_ms"], rec["reader"]["during"]["all"]["p99_ms"]
        rec["reader_p99_ratio"] = round(during99 / idle99, 2) if idle99 and during99 else None
        self._after_sweep("module", size, kind="gentle")
        rec["complete"] = bool(rec["rc"] == 0 and out.get("total") == size and not out.get("errors_total")
                               and rec["targets_left"] == 0 and rec["controls_intact"])
        log("gentle %s at %d: %.1f Jobs/s, reader p99 %s ms idle, %s ms during (x%s), throttled %s" % (
            contender, size, size / rec["wall_s"], idle99, during99, rec["reader_p99_ratio"],
            (out.get("pacing") or {}).get("throttled")))
        return rec

    # ------------------------------------------------------------ report

    def cleanup(self):
        harness.remove_leftovers(self.api, FANOUT_NS)
        harness.wait_pods_gone(self.api, FANOUT_NS)
        if not self.keep_nodes:
            harness.grow_nodes(self.api, 0)
        harness.delete_jobs(self.api, JOB_NS + (CONTROL_NS,))
        harness.remove_identities(self.api)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run(self):
        started = self.started = time.monotonic()
        try:
            if self.p.get("fanout_last"):
                # The scale profile: the figures of the seeds' problem first; 10,000 nodes in what time is left,
                # and the sweep at other caps last.
                # Only the 10,000-node fan-out runs with lengthened leases: the rest keeps the background writes of
                # 1,000 simulated kubelets, without which the reader's idle LIST would never wait for the watch cache
                # and "idle" would be a cluster no one runs.
                self.calibrated()
                self.sweep()
                self.gentle()
                if self.p.get("node_lease_s"):
                    self.node_lease()
                self.fanout()
                if self.p.get("node_lease_s"):
                    harness.grow_nodes(self.api, (self.p.get("calibrated") or {}).get("size") or 0)
                    harness.local_cluster.set_node_lease(harness.local_cluster.DEFAULT_NODE_LEASE_SECONDS)
                self.gentle_variants()
            else:
                self.fanout()
                if self.p.get("calibrated"):
                    self.calibrated()
                self.sweep()
                if self.p.get("gentle"):
                    self.gentle()
        finally:
            try:
                self.cleanup()
            finally:
                if self.p.get("node_lease_s"):
                    try:
                        harness.local_cluster.set_node_lease(harness.local_cluster.DEFAULT_NODE_LEASE_SECONDS)
                    except Exception as exc:  # noqa: BLE001  -- the results count more; `cluster.py up` restores it
                        log("could not restore the default node leases (%s); `make cluster` restores them" % exc)
        self.results.update(meta(self.name, time.monotonic() - started, self.api))
        self.results["targets"] = [] if self.name == "scale" else targets(self.results, self.p)
        if self.p.get("calibrated") or self.p.get("gentle"):
            self.results["scale_targets"] = scale_targets(self.results, self.p)
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


SCALE_TARGETS = {"engine_vs_bare": 1.1, "module_vs_bare": 1.2, "requests_per_node": 1.05, "peak_rss_mib": 150.0,
                 "reader_p99_ratio": 2.0, "sweep_rss_flat": 0.20, "requests_per_job": 1.05, "speedup": 1.0,
                 "serial_speedup": 50.0}


def _figure(name, value, how):
    """A figure the issue asks for without a target: reported, never "met"."""
    return {"name": name, "value": None if value is None else round(value, 3), "target": "(reported)", "met": None,
            "how": how}


def _required(entry):
    """A target the issue requires: not measured is a miss, not "n/a"."""
    if entry["value"] is None:
        entry.update(met=False, how="not measured in this run (see skipped); " + entry["how"])
    return entry


def _complete_runs(results, kind, contender, size):
    return [r for r in _runs(results, kind, contender, size) if r.get("complete")]


def _median_complete(results, kind, contender, size):
    runs = _complete_runs(results, kind, contender, size)
    return (statistics.median(r["wall_s"] for r in runs) if runs else None), len(runs)


def scale_targets(results, p):
    """Issue 26's figures: the gentle sweep, pods that take real time, and (scale profile) 10,000 nodes. Ratios are
    of medians of the runs that completed their work (each figure says how many)."""
    out = []
    gentle = [r for r in results.get("gentle", []) if r["contender"] == "module"]
    for r in gentle:
        o = r.get("output") or {}
        idle, during = r["reader"]["idle"], r["reader"]["during"]
        for what, label in (("get", "a GET of one namespace"), ("list", "a LIST of at most 10 ConfigMaps")):
            i99, d99 = idle[what]["p99_ms"], during[what]["p99_ms"]
            out.append(_required(_target(
                "sweep of %d Jobs: reader %s p99 during / idle" % (r["size"], what.upper()),
                d99 / i99 if i99 and d99 else None, SCALE_TARGETS["reader_p99_ratio"], "<=",
                "%s every 100 ms, as an authenticated user; idle p99 %s ms, during %s ms" % (label, i99, d99))))
        out.append(_figure("sweep of %d Jobs: Jobs per second" % r["size"], o.get("total", 0) / r["wall_s"],
                           "dangling_job_ttl through ansible-playbook, as a ServiceAccount, at its default cap; "
                           "wall %.1f s" % r["wall_s"]))
        out.append(_target("sweep of %d Jobs: API requests per Job" % r["size"], r["requests_per_unit"],
                           SCALE_TARGETS["requests_per_job"], "<=",
                           "LIST and DELETE jobs at the apiserver (its 429s included)"))
    if len(gentle) >= 2:
        lo, hi = min(gentle, key=lambda r: r["size"]), max(gentle, key=lambda r: r["size"])
        a, b = lo.get("module_process_peak_rss_mib"), hi.get("module_process_peak_rss_mib")
        out.append(_target("sweep module peak RSS change %d -> %d Jobs" % (lo["size"], hi["size"]),
                           abs(b - a) / a if a and b else None, SCALE_TARGETS["sweep_rss_flat"], "<=",
                           "%s -> %s MiB, the module's own process" % (a, b)))
    pipe = [r for r in _runs(results, "sweep", "pipeline") if r.get("complete")]
    if pipe and gentle:
        big = max(gentle, key=lambda r: r["size"])
        pipe_rate = pipe[0]["size"] / pipe[0]["wall_s"]
        ours_rate = (big.get("output") or {}).get("total", 0) / big["wall_s"]
        out.append(_target("sweep speed-up: the module at %d Jobs / the pipeline at %d, per Job" % (
            big["size"], pipe[0]["size"]), ours_rate / pipe_rate, SCALE_TARGETS["speedup"], ">=",
            "Jobs per second: %.1f (capped at the default 150) against %.1f" % (ours_rate, pipe_rate)))
        lib = _complete_runs(results, "sweep", "ours", pipe[0]["size"])
        if lib:
            out.append(_figure("sweep speed-up without a cap: the library at %d Jobs / the pipeline, per Job" % (
                pipe[0]["size"]), pipe[0]["wall_s"] / lib[0]["wall_s"],
                "the same data; the library's sweep with no rate cap, as admin like the pipeline"))
    throttled = [r for r in results.get("gentle", []) if r["contender"] == "module-throttled"]
    for r in throttled:
        pacing = (r.get("output") or {}).get("pacing") or {}
        out.append(_target("sweep under a priority level of one seat: 429s honoured", pacing.get("throttled"), 1, ">=",
                           "every Job swept, %s s waited for Retry-After, limit %s..%s" % (
                               pacing.get("throttled_wait_s"), pacing.get("limit_min"), pacing.get("limit_max"))))
    cal = results.get("calibrated") or []
    if cal:
        size = max(r["size"] for r in cal if r["contender"] == "bare")
        bare, n_bare = _median_complete(results, "calibrated", "bare", size)
        for c in ("engine", "module"):
            t, n = _median_complete(results, "calibrated", c, size)
            out.append(_target("pods that take real time: %s / bare loop at %d nodes" % (c, size),
                               t / bare if t and bare else None,
                               SCALE_TARGETS["%s_vs_bare" % c], "<=",
                               "medians of %d and %d runs; delay %s..%s per pod, %s per mille fail" % (
                                   n, n_bare, results["calibration"]["annotations"].get(harness.SIM_DELAY),
                                   results["calibration"]["annotations"].get(harness.SIM_DELAY_MAX),
                                   results["calibration"]["annotations"].get(harness.SIM_FAIL, "0"))))
        serial = _complete_runs(results, "calibrated", "serial", None)
        eng, _n = _median_complete(results, "calibrated", "engine", size)
        if serial and eng:
            per_node = serial[0]["wall_s"] / serial[0]["size"]
            out.append(_figure("one node at a time, measured per node (s)", per_node,
                               "%d nodes in %.1f s" % (serial[0]["size"], serial[0]["wall_s"])))
            out.append(_target("speed-up at %d nodes: one-node-at-a-time rate / engine" % size,
                               per_node * size / eng, SCALE_TARGETS["serial_speedup"], ">=",
                               "the serial loop's measured per-node time x %d, over the engine's wall time" % size))
        for r in cal:
            if r.get("parallelism"):
                out.append(_figure("engine at parallelism %s, %d nodes (s)" % (r["parallelism"], r["size"]),
                                   r["wall_s"], "wall time" + ("" if r.get("complete") else " (incomplete run)")))
    if p.get("no_logread"):   # the scale profile's 10,000 nodes
        size = p["ratio_size"]
        (bare, n_bare), (eng, n_eng), (mod, n_mod) = (_median_complete(results, "fanout", c, size)
                                                      for c in ("bare", "engine", "module"))
        out.append(_required(_target("engine / bare loop at %d nodes" % size, eng / bare if eng and bare else None,
                                     SCALE_TARGETS["engine_vs_bare"], "<=",
                                     "medians of %d and %d runs" % (n_eng, n_bare))))
        out.append(_required(_target("module / bare loop at %d nodes" % size, mod / bare if mod and bare else None,
                                     SCALE_TARGETS["module_vs_bare"], "<=",
                                     "medians of %d and %d runs; ansible-playbook start-up included" % (n_mod, n_bare))))
        done = _complete_runs(results, "fanout", "engine", size)
        out.append(_required(_target("engine API requests per node at %d" % size,
                                     max(r["requests_per_unit"] for r in done) if done else None,
                                     SCALE_TARGETS["requests_per_node"], "<=",
                                     "its client's count, worst of %d runs with every node's result" % len(done))))
        out.append(_required(_target("engine peak RSS at %d nodes (MiB)" % size,
                                     max(r["peak_rss_mib"] for r in done) if done else None,
                                     SCALE_TARGETS["peak_rss_mib"], "<=", "the engine's own process")))
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
    for kind in ("calibrated", "gentle"):
        for r in results.get(kind) or []:
            lines.append("| %s | %s | %d | %.2f%s | %s | %s | %s |" % (
                kind, r["contender"], r["size"], r["wall_s"], "" if r["complete"] else " (incomplete)",
                r.get("module_process_peak_rss_mib") or r["peak_rss_mib"], _requests(r), r["requests_per_unit"]))
    for key in ("targets", "scale_targets"):
        if not results.get(key):
            continue
        lines += ["", "| %s | value | wanted | met |" % ("target" if key == "targets" else "issue 26 figure"),
                  "|---|---:|---|---|"]
        for t in results[key]:
            met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
            lines.append("| %s | %s | %s | %s |" % (t["name"], t["value"], t["target"], met))
    for sk in results.get("skipped") or []:
        lines.append("\nSkipped to end within the profile's time budget: %s at %d (%d s left, estimate %d s)." % (
            sk["what"], sk["size"], sk["left_s"], sk["estimate_s"]))
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
    _save_figure(plt, fig, "benchmarks", results, path)


def plot_scale(results, path):
    """The reader's latency over time around the biggest sweep, and wall time against parallelism."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    gentle = [r for r in results.get("gentle") or [] if r["contender"] == "module"]
    if gentle:
        big = max(gentle, key=lambda r: r["size"])
        timeline = big["reader"]["timeline"]
        if isinstance(timeline, list):   # results written before GET and LIST were kept apart
            timeline = {"GET and LIST, thinned evenly": timeline}
        for what, rows in sorted(timeline.items()):
            ax1.plot([x for x, _y in rows], [y for _x, y in rows], ".", markersize=3, label="reader " + what.upper()
                     if what in ("get", "list") else "reader " + what)
        ax1.axvspan(big["reader"]["sweep_started_s"], big["reader"]["sweep_ended_s"], alpha=0.15,
                    label="sweep of %d Jobs" % big["size"])
        ax1.set_yscale("log")
        ax1.set_xlabel("seconds")
        ax1.set_ylabel("request latency, ms (log)")
        ax1.legend()
    ax1.set_title("what other clients feel during the sweep")
    par = [r for r in results.get("calibrated") or [] if r.get("parallelism")]
    if par:
        xs = [float(r["parallelism"].rstrip("%")) for r in par]
        ax2.plot(xs, [r["wall_s"] for r in par], "o-", label="engine")
        bare = _median_wall(results, "calibrated", "bare", par[0]["size"])
        if bare:
            ax2.axhline(bare, linestyle="--", color="grey", label="bare loop (100%)")
        ax2.set_xlabel("parallelism, %% of %d nodes" % par[0]["size"])
        ax2.set_ylabel("wall time, s")
        ax2.legend()
    ax2.set_title("pods that take real time: wall time against parallelism")
    _save_figure(plt, fig, "at scale", results, path)


def _save_figure(plt, fig, what, results, path):
    fig.suptitle("nodeops.kubernetes %s (%s, %d cores, Kubernetes %s)" % (
        what, results["finished_at"], results["machine"]["cores"], results["kubernetes"]["gitVersion"]))
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
    parser.add_argument("--real-node-json", help="the real node's pod times (real_node.py) that calibrate the pods "
                        "that take real time (default: results/real_node.json)")
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
        prof = PROFILES[results["profile"]]
        results["targets"] = [] if results["profile"] == "scale" else targets(results, prof)
        if prof.get("calibrated") or prof.get("gentle"):
            results["scale_targets"] = scale_targets(results, prof)
    else:
        results = Bench(args.profile, args.out, args.keep_nodes, args.profile_engine, args.real_node_json).run()
    text = table(results)
    stem = "scale" if results["profile"] == "scale" else "latest"
    with open(os.path.join(args.out, stem + ".json"), "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    with open(os.path.join(args.out, stem + ".md"), "w") as f:
        f.write(text)
    plot(results, os.path.join(args.out, stem + ".png"))
    if results.get("calibrated") or results.get("gentle"):
        plot_scale(results, os.path.join(args.out, stem + "-scale.png"))
    if args.update_readme:
        update_readme(os.path.join(harness.REPO, "README.md"), text)
    sys.stdout.write(text)
    incomplete = [r for kind in ("fanout", "sweep", "calibrated", "gentle") for r in results.get(kind) or []
                  if not r["complete"] or r.get("controls_intact") is False]
    if incomplete:
        log("%d measurement(s) did not complete their work; see %s.json" % (len(incomplete), stem))
        return 1
    unmeasured = [t["name"] for t in results.get("scale_targets") or [] if t["value"] is None and t["met"] is False]
    if unmeasured:
        log("not measured in this run: %s; see %s.md" % ("; ".join(unmeasured), stem))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
