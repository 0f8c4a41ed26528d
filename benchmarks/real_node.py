"""Pod create to result on the real node, against a kwok node, measured in the same run.

    python benchmarks/real_node.py [--repeats 5] [--out benchmarks/results/real_node.json]

Each repeat runs the engine once on the real node and once on a kwok node, in
alternating order, with the same task: a pod that runs ``true`` (on the real
node in the locally built Python image). The figure is the node record's
``duration_s`` (pod created to pod finished, as the engine saw it) and the
whole engine run's wall time; the ratio real/kwok is reported per median.
"""

import argparse
import copy
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools", "localcluster"))
import harness  # noqa: E402
import images  # noqa: E402
import realnode  # noqa: E402
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import options  # noqa: E402
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.engine import Engine  # noqa: E402

NAMESPACE = "nodeops-bench-realnode"
KWOK_NODE = "kwok-worker-1"


def spec_for(node):
    params = dict((k, copy.deepcopy(v.get("default"))) for k, v in options.BROADCAST_OPTIONS.items())
    params.update(name="lat", namespace=NAMESPACE, run_id=None, nodes=[node], preset="host_command",
                  host_command={"command": ["true"], "shell": False}, image=images.PYTHON_IMAGE,
                  tolerations=[{"key": realnode.TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
                  timeout=300, pending_timeout=120, cleanup="always")
    return options.validate(params)


def one(api, node, i):
    started = time.monotonic()
    result = Engine(api).run(spec_for(node), "l%d%s" % (i, node[:4]))
    wall = time.monotonic() - started
    rec = result["nodes"][0]
    if rec["outcome"] != "succeeded":
        raise SystemExit("%s: %s %s" % (node, rec["outcome"], rec.get("message")))
    return {"node": node, "pod_duration_s": rec["duration_s"], "run_wall_s": round(wall, 3)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "real_node.json"))
    args = parser.parse_args(argv)
    api = harness.client()
    harness.ensure_namespace(api, NAMESPACE)
    runs = []
    for i in range(args.repeats):
        order = (realnode.NODE_NAME, KWOK_NODE) if i % 2 == 0 else (KWOK_NODE, realnode.NODE_NAME)
        for node in order:
            runs.append(one(api, node, i))
    summary = {}
    for key in ("pod_duration_s", "run_wall_s"):
        real = statistics.median(r[key] for r in runs if r["node"] == realnode.NODE_NAME)
        kwok = statistics.median(r[key] for r in runs if r["node"] == KWOK_NODE)
        summary[key] = {"real_node": round(real, 3), "kwok": round(kwok, 3), "real_over_kwok": round(real / kwok, 2)}
    out = {"repeats": args.repeats, "runs": runs, "median": summary,
           "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
