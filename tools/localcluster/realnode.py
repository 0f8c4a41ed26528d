#!/usr/bin/env python3
"""The local cluster's one real node: containerd, kubelet and kube-proxy.

kwok simulates most nodes; this one runs containers. It exists so that what
the collection does *on a node* (the presets, the in-cluster runner, host
effects) is proven on a real kubelet and a real container runtime.

Where it runs
  The node's processes run in their own PID and mount namespaces
  (``unshare --pid --mount``), started by ``realnode.py init``, which is PID 1
  there. Inside, the node has its own ``/run`` (tmpfs) and ``/var`` (a
  directory under the cluster state), so containerd, the kubelet and libcni
  write only there, and ``nsenter --target 1`` from a hostPID pod lands where
  the node's crictl and containerd socket are, as on a real host. The network
  namespace is the host's (as on a real node), so while the node is up the
  host carries:

  * the address NODE_IP/32 on ``lo`` (the kubelet refuses a loopback node IP);
  * a bridge ``nodeops0`` (pod network POD_CIDR, route_localnet=1 on it);
  * the nft table ``ip nodeops_realnode`` (the ``kubernetes`` Service's
    ClusterIP DNATed to the apiserver on 127.0.0.1), kube-proxy's nft tables,
    and whatever iptables chains the kubelet adds;
  * cgroup directories ``/sys/fs/cgroup/*/nodeops-real-node``.

  ``down`` stops the node by recorded pid and removes every one of them; the
  host's sysctls and mounts are never changed (the kubelet's sysctl writes
  land on bind-mounted files inside the node's mount namespace).

The container runtime
  NODEOPS_CONTAINERD picks it (RUNTIMES): ``2.4`` (the default) is containerd
  and runc built from their Go modules (containerd's v2 module; runc with
  seccomp, from Debian's libseccomp-dev), cached under the project cache like
  crictl, and copied into the node's /usr/local/sbin; ``1.6`` is Debian 12's
  containerd and runc packages. The node has one image store, emptied when
  the runtime changes (the built images are imported again); a running node
  on the other runtime is restarted by ``cluster.py up``.

Only the standard library is used, like cluster.py.
"""

import hashlib
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import images  # noqa: E402  (sibling module)

NODE_NAME = "nodeops-real-node"
NODE_IP = os.environ.get("NODEOPS_REAL_NODE_IP", "10.89.0.1")
POD_CIDR = os.environ.get("NODEOPS_REAL_NODE_POD_CIDR", "10.244.0.0/24")
BRIDGE = "nodeops0"
NFT_TABLE = "nodeops_realnode"
SERVICE_IP = "10.96.0.1"
KUBELET_PORT = int(os.environ.get("NODEOPS_KUBELET_PORT", "10250"))
CGROUP_ROOT = "nodeops-real-node"
# The fence: only pods that tolerate this taint and select this label land here.
TAINT_KEY = "nodeops.io/real-node"
LABEL_KEY = "nodeops.io/real-node"
CRICTL_VERSION = "v1.34.0"
# go.sum-style hash of the cri-tools module zip: the sum database does not list this
# version, so the download is checked against this pin instead.
CRICTL_MODULE_SUM = "h1:KqL9EJ+WgHtz1HR1exezm91n+o8O2uMLs/eHzHJHAWw="

# The real node's container runtimes (NODEOPS_CONTAINERD). "built": made from these Go modules (the sums
# are go.sum-style hashes of the module zips, checked on download as well as by the sum database).
RUNTIMES = {
    "2.4": {"containerd": "v2.4.2", "containerd_sum": "h1:p6Qg+xbEz8lvwdhHDx0U469xENvp4LgGBx+E7djXkGw=",
            "runc": "v1.5.3", "runc_sum": "h1:y3GUIW7J0Gxd+tCFfWR6L1YDnhHiNR1BGRx1J50+VnA=",
            "packages": {"/usr/include/seccomp.h": "libseccomp-dev", "/usr/bin/pkg-config": "pkgconf",
                         "/usr/bin/gcc": "gcc", "/usr/include/stdio.h": "libc6-dev"}},
    "1.6": {"packages": {"/usr/bin/containerd": "containerd", "/usr/bin/ctr": "containerd",
                         "/usr/sbin/runc": "runc"}},
}
DEFAULT_RUNTIME = "2.4"
# Kubernetes minors (NODEOPS_K8S_VERSION) whose real node runs another runtime by default: 1.34's keeps
# Debian's containerd 1.6, so both runtime generations stay proven, one per cluster version.
RUNTIME_OF_K8S_MINOR = {"1.34": "1.6"}
# The binaries a built runtime puts in the node's /usr/local/sbin (ahead of /usr/bin on its PATH).
BUILT_BINARIES = ("containerd", "ctr", "containerd-shim-runc-v2", "runc")
CONTAINERD_MODULE = "github.com/containerd/containerd/v2"
RUNC_MODULE = "github.com/opencontainers/runc"
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def default_runtime(k8s_minor=None):
    """The runtime of the cluster NODEOPS_K8S_VERSION selects (cluster.py validates that variable)."""
    if k8s_minor is None:
        k8s_minor = os.environ.get("NODEOPS_K8S_VERSION", "").strip().lstrip("v")
        k8s_minor = ".".join(k8s_minor.split(".")[:2])
    return RUNTIME_OF_K8S_MINOR.get(k8s_minor, DEFAULT_RUNTIME)


def runtime():
    """The runtime NODEOPS_CONTAINERD names (default: the cluster version's); exits naming the choices
    otherwise."""
    name = os.environ.get("NODEOPS_CONTAINERD", default_runtime())
    if name not in RUNTIMES:
        sys.exit("[real-node] NODEOPS_CONTAINERD=%r: expected one of %s" % (name, ", ".join(sorted(RUNTIMES))))
    return name


# What each command needs, and the Debian package that provides it (the runtime's own are in RUNTIMES).
PACKAGES = {
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "/usr/sbin/nft": "nftables",
    "/usr/sbin/iptables": "iptables",
    "/usr/sbin/conntrack": "conntrack",
    "/usr/sbin/debootstrap": "debootstrap",
    "/usr/bin/unshare": "util-linux",
    "/usr/bin/nsenter": "util-linux",
    "/usr/sbin/ip": "iproute2",
    # Not for the node itself: the journal_vacuum preset runs the host's journalctl.
    "/usr/bin/journalctl": "systemd",
}
# Host sysctls something on the node changes (the bridge CNI plugin turns on ip_forward for its
# gateway): recorded when the node starts, put back when it stops.
RESTORED_SYSCTLS = ("net/ipv4/ip_forward",)
# The values the kubelet insists on; it finds them already set (bind-mounted files) and writes nothing.
FAKE_SYSCTLS = {"vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1"}


def log(msg):
    print("[real-node] " + msg, flush=True)


class Node:
    """Paths and commands of one real node, given the cluster's state and cache directories."""

    def __init__(self, state, cache, apiserver_port, bindir):
        self.root = os.path.join(state, "realnode")
        self.cache = cache
        self.apiserver_port = apiserver_port
        self.bindir = bindir      # .cluster/bin: kubelet, kube-proxy, kubectl links

    def p(self, *parts):
        return os.path.join(self.root, *parts)

    # ------------------------------------------------------------ can it run here

    def unavailable_reason(self):
        """Why the real node cannot run on this machine, or None if it can (packages may still be missing)."""
        if os.environ.get("NODEOPS_REAL_NODE", "1") == "0":
            return "turned off by NODEOPS_REAL_NODE=0"
        if not sys.platform.startswith("linux"):
            return "needs Linux (this is %s)" % sys.platform
        if os.geteuid() != 0:
            return "needs root (namespaces, mounts, nft, a bridge); run make as root or use NODEOPS_REAL_NODE=0"
        if not os.path.isdir("/sys/fs/cgroup"):
            return "no /sys/fs/cgroup"
        missing = self.missing_packages()
        if missing and not shutil.which("apt-get"):
            return "missing %s and no apt-get to install them" % ", ".join(sorted(set(missing.values())))
        return None

    def missing_packages(self):
        wanted = dict(PACKAGES, **RUNTIMES[runtime()]["packages"])
        return {path: pkg for path, pkg in wanted.items() if not os.path.exists(path)}

    def ensure_packages(self):
        missing = self.missing_packages()
        if not missing:
            return
        pkgs = sorted(set(missing.values()))
        log("installing Debian packages for the real node: %s (first time only)" % " ".join(pkgs))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        # --no-install-recommends: nothing that starts a daemon of its own.
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + pkgs, check=True, env=env)
        still = self.missing_packages()
        if still:
            sys.exit("[real-node] still missing after apt-get install: %s" % ", ".join(sorted(still)))

    # ------------------------------------------------------------ build

    def _module_dir(self, module, version, expected_sum, env):
        """Download a Go module (cached in GOMODCACHE) and return its directory, its zip's hash checked."""
        res = subprocess.run(["go", "mod", "download", "-json", module + "@" + version],
                             capture_output=True, text=True, env=env, cwd=HERE)
        info = json.loads(res.stdout or "{}")
        if res.returncode != 0 or "Dir" not in info:
            sys.exit("[real-node] could not download %s %s: %s" % (module, version, info.get("Error") or res.stderr))
        if info.get("Sum") != expected_sum:
            sys.exit("[real-node] %s %s has hash %s, expected %s" % (module, version, info.get("Sum"), expected_sum))
        return info["Dir"]

    def build_crictl(self, run_build):
        out = os.path.join(self.cache, "bin", "crictl-" + CRICTL_VERSION)
        if os.path.exists(out):
            return out
        # The sum database does not list this version: the pinned hash is the check.
        env = dict(os.environ, GONOSUMDB="sigs.k8s.io/cri-tools", GOFLAGS="-mod=mod", CGO_ENABLED="0")
        moddir = self._module_dir("sigs.k8s.io/cri-tools", CRICTL_VERSION, CRICTL_MODULE_SUM, env)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        tmp = out + ".tmp"
        # Built inside the module's own directory so that its own go.sum pins its dependencies.
        run_build(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", tmp, "./cmd/crictl"], moddir,
                  {"GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}, "crictl %s (cri-tools module)" % CRICTL_VERSION,
                  "2-4 minutes")
        os.replace(tmp, out)
        return out

    def build_runtime(self, run_build):
        """{binary name: path} of the built runtime (containerd, ctr, its runc shim, runc), each built once and
        cached by version; {} for a runtime from Debian's packages."""
        spec = RUNTIMES[runtime()]
        if "containerd" not in spec:
            return {}
        # Keyed by the versions, the Go toolchain and this recipe (tags, flags), like the control plane's binary.
        recipe = hashlib.sha256(json.dumps([spec, BUILT_BINARIES, _go_version(), inspect.getsource(Node.build_runtime)],
                                           sort_keys=True).encode()).hexdigest()[:12]
        outdir = os.path.join(self.cache, "bin", "containerd-%s-runc-%s-%s" % (spec["containerd"], spec["runc"], recipe))
        out = dict((name, os.path.join(outdir, name)) for name in BUILT_BINARIES)
        if all(os.path.exists(path) for path in out.values()):
            return out
        tmpdir = outdir + ".tmp"
        shutil.rmtree(tmpdir, ignore_errors=True)
        os.makedirs(tmpdir)
        env = dict(os.environ, GOFLAGS="-mod=mod")
        moddir = self._module_dir(CONTAINERD_MODULE, spec["containerd"], spec["containerd_sum"], env)
        # Pure Go (btrfs is built only with cgo); the version stamped as the release Makefile does.
        ldflags = "-s -w -X %s/version.Version=%s -X %s/version.Package=%s" % (
            CONTAINERD_MODULE, spec["containerd"], CONTAINERD_MODULE, CONTAINERD_MODULE)
        tags = "urfave_cli_no_docs no_btrfs no_devmapper no_zfs"
        for name, extra_tags in (("containerd", ""), ("ctr", ""), ("containerd-shim-runc-v2", " no_grpc")):
            run_build(["go", "build", "-trimpath", "-tags", tags + extra_tags, "-ldflags", ldflags,
                       "-o", os.path.join(tmpdir, name), "./cmd/" + name], moddir,
                      {"GOFLAGS": "-mod=mod -buildvcs=false", "CGO_ENABLED": "0"},
                      "%s %s (containerd/v2 module)" % (name, spec["containerd"]), "about 2 minutes")
        moddir = self._module_dir(RUNC_MODULE, spec["runc"], spec["runc_sum"], env)
        # With seccomp (cgo, Debian's libseccomp); without libpathrs, a Rust library this host does not have.
        run_build(["go", "build", "-trimpath", "-buildmode=pie", "-tags", "seccomp urfave_cli_no_docs",
                   "-ldflags", "-s -w -X main.gitCommit=%s-module" % spec["runc"],
                   "-o", os.path.join(tmpdir, "runc"), "."], moddir,
                  {"GOFLAGS": "-mod=mod -buildvcs=false", "CGO_ENABLED": "1"},
                  "runc %s with seccomp (runc module)" % spec["runc"], "under a minute")
        shutil.rmtree(outdir, ignore_errors=True)
        os.replace(tmpdir, outdir)
        return out

    def build(self, run_build):
        """Packages, crictl, the runtime and images: everything the node needs, each built once and cached.

        ``run_build(cmd, cwd, env_extra, what)`` runs a build and prints its progress.
        """
        self.ensure_packages()
        crictl = self.build_crictl(run_build)
        self.runtime_binaries = self.build_runtime(run_build)
        built = images.build_all(log=lambda m: print(m, flush=True))
        return crictl, built

    # ------------------------------------------------------------ configuration

    def write_configs(self, pki, crictl, built_images):
        """Write containerd, CNI, kubelet and kube-proxy configuration under the node's directory."""
        for d in ("etc", "var/lib", "var/log", "var/tmp", "var/cache", "sbin", "sysctl", "logs", "run"):
            os.makedirs(self.p(d), exist_ok=True)
        for link, target in (("var/run", "/run"), ("var/lock", "/run/lock")):
            if not os.path.lexists(self.p(link)):
                os.symlink(target, self.p(link))
        with open(self.p("etc", "images.json"), "w") as f:
            json.dump(built_images, f, indent=1)
        name = runtime()
        config = CONTAINERD_CONFIG_2 if "containerd" in RUNTIMES[name] else CONTAINERD_CONFIG
        with open(self.p("etc", "containerd.toml"), "w") as f:
            f.write(config % {"pause": images.PAUSE_IMAGE, "cni_conf": self.p("etc", "cni")})
        # One image store: emptied when the runtime changes. A node from before the marker ran 1.6.
        if self.recorded_runtime() not in (None, name):
            log("the runtime changed to containerd %s: starting from a fresh image store" % name)
            if os.path.isdir(self.p("var", "lib", "containerd")):
                shutil.rmtree(self.p("var", "lib", "containerd"))
        with open(self.p("etc", "runtime"), "w") as f:
            f.write(name + "\n")
        for binary in BUILT_BINARIES:
            target = self.p("sbin", binary)
            if os.path.lexists(target):
                os.unlink(target)
            if binary in getattr(self, "runtime_binaries", {}):
                shutil.copyfile(self.runtime_binaries[binary], target)
                os.chmod(target, 0o755)
        os.makedirs(self.p("etc", "cni"), exist_ok=True)
        with open(self.p("etc", "cni", "10-nodeops.conflist"), "w") as f:
            json.dump({"cniVersion": "1.0.0", "name": "nodeops", "plugins": [
                {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "loopback"}]}, f, indent=2)
        # The node's crictl finds its runtime as on a real host (where /etc/crictl.yaml says it).
        shutil.copyfile(crictl, self.p("sbin", "crictl.bin"))
        os.chmod(self.p("sbin", "crictl.bin"), 0o755)
        with open(self.p("sbin", "crictl"), "w") as f:
            f.write("#!/bin/sh\nexec /usr/local/sbin/crictl.bin --runtime-endpoint "
                    "unix:///run/containerd/containerd.sock --image-endpoint "
                    "unix:///run/containerd/containerd.sock \"$@\"\n")
        os.chmod(self.p("sbin", "crictl"), 0o755)
        for name, value in FAKE_SYSCTLS.items():
            with open(self.p("sysctl", name.replace("/", ".")), "w") as f:
                f.write(value + "\n")
        kubelet = dict(KUBELET_CONFIG, address=NODE_IP, port=KUBELET_PORT, healthzBindAddress=NODE_IP,
                       healthzPort=KUBELET_PORT + 1, cgroupRoot="/" + CGROUP_ROOT,
                       tlsCertFile=os.path.join(pki, "realnode-serving.crt"),
                       tlsPrivateKeyFile=os.path.join(pki, "realnode-serving.key"),
                       authentication={"x509": {"clientCAFile": os.path.join(pki, "ca.crt")},
                                       "webhook": {"enabled": True}, "anonymous": {"enabled": False}},
                       registerWithTaints=[{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}])
        with open(self.p("etc", "kubelet.yaml"), "w") as f:
            json.dump(kubelet, f, indent=2)
        proxy = dict(KUBE_PROXY_CONFIG, hostnameOverride=NODE_NAME, clusterCIDR=POD_CIDR,
                     healthzBindAddress="%s:%d" % (NODE_IP, KUBELET_PORT + 6),
                     metricsBindAddress="%s:%d" % (NODE_IP, KUBELET_PORT + 5),
                     clientConnection={"kubeconfig": os.path.join(pki, "kube-proxy.kubeconfig")})
        with open(self.p("etc", "kube-proxy.yaml"), "w") as f:
            json.dump(proxy, f, indent=2)

    def recorded_runtime(self):
        """The runtime the node was last configured with: etc/runtime, or 1.6 for a node from before that file
        (its store is 1.6's), or None for a node never started."""
        if not os.path.isdir(self.p("var", "lib", "containerd")) and not os.path.exists(self.p("etc", "runtime")):
            return None
        return _read(self.p("etc", "runtime")) or "1.6"

    def runs_other_runtime(self):
        """Whether the node is running, on another runtime than NODEOPS_CONTAINERD asks for."""
        return bool(self.pid()) and self.recorded_runtime() != runtime()

    # ------------------------------------------------------------ host side

    def host_state(self):
        """What of the host this node changes, as it is now: compared before and after in tests."""
        def run(*cmd):
            res = subprocess.run(list(cmd), capture_output=True, text=True)
            return res.stdout if res.returncode == 0 else ""
        cgroups = sorted(d for d in _glob_cgroups(CGROUP_ROOT))
        return {
            "nft_tables": sorted(line.strip() for line in run("nft", "list", "tables").splitlines() if line.strip()),
            "iptables_chains": sorted(line for line in run("iptables-save").splitlines()
                                      if line.startswith((":", "*")) and "KUBE" in line),
            "lo_addresses": sorted(run("ip", "-o", "-4", "addr", "show", "dev", "lo").split()),
            "links": sorted(line.split(":")[1].strip() for line in run("ip", "-o", "link").splitlines()
                            if line.count(":") >= 2),
            "cgroups": cgroups,
            "mounts": sorted(line.split()[1] for line in open("/proc/self/mounts")
                             if self.root in line or "/run/containerd" in line or "kubelet" in line),
            "sysctls": {name: _read("/proc/sys/" + name) for name in list(FAKE_SYSCTLS) + [
                "net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet"]},
        }

    def host_up(self):
        """The host-network parts: the node address, the bridge and the Service DNAT."""
        if NODE_IP + "/32" not in subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", "lo"],
                                                 capture_output=True, text=True).stdout:
            _sh("ip", "addr", "add", NODE_IP + "/32", "dev", "lo")
        if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode != 0:
            gateway = POD_CIDR.split("/")[0].rsplit(".", 1)[0] + ".1/" + POD_CIDR.split("/")[1]
            _sh("ip", "link", "add", BRIDGE, "type", "bridge")
            _sh("ip", "addr", "add", gateway, "dev", BRIDGE)
            _sh("ip", "link", "set", BRIDGE, "up")
        # Pods reach the apiserver on 127.0.0.1 through the kubernetes Service's ClusterIP.
        with open("/proc/sys/net/ipv4/conf/%s/route_localnet" % BRIDGE, "w") as f:
            f.write("1")
        rules = NFT_RULES % {"table": NFT_TABLE, "bridge": BRIDGE, "service_ip": SERVICE_IP,
                             "port": self.apiserver_port}
        subprocess.run(["nft", "delete", "table", "ip", NFT_TABLE], capture_output=True)
        subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)
        for controller in _cgroup_controllers():
            os.makedirs(os.path.join("/sys/fs/cgroup", controller, CGROUP_ROOT), exist_ok=True)

    def host_down(self):
        """Undo every host change, whatever is left of it."""
        for family, table in (("ip", NFT_TABLE), ("ip", "kube-proxy"), ("ip6", "kube-proxy")):
            subprocess.run(["nft", "delete", "table", family, table], capture_output=True)
        self._remove_kubelet_chains()
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        subprocess.run(["ip", "addr", "del", NODE_IP + "/32", "dev", "lo"], capture_output=True)
        recorded = _read_json(self.p("run", "sysctls.json")) or {}
        for name, value in recorded.items():
            if value is not None and _read("/proc/sys/" + name) != value:
                with open("/proc/sys/" + name, "w") as f:
                    f.write(value)
        if os.path.exists(self.p("run", "sysctls.json")):
            os.unlink(self.p("run", "sysctls.json"))
        # Container cgroups first (deepest first); a cgroup directory goes with rmdir only.
        for top in _glob_cgroups(CGROUP_ROOT):
            for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -t[0].count("/")):
                for _ in range(50):
                    try:
                        os.rmdir(dirpath)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.1)   # tasks still leaving after the kill

    def _remove_kubelet_chains(self):
        """Drop KUBE-* iptables chains and the rules that jump to them, then nft tables that
        were not there before the node started and are now empty."""
        for binary in ("iptables", "ip6tables"):
            dump = subprocess.run([binary + "-save"], capture_output=True, text=True).stdout
            jumps, chains, table = [], [], None
            for line in dump.splitlines():
                if line.startswith("*"):
                    table = line[1:]
                elif line.startswith(":KUBE-"):
                    chains.append((table, line[1:].split()[0]))
                elif line.startswith("-A ") and "KUBE-" in line and not line.split()[1].startswith("KUBE-"):
                    jumps.append((table, line.split()[1:]))
            for table, rule in jumps:
                subprocess.run([binary, "-t", table, "-D"] + rule, capture_output=True)
            for table, chain in chains:
                subprocess.run([binary, "-t", table, "-F", chain], capture_output=True)
            for table, chain in chains:
                subprocess.run([binary, "-t", table, "-X", chain], capture_output=True)
        before = _read_json(self.p("host-before.json"))
        if before is None:
            return
        for line in subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout.splitlines():
            if not line.strip() or line.strip() in before["nft_tables"]:
                continue
            family, name = line.split()[1:3]
            listing = subprocess.run(["nft", "list", "table", family, name], capture_output=True, text=True).stdout
            body = [w.strip() for w in listing.splitlines()
                    if w.strip() and not w.strip().startswith(("table ", "chain ", "type ", "policy ", "}"))]
            if not body:
                subprocess.run(["nft", "delete", "table", family, name], capture_output=True)

    # ------------------------------------------------------------ processes

    def pid(self):
        """The pid of the node's init (PID 1 of its namespace) if it runs, else None."""
        try:
            with open(self.p("run", "init.pid")) as f:
                pid = int(f.read().strip())
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError):
            return None
        # ... this node's init: its root is in its command line (a recycled pid may be another node's init).
        return pid if _init_root(argv) is not None and os.path.realpath(_init_root(argv)) == os.path.realpath(
            self.root) else None

    def start(self):
        log("starting %s (containerd, kubelet, kube-proxy) in its own PID and mount namespaces" % NODE_NAME)
        if not os.path.exists(self.p("host-before.json")):
            with open(self.p("host-before.json"), "w") as f:
                json.dump(self.host_state(), f, indent=1)
        if not os.path.exists(self.p("run", "sysctls.json")):
            with open(self.p("run", "sysctls.json"), "w") as f:
                json.dump({name: _read("/proc/sys/" + name) for name in RESTORED_SYSCTLS}, f)
        self.host_up()
        logf = open(self.p("logs", "init.log"), "ab")
        proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount", "--mount-proc", "--propagation", "private",
             sys.executable, os.path.abspath(__file__), "init", self.root, self.bindir, str(self.apiserver_port)],
            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        # unshare forks; its child is PID 1 inside, and the node's pid as the host sees it.
        deadline = time.monotonic() + 30
        child = None
        while time.monotonic() < deadline and child is None:
            if proc.poll() is not None:
                sys.exit("[real-node] the node's init exited with %s; see %s"
                         % (proc.returncode, self.p("logs", "init.log")))
            child = (_read("/proc/%d/task/%d/children" % (proc.pid, proc.pid)) or "").split()[:1] or None
            time.sleep(0.05)
        if child is None:
            sys.exit("[real-node] the node's init did not start; see %s" % self.p("logs", "init.log"))
        with open(self.p("run", "init.pid"), "w") as f:
            f.write(child[0])

    def stop(self, timeout=30):
        """Stop the node and undo its host changes, unless another real node runs on this host (another state
        directory, Kubernetes version or checkout): there is one node address, bridge and nft table, and they
        are that node's then."""
        pid = self.pid()
        stopped = False
        if pid:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.pid():
                time.sleep(0.1)
            if self.pid():
                os.kill(pid, signal.SIGKILL)   # PID 1 of the namespace: everything in it dies with it
                while self.pid():
                    time.sleep(0.05)
            stopped = True
        if os.path.exists(self.p("run", "init.pid")):
            os.unlink(self.p("run", "init.pid"))
        others = sorted(root for root in running_roots() if os.path.realpath(root) != os.path.realpath(self.root))
        if others:
            log("leaving the host's real-node network to the real node in %s, which runs" % others[0])
        elif os.path.isdir(self.root):
            self.host_down()
        if stopped:
            log("stopped %s (pid %d) and removed its host changes" % (NODE_NAME, pid))
        return stopped

    def exec_in_node(self, argv, **kwargs):
        """Run a command in the node's mount and PID namespaces (tests read the node's filesystem this way)."""
        pid = self.pid()
        if pid is None:
            raise RuntimeError("the real node is not running")
        return subprocess.run(["nsenter", "--target", str(pid), "--mount", "--pid", "--"] + list(argv), **kwargs)


def _init_root(argv):
    """The root a real node's init was started with, from its command line (split at NUL), else None."""
    for i, arg in enumerate(argv[:-2]):
        if arg.endswith(b"realnode.py") and argv[i + 1] == b"init":
            return os.fsdecode(argv[i + 2])
    return None


def running_roots():
    """The roots of the real nodes whose init runs on this host, whatever their state directory or checkout."""
    roots = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    root = _init_root(f.read().split(b"\0"))
            except OSError:
                continue
            if root is not None:
                roots.append(root)
    return roots


def _go_version():
    return subprocess.run(["go", "version"], capture_output=True, text=True, check=True).stdout.strip()


def _sh(*cmd):
    subprocess.run(list(cmd), check=True, capture_output=True)


def _read(path_):
    try:
        with open(path_) as f:
            return f.read().strip()
    except OSError:
        return None


def _read_json(path_):
    try:
        with open(path_) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _cgroup_controllers():
    """The cgroup v1 hierarchies (cpu, memory, ..., systemd) the kubelet writes below."""
    out = []
    for line in open("/proc/self/mounts"):
        fields = line.split()
        if fields[2] == "cgroup" and fields[1].startswith("/sys/fs/cgroup/"):
            out.append(fields[1][len("/sys/fs/cgroup/"):])
    return sorted(out)


def _glob_cgroups(name):
    return [os.path.join("/sys/fs/cgroup", c, name) for c in _cgroup_controllers()
            if os.path.isdir(os.path.join("/sys/fs/cgroup", c, name))]


# What both configuration versions say alike.
CONTAINERD_COMMON = """# Plugins that would write outside the node's /var and /run, or need what this host lacks.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "/run/containerd/containerd.sock"
"""

CONTAINERD_CONFIG = """version = 2
""" + CONTAINERD_COMMON + """[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "%(pause)s"
  # Negative OOM scores are refused on this kind of host.
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "%(cni_conf)s"
"""

# containerd 2.x (version 3 of the configuration): the same settings, where 2.x keeps them. The sandbox image
# is a pinned image now (crictl reports it "pinned", and no longer names it in crictl info).
CONTAINERD_CONFIG_2 = """version = 3
""" + CONTAINERD_COMMON + """[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "%(pause)s"
[plugins."io.containerd.cri.v1.runtime"]
  # Negative OOM scores are refused on this kind of host.
  restrict_oom_score_adj = true
  disable_apparmor = true
  # This kind of host has cgroup v1 only, which 2.x deprecates: known, and not the node's fault.
  ignore_deprecation_warnings = ["io.containerd.deprecation/cgroup-v1"]
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "%(cni_conf)s"
"""

KUBELET_CONFIG = {
    "apiVersion": "kubelet.config.k8s.io/v1beta1",
    "kind": "KubeletConfiguration",
    # This kind of machine has cgroup v1 only, and no systemd as init.
    "failCgroupV1": False,
    "cgroupDriver": "cgroupfs",
    "cgroupsPerQOS": True,
    "enforceNodeAllocatable": ["pods"],
    "oomScoreAdj": 0,
    "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
    "readOnlyPort": 0,
    "authorization": {"mode": "Webhook"},
    "rotateCertificates": False,
    "serverTLSBootstrap": False,
    "failSwapOn": False,
    "makeIPTablesUtilChains": False,
    "protectKernelDefaults": False,
    # The test images have no registry to come back from: the kubelet must never collect them.
    "imageGCHighThresholdPercent": 100,
    "imageGCLowThresholdPercent": 99,
    "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                     "nodefs.inodesFree": "1%"},
    "clusterDomain": "cluster.local",
    "serializeImagePulls": False,
    "nodeStatusUpdateFrequency": "10s",
    "syncFrequency": "10s",
    "fileCheckFrequency": "10s",
    "maxPods": 50,
}

KUBE_PROXY_CONFIG = {
    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
    "kind": "KubeProxyConfiguration",
    "mode": "nftables",
    "detectLocalMode": "ClusterCIDR",
    "oomScoreAdj": 0,
    # 0 everywhere: leave the host's conntrack sysctls as they are.
    "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s",
                  "udpTimeout": "0s", "udpStreamTimeout": "0s"},
    "nodePortAddresses": [NODE_IP + "/32"],
}

NFT_RULES = """table ip %(table)s {
  chain prerouting {
    type nat hook prerouting priority -150; policy accept;
    iifname "%(bridge)s" ip daddr %(service_ip)s tcp dport 443 dnat to 127.0.0.1:%(port)d
  }
  chain output {
    type nat hook output priority -150; policy accept;
    ip daddr %(service_ip)s tcp dport 443 dnat to 127.0.0.1:%(port)d
  }
}
"""


# ---------------------------------------------------------------- inside the node (PID 1)


def init(root, bindir, apiserver_port):
    """PID 1 of the node's namespaces: private /run and /var, fake sysctls, then the node's daemons."""
    def p(*parts):
        return os.path.join(root, *parts)

    print("[init] mounting the node's /run and /var", flush=True)
    _sh("mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", "/run")
    os.makedirs("/run/lock", exist_ok=True)
    _sh("mount", "--bind", p("var"), "/var")
    _sh("mount", "--bind", p("sbin"), "/usr/local/sbin")
    for name in FAKE_SYSCTLS:
        _sh("mount", "--bind", p("sysctl", name.replace("/", ".")), "/proc/sys/" + name)
    for d in ("/var/lib/kubelet", "/var/lib/containerd", "/var/log/pods", "/var/log/containers", "/var/tmp"):
        os.makedirs(d, exist_ok=True)
    # The built runtime (copied into the node's /usr/local/sbin) comes before Debian's, as on a host.
    os.environ["PATH"] = NODE_PATH
    os.environ["CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS"] = "1"

    children = {}

    argvs = {}

    def spawn(name, argv):
        argvs[name] = argv
        logf = open(p("logs", name + ".log"), "ab")
        children[name] = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        print("[init] started %s (pid %d in the node)" % (name, children[name].pid), flush=True)

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))

    spawn("containerd", ["containerd", "--config", p("etc", "containerd.toml")])
    sock = "/run/containerd/containerd.sock"
    deadline = time.monotonic() + 30
    while not os.path.exists(sock) and time.monotonic() < deadline:
        time.sleep(0.1)
    _import_images(p)
    pki = os.path.join(os.path.dirname(root), "pki")
    spawn("kubelet", [os.path.join(bindir, "kubelet"), "--config", p("etc", "kubelet.yaml"),
                      "--kubeconfig", os.path.join(pki, "realnode.kubeconfig"),
                      "--hostname-override", NODE_NAME, "--node-ip", NODE_IP,
                      "--node-labels", "%s=true" % LABEL_KEY, "--v=1"])
    spawn("kube-proxy", [os.path.join(bindir, "kube-proxy"), "--config", p("etc", "kube-proxy.yaml"), "--v=1"])
    while not stopping:
        try:
            # PID 1 reaps every orphan (container shims end up here). WNOHANG: SIGTERM must not
            # wait behind a blocking wait (Python retries an interrupted one).
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pid = 0
        if pid == 0:
            time.sleep(0.2)
            continue
        for name, proc in list(children.items()):
            if proc.pid == pid and not stopping:
                # As systemd's Restart=always would on a real host: a crashed runtime comes back.
                print("[init] %s exited (status %d); restarting it in 1s" % (name, status), flush=True)
                proc.returncode = status
                time.sleep(1)
                spawn(name, argvs[name])
    for name in ("kube-proxy", "kubelet", "containerd"):
        proc = children.get(name)
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    print("[init] node stopped; the namespace's remaining processes end with it", flush=True)


def _import_images(p):
    """Import the built images that containerd does not have yet (its store outlives the node)."""
    wanted = _read_json(p("etc", "images.json")) or {}
    have = subprocess.run(["ctr", "-n", "k8s.io", "images", "ls", "-q"], capture_output=True, text=True).stdout
    for ref, tar in sorted(wanted.items()):
        if ref not in have.split():
            print("[init] importing %s" % ref, flush=True)
            subprocess.run(["ctr", "-n", "k8s.io", "images", "import", tar], check=True, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "init":
        init(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit("usage: realnode.py init ROOT BINDIR APISERVER_PORT  (cluster.py runs it)")
