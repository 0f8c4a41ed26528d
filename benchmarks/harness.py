"""Shared parts of the benchmark harness: the local cluster, metrics, data sets, measured processes.

Standard library plus the collection's own REST client. Everything talks to
the local control plane that ``tools/localcluster/cluster.py`` runs.
"""

import concurrent.futures
import json
import os
import re
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, "build", "collections")
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
sys.path.insert(0, os.path.join(REPO, "tools", "localcluster"))

import cluster as local_cluster  # noqa: E402
import nodes as node_manifests  # noqa: E402
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.watch import list_all  # noqa: E402
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import ApiError  # noqa: E402
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.api import ConnectionConfig, RestClient  # noqa: E402

BENCH_LABEL = "bench.nodeops.io/node"
FIRST_LABEL = "bench.nodeops.io/first-%d"
NODE_PREFIX = "bench-"
KUBECONFIG = local_cluster.path("kubeconfig")


def admin_config():
    pki = local_cluster.path("pki")
    return ConnectionConfig("https://127.0.0.1:%d" % local_cluster.APISERVER_PORT,
                            ca_file=os.path.join(pki, "ca.crt"),
                            client_cert_file=os.path.join(pki, "admin.crt"),
                            client_key_file=os.path.join(pki, "admin.key"))


class CountingClient(RestClient):
    """The collection's client, counting the requests it sends (a cross-check of the apiserver's counts)."""

    def __init__(self, *args, **kwargs):
        super(CountingClient, self).__init__(*args, **kwargs)
        self.sent = 0
        self._count_lock = threading.Lock()

    def _send(self, method, url, body, headers, timeout, keep):
        with self._count_lock:
            self.sent += 1
        return super(CountingClient, self)._send(method, url, body, headers, timeout, keep)


def client(counting=False):
    return (CountingClient if counting else RestClient)(admin_config(), timeout=60)


def pool_map(fn, items, workers=16):
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def wait_for(what, check, timeout=600, interval=0.25):
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise RuntimeError("timed out after %ds waiting for %s" % (timeout, what))
        time.sleep(interval)


def list_names(api, path, selector=None):
    """Names of every item, through the engine's own paginated list."""
    query = {"labelSelector": selector} if selector else None
    return list_all(api, path, query, timeout=120, slim=lambda item: item["metadata"]["name"])[0]


# ------------------------------------------------------------------ metrics

METRIC = re.compile(r'^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$')
LABEL = re.compile(r'(\w+)="([^"]*)"')


def scrape(api):
    """apiserver_request_total summed by (verb, resource, subresource)."""
    text = api.get("/metrics", timeout=60)
    counts = {}
    for line in text.splitlines():
        m = METRIC.match(line)
        if not m:
            continue
        labels = dict(LABEL.findall(m.group(1)))
        key = (labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))
        counts[key] = counts.get(key, 0) + float(m.group(2))
    return counts


# The requests a broadcast tool makes. Everything else in a run's delta is the
# cluster's own reaction to the same pods (the scheduler's bindings and events,
# kwok's status updates, the garbage collector) or background (node leases and
# heartbeats); those rows are reported but not charged to the tool.
# "DELETE pods" and "GET pods" are left out: the apiserver counts there the
# tool's requests together with kwok's final DELETE of every pod and the
# garbage collector's GET and DELETE of each pod it removes; "GET nodes" is
# mostly kwok's and the node controllers'. (broadcast_job reads a single pod
# only to adopt one that exists already, and a single node only when its pod
# stays Pending.)
# (broadcast_job deletes pods itself only when they never finished, or as one
# delete-collection when some are kept; neither happens in these runs.)
TOOL_ROWS = {
    ("POST", "pods", ""), ("LIST", "pods", ""), ("WATCH", "pods", ""),
    ("CONNECT", "pods", "log"), ("GET", "pods", "log"),
    ("LIST", "nodes", ""), ("WATCH", "nodes", ""),
    ("POST", "configmaps", ""), ("GET", "configmaps", ""), ("PATCH", "configmaps", ""),
    ("DELETE", "configmaps", ""),
    ("LIST", "jobs", ""), ("DELETE", "jobs", ""), ("PATCH", "jobs", ""), ("GET", "jobs", ""),
}


WAIT = re.compile(r'^apiserver_watch_cache_read_wait_seconds_(sum|count)\{group="",resource="configmaps"\} ([0-9.e+]+)$')


CONTROL_PLANE = ("kube-apiserver", "etcd", "kwok", "kube-controller-manager", "kube-scheduler")


def control_plane_cpu(seconds):
    """The CPU the control plane's processes use over ``seconds``, in cores, each and in total (from /proc)."""
    def sample():
        out = {}
        for name in CONTROL_PLANE:
            pid = local_cluster._alive(name)
            try:
                with open("/proc/%d/stat" % pid) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (TypeError, OSError):
                continue   # not running (or gone meanwhile): not counted
            out[name] = (pid, (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK")))
        return out
    before, started = sample(), time.monotonic()
    time.sleep(seconds)
    after, took = sample(), time.monotonic() - started
    cores = dict((k, round((after[k][1] - before[k][1]) / took, 3)) for k in after
                 if k in before and before[k][0] == after[k][0])
    return {"seconds": round(took, 1), "cores": cores, "total_cores": round(sum(cores.values()), 3)}


def read_waits(api, since=None):
    """The apiserver's waits for a fresh watch cache before consistent LISTs of ConfigMaps: count and seconds
    (the difference to ``since`` if given)."""
    got = {"count": 0.0, "sum": 0.0}
    for line in api.get("/metrics", timeout=60).splitlines():
        m = WAIT.match(line)
        if m:
            got[m.group(1)] = float(m.group(2))
    if since:
        got = {"count": int(got["count"] - since["count"]), "seconds": round(got["sum"] - since["sum"], 2)}
    return got


def delta(before, after):
    rows = {}
    for key, value in after.items():
        d = value - before.get(key, 0)
        if d > 0 and key != ("GET", "", ""):   # the /metrics scrape itself
            rows["%s %s%s" % (key[0], key[1], "/" + key[2] if key[2] else "")] = int(round(d))
    return dict(sorted(rows.items()))


def tool_requests(rows):
    total = 0
    for key, value in rows.items():
        verb, _, res = key.partition(" ")
        resource, _, sub = res.partition("/")
        if (verb, resource, sub) in TOOL_ROWS:
            total += value
    return total


# ------------------------------------------------------------------ nodes

def node_body(i):
    name = "%s%05d" % (NODE_PREFIX, i)
    labels = {BENCH_LABEL: "true"}
    for first in (50, 100):
        if i < first:
            labels[FIRST_LABEL % first] = "true"
    return node_manifests.node_manifest(name, zone=node_manifests.ZONES[i % 3], labels=labels, pods="20")


def grow_nodes(api, count):
    """Make the bench node set exactly ``count`` nodes (adds or removes), all Ready. Returns seconds taken."""
    started = time.monotonic()
    have = set(list_names(api, "/api/v1/nodes", BENCH_LABEL + "=true"))
    want = set(node_body(i)["metadata"]["name"] for i in range(count))
    missing = [i for i in range(count) if node_body(i)["metadata"]["name"] not in have]
    pool_map(lambda i: _create(api, "/api/v1/nodes", node_body(i)), missing)
    extra = sorted(have - want)
    pool_map(lambda name: api.delete("/api/v1/nodes/" + name), extra)

    def ready():
        nodes = list_all(api, "/api/v1/nodes", {"labelSelector": BENCH_LABEL + "=true"}, timeout=120,
                         slim=node_manifests.is_ready)[0]
        return sum(nodes) == count

    wait_for("%d bench nodes Ready" % count, ready, timeout=900, interval=1)
    return time.monotonic() - started, len(missing)


def _create(api, path, body):
    try:
        return api.create(path, body)
    except ApiError as exc:
        if exc.status != 409:
            raise
        return None


def ensure_namespace(api, name):
    _create(api, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    wait_for("service account in " + name,
             lambda: api.get_or_none("/api/v1/namespaces/%s/serviceaccounts/default" % name), timeout=60)


def remove_leftovers(api, namespace):
    """Delete run records (the garbage collector takes the pods they own) and any pods left."""
    api.request("DELETE", "/api/v1/namespaces/%s/configmaps" % namespace,
                query={"labelSelector": "nodeops.io/kind=run-record", "propagationPolicy": "Background"})
    for _ in range(10):
        try:
            api.request("DELETE", "/api/v1/namespaces/%s/pods" % namespace, timeout=120)
            return
        except ApiError:
            pass   # a timed-out delete-collection stops part way: the next one takes up the rest


def wait_pods_gone(api, namespace, timeout=900):
    wait_for("pods in %s to be gone" % namespace,
             lambda: not list_names(api, "/api/v1/namespaces/%s/pods" % namespace), timeout=timeout, interval=0.5)


# ------------------------------------------------------------------ measured processes

def run_measured(cmd, env=None, timeout=7200, stdout_path=None):
    """Run ``cmd``; return wall seconds, its peak RSS (MiB, with its descendants), rc and its output's tail.

    The command starts under ``rss_python.py``, a small launcher that reads
    the command's peak RSS with wait4(2).
    """
    rss_file = (stdout_path or "/tmp/nodeops-bench") + ".rss"
    if os.path.exists(rss_file):
        os.unlink(rss_file)
    launcher = [sys.executable, "-S", os.path.join(REPO, "benchmarks", "rss_python.py"), "--out", rss_file, "--"]
    out = open(stdout_path, "w") if stdout_path else subprocess.DEVNULL
    try:
        started = time.monotonic()
        proc = subprocess.run(launcher + list(cmd), env=env, stdout=out, stderr=subprocess.PIPE, text=True,
                              timeout=timeout, check=False)
        wall = time.monotonic() - started
    finally:
        if stdout_path:
            out.close()
    with open(rss_file) as f:
        peak_kib = max(int(line.split()[0]) for line in f if line.strip())
    tail = proc.stderr[-4000:]
    if proc.returncode and stdout_path:
        with open(stdout_path) as f:
            tail = f.read()[-3000:] + tail
    return {"wall_s": wall, "peak_rss_mib": peak_kib / 1024.0, "rc": proc.returncode, "stderr": tail}


def python_env():
    env = dict(os.environ, PYTHONPATH=COLLECTIONS, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, KUBECONFIG=KUBECONFIG,
               ANSIBLE_NOCOLOR="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def read_json(path):
    with open(path) as f:
        return json.load(f)


_STUCK = set()


def terminating_namespaces(api):
    """Namespaces being deleted: the namespace controller is still listing and deleting in them."""
    items = api.get("/api/v1/namespaces", timeout=60).get("items") or []
    return sorted(ns["metadata"]["name"] for ns in items if (ns.get("status") or {}).get("phase") == "Terminating")


def settle(api, timeout=300):
    """Wait until the cluster's own work (node setup, pod teardown, namespaces being deleted) has died
    down. Not timed. A namespace deleted just before a measurement (by a test, in `make test`) would
    otherwise put the namespace controller's lists and delete-collections of pods, configmaps and jobs
    in the measured window, where they cannot be told apart from the tool's."""
    def busy(rows):
        # Heartbeats (leases, node status) never stop; reads do not load the cluster much.
        return sum(v for k, v in rows.items()
                   if "leases" not in k and "nodes/status" not in k and not k.startswith(("GET ", "WATCH ")))

    end = time.monotonic() + timeout
    wait_end = time.monotonic() + min(timeout, 90)
    waiting = [ns for ns in terminating_namespaces(api) if ns not in _STUCK]
    while waiting and time.monotonic() < wait_end:
        time.sleep(1)
        waiting = [ns for ns in terminating_namespaces(api) if ns not in _STUCK]
    if waiting:
        # Stuck (a finalizer nobody removes): waited for once, then ignored, so no settle waits on it again.
        _STUCK.update(waiting)
        print("[bench] namespaces still terminating after 90s, not waited for again: %s" % ", ".join(waiting),
              file=sys.stderr, flush=True)
    quiet = 0
    before = scrape(api)
    while time.monotonic() < end and quiet < 2:
        time.sleep(1)
        after = scrape(api)
        quiet = quiet + 1 if busy(delta(before, after)) <= 10 else 0
        before = after


# ------------------------------------------------------------------ Jobs (the sweep's data)

JOB_LABEL = "bench.nodeops.io/job"
CONTROL_LABEL = "bench.nodeops.io/control"


def _job(ns, name, labels, owner=None):
    meta = {"name": name, "namespace": ns, "labels": labels}
    if owner:
        meta["ownerReferences"] = [owner]
    # managedBy: the built-in Job controller leaves these alone, so they make no pods.
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
            "spec": {"managedBy": "bench.nodeops.io/harness", "backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}}}


def _finished_status():
    hour_ago = time.time() - 3600
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    start, done = time.strftime(fmt, time.gmtime(hour_ago - 60)), time.strftime(fmt, time.gmtime(hour_ago))
    return {"status": {"startTime": start, "completionTime": done, "succeeded": 1, "conditions": [
        {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": done},
        {"type": "Complete", "status": "True", "lastTransitionTime": done}]}}


def _make_job(api, ns, name, labels, owner=None, finished=True):
    path = "/apis/batch/v1/namespaces/%s/jobs" % ns
    if _create(api, path, _job(ns, name, labels, owner)) is None:
        return 0
    if finished:
        api.merge_patch("%s/%s/status" % (path, name), _finished_status())
    return 1


def make_finished_jobs(api, namespaces, count):
    """``count`` finished ownerless Jobs (finished an hour ago), spread over ``namespaces``. Returns seconds."""
    started = time.monotonic()
    pool_map(lambda i: _make_job(api, namespaces[i % len(namespaces)], "done-%06d" % i, {JOB_LABEL: "target"}),
             range(count))
    return time.monotonic() - started


def make_controls(api, control_ns, namespaces, count):
    """Jobs every sweep must spare: a third running, a third owned, a third in an excluded namespace."""
    started = time.monotonic()
    owner_ns = namespaces[-1]
    cm = _create(api, "/api/v1/namespaces/%s/configmaps" % owner_ns,
                 {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bench-owner"}}) or \
        api.get("/api/v1/namespaces/%s/configmaps/bench-owner" % owner_ns)
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "bench-owner", "uid": cm["metadata"]["uid"]}

    def one(i):
        labels = {CONTROL_LABEL: "true"}
        if i % 3 == 0:
            return _make_job(api, namespaces[0], "running-%05d" % i, labels, finished=False)
        if i % 3 == 1:
            return _make_job(api, owner_ns, "owned-%05d" % i, labels, owner=owner)
        return _make_job(api, control_ns, "excluded-%05d" % i, labels)

    made = sum(pool_map(one, range(count)))
    return time.monotonic() - started, made


def _count(api, namespaces, selector):
    return sum(len(list_names(api, "/apis/batch/v1/namespaces/%s/jobs" % ns, selector)) for ns in namespaces)


def count_jobs(api, namespaces):
    return _count(api, namespaces, JOB_LABEL + "=target")


def count_controls(api, control_ns, namespaces):
    return _count(api, tuple(namespaces) + (control_ns,), CONTROL_LABEL + "=true")


def delete_jobs(api, namespaces):
    for ns in namespaces:
        api.request("DELETE", "/apis/batch/v1/namespaces/%s/jobs" % ns, query={"propagationPolicy": "Background"},
                    timeout=300)
    wait_for("bench Jobs to be gone", lambda: _count(api, namespaces, None) == 0, timeout=300, interval=0.5)


# ------------------------------------------------------------------ identities, API Priority and Fairness

SWEEPER = ("nodeops-bench", "bench-sweeper")   # the ServiceAccount the benchmark's sweeps run as
READER_USER = "nodeops-bench-reader"
FLOWCONTROL = "/apis/flowcontrol.apiserver.k8s.io/v1"


def _apply_rbac(api, name, user_kind, user_name, rules, namespace=None):
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
            "rules": rules}
    subject = {"kind": user_kind, "name": user_name}
    if namespace:
        subject["namespace"] = namespace
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": [subject]}
    for path, body in (("/apis/rbac.authorization.k8s.io/v1/clusterroles", role),
                       ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding)):
        api.delete("%s/%s" % (path, name))
        wait_for("old %s gone" % name, lambda: api.get_or_none("%s/%s" % (path, name)) is None, timeout=60)
        api.create(path, body)


def sweeper_identity(api):
    """The sweep runs as a ServiceAccount (as under AWX), not as the admin: system:masters is exempt from
    API Priority and Fairness, a ServiceAccount is not (the ``service-accounts`` FlowSchema). The harness
    impersonates it; returns the module's impersonation options."""
    ns, name = SWEEPER
    ensure_namespace(api, ns)
    _create(api, "/api/v1/namespaces/%s/serviceaccounts" % ns,
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})
    _apply_rbac(api, "nodeops-bench-sweeper", "ServiceAccount", name,
                [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list", "delete", "patch"]}], namespace=ns)
    return {"impersonate_user": "system:serviceaccount:%s:%s" % (ns, name),
            "impersonate_groups": ["system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"]}


def reader_client():
    """What everyone else is: an authenticated user (the ``global-default`` FlowSchema) who reads."""
    _apply_rbac(client(), "nodeops-bench-reader", "User", READER_USER,
                [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
                 {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}])
    config = admin_config()
    config.impersonate_user = READER_USER
    config.impersonate_groups = ["system:authenticated"]
    return RestClient(config, timeout=30)


def tight_priority_level(api, service_account, name="nodeops-bench-tight"):
    """A priority level with no seats of its own, that borrows none and rejects what it cannot run at once,
    for the deletes of Jobs by ``service_account`` (namespace, name): APF lets one run at a time and answers
    the others 429 with Retry-After. Returns a function that removes both objects."""
    pl = {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
          "metadata": {"name": name}, "spec": {"type": "Limited", "limited": {
              "nominalConcurrencyShares": 0, "lendablePercent": 0, "borrowingLimitPercent": 0,
              "limitResponse": {"type": "Reject"}}}}
    fs = {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema", "metadata": {"name": name},
          "spec": {"priorityLevelConfiguration": {"name": name}, "matchingPrecedence": 500,
                   "distinguisherMethod": {"type": "ByUser"},
                   "rules": [{"subjects": [{"kind": "ServiceAccount", "serviceAccount": {
                       "namespace": service_account[0], "name": service_account[1]}}],
                       "resourceRules": [{"verbs": ["delete", "patch"], "apiGroups": ["batch"], "resources": ["jobs"],
                                          "namespaces": ["*"]}]}]}}

    def remove():
        api.delete(FLOWCONTROL + "/flowschemas/" + name)
        api.delete(FLOWCONTROL + "/prioritylevelconfigurations/" + name)
    remove()
    api.create(FLOWCONTROL + "/prioritylevelconfigurations", pl)
    api.create(FLOWCONTROL + "/flowschemas", fs)
    # The apiserver takes the new configuration up asynchronously: wait until the FlowSchema says it is in use.
    wait_for("FlowSchema %s in use" % name, lambda: any(
        c.get("type") == "Dangling" and c.get("status") == "False"
        for c in (api.get(FLOWCONTROL + "/flowschemas/" + name).get("status") or {}).get("conditions") or []),
        timeout=60, interval=0.5)
    time.sleep(1)
    return remove


# ------------------------------------------------------------------ what other clients feel

def _percentile(values, q):
    values = sorted(values)
    if not values:
        return None
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


class Reader(threading.Thread):
    """Another client of the apiserver: a GET of one namespace and a LIST of at most 10 ConfigMaps every
    ``interval`` seconds, each timed. ``window(start, end)`` gives p50 and p99 (ms) of both in a window."""

    def __init__(self, api, interval=0.1):
        super(Reader, self).__init__(daemon=True)
        self.api, self.interval = api, interval
        self.samples = []   # (monotonic time, seconds, what)
        self.errors = 0
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            began = time.monotonic()
            for what, path, query in (("get", "/api/v1/namespaces/default", None),
                                      ("list", "/api/v1/namespaces/kube-system/configmaps", {"limit": 10})):
                t0 = time.monotonic()
                try:
                    self.api.get(path, query, timeout=30)
                    self.samples.append((t0, time.monotonic() - t0, what))
                except ApiError:
                    self.errors += 1
            self._halt.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def stop(self):
        self._halt.set()
        self.join(60)

    def window(self, start, end):
        inside = [s for s in self.samples if start <= s[0] <= end]
        out = {"samples": len(inside)}
        for what in ("get", "list", "all"):
            ms = [s[1] * 1000 for s in inside if what == "all" or s[2] == what]
            out[what] = {"p50_ms": round(_percentile(ms, 0.5), 2) if ms else None,
                         "p99_ms": round(_percentile(ms, 0.99), 2) if ms else None}
        return out

    def timeline(self, start, points=400):
        """Per kind (get, list): (seconds since start, ms) of each request, thinned evenly to at most ``points``."""
        out = {}
        for what in ("get", "list"):
            rows = [(round(s[0] - start, 2), round(s[1] * 1000, 2)) for s in self.samples
                    if s[0] >= start and s[2] == what]
            out[what] = rows[::max(1, len(rows) // points)]
        return out


# ------------------------------------------------------------------ pods that take real time

SIM_DELAY, SIM_DELAY_MAX, SIM_FAIL = "sim.nodeops.io/delay", "sim.nodeops.io/delay-max", "sim.nodeops.io/fail-permille"


def calibration(real_node_json, fail_permille=0):
    """kwok annotations that make a simulated pod take what a pod takes on the real node: from the real
    node's measured pod create-to-finish times (``real_node.py``) less what the same takes on a kwok node
    (kwok's own stages), a uniform delay between the fastest and the slowest real run."""
    data = read_json(real_node_json)
    real = [r["pod_duration_s"] for r in data["runs"] if not r["node"].startswith("kwok")]
    kwok = data["median"]["pod_duration_s"]["kwok"]
    low, high = max(0.0, min(real) - kwok), max(0.0, max(real) - kwok)
    annotations = {SIM_DELAY: "%dms" % round(low * 1000), SIM_DELAY_MAX: "%dms" % round(high * 1000)}
    if fail_permille:
        annotations[SIM_FAIL] = str(fail_permille)
    return {"source": os.path.relpath(real_node_json, REPO), "measured_at": data.get("when"),
            "real_node_pod_s": {"min": min(real), "median": data["median"]["pod_duration_s"]["real_node"],
                                "max": max(real)}, "kwok_pod_s": kwok, "annotations": annotations}


def remove_identities(api):
    for name in ("nodeops-bench-sweeper", "nodeops-bench-reader"):
        api.delete("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/" + name)
        api.delete("/apis/rbac.authorization.k8s.io/v1/clusterroles/" + name)
