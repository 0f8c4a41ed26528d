#!/usr/bin/env python3
"""Build, start and stop the project's local Kubernetes control plane.

The control plane is real: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler come from one multi-call binary built from the upstream Go
modules in tools/k8s, and kwok plays the kubelet of every simulated node.

Only the standard library is used, so ``make cluster`` works before any
virtualenv exists.

    cluster.py build     build (or reuse) the binaries
    cluster.py up        start everything, create the simulated nodes, wait for Ready
    cluster.py down      stop what ``up`` started, by recorded process id
    cluster.py status    show what runs
    cluster.py clean     down, then forget all cluster state
    cluster.py kubeconfig  print the admin kubeconfig's path
    cluster.py minor     print the Kubernetes minor it runs (default-minor: the default one)

NODEOPS_K8S_VERSION=1.34 picks the Kubernetes minor (default: the newest module in tools/k8s/, whose
go.mod is the one source of the version); each minor has its own state directory (.cluster for the
default, .cluster-v1.34 otherwise) and builds its own binary.

A second cluster beside the first (the fleet test starts one): another state
directory and other ports, and no real node (there is one per machine).

    NODEOPS_CLUSTER_DIR=/tmp/c2 NODEOPS_ETCD_PORT=23891 NODEOPS_APISERVER_PORT=16543 \
    NODEOPS_KWOK_PORT=10347 NODEOPS_CM_PORT=10457 NODEOPS_SCHED_PORT=10459 \
    NODEOPS_REAL_NODE=0 NODEOPS_REQUIRE_REAL_NODE=0 NODEOPS_NODES=2 cluster.py up
"""

import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nodes as simnodes  # noqa: E402  (sibling module, importable without a package install)
import realnode  # noqa: E402
from k8s_modules import K8S_MODULES, default_minor, make_prefix, module_version, supported_minors  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def selected_minor(value=None):
    """The minor NODEOPS_K8S_VERSION names ("1.34", "v1.34" or that minor's go.mod version); exits naming the
    choices otherwise."""
    value = os.environ.get("NODEOPS_K8S_VERSION", "") if value is None else value
    if not value:
        return default_minor()
    match = re.match(r"^v?(1\.\d+)(\.\d+)?$", value.strip())
    minors = supported_minors()
    if not match or match.group(1) not in minors or (
            match.group(2) and "v" + value.strip().lstrip("v") != module_version(match.group(1))):
        sys.exit("[cluster] NODEOPS_K8S_VERSION=%r: expected one of %s (a minor with a module in tools/k8s/; "
                 "each builds the patch its go.mod names: %s)" % (
                     value, ", ".join(minors), ", ".join(module_version(m) for m in minors)))
    return match.group(1)


K8S_MINOR = selected_minor()
# The minor from which MutatingAdmissionPolicy is v1 and on by default.
MAP_GA_MINOR = (1, 36)
MAP_BETA_VAR = "NODEOPS_MUTATING_ADMISSION_POLICY_BETA"


def selected_map_beta():
    """NODEOPS_MUTATING_ADMISSION_POLICY_BETA=1: the apiserver serves MutatingAdmissionPolicy as
    admissionregistration.k8s.io/v1beta1 (its feature gate and runtime config on), for a minor before 1.36."""
    value = os.environ.get(MAP_BETA_VAR, "").strip()
    if value not in ("", "0", "1"):
        sys.exit("[cluster] %s=%r: expected 1 (serve MutatingAdmissionPolicy v1beta1) or 0 or unset (do not)"
                 % (MAP_BETA_VAR, value))
    if value == "1" and tuple(int(x) for x in K8S_MINOR.split(".")) >= MAP_GA_MINOR:
        sys.exit("[cluster] %s=1 is for Kubernetes 1.34 and 1.35: on %s MutatingAdmissionPolicy is v1 and on "
                 "already; unset it, or set NODEOPS_K8S_VERSION=1.34" % (MAP_BETA_VAR, K8S_MINOR))
    return value == "1"


MAP_BETA = selected_map_beta()
K8S_SRC = os.path.join(K8S_MODULES, "v" + K8S_MINOR)
K8S_VERSION = module_version(K8S_MINOR)
GO_MOD = os.path.relpath(os.path.join(K8S_SRC, "go.mod"), REPO)
# One state directory per minor: etcd cannot open a newer etcd's data directory, and certificates, the
# real node's store and logs belong to one cluster. The default minor keeps .cluster.
STATE = os.environ.get("NODEOPS_CLUSTER_DIR") or os.path.join(
    REPO, ".cluster" if K8S_MINOR == default_minor() else ".cluster-v" + K8S_MINOR)
CACHE = os.environ.get(
    "NODEOPS_CACHE",
    os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "nodeops"),
)
KWOK_VERSION = "v0.8.0"

ETCD_PORT = int(os.environ.get("NODEOPS_ETCD_PORT", "23791"))
ETCD_PEER_PORT = ETCD_PORT + 10
APISERVER_PORT = int(os.environ.get("NODEOPS_APISERVER_PORT", "16443"))
KWOK_PORT = int(os.environ.get("NODEOPS_KWOK_PORT", "10247"))
CM_PORT = int(os.environ.get("NODEOPS_CM_PORT", "10357"))
SCHED_PORT = int(os.environ.get("NODEOPS_SCHED_PORT", "10359"))
# The simulated kubelets' node lease, as a kubelet's: 40 s, renewed every quarter of it. Every simulated
# node renews its lease every 10 s, so at 5,000 nodes the idle control plane spends 1.7 of this machine's
# 2 cores on heartbeats alone (measured: NOTES.md). The scale benchmark lengthens the lease for its
# 10,000 nodes with set_node_lease(), and the node lifecycle controller's grace period with it.
DEFAULT_NODE_LEASE_SECONDS = 40
# The line of tools/kwok/kwok.yaml that sets it (written and read back by the functions below).
LEASE_LINE = re.compile(r"(?m)^(  nodeLeaseDurationSeconds: )(\d+)$")

# Start order; ``down`` stops them in reverse.
COMPONENTS = ["etcd", "kube-apiserver", "kwok", "kube-controller-manager", "kube-scheduler"]

ADMIN_USER = "nodeops-admin"
ADMIN_TOKEN_USER = "nodeops-token-admin"


def log(msg):
    print("[cluster] " + msg, flush=True)


def path(*parts):
    return os.path.join(STATE, *parts)


# ---------------------------------------------------------------- build


# The cache key of a Go binary: its module's sources and the Go version (shared with images.py).
inputs_hash = realnode.images.go_inputs_hash


def run_build(cmd, cwd, env_extra, what, expect="10-25 minutes"):
    env = dict(os.environ, **env_extra)
    log("building %s (first time: %s on 2 cores; cached afterwards)" % (what, expect))
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env)
    while True:
        try:
            rc = proc.wait(timeout=60)
            break
        except subprocess.TimeoutExpired:
            log("  still building %s ... %ds" % (what, time.monotonic() - started))
    if rc != 0:
        sys.exit("[cluster] building %s failed (exit %d): %s" % (what, rc, " ".join(cmd)))
    log("built %s in %ds" % (what, time.monotonic() - started))


def build():
    """Build or reuse the binaries, and link them into .cluster/bin."""
    if not shutil.which("go"):
        sys.exit("[cluster] Go is required to build the control plane (go 1.26.6 or newer)")
    bindir = os.path.join(CACHE, "bin")
    os.makedirs(bindir, exist_ok=True)
    k8s_bin = os.path.join(bindir, "nodeops-k8s-" + inputs_hash(K8S_SRC))
    if os.path.exists(k8s_bin):
        log("reusing %s (inputs unchanged)" % k8s_bin)
    else:
        ver = K8S_VERSION.lstrip("v").split(".")
        ldflags = " ".join([
            "-s -w",
            "-X k8s.io/component-base/version.gitVersion=" + K8S_VERSION,
            "-X k8s.io/component-base/version.gitMajor=" + ver[0],
            "-X k8s.io/component-base/version.gitMinor=" + ver[1],
            "-X k8s.io/component-base/version.gitTreeState=clean",
        ])
        tmp = k8s_bin + ".tmp"
        run_build(
            ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", tmp, "."],
            K8S_SRC, {"CGO_ENABLED": "0"},
            "etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kubectl " + K8S_VERSION,
        )
        os.replace(tmp, k8s_bin)
    check_built_version(k8s_bin)
    kwok_dir = os.path.join(CACHE, "kwok-" + KWOK_VERSION)
    kwok_bin = os.path.join(kwok_dir, "kwok")
    if os.path.exists(kwok_bin):
        log("reusing %s" % kwok_bin)
    else:
        run_build(
            ["go", "install", "sigs.k8s.io/kwok/cmd/kwok@" + KWOK_VERSION],
            REPO, {"GOBIN": kwok_dir, "CGO_ENABLED": "0", "GOFLAGS": "-trimpath"}, "kwok " + KWOK_VERSION,
        )
    os.makedirs(path("bin"), exist_ok=True)
    names = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet", "kube-proxy"]
    links = {name: k8s_bin for name in names}
    links["kwok"] = kwok_bin
    for name, target in links.items():
        link = path("bin", name)
        if os.path.islink(link) and os.readlink(link) == target:
            continue
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(target, link)
    return links


def built_module_version(binary):
    """The k8s.io/kubernetes module version a binary was built from, as Go recorded it in the binary."""
    out = subprocess.run(["go", "version", "-m", binary], capture_output=True, text=True, check=True).stdout
    match = re.search(r"^\s*dep\s+k8s\.io/kubernetes\s+(v\S+)", out, re.M)
    return match.group(1) if match else None


def check_built_version(binary):
    """The binary must be built from the version go.mod names (its cache key is the module's files, so a
    mismatch means a stale or foreign binary under that name)."""
    built = built_module_version(binary)
    if built != K8S_VERSION:
        sys.exit("[cluster] %s was built from k8s.io/kubernetes %s, but %s requires %s; remove it and run "
                 "make cluster again" % (binary, built, GO_MOD,
                                         K8S_VERSION))


def check_state_minor():
    """A state directory belongs to one Kubernetes minor: refuse another's (etcd 3.6 cannot read 3.7's data)."""
    marker = path("k8s-minor")
    if os.path.exists(marker):
        with open(marker) as f:
            recorded = f.read().strip()
        if recorded != K8S_MINOR:
            sys.exit("[cluster] %s holds a Kubernetes %s cluster, not %s (NODEOPS_K8S_VERSION): clear it with "
                     "NODEOPS_K8S_VERSION=%s make cluster-clean, or pick another NODEOPS_CLUSTER_DIR"
                     % (STATE, recorded, K8S_MINOR, K8S_MINOR))
    else:
        with open(marker, "w") as f:
            f.write(K8S_MINOR + "\n")


def _restart_hint():
    prefix = make_prefix(K8S_MINOR)
    return "restart it: %smake cluster-down && %smake cluster" % (prefix, prefix)


def check_running_version(api):
    """What the apiserver reports must be what go.mod says: a cluster started before go.mod changed runs the
    old binaries (each reports the version it was built as)."""
    reported = api.call("GET", "/version")["gitVersion"]
    if reported != K8S_VERSION:
        sys.exit("[cluster] the apiserver reports %s, but %s requires %s; %s" % (
            reported, GO_MOD, K8S_VERSION, _restart_hint()))


def map_beta_served(api):
    """Whether the apiserver serves MutatingAdmissionPolicy v1beta1 (discovery)."""
    try:
        listing = api.call("GET", "/apis/admissionregistration.k8s.io/v1beta1")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise
    return any(r.get("name") == "mutatingadmissionpolicies" for r in listing.get("resources") or [])


def ensure_map_beta(api):
    """The running apiserver serves MutatingAdmissionPolicy v1beta1 exactly when MAP_BETA asks: restarted with
    the flags when it does not (a cluster already up, started with the other setting), then checked."""
    if MAP_BETA != map_beta_served(api):
        log("restarting kube-apiserver: %s=%s asks for MutatingAdmissionPolicy v1beta1 %s" % (
            MAP_BETA_VAR, "1" if MAP_BETA else "0", "served" if MAP_BETA else "not served"))
        restart("kube-apiserver")
    if MAP_BETA != map_beta_served(api):
        sys.exit("[cluster] the apiserver %s MutatingAdmissionPolicy v1beta1, though %s=%s; see %s" % (
            "serves" if not MAP_BETA else "does not serve", MAP_BETA_VAR, "1" if MAP_BETA else "0",
            path("logs", "kube-apiserver.log")))


def check_kubelet_version(api):
    """The same for the real node's kubelet; returns its nodeInfo."""
    info = api.call("GET", "/api/v1/nodes/" + realnode.NODE_NAME)["status"]["nodeInfo"]
    if info.get("kubeletVersion") != K8S_VERSION:
        sys.exit("[cluster] the real node's kubelet reports %s, but %s requires %s; %s" % (
            info.get("kubeletVersion"), GO_MOD, K8S_VERSION,
            _restart_hint()))
    return info


def kwok_source_dir():
    out = subprocess.run(
        ["go", "mod", "download", "-json", "sigs.k8s.io/kwok@" + KWOK_VERSION],
        cwd=REPO, capture_output=True, text=True, env=dict(os.environ, GOFLAGS="-mod=mod"),
    )
    if out.returncode != 0:
        sys.exit("[cluster] could not fetch kwok %s sources: %s" % (KWOK_VERSION, out.stderr))
    return json.loads(out.stdout)["Dir"]


# ---------------------------------------------------------------- pki


def _openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True)


def _sign(name, subject, ca, sans=None, client=False):
    key, csr, crt = path("pki", name + ".key"), path("pki", name + ".csr"), path("pki", name + ".crt")
    _openssl("genrsa", "-out", key, "2048")
    _openssl("req", "-new", "-key", key, "-subj", subject, "-out", csr)
    ext = path("pki", name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n")
        f.write("extendedKeyUsage=%s\n" % ("clientAuth" if client else "serverAuth,clientAuth"))
        if sans:
            f.write("subjectAltName=%s\n" % ",".join(sans))
    _openssl("x509", "-req", "-in", csr, "-CA", ca + ".crt", "-CAkey", ca + ".key", "-CAcreateserial",
             "-days", "3650", "-sha256", "-extfile", ext, "-out", crt)
    os.unlink(csr)
    os.unlink(ext)


def ensure_pki():
    if os.path.exists(path("pki", "done")):
        return
    log("creating certificates and keys in %s" % path("pki"))
    os.makedirs(path("pki"), exist_ok=True)
    ca = path("pki", "ca")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca + ".key", "-out", ca + ".crt",
             "-days", "3650", "-subj", "/CN=nodeops-local-ca",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _sign("apiserver", "/CN=kube-apiserver", ca, sans=[
        "IP:127.0.0.1", "IP:10.96.0.1", "DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local"])
    _sign("admin", "/O=system:masters/CN=" + ADMIN_USER, ca, client=True)
    _sign("kwok", "/O=system:masters/CN=nodeops-kwok", ca, client=True)
    _sign("controller-manager", "/CN=system:kube-controller-manager", ca, client=True)
    _sign("scheduler", "/CN=system:kube-scheduler", ca, client=True)
    _openssl("genrsa", "-out", path("pki", "sa.key"), "2048")
    _openssl("rsa", "-in", path("pki", "sa.key"), "-pubout", "-out", path("pki", "sa.pub"))
    _sign_realnode(ca)
    token = base64.b32encode(os.urandom(20)).decode().lower()
    with open(path("pki", "admin.token"), "w") as f:
        f.write(token)
    with open(path("pki", "tokens.csv"), "w") as f:
        f.write('%s,%s,%s,"system:masters"\n' % (token, ADMIN_TOKEN_USER, ADMIN_TOKEN_USER))
    open(path("pki", "done"), "w").close()


def _sign_realnode(ca):
    """The real node's kubelet (client and serving) and kube-proxy credentials."""
    _sign("realnode", "/O=system:nodes/CN=system:node:" + realnode.NODE_NAME, ca, client=True)
    _sign("realnode-serving", "/CN=" + realnode.NODE_NAME, ca,
          sans=["IP:" + realnode.NODE_IP, "DNS:" + realnode.NODE_NAME])
    _sign("kube-proxy", "/CN=system:kube-proxy", ca, client=True)


def ensure_realnode_pki():
    """State made before the real node existed lacks its credentials: add them to the same CA."""
    if not os.path.exists(path("pki", "kube-proxy.crt")):
        _sign_realnode(path("pki", "ca"))
    for name in ("realnode", "kube-proxy"):
        write_kubeconfig(path("pki", name + ".kubeconfig"), name)


def _b64file(p):
    with open(p, "rb") as f:
        return base64.b64encode(f.read()).decode()


def write_kubeconfig(dest, cert_name):
    server = "https://127.0.0.1:%d" % APISERVER_PORT
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "nodeops-local", "cluster": {
            "server": server, "certificate-authority-data": _b64file(path("pki", "ca.crt"))}}],
        "users": [{"name": cert_name, "user": {
            "client-certificate-data": _b64file(path("pki", cert_name + ".crt")),
            "client-key-data": _b64file(path("pki", cert_name + ".key"))}}],
        "contexts": [{"name": "nodeops-local", "context": {"cluster": "nodeops-local", "user": cert_name}}],
        "current-context": "nodeops-local",
    }
    with open(dest, "w") as f:
        json.dump(cfg, f, indent=2)  # JSON is valid YAML: every kubeconfig reader accepts it
    os.chmod(dest, 0o600)


AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
# Heartbeats of the simulated kubelets and controllers would drown the log.
- level: None
  resources:
  - group: coordination.k8s.io
    resources: [leases]
- level: None
  users: [nodeops-kwok]
  resources:
  - group: ""
    resources: [nodes/status]
# Log reads are counted by the tests: results come from the pod status, not from logs.
- level: Metadata
  verbs: [get]
  resources:
  - group: ""
    resources: [pods/log]
- level: None
  verbs: [get, list, watch]
- level: Metadata
"""


def write_configs():
    os.makedirs(path("logs"), exist_ok=True)
    os.makedirs(path("kwok"), exist_ok=True)
    write_kubeconfig(path("kubeconfig"), "admin")
    for name in ("kwok", "controller-manager", "scheduler"):
        write_kubeconfig(path("pki", name + ".kubeconfig"), name)
    with open(path("audit-policy.yaml"), "w") as f:
        f.write(AUDIT_POLICY)
    pod_log = path("kwok", "pod.log")
    with open(pod_log, "w") as f:
        for i, line in enumerate(["simulated container started", "working", "simulated container done"]):
            f.write("2026-01-01T00:00:0%dZ stdout F %s\n" % (i, line))
    # A benchmark that lengthened the leases and still runs keeps them; otherwise the default.
    _write_kwok_config(node_lease_seconds() if _lease_holder() else DEFAULT_NODE_LEASE_SECONDS)


def _write_kwok_config(lease_seconds):
    with open(os.path.join(REPO, "tools", "kwok", "kwok.yaml")) as f:
        config = f.read().replace("@POD_LOG@", path("kwok", "pod.log"))
    config, found = LEASE_LINE.subn(r"\g<1>%d" % lease_seconds, config)
    if found != 1:
        raise RuntimeError("tools/kwok/kwok.yaml: no nodeLeaseDurationSeconds line to set")
    with open(path("kwok", "kwok.yaml"), "w") as f:
        f.write(config)


def node_lease_seconds():
    """The node lease in the state's kwok.yaml: what kwok and the controller-manager start with."""
    try:
        with open(path("kwok", "kwok.yaml")) as f:
            return int(LEASE_LINE.search(f.read()).group(2))
    except (OSError, AttributeError):
        return DEFAULT_NODE_LEASE_SECONDS


def _node_monitor_grace_period(lease_seconds):
    # The node lifecycle controller marks a node Unknown when its lease was not renewed for this long:
    # 40 s by default (a lease renewed every 10 s), and one lease duration for longer leases.
    return max(40, lease_seconds)


def _lease_holder_file():
    return path("run", "node-lease.holder")


def _lease_holder():
    """The pid of the live process that lengthened the node leases (set_node_lease), or None."""
    try:
        with open(_lease_holder_file()) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _lease_abandoned():
    """Longer leases that nobody holds any more (a benchmark that was killed): ``up`` restores the default."""
    return node_lease_seconds() != DEFAULT_NODE_LEASE_SECONDS and _lease_holder() is None


def set_node_lease(seconds):
    """Run kwok with node leases of ``seconds`` (renewed every quarter of it) and the controller-manager with a
    node-monitor grace period to match; restarts both. ``set_node_lease(DEFAULT_NODE_LEASE_SECONDS)`` restores
    the default. The scale benchmark's 10,000 simulated nodes use it so that their heartbeats do not take the
    cores the run measures; tests run with the default, which ``up`` restores once the process that lengthened
    the leases is gone."""
    if node_lease_seconds() == seconds and "--node-monitor-grace-period=%ds" % _node_monitor_grace_period(
            seconds) in _running_args("kube-controller-manager"):
        return False
    # The controller-manager stops first: one that still judges by the old grace period while kwok is down
    # could mark nodes Unknown and taint them.
    _stop("kube-controller-manager")
    _stop("kwok")
    _write_kwok_config(seconds)
    if seconds == DEFAULT_NODE_LEASE_SECONDS:
        if os.path.exists(_lease_holder_file()):
            os.unlink(_lease_holder_file())
    else:
        with open(_lease_holder_file(), "w") as f:
            f.write(str(os.getpid()))
    _release_node_leases(Api())
    _start("kwok", _args("kwok"))
    _start("kube-controller-manager", _args("kube-controller-manager"))
    log("simulated node leases now %d s (renewed every %d s), node-monitor grace period %d s"
        % (seconds, seconds // 4, _node_monitor_grace_period(seconds)))
    return True


def _running_args(name):
    pid = _alive(name)
    if pid is None:
        return []
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return [a.decode(errors="replace") for a in f.read().split(b"\0")]


# ---------------------------------------------------------------- processes


def _pidfile(name, state=None):
    return os.path.join(state or STATE, "run", name + ".pid")


def _alive(name, state=None):
    """Return the pid of a component we started (in ``state``, default this cluster's) that still runs, else None."""
    try:
        with open(_pidfile(name, state)) as f:
            pid = int(f.read().strip())
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
    except (OSError, ValueError):
        return None
    # Guard against a recycled pid: the process must be the one we launched.
    if not argv or os.path.basename(argv[0].decode(errors="replace")) != name:
        return None
    return pid


PORTS = {"etcd": ETCD_PORT, "kube-apiserver": APISERVER_PORT, "kwok": KWOK_PORT,
         "kube-controller-manager": CM_PORT, "kube-scheduler": SCHED_PORT}


def _port_in_use(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def running_siblings():
    """[(state directory, minor)] of this checkout's other clusters that still run a component."""
    found = []
    for entry in sorted(os.listdir(REPO)):
        other = os.path.join(REPO, entry)
        if (entry == ".cluster" or entry.startswith(".cluster-v")) and os.path.realpath(other) != os.path.realpath(
                STATE) and any(_alive(c, other) for c in COMPONENTS):
            try:
                with open(os.path.join(other, "k8s-minor")) as f:
                    found.append((other, f.read().strip()))
            except OSError:   # made before the marker: the name says the minor
                found.append((other, default_minor() if entry == ".cluster" else entry[len(".cluster-v"):]))
    return found


def refuse_if_a_sibling_runs():
    """Only one of this checkout's clusters runs at a time (ports, the real node's addresses): say so before
    building anything."""
    for other, minor in running_siblings():
        prefix = make_prefix(minor)
        sys.exit("[cluster] this checkout's Kubernetes %s cluster (%s) is running, and only one runs at a time "
                 "(they share ports and the real node's addresses): stop it with %smake cluster-down" % (
                     minor, os.path.relpath(other, REPO), prefix))


def _start(name, args):
    if _alive(name):
        return
    if _port_in_use(PORTS[name]):
        refuse_if_a_sibling_runs()
        sys.exit("[cluster] port %d, needed by %s, is already in use: is a cluster from another checkout "
                 "running? Stop it with its own 'make cluster-down', or pick other ports with "
                 "NODEOPS_ETCD_PORT, NODEOPS_APISERVER_PORT, NODEOPS_KWOK_PORT, NODEOPS_CM_PORT, "
                 "NODEOPS_SCHED_PORT." % (PORTS[name], name))
    os.makedirs(path("run"), exist_ok=True)
    logf = open(path("logs", name + ".log"), "ab")
    proc = subprocess.Popen([path("bin", name)] + args, stdout=logf, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd=STATE)
    with open(_pidfile(name), "w") as f:
        f.write(str(proc.pid))
    log("started %s (pid %d, log %s)" % (name, proc.pid, path("logs", name + ".log")))


def _args(name):
    pki = path("pki")
    if name == "etcd":
        return [
            "--name=nodeops", "--data-dir=" + path("etcd"),
            "--listen-client-urls=http://127.0.0.1:%d" % ETCD_PORT,
            "--advertise-client-urls=http://127.0.0.1:%d" % ETCD_PORT,
            "--listen-peer-urls=http://127.0.0.1:%d" % ETCD_PEER_PORT,
            "--initial-advertise-peer-urls=http://127.0.0.1:%d" % ETCD_PEER_PORT,
            "--initial-cluster=nodeops=http://127.0.0.1:%d" % ETCD_PEER_PORT,
            "--listen-metrics-urls=", "--quota-backend-bytes=8589934592",
            # A throwaway test store: durability is not worth the fsync cost here.
            "--unsafe-no-fsync", "--log-level=warn",
        ]
    if name == "kube-apiserver":
        return [
            "--etcd-servers=http://127.0.0.1:%d" % ETCD_PORT,
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            "--secure-port=%d" % APISERVER_PORT,
            "--tls-cert-file=" + os.path.join(pki, "apiserver.crt"),
            "--tls-private-key-file=" + os.path.join(pki, "apiserver.key"),
            "--client-ca-file=" + os.path.join(pki, "ca.crt"),
            "--token-auth-file=" + os.path.join(pki, "tokens.csv"),
            "--service-account-key-file=" + os.path.join(pki, "sa.pub"),
            "--service-account-signing-key-file=" + os.path.join(pki, "sa.key"),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--authorization-mode=Node,RBAC",
            "--service-cluster-ip-range=10.96.0.0/16",
            # Loopback may not stand in the kubernetes Service's Endpoints.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--kubelet-client-certificate=" + os.path.join(pki, "admin.crt"),
            "--kubelet-client-key=" + os.path.join(pki, "admin.key"),
            "--kubelet-preferred-address-types=InternalIP",
            "--audit-policy-file=" + path("audit-policy.yaml"),
            "--audit-log-path=" + path("audit.log"),
            "--audit-log-format=json", "--audit-log-mode=blocking",
            "--audit-log-maxsize=200", "--audit-log-maxbackup=1",
            # Benchmarks push thousands of requests; the local apiserver is not shared.
            "--max-requests-inflight=2000", "--max-mutating-requests-inflight=1000",
            "--profiling=false", "--v=0",
        ] + (["--feature-gates=MutatingAdmissionPolicy=true",
              "--runtime-config=admissionregistration.k8s.io/v1beta1=true"] if MAP_BETA else [])
    if name == "kwok":
        return [
            "--kubeconfig=" + os.path.join(pki, "kwok.kubeconfig"),
            "--config=" + path("kwok", "kwok.yaml"),
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-ip=127.0.0.1", "--node-port=%d" % KWOK_PORT,
            "--server-address=127.0.0.1:%d" % KWOK_PORT,
            "--tls-cert-file=" + os.path.join(pki, "apiserver.crt"),
            "--tls-private-key-file=" + os.path.join(pki, "apiserver.key"),
        ]
    if name == "kube-controller-manager":
        return [
            "--kubeconfig=" + os.path.join(pki, "controller-manager.kubeconfig"),
            "--authentication-kubeconfig=" + os.path.join(pki, "controller-manager.kubeconfig"),
            "--authorization-kubeconfig=" + os.path.join(pki, "controller-manager.kubeconfig"),
            "--bind-address=127.0.0.1", "--secure-port=%d" % CM_PORT,
            "--leader-elect=false", "--use-service-account-credentials=true",
            "--service-account-private-key-file=" + os.path.join(pki, "sa.key"),
            "--root-ca-file=" + os.path.join(pki, "ca.crt"),
            "--controllers=*",
            "--kube-api-qps=500", "--kube-api-burst=1000",
            "--concurrent-gc-syncs=50", "--concurrent-job-syncs=20", "--concurrent-ttl-after-finished-syncs=20",
            "--node-monitor-grace-period=%ds" % _node_monitor_grace_period(node_lease_seconds()),
            "--profiling=false",
        ]
    if name == "kube-scheduler":
        return [
            "--kubeconfig=" + os.path.join(pki, "scheduler.kubeconfig"),
            "--authentication-kubeconfig=" + os.path.join(pki, "scheduler.kubeconfig"),
            "--authorization-kubeconfig=" + os.path.join(pki, "scheduler.kubeconfig"),
            "--bind-address=127.0.0.1", "--secure-port=%d" % SCHED_PORT,
            "--leader-elect=false", "--kube-api-qps=500", "--kube-api-burst=1000",
            "--profiling=false",
        ]
    raise KeyError(name)


def _stop(name, timeout=15):
    pid = _alive(name)
    if pid is None:
        if os.path.exists(_pidfile(name)):
            os.unlink(_pidfile(name))
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(name):
        time.sleep(0.1)
    if _alive(name):
        os.kill(pid, signal.SIGKILL)
        while _alive(name):
            time.sleep(0.05)
    os.unlink(_pidfile(name))
    log("stopped %s (pid %d)" % (name, pid))
    return True


# ---------------------------------------------------------------- api


class Api:
    """A minimal HTTPS client with the admin certificate (stdlib only)."""

    def __init__(self):
        self.base = "https://127.0.0.1:%d" % APISERVER_PORT
        self.ctx = ssl.create_default_context(cafile=path("pki", "ca.crt"))
        self.ctx.load_cert_chain(path("pki", "admin.crt"), path("pki", "admin.key"))

    def call(self, method, url, body=None, content_type="application/json", timeout=10):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + url, data=data, method=method,
                                     headers={"Content-Type": content_type})
        with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw[:1] in (b"{", b"[") else raw.decode()


def _wait(what, check, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001  -- anything short of success means "not yet"
            last = exc
        time.sleep(0.2)
    sys.exit("[cluster] timed out after %ds waiting for %s (last error: %s); see %s"
             % (timeout, what, last, path("logs")))


def _apply_kwok_crds(api):
    """Install kwok's Logs CRD, taken from the pinned kwok module, by server-side apply."""
    crd_dir = os.path.join(kwok_source_dir(), "kustomize", "crd", "bases")
    with open(os.path.join(crd_dir, "kwok.x-k8s.io_logs.yaml"), "rb") as f:
        manifest = f.read()
    req = urllib.request.Request(
        api.base + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/logs.kwok.x-k8s.io"
        "?fieldManager=nodeops-cluster&force=true",
        data=manifest, method="PATCH", headers={"Content-Type": "application/apply-patch+yaml"})
    urllib.request.urlopen(req, context=api.ctx, timeout=30).read()


def _release_node_leases(api):
    """Drop node leases left by a kwok that no longer runs.

    kwok does not release its leases when stopped, and a new kwok waits for
    them to expire (40 s) before it manages those nodes again.
    """
    # One delete-collection: the garbage collector may remove the leases of deleted nodes meanwhile, and a
    # lease deleted one by one could then answer 404.
    api.call("DELETE", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", timeout=120)


def restart(name):
    """Stop and start one component (tests use it to restart the apiserver mid-run)."""
    _stop(name)
    _start(name, _args(name))
    if name == "kube-apiserver":
        api = Api()
        _wait("kube-apiserver /readyz", lambda: api.call("GET", "/readyz", timeout=2) == "ok", 60)
        wait_controllers(api)


def wait_controllers(api, timeout=120):
    """Wait until the controllers act on new objects again: the controller-manager, kwok and the scheduler.

    After an apiserver restart their informers reconnect with backoff, which can take tens of seconds;
    tests that follow must not see a half-working cluster. A new namespace gets its ServiceAccount
    (controller-manager), a new node becomes Ready and loses its not-ready taint (kwok and the node
    lifecycle controller), and a pod pinned to that node is bound (the scheduler has seen both).
    """
    stamp = int(time.time() * 1000)
    ns, node = "nodeops-probe-%d" % stamp, "nodeops-probe-%d" % stamp
    api.call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    try:
        _wait("the controller-manager to create a ServiceAccount",
              lambda: api.call("GET", "/api/v1/namespaces/%s/serviceaccounts/default" % ns), timeout)
        api.call("POST", "/api/v1/nodes", simnodes.node_manifest(node))

        def node_ready():
            got = api.call("GET", "/api/v1/nodes/" + node)
            taints = [t["key"] for t in got["spec"].get("taints") or []]
            return simnodes.is_ready(got) and "node.kubernetes.io/not-ready" not in taints
        _wait("kwok to make a new node Ready", node_ready, timeout)
        api.call("POST", "/api/v1/namespaces/%s/pods" % ns, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "automountServiceAccountToken": False,
                     "containers": [{"name": "probe", "image": "nodeops.local/probe:none"}]}})
        _wait("the scheduler to bind a pod to a new node",
              lambda: api.call("GET", "/api/v1/namespaces/%s/pods/probe" % ns)["spec"].get("nodeName") == node, timeout)
    finally:
        for url in ("/api/v1/namespaces/%s/pods/probe?gracePeriodSeconds=0" % ns, "/api/v1/nodes/" + node,
                    "/api/v1/namespaces/" + ns):
            try:
                api.call("DELETE", url)
            except Exception:  # noqa: BLE001  -- a probe that was never made, or went already
                pass


def stop(name):
    return _stop(name)


def start(name):
    _start(name, _args(name))


def reconcile_nodes(api, workers):
    existing = {n["metadata"]["name"] for n in api.call("GET", "/api/v1/nodes")["items"]}
    wanted = simnodes.default_node_set(workers)
    for node in wanted:
        if node["metadata"]["name"] not in existing:
            api.call("POST", "/api/v1/nodes", node)
    wanted_names = {n["metadata"]["name"] for n in wanted}
    for name in sorted(existing):
        if name.startswith(simnodes.WORKER_PREFIX) and name not in wanted_names:
            api.call("DELETE", "/api/v1/nodes/" + name)
    return wanted_names


def _fix_kwok_endpoints(api):
    """Point existing simulated nodes at this kwok's port (it may differ from the state's last run).

    kwok writes daemonEndpoints only when it first makes a node Ready, so after a
    restart with another NODEOPS_KWOK_PORT every log read would go to the old port.
    """
    for node in api.call("GET", "/api/v1/nodes")["items"]:
        if (node["metadata"].get("annotations") or {}).get(simnodes.KWOK_ANNOTATION) != "fake":
            continue
        port = ((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint", {}).get("Port")
        if port not in (None, KWOK_PORT):
            api.call("PATCH", "/api/v1/nodes/%s/status" % node["metadata"]["name"],
                     {"status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": KWOK_PORT}}}},
                     content_type="application/merge-patch+json")


def real_node():
    return realnode.Node(STATE, CACHE, APISERVER_PORT, path("bin"))


def real_node_required():
    return os.environ.get("NODEOPS_REQUIRE_REAL_NODE") == "1"


def up_real_node(api):
    """Start the real node if this machine can run it; say in one line why not otherwise."""
    node = real_node()
    why = node.unavailable_reason()
    if why:
        if real_node_required():
            sys.exit("[cluster] NODEOPS_REQUIRE_REAL_NODE=1 but the real node cannot run here: " + why)
        log("no real node: %s; kwok nodes only (real-node tests will skip)" % why)
        return
    if node.runs_other_runtime():
        log("the real node runs containerd %s; restarting it with %s (NODEOPS_CONTAINERD)"
            % (node.recorded_runtime(), realnode.runtime()))
        node.stop()
    if node.pid():
        return
    started = time.monotonic()
    crictl, built = node.build(run_build)
    ensure_realnode_pki()
    node.write_configs(path("pki"), crictl, built)
    node.start()

    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))

    def ready():
        # Ready as reported by this kubelet, not a status left from the node's last run.
        n = api.call("GET", "/api/v1/nodes/" + realnode.NODE_NAME)
        beats = [c.get("lastHeartbeatTime") or "" for c in n["status"].get("conditions") or []
                 if c.get("type") == "Ready"]
        # ... and reporting the runtime it now runs (after a runtime change the status lags a moment).
        runtime = (n["status"].get("nodeInfo") or {}).get("containerRuntimeVersion") or ""
        return simnodes.is_ready(n) and beats and beats[0] >= since and runtime.startswith(
            "containerd://" + realnode.runtime().split(".")[0] + ".")

    _wait("the real node %s to be Ready (logs: %s)" % (realnode.NODE_NAME, node.p("logs")), ready, 120)
    info = check_kubelet_version(api)
    log("real node %s Ready in %.1fs (kubelet %s, %s; %s; taint %s, label %s=true)" % (
        realnode.NODE_NAME, time.monotonic() - started, info["kubeletVersion"], info.get("containerRuntimeVersion"),
        realnode.NODE_IP, realnode.TAINT_KEY, realnode.LABEL_KEY))


def up():
    started = time.monotonic()
    node = real_node()
    if all(_alive(c) for c in COMPONENTS) and (node.pid() or node.unavailable_reason()) and not (
            node.pid() and node.runs_other_runtime()):
        api = Api()
        check_running_version(api)
        ensure_map_beta(api)
        if node.pid():
            check_kubelet_version(api)
        if kyverno_pid() is None:
            stop_kyverno(api)   # webhooks a Kyverno that no longer runs left registered (they fail closed)
        if _lease_abandoned():   # a scale benchmark that was killed left longer leases
            set_node_lease(DEFAULT_NODE_LEASE_SECONDS)
        log("already up (Kubernetes %s); kubeconfig: %s" % (K8S_VERSION, path("kubeconfig")))
        return
    if os.environ.get("NODEOPS_CLUSTER_DIR") is None:   # a second cluster on other ports may run beside
        refuse_if_a_sibling_runs()
    os.makedirs(STATE, exist_ok=True)
    check_state_minor()
    build()
    ensure_pki()
    abandoned_lease = _lease_abandoned()
    write_configs()
    started = time.monotonic()
    _start("etcd", _args("etcd"))
    _start("kube-apiserver", _args("kube-apiserver"))
    api = Api()
    _wait("kube-apiserver /readyz", lambda: api.call("GET", "/readyz", timeout=2) == "ok", 60)
    check_running_version(api)
    beta = ", MutatingAdmissionPolicy v1beta1 on" if MAP_BETA else ""
    log("kube-apiserver %s ready after %.1fs%s" % (K8S_VERSION, time.monotonic() - started, beta))
    _apply_kwok_crds(api)
    if abandoned_lease:   # a scale benchmark that was killed left kwok and the controller-manager on longer leases
        _stop("kube-controller-manager")
        _stop("kwok")
    if os.path.exists(_lease_holder_file()) and not _lease_holder():
        os.unlink(_lease_holder_file())
    if not _alive("kwok"):
        _release_node_leases(api)
    for name in COMPONENTS[2:]:
        _start(name, _args(name))
    _fix_kwok_endpoints(api)
    workers = int(os.environ.get("NODEOPS_NODES", "8"))
    names = reconcile_nodes(api, workers)

    def all_ready():
        items = api.call("GET", "/api/v1/nodes")["items"]
        ready = {n["metadata"]["name"] for n in items if simnodes.is_ready(n)}
        leases = api.call("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases")["items"]
        held = {lease["metadata"]["name"] for lease in leases}
        return names <= ready and names <= held

    _wait("%d simulated nodes to be Ready" % len(names), all_ready, 60)
    _wait("the default ServiceAccount",
          lambda: api.call("GET", "/api/v1/namespaces/default/serviceaccounts/default"), 30)
    up_real_node(api)
    ensure_map_beta(api)
    if kyverno_pid() is None:
        stop_kyverno(api)   # webhooks a Kyverno that no longer runs left registered (they fail closed)
    log("cluster up in %.1fs: %d simulated nodes%s; export KUBECONFIG=%s"
        % (time.monotonic() - started, len(names), " + 1 real node" if real_node().pid() else "",
           path("kubeconfig")))


KYVERNO_WEBHOOKS = "webhook.kyverno.io/managed-by=kyverno"


def kyverno_pid():
    """The pid of the Kyverno admission controller kyverno_tools.py started for this cluster, if it runs."""
    try:
        with open(path("run", "kyverno.pid")) as f:
            pid = int(f.read().strip())
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
    except (OSError, ValueError):
        return None
    wanted = ("--kubeconfig=" + path("kubeconfig")).encode()
    return pid if any(os.path.basename(a).startswith(b"kyverno-admission-") for a in argv[:1]) and wanted in argv \
        else None


def stop_kyverno(api=None):
    """Stop Kyverno's admission controller, then delete the webhook configurations it registered: they fail
    closed, and a Kyverno that no longer answers must not block later writes. Returns whether it ran."""
    pid = kyverno_pid()
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _tick in range(100):
            if kyverno_pid() is None:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            for _tick in range(50):
                if kyverno_pid() is None:
                    break
                time.sleep(0.1)
        log("stopped Kyverno's admission controller (pid %d)" % pid)
    if api is not None:
        for kind in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
            url = "/apis/admissionregistration.k8s.io/v1/" + kind
            try:
                hooks = api.call("GET", url + "?labelSelector=" + urllib.request.quote(KYVERNO_WEBHOOKS))["items"]
            except (OSError, urllib.error.URLError):
                break   # no apiserver: nothing can be blocked
            for hook in hooks:
                try:
                    api.call("DELETE", url + "/" + hook["metadata"]["name"])
                except urllib.error.HTTPError as exc:
                    if exc.code != 404:
                        raise
    return pid is not None


def down():
    # Kyverno first, while the apiserver still runs to remove its webhooks.
    stopped = ["Kyverno"] if stop_kyverno(Api() if _alive("kube-apiserver") else None) else []
    # (The real node leaves the host's network alone when another real node runs: Node.stop.)
    stopped += ["real node"] if real_node().stop() else []
    stopped += [name for name in reversed(COMPONENTS) if _stop(name)]
    log("stopped: %s" % (", ".join(stopped) if stopped else "nothing was running"))


def status():
    for name in COMPONENTS:
        pid = _alive(name)
        print("%-24s %s" % (name, "running (pid %d)" % pid if pid else "stopped"))
    node = real_node()
    why = node.unavailable_reason()
    print("%-24s %s" % ("real node", "running (pid %d)" % node.pid() if node.pid() else "absent: " + why if why
                        else "stopped"))
    return 0 if all(_alive(c) for c in COMPONENTS) and (node.pid() or why) else 1


def clean():
    down()
    if os.path.isdir(STATE):
        shutil.rmtree(STATE)
        log("removed %s" % STATE)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "up", "down", "status", "clean", "kubeconfig", "minor",
                                            "default-minor"])
    args = parser.parse_args()
    if args.command == "kubeconfig":
        print(path("kubeconfig"))
    elif args.command == "minor":
        print(K8S_MINOR)
    elif args.command == "default-minor":
        print(default_minor())
    elif args.command == "build":
        build()
    elif args.command == "up":
        up()
    elif args.command == "down":
        down()
    elif args.command == "status":
        sys.exit(status())
    elif args.command == "clean":
        clean()


if __name__ == "__main__":
    main()
