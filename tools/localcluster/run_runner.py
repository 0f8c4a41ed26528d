#!/usr/bin/env python3
"""Run a cron broadcast's runner here, exactly as its CronJob would run it in a pod.

kwok nodes run no containers, so the tests and molecule cannot let the
CronJob's Job do the work. This takes the command, environment and code from
the installed CronJob and its ConfigMap, and runs them as a local process with
a fresh token of the runner's own ServiceAccount: same code, same RBAC.

    run_runner.py NAMESPACE NAME [--job-name JOB]
"""

import argparse
import base64
import os
import subprocess
import sys
import tempfile

import cluster

CODE_ROOT = "/opt/nodeops"


def runner_command(namespace, name, workdir, job_name=None):
    """(argv, env) for a local run of the runner of cron broadcast ``name``."""
    api = cluster.Api()
    cron = api.call("GET", "/apis/batch/v1/namespaces/%s/cronjobs/%s" % (namespace, name))
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    volume = pod["volumes"][0]["configMap"]
    config_map = api.call("GET", "/api/v1/namespaces/%s/configmaps/%s" % (namespace, volume["name"]))
    data, binary = config_map.get("data") or {}, config_map.get("binaryData") or {}
    root = os.path.join(workdir, "opt-nodeops")
    for item in volume["items"]:
        target = os.path.join(root, item["path"])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(data[item["key"]].encode("utf-8") if item["key"] in data else base64.b64decode(binary[item["key"]]))
    token = api.call("POST", "/api/v1/namespaces/%s/serviceaccounts/%s/token" % (namespace, pod["serviceAccountName"]),
                     {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                      "spec": {"audiences": [], "expirationSeconds": 3600}})["status"]["token"]
    sa_dir = os.path.join(workdir, "sa")
    os.makedirs(sa_dir, exist_ok=True)
    with open(os.path.join(sa_dir, "token"), "w") as f:
        f.write(token)
    with open(cluster.path("pki", "ca.crt")) as src, open(os.path.join(sa_dir, "ca.crt"), "w") as dst:
        dst.write(src.read())
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(cluster.APISERVER_PORT),
           "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NODEOPS_JOB_NAME": job_name or name + "-local",
           "NODEOPS_SA_DIR": sa_dir}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"].replace(CODE_ROOT, root)
    if container["command"][0] != "python3":
        raise SystemExit("unexpected runner command %r" % container["command"])
    # The integrity check's argv names the mount: here, the directory the files were laid in.
    argv = [root if arg == CODE_ROOT else arg for arg in container["command"][1:]]
    # -S: no site-packages, so the runner provably needs nothing beyond the standard library.
    return [sys.executable, "-S"] + argv, env


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("namespace")
    parser.add_argument("name")
    parser.add_argument("--job-name", help="the Job this run stands for (as the pod's job-name label)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nodeops-runner-") as workdir:
        argv, env = runner_command(args.namespace, args.name, workdir, job_name=args.job_name)
        return subprocess.call(argv, env=env)


if __name__ == "__main__":
    sys.exit(main())
