#!/usr/bin/env python3
"""The Kyverno CLI and CRDs for the tests, from the pinned Kyverno Go module (tools/kyverno).

    kyverno_tools.py build            build (or reuse) the Kyverno CLI and admission controller; prints their paths
    kyverno_tools.py crds             install Kyverno's policy CRDs into the local cluster
    kyverno_tools.py admission-up     run Kyverno's admission controller against the local cluster (idempotent)
    kyverno_tools.py admission-down   stop it and delete the webhook configurations it registered

The binary is cached under ~/.cache/nodeops/bin by a hash of tools/kyverno and
the Go version, like the control plane binary. The CRDs come from the same
module version, so the policy the module writes is checked against the
schema Kyverno itself ships.
"""

import json
import os
import subprocess
import sys

import cluster

KYVERNO_VERSION = "v1.19.1"
SRC = os.path.join(cluster.REPO, "tools", "kyverno")


def kyverno_binary():
    bindir = os.path.join(cluster.CACHE, "bin")
    os.makedirs(bindir, exist_ok=True)
    binary = os.path.join(bindir, "kyverno-" + cluster.inputs_hash(SRC))
    if not os.path.exists(binary):
        tmp = binary + ".tmp"
        cluster.run_build(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", tmp, "."], SRC,
                          {"CGO_ENABLED": "0"}, "the Kyverno CLI " + KYVERNO_VERSION)
        os.replace(tmp, binary)
    return binary


def admission_binary():
    """Kyverno's admission controller (``cmd/kyverno``), built from the same pinned module as the CLI and cached
    the same way. Its package is "main" and its go.mod has a replace directive, so it is built inside a
    writable copy of the module (``go build pkg@version`` refuses replace directives)."""
    bindir = os.path.join(cluster.CACHE, "bin")
    os.makedirs(bindir, exist_ok=True)
    binary = os.path.join(bindir, "kyverno-admission-" + cluster.inputs_hash(SRC))
    if not os.path.exists(binary):
        import shutil

        copy = os.path.join(cluster.CACHE, "src", "kyverno-" + KYVERNO_VERSION)
        if not os.path.isfile(os.path.join(copy, "go.mod")):
            shutil.rmtree(copy, ignore_errors=True)
            shutil.rmtree(copy + ".tmp", ignore_errors=True)   # a copy cut short
            shutil.copytree(module_dir(), copy + ".tmp", symlinks=True)
            for root, dirs, files in os.walk(copy + ".tmp"):
                for name in dirs + files:
                    os.chmod(os.path.join(root, name), 0o755 if name in dirs else 0o644)
            os.rename(copy + ".tmp", copy)
        tmp = binary + ".tmp"
        cluster.run_build(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", tmp, "./cmd/kyverno"], copy,
                          {"CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"},
                          "Kyverno's admission controller " + KYVERNO_VERSION, expect="2-8 minutes")
        os.replace(tmp, binary)
    return binary


def module_dir():
    out = subprocess.run(["go", "mod", "download", "-json", "github.com/kyverno/kyverno@" + KYVERNO_VERSION],
                         cwd=SRC, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["Dir"]


# (directory under config/crds, group, plurals): the legacy kyverno.io policies and the policies.kyverno.io
# MutatingPolicy that replaces them.
CRDS = (("kyverno", "kyverno.io", ("clusterpolicies", "policies")),
        ("policies.kyverno.io", "policies.kyverno.io", ("mutatingpolicies", "namespacedmutatingpolicies")))


def install_crds(groups=None):
    """Server-side apply Kyverno's CRDs (all of CRDS, or those of ``groups``) with the admin credentials."""
    api = cluster.Api()
    for directory, group, plurals in CRDS:
        if groups and group not in groups:
            continue
        crd_dir = os.path.join(module_dir(), "config", "crds", directory)
        for name in plurals:
            _apply_crd(api, crd_dir, group, name)


def _apply_crd(api, crd_dir, group, plural):
    """Server-side apply the CRD <group>_<plural>.yaml of ``crd_dir`` with the admin credentials."""
    import urllib.request

    with open(os.path.join(crd_dir, "%s_%s.yaml" % (group, plural)), "rb") as f:
        manifest = f.read()
    req = urllib.request.Request(
        api.base + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/%s.%s"
        "?fieldManager=nodeops-tests&force=true" % (plural, group),
        data=manifest, method="PATCH", headers={"Content-Type": "application/apply-patch+yaml"})
    urllib.request.urlopen(req, context=api.ctx, timeout=60).read()


# ---------------------------------------------------------------- the admission controller, live

ADMISSION_NAMESPACE = "kyverno"
ADMISSION_ADDRESS = "127.0.0.1:%d" % int(os.environ.get("NODEOPS_KYVERNO_PORT", "9443"))
# Every CRD the admission controller watches or checks at start.
ALL_CRD_DIRS = ("kyverno", "policies.kyverno.io", "reports", "policyreport")


# A policy that changes nothing, dry-run to see the policy webhook answer.
PROBE_POLICY = {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "nodeops-probe"},
                "spec": {"background": False, "rules": [{
                    "name": "probe", "match": {"any": [{"resources": {"kinds": ["ConfigMap"]}}]},
                    "validate": {"message": "probe", "pattern": {"metadata": {"name": "?*"}}}}]}}


def install_all_crds():
    """Server-side apply every Kyverno CRD of the pinned module (file names are <group>_<plural>.yaml)."""
    api = cluster.Api()
    for directory in ALL_CRD_DIRS:
        crd_dir = os.path.join(module_dir(), "config", "crds", directory)
        for filename in sorted(os.listdir(crd_dir)):
            if not filename.endswith(".yaml"):
                continue
            group, plural = filename[:-len(".yaml")].split("_", 1)
            _apply_crd(api, crd_dir, group, plural)


def admission_up():
    """Run Kyverno's admission controller against the local cluster, outside it: its webhooks point at
    ADMISSION_ADDRESS (``--serverIP``), it makes its own CA and TLS Secrets in its namespace, and reports and
    metrics are off. Idempotent; logs to the cluster's logs directory. Returns its pid."""
    pid = cluster.kyverno_pid()
    if pid:
        cluster.log("Kyverno's admission controller is already running (pid %d)" % pid)
        return pid
    binary = admission_binary()
    api = cluster.Api()
    host, port = ADMISSION_ADDRESS.split(":")
    if cluster._port_in_use(int(port)):
        sys.exit("[cluster] port %s is in use: Kyverno's admission controller would register webhooks nobody answers "
                 "(they fail closed). Free it, or set NODEOPS_KYVERNO_PORT" % port)
    try:
        return _start_admission(api, binary, host, port)
    except BaseException:
        # Whatever stopped the start (a timeout, an interrupt): no webhook of a Kyverno that does not answer stays.
        cluster.stop_kyverno(api)
        raise


def _start_admission(api, binary, host, port):
    import time
    import urllib.error

    cluster.log("Kyverno's admission controller: installing its CRDs")
    install_all_crds()
    try:
        api.call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                "metadata": {"name": ADMISSION_NAMESPACE}})
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise
    selector = {"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                                                            "values": ["kube-system", ADMISSION_NAMESPACE]}]}}
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kyverno",
                                                                    "namespace": ADMISSION_NAMESPACE},
              "data": {"webhooks": json.dumps(selector)}}
    try:
        api.call("POST", "/api/v1/namespaces/%s/configmaps" % ADMISSION_NAMESPACE, config)
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise
    env = dict(os.environ, KYVERNO_NAMESPACE=ADMISSION_NAMESPACE, KYVERNO_SERVICEACCOUNT_NAME="kyverno-admission",
               KYVERNO_DEPLOYMENT="kyverno-admission", KYVERNO_POD_NAME="nodeops-local-kyverno",
               INIT_CONFIG="kyverno", METRICS_CONFIG="kyverno-metrics")
    args = [binary, "--kubeconfig=" + cluster.path("kubeconfig"), "--serverIP=" + ADMISSION_ADDRESS,
            "--webhookServerHost=" + host, "--webhookServerPort=" + port,
            "--caSecretName=kyverno-svc.kyverno.svc.kyverno-tls-ca",
            "--tlsSecretName=kyverno-svc.kyverno.svc.kyverno-tls-pair",
            "--admissionReports=false", "--otelConfig=grpc", "--disableMetrics=true",
            "--controllerRuntimeMetricsAddress=0", "--generateValidatingAdmissionPolicy=false",
            "--autoMemLimitEnabled=false", "-v=2"]
    os.makedirs(cluster.path("run"), exist_ok=True)
    os.makedirs(cluster.path("logs"), exist_ok=True)
    logf = open(cluster.path("logs", "kyverno.log"), "ab")
    proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=env, cwd=cluster.STATE)
    with open(cluster.path("run", "kyverno.pid"), "w") as f:
        f.write(str(proc.pid))
    cluster.log("started Kyverno's admission controller (pid %d, log %s)" % (proc.pid, cluster.path("logs", "kyverno.log")))
    started = time.monotonic()

    def ready():
        if proc.poll() is not None:
            sys.exit("[cluster] Kyverno's admission controller exited (%s); see %s" % (
                proc.returncode, cluster.path("logs", "kyverno.log")))
        hooks = api.call("GET", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
                                "?labelSelector=webhook.kyverno.io/managed-by%3Dkyverno")["items"]
        if not any(h["metadata"]["name"] == "kyverno-policy-validating-webhook-cfg" for h in hooks):
            return False
        # Registered is not serving: its certificate comes a moment later. A policy's dry run goes through
        # its policy webhook, which answers only once it serves TLS (before, "tls: internal error").
        api.call("POST", "/apis/kyverno.io/v1/clusterpolicies?dryRun=All", PROBE_POLICY)
        return True
    cluster._wait("Kyverno's admission controller to register its webhooks and answer them", ready, 180)
    cluster.log("Kyverno's admission controller ready after %.1fs" % (time.monotonic() - started))
    return proc.pid


def admission_down():
    """Stop it and delete the webhook configurations it registered (they fail closed). A no-op when neither
    it nor the apiserver runs."""
    return cluster.stop_kyverno(cluster.Api() if cluster._alive("kube-apiserver") else None)


# ---------------------------------------------------------------- kyverno test cases


def _job(name, namespace, labels=None, annotations=None, owner=None, ttl=None):
    meta = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    if owner == "CronJob":
        meta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly",
                                    "uid": "2c3f6a8e-0000-4000-8000-000000000001", "controller": True}]
    elif owner:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": owner, "name": "holder",
                                    "uid": "2c3f6a8e-0000-4000-8000-000000000002"}]
    spec = {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}}
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec}


def write_test_case(directory, options, engine="kyverno_legacy"):
    """A ``kyverno test`` directory: the policy the module generates for ``engine``, one Job of each kind,
    and what must happen to each. Returns {"ns/name": what Kyverno must say}."""
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._dangling import options as dangling_options
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._dangling import policy as admission

    if engine not in ("kyverno", "kyverno_legacy"):
        raise ValueError("the Kyverno CLI runs only the kyverno and kyverno_legacy engines, not %r" % engine)
    params = {"ttl_seconds": 900, "include_namespaces": [], "exclude_namespaces": ["kube-system", "kyverno"],
              "opt_out_label": "nodeops.io/keep-job", "skip_gitops_managed": True}
    params.update(options)
    opts = dangling_options.validate(params)
    policies = admission.build_policy(opts, engine)
    policy = policies[0]
    os.makedirs(str(directory), exist_ok=True)
    jobs = {
        "ownerless": _job("ownerless", "ci"),
        "cron-owned": _job("cron-owned", "ci", owner="CronJob"),
        "configmap-owned": _job("configmap-owned", "ci", owner="ConfigMap"),
        "in-kube-system": _job("in-kube-system", "kube-system"),
        "own-ttl": _job("own-ttl", "ci", ttl=42),
        "opted-out": _job("opted-out", "ci", labels={opts["opt_out_label"]: "true"}),
        "argocd": _job("argocd", "ci", annotations={"argocd.argoproj.io/tracking-id": "app:batch/Job:ci/argocd"}),
        "helm-hook": _job("helm-hook", "ci", annotations={"helm.sh/hook": "pre-upgrade"}),
    }
    ttl = opts["ttl_seconds"]
    # What Kyverno must report for each Job: the TTL added, or why not (its message in --detailed-results).
    mutated = "mutated Job/%s"
    expect = {"ownerless": mutated, "cron-owned": "preconditions not met", "configmap-owned": "preconditions not met",
              "own-ttl": "no patches applied",
              "opted-out": "Excluded",
              "in-kube-system": "Excluded" if "kube-system" in opts["exclude_namespaces"] else mutated,
              "argocd": "Excluded" if opts["skip_gitops_managed"] else mutated,
              "helm-hook": "Excluded" if opts["skip_gitops_managed"] else mutated}
    if opts["include_namespaces"]:
        for key, job in jobs.items():
            if job["metadata"]["namespace"] not in opts["include_namespaces"] and expect[key] != "Excluded":
                expect[key] = "Excluded"   # Kyverno reports a rule that does not match as excluded
    if engine == "kyverno":
        # MutatingPolicy rows say "success" for a mutation, "Excluded" when the namespace selector does not
        # match, and only "skip" when a match condition is false.
        def cel(key, job):
            ns = job["metadata"]["namespace"]
            if (opts["include_namespaces"] and ns not in opts["include_namespaces"]) or ns in opts["exclude_namespaces"]:
                return "Excluded"
            return "success" if expect[key] == mutated else "skip"
        expect = dict((key, cel(key, job)) for key, job in jobs.items())
    with open(os.path.join(str(directory), "policy.yaml"), "w") as f:
        f.write("\n---\n".join(json.dumps(p) for p in policies))
    with open(os.path.join(str(directory), "resources.yaml"), "w") as f:
        f.write("\n---\n".join(json.dumps(j) for j in jobs.values()))
    results = []
    for key, job in jobs.items():
        ref = "%s/%s" % (job["metadata"]["namespace"], job["metadata"]["name"])
        entry = {"policy": policy["metadata"]["name"], "kind": "Job", "resources": [ref]}
        if engine == "kyverno_legacy":
            entry["rule"] = admission.RULE_NAME
        else:
            entry["isMutatingPolicy"] = True
        if expect[key] in (mutated, "success"):
            expect[key] = expect[key].replace("%s", job["metadata"]["name"])
            patched = json.loads(json.dumps(job))
            patched["spec"]["ttlSecondsAfterFinished"] = ttl
            patched_file = "patched-%s.yaml" % key
            with open(os.path.join(str(directory), patched_file), "w") as f:
                json.dump(patched, f)
            entry.update(result="pass", patchedResources=patched_file)
        else:
            entry.update(result="skip")
        results.append(entry)
    test = {"apiVersion": "cli.kyverno.io/v1alpha1", "kind": "Test", "metadata": {"name": "nodeops-dangling-ttl"},
            "policies": ["policy.yaml"], "resources": ["resources.yaml"], "results": results}
    if engine == "kyverno":
        # The namespace selector needs each namespace's labels; the CLI takes them from a values file.
        names = sorted(set(j["metadata"]["namespace"] for j in jobs.values()))
        values = {"apiVersion": "cli.kyverno.io/v1alpha1", "kind": "Value", "metadata": {"name": "values"},
                  "namespaceSelector": [{"name": n, "labels": {"kubernetes.io/metadata.name": n}} for n in names]}
        with open(os.path.join(str(directory), "values.yaml"), "w") as f:
            json.dump(values, f)
        test["variables"] = "values.yaml"
    with open(os.path.join(str(directory), "kyverno-test.yaml"), "w") as f:
        json.dump(test, f)
    return dict(("%s/%s" % (j["metadata"]["namespace"], j["metadata"]["name"]), expect[k]) for k, j in jobs.items())


def detailed_rows(output):
    """(resource "ns/name", result, reason, message) rows of ``kyverno test --detailed-results``."""
    rows = []
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("\u2502")]
        if len(cells) >= 8 and cells[4].startswith("batch/v1/Job/"):
            rows.append((cells[4][len("batch/v1/Job/"):], cells[5], cells[6], cells[7]))
    return rows


if __name__ == "__main__":
    if sys.argv[1:] == ["build"]:
        print(kyverno_binary())
        print(admission_binary())
    elif sys.argv[1:] == ["crds"]:
        install_crds()
    elif sys.argv[1:] == ["admission-up"]:
        admission_up()
    elif sys.argv[1:] == ["admission-down"]:
        admission_down()
    else:
        sys.exit("usage: kyverno_tools.py build|crds|admission-up|admission-down")
