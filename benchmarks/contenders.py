"""The measured programs. Each runs in its own process so its peak RSS is its own.

    python benchmarks/contenders.py engine  --namespace NS --selector K=V [--profile FILE]
    python benchmarks/contenders.py bare    --namespace NS --selector K=V
    python benchmarks/contenders.py polling --namespace NS --selector K=V [--interval 1]
    python benchmarks/contenders.py pods    --namespace NS --selector K=V --out DIR
    python benchmarks/contenders.py sweep   --exclude NS [--exclude NS ...]

Each prints one JSON object on stdout: how many nodes (or Jobs) it handled,
with what outcome, and how many requests its client sent.
"""

import argparse
import copy
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import naming, options  # noqa: E402
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import pods as pod_builder  # noqa: E402
from ansible_collections.nodeops.kubernetes.plugins.module_utils._dangling import options as dangling_options, sweep as job_sweep  # noqa: E402
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.engine import Engine  # noqa: E402
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.watch import list_all  # noqa: E402
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import NodeFailures  # noqa: E402

BROADCAST = "bench"
TERMINAL = ("Succeeded", "Failed")
# What an image_prune dry run's node script writes to its termination message on a node with three
# unused images. kwok runs no containers: its simulated kubelet copies this pod annotation into the
# container's terminated state, where a real kubelet copies /dev/termination-log (tools/kwok/kwok.yaml).
RESULT_MESSAGE = "NODEOPS_RESULT " + json.dumps({
    "bytes_freed": 232000000, "dry_run": True, "errors": [], "preset": "image_prune",
    "images_removed": ["docker.io/library/nginx:1.25", "docker.io/library/redis:7.2", "quay.io/prometheus/busybox:1"],
    "images_removed_count": 3, "disk_usage_before": 81.5, "disk_usage_after": None,
    "skipped_below_threshold": False}, sort_keys=True, separators=(",", ":"))
SIM_MESSAGE = "sim.nodeops.io/message"


def broadcast_params(namespace, selector, name=BROADCAST, log_on_success=False, annotations=None, parallelism=None,
                     max_failures=None):
    """The one broadcast every fan-out contender runs: an image_prune dry run on each node, whose pods
    end at once (or take the time ``annotations`` say: ``harness.calibration``), each with its node's
    result in its termination message."""
    key, _, value = selector.partition("=")
    params = dict((k, copy.deepcopy(v.get("default"))) for k, v in options.BROADCAST_OPTIONS.items())
    params.update(name=name, namespace=namespace, run_id=None, preset="image_prune", image_prune={"dry_run": True},
                  node_selector={key: value}, parallelism=parallelism or "100%", timeout=3600, pending_timeout=1800,
                  log_on_success=log_on_success, pod_annotations=dict(annotations or {}, **{SIM_MESSAGE: RESULT_MESSAGE}))
    if max_failures is not None:
        params["max_failures"] = max_failures
    return params


def _params(args, name=BROADCAST, **more):
    annotations = dict(a.split("=", 1) for a in args.annotate)
    return broadcast_params(args.namespace, args.selector, name=name, annotations=annotations,
                            parallelism=args.parallelism, max_failures=args.max_failures, **more)


def _eligible_pods(api, opts, run_id):
    nodes, _rv = list_all(api, "/api/v1/nodes", {"labelSelector": "%s=%s" % next(iter(opts["node_selector"].items()))})
    # The run's pod names, as the engine makes them: no two alike, whatever the node names hash to.
    names = naming.pod_names(opts["name"], run_id, [n["metadata"]["name"] for n in nodes])
    return [pod_builder.build_pod(opts, run_id, n["metadata"]["name"], active_deadline=opts["timeout"],
                                  name=names[n["metadata"]["name"]]) for n in nodes]


def engine(args):
    api = harness.client(counting=True)
    opts = options.validate(_params(args, log_on_success=args.log_on_success))
    profiler = None
    if args.profile:
        import pyinstrument
        profiler = pyinstrument.Profiler(interval=0.005)
        profiler.start()
    try:
        result = Engine(api).run(opts, "e" + str(int(time.time())))
    except NodeFailures as exc:
        result = exc.result
    if profiler:
        profiler.stop()
        with open(args.profile, "w") as f:
            f.write(profiler.output_text(unicode=False, color=False, show_all=False))
    return {"nodes": len(result["nodes"]), "summary": result["summary"], "client_requests": api.sent,
            "outcomes": sum(1 for r in result["nodes"] if r["outcome"] in ("succeeded", "failed")),
            "log_tails": sum(1 for r in result["nodes"] if r.get("log") is not None),
            "results": sum(1 for r in result["nodes"] if (r.get("result") or {}).get("images_removed_count") == 3)}


class PhaseWatch(threading.Thread):
    """One watch on the run's pods; counts pods that reached a terminal phase."""

    def __init__(self, api, namespace, selector, expected):
        super(PhaseWatch, self).__init__(daemon=True)
        self.api, self.namespace, self.selector, self.expected = api, namespace, selector, expected
        self.done, self.phases = threading.Event(), {}
        self.ready = threading.Event()

    def run(self):
        path = "/api/v1/namespaces/%s/pods" % self.namespace
        rv = None
        while not self.done.is_set():
            if rv is None:
                page = self.api.get(path, {"labelSelector": self.selector, "limit": 1})
                rv = page["metadata"]["resourceVersion"]
            stream = self.api.watch(path, {"labelSelector": self.selector, "resourceVersion": rv,
                                           "timeoutSeconds": 300}, timeout=320)
            self.ready.set()
            for event in stream:
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    rv = None
                    break
                rv = obj["metadata"].get("resourceVersion", rv)
                phase = (obj.get("status") or {}).get("phase")
                if phase in TERMINAL:
                    self.phases[obj["metadata"]["name"]] = phase
                    if len(self.phases) >= self.expected:
                        self.done.set()
                        stream.close()
                        return


def _create_all(api, namespace, pods, workers=16):
    path = "/api/v1/namespaces/%s/pods" % namespace
    harness.pool_map(lambda pod: api.create(path, pod), pods, workers=workers)


def bare(args):
    """Create the same pods concurrently and wait for them with one watch. No logic, no cleanup.

    (The harness deletes its pods afterwards, untimed.)
    """
    api = harness.client(counting=True)
    opts = options.validate(_params(args, name="bare"))
    run_id = "b" + str(int(time.time()))
    pods = _eligible_pods(api, opts, run_id)
    if not pods:
        return {"nodes": 0, "summary": {"succeeded": 0, "failed": 0}, "outcomes": 0, "client_requests": api.sent}
    selector = naming.run_selector(opts["name"], run_id)
    watch = PhaseWatch(api, args.namespace, selector, len(pods))
    watch.start()
    watch.ready.wait(30)
    _create_all(api, args.namespace, pods)
    watch.done.wait()
    succeeded = sum(1 for p in watch.phases.values() if p == "Succeeded")
    return {"nodes": len(pods), "summary": {"succeeded": succeeded, "failed": len(watch.phases) - succeeded},
            "outcomes": len(watch.phases), "client_requests": api.sent}


def polling(args):
    """Create the same pods, then wait on each pod in turn by polling it, as generic wait helpers do.

    No cleanup: the harness deletes its pods afterwards, untimed.
    """
    api = harness.client(counting=True)
    opts = options.validate(broadcast_params(args.namespace, args.selector, name="poll"))
    run_id = "p" + str(int(time.time()))
    pods = _eligible_pods(api, opts, run_id)
    _create_all(api, args.namespace, pods)
    succeeded = 0
    for pod in pods:
        path = "/api/v1/namespaces/%s/pods/%s" % (args.namespace, pod["metadata"]["name"])
        while True:
            phase = (api.get(path).get("status") or {}).get("phase")
            if phase in TERMINAL:
                succeeded += phase == "Succeeded"
                break
            time.sleep(args.interval)
    return {"nodes": len(pods), "summary": {"succeeded": succeeded}, "client_requests": api.sent}


def pods(args):
    """Write the pods (one file per node) for the one-node-at-a-time shell baseline. Not measured."""
    api = harness.client()
    opts = options.validate(_params(args, name="serial"))
    opts["pin"] = "node_name"    # as kubectl node-shell pins its pod
    run_id = "s" + str(int(time.time()))
    built = _eligible_pods(api, opts, run_id)
    os.makedirs(args.out, exist_ok=True)
    for pod in built:
        with open(os.path.join(args.out, pod["metadata"]["name"] + ".json"), "w") as f:
            json.dump(pod, f)
    return {"nodes": len(built)}


def sweep(args):
    api = harness.client(counting=True)
    opts = dangling_options.validate({"ttl_seconds": 60, "exclude_namespaces": args.exclude, "include_namespaces": [],
                                      "opt_out_label": dangling_options.DEFAULT_OPT_OUT_LABEL,
                                      "skip_gitops_managed": True, "policy_name": None})
    result = job_sweep.run(api, opts, "delete", False, progress_every_s=args.progress_every,
                           progress=lambda snap: sys.stderr.write(job_sweep.progress_line(snap) + "\n"))
    return {"jobs": result["total"], "errors": result["errors_total"], "spared": result["spared"],
            "pages": result["stats"]["pages"], "client_requests": api.sent, "pacing": result["pacing"],
            "progress": result["progress"]}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("contender", choices=["engine", "bare", "polling", "pods", "sweep"])
    parser.add_argument("--namespace")
    parser.add_argument("--selector")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--log-on-success", action="store_true",
                        help="engine: also read every succeeded node's log (one more request per node)")
    parser.add_argument("--profile")
    parser.add_argument("--out")
    parser.add_argument("--exclude", action="append", default=[])
    parser.add_argument("--annotate", action="append", default=[], metavar="KEY=VALUE",
                        help="a pod annotation (the simulated pods' delay, delay-max, fail-permille)")
    parser.add_argument("--parallelism")
    parser.add_argument("--progress-every", type=float, default=10.0, help="sweep: seconds between progress lines")
    parser.add_argument("--max-failures")
    args = parser.parse_args(argv)
    result = globals()[args.contender](args)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
