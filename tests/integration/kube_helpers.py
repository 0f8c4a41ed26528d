# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for integration tests on the real local control plane.

They use the official ``kubernetes`` client, not the collection's own REST
client, so a test never checks our code with our code.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import sys
import time
import urllib.parse
import uuid

from kubernetes.client.rest import ApiException

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools", "localcluster"))

import cluster as local_cluster  # noqa: E402  pylint: disable=wrong-import-position
import nodes as simnodes  # noqa: E402  pylint: disable=wrong-import-position

# The cluster NODEOPS_K8S_VERSION (or NODEOPS_CLUSTER_DIR) selects, as cluster.py decides it.
STATE = local_cluster.STATE
KUBECONFIG = os.path.join(STATE, "kubeconfig")
# MutatingAdmissionPolicy is GA (admissionregistration.k8s.io/v1, on by default) from Kubernetes 1.36. On 1.34 it
# is beta and off by default, and the local cluster leaves it off: dangling_job_ttl's documented fallback.
NATIVE_TTL_SINCE = (1, 36)
ADMIN_USER = "nodeops-admin"


def kill_process_tree(pid):
    """SIGKILL ``pid`` and every process descended from it. Killing ansible-playbook's process group is not
    enough: its worker runs each module in a session of its own, which would go on running."""
    import signal
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    for member in reversed(tree):
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return tree


def wait_for(what, check, timeout=30.0, interval=0.2):
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except ApiException as exc:
            last_exc = exc
        time.sleep(interval)
    raise AssertionError("timed out after %.0fs waiting for %s (last error: %s)" % (timeout, what, last_exc))


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:6])


def end_pod(core, namespace, name, exit_code=0):
    """End a running simulated pod now, as its kubelet would: every container terminated with ``exit_code``,
    the pod Succeeded or Failed. Pods given ``sim.nodeops.io/delay: 1h`` run until a test ends them, so a
    test decides when a pod ends by an event it waited for, not by a guess of how fast the run goes."""
    import datetime

    for _attempt in range(10):
        pod = core.read_namespaced_pod_status(name, namespace)
        if pod.status.phase != "Running":
            raise AssertionError("pod %s/%s is %s, not Running: end only a pod seen running" % (
                namespace, name, pod.status.phase))
        now = datetime.datetime.now(datetime.timezone.utc)
        for status in pod.status.container_statuses or []:
            started = status.state.running.started_at if status.state.running else now
            status.state = {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                                           "startedAt": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                           "finishedAt": now.strftime("%Y-%m-%dT%H:%M:%SZ")}}
            status.ready, status.started = False, False
        for cond in pod.status.conditions or []:
            if cond.type in ("Ready", "ContainersReady"):
                cond.status, cond.reason, cond.last_transition_time = "False", "PodCompleted", now
        pod.status.phase = "Succeeded" if exit_code == 0 else "Failed"
        try:
            return core.replace_namespaced_pod_status(name, namespace, pod)
        except ApiException as exc:
            if exc.status != 409:   # the simulated kubelet wrote meanwhile: read it again
                raise
    raise AssertionError("could not end pod %s/%s" % (namespace, name))


class SimNodes:
    """Add, remove, taint, cordon and break simulated nodes; undo it all on cleanup."""

    def __init__(self, core):
        self.core = core
        self.created = []

    def add(self, name=None, wait=True, **kwargs):
        name = name or unique("sim")
        self.core.create_node(simnodes.node_manifest(name, **kwargs))
        self.created.append(name)
        if wait:
            self.wait_ready(name)
        return name

    def wait_ready(self, name):
        """Ready, and the node lifecycle controller has lifted the not-ready taint new nodes start with."""
        def ready():
            node = self._raw(name)
            taints = [t["key"] for t in node["spec"].get("taints") or []]
            return simnodes.is_ready(node) and "node.kubernetes.io/not-ready" not in taints
        wait_for("node %s Ready and untainted" % name, ready)

    def _raw(self, name):
        return self.core.api_client.sanitize_for_serialization(self.core.read_node(name))

    def remove(self, name):
        try:
            self.core.delete_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def taint(self, name, key, value="", effect="NoSchedule"):
        taints = self._raw(name)["spec"].get("taints") or []
        taints.append({"key": key, "value": value, "effect": effect})
        self.core.patch_node(name, {"spec": {"taints": taints}})

    def cordon(self, name, unschedulable=True):
        self.core.patch_node(name, {"spec": {"unschedulable": unschedulable}})

    def set_not_ready(self, name, not_ready=True):
        value = "true" if not_ready else None
        self.core.patch_node(name, {"metadata": {"annotations": {"sim.nodeops.io/not-ready": value}}})
        if not_ready:
            wait_for("node %s NotReady" % name, lambda: not simnodes.is_ready(self._raw(name)))
        else:
            # Also wait for the lifecycle controller to lift its not-ready taint, or a later
            # read-modify-write of the taints could put it back.
            self.wait_ready(name)

    def set_disk_pressure(self, name, pressure=True):
        """The node's DiskPressure condition, as a kubelet reports it (kwok leaves it as set); then wait for the node
        lifecycle controller to add (or lift) its node.kubernetes.io/disk-pressure taint."""
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.core.patch_node_status(name, {"status": {"conditions": [{
            "type": "DiskPressure", "status": "True" if pressure else "False", "lastHeartbeatTime": now,
            "lastTransitionTime": now, "reason": "KubeletHasDiskPressure" if pressure else "KubeletHasNoDiskPressure",
            "message": "kubelet has disk pressure" if pressure else "kubelet has no disk pressure"}]}})

        def tainted():
            return any(t["key"] == "node.kubernetes.io/disk-pressure" for t in self._raw(name)["spec"].get("taints") or [])
        wait_for("node %s %s the disk-pressure taint" % (name, "with" if pressure else "without"),
                 lambda: tainted() is pressure)

    def cleanup(self):
        for name in self.created:
            self.remove(name)


class AuditMark:
    """A point in the audit log: the file's size and identity then, and the token of the control write
    made right after (``AuditLog.mark``)."""

    def __init__(self, offset, inode, token):
        self.offset, self.inode, self.token = offset, inode, token

    def __repr__(self):
        return "AuditMark(offset=%d, inode=%d, token=%s)" % (self.offset, self.inode, self.token)


class AuditLog:
    """Read the apiserver's audit log (write requests, Metadata level) between two points.

    A window that shows nothing proves nothing unless it was read: the log rotates (``--audit-log-maxsize``)
    and an offset into the old file reads nothing, or the wrong thing. So every window is bracketed by two
    control writes of our own, each a patch of one ConfigMap (``CONTROL``) carrying a token of its own in
    its request URI: ``mark`` makes one, every read makes another, waits until the log shows it and
    fails unless it also shows the mark's. The control writes are left out of what the reads return.
    """

    CONTROL = ("default", "nodeops-audit-control")   # (namespace, name) of the ConfigMap they patch

    def __init__(self, path=None, api_client=None):
        self.path = path or os.path.join(STATE, "audit.log")
        self._api_client = api_client

    def _control_write(self):
        """Patch the control ConfigMap (create it the first time) as a field manager named by a fresh token,
        which the audit event's requestURI carries. Returns the token."""
        from kubernetes import client as k8s

        if self._api_client is None:
            self._api_client = new_api_client()
        core = k8s.CoreV1Api(self._api_client)
        namespace, name = self.CONTROL
        token = "nodeops-audit-" + uuid.uuid4().hex[:16]
        body = {"metadata": {"name": name, "annotations": {"nodeops.io/audit-control": token}}}
        for _attempt in range(3):
            try:
                core.patch_namespaced_config_map(name, namespace, body, field_manager=token)
                return token
            except ApiException as exc:
                if exc.status != 404:
                    raise
            try:
                core.create_namespaced_config_map(namespace, body, field_manager=token)
                return token
            except ApiException as exc:
                if exc.status != 409:   # made meanwhile by another test: patch it
                    raise
        raise AssertionError("could not write the audit control ConfigMap %s/%s" % self.CONTROL)

    def _control_token(self, event):
        """The token of a control write's event, or None for any other event."""
        ref = event.get("objectRef") or {}
        if (ref.get("namespace"), ref.get("name"), ref.get("resource")) != self.CONTROL + ("configmaps",):
            return None
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(event.get("requestURI", "")).query)
        return (query.get("fieldManager") or [None])[0]

    def mark(self):
        """The start of a window: the log's size and inode now, then a control write inside the window."""
        stat = os.stat(self.path)
        return AuditMark(stat.st_size, stat.st_ino, self._control_write())

    def _read(self, offset):
        with open(self.path, "rb") as f:
            f.seek(offset)
            data = f.read()
        return [json.loads(line) for line in data.splitlines() if line.strip()]

    def events_since(self, mark, timeout=30.0):
        """Every event recorded after ``mark``, the control writes left out.

        Makes a control write first and reads until the log shows it (the apiserver records an event as
        the response completes, which can trail the client's view): so everything the test did before
        is in. Fails, loudly, if the log was rotated since ``mark`` or does not show the mark's own
        control write: then an empty answer would mean nothing.
        """
        if not isinstance(mark, AuditMark):
            raise TypeError("events_since needs an AuditLog.mark(), not %r" % (mark,))
        end = self._control_write()
        deadline = time.monotonic() + timeout
        while True:
            stat = os.stat(self.path)
            if stat.st_ino != mark.inode or stat.st_size < mark.offset:
                raise AssertionError("the audit log %s was rotated since %r: this window cannot be read "
                                     "(run the test again)" % (self.path, mark))
            events = self._read(mark.offset)
            seen = set(self._control_token(e) for e in events if e.get("stage") == "ResponseComplete")
            if end in seen:
                break
            if time.monotonic() > deadline:
                raise AssertionError("the control write %s made at the end of the window is not in the audit log "
                                     "%s after %.0fs: the window was not read" % (end, self.path, timeout))
            time.sleep(0.1)
        if mark.token not in seen:
            raise AssertionError("the control write %s made at the start of the window is not in the audit log "
                                 "%s read from %r: the log was rotated or the offset is wrong" % (
                                     mark.token, self.path, mark))
        return [e for e in events if self._control_token(e) is None]

    def writes_since(self, mark, user=ADMIN_USER, namespace=None, reads=False, timeout=30.0):
        """Write events by ``user`` (and in ``namespace``) recorded after ``mark``, read as ``events_since``
        does (the window's control writes seen, then left out).

        The only reads the policy records are pod log reads: ``reads=True`` returns those instead.
        """
        out = []
        for event in self.events_since(mark, timeout=timeout):
            if event.get("stage") != "ResponseComplete":
                continue
            if (event.get("verb") in ("get", "list", "watch")) != reads:
                continue
            if user and event.get("user", {}).get("username") != user:
                continue
            if "dryRun=All" in event.get("requestURI", ""):
                continue  # validated by the server, never stored: not a write
            ref = event.get("objectRef") or {}
            if namespace and ref.get("namespace") != namespace:
                continue
            out.append({"verb": event["verb"], "resource": ref.get("resource"),
                        "subresource": ref.get("subresource"), "namespace": ref.get("namespace"),
                        "name": ref.get("name"), "code": event.get("responseStatus", {}).get("code")})
        return out

    def creates_since(self, mark, resource, namespace):
        """Who created a ``resource`` in ``namespace`` after ``mark``: [(username, name)], stored writes only. The
        name is None for an object created with generateName (the audit event names only what the request's
        body named), as the Job controller creates its pods."""
        out = []
        for event in self.events_since(mark):
            ref = event.get("objectRef") or {}
            if event.get("stage") != "ResponseComplete" or event.get("verb") != "create" or \
                    "dryRun=All" in event.get("requestURI", ""):
                continue
            if (ref.get("resource"), ref.get("subresource"), ref.get("namespace")) == (resource, None, namespace):
                out.append((event.get("user", {}).get("username"), ref.get("name")))
        return out

    def log_reads_since(self, mark, user=ADMIN_USER, namespace=None):
        """The pod names whose log ``user`` read (in ``namespace``) after ``mark``."""
        return sorted(e["name"] for e in self.writes_since(mark, user, namespace, reads=True)
                      if (e["resource"], e["subresource"]) == ("pods", "log"))


def new_api_client(kubeconfig=KUBECONFIG):
    from kubernetes import config

    return config.new_client_from_config(config_file=kubeconfig)


def run_module(tmp_path, module, args, check=False, env=None, timeout=600, diff=False):
    """Run one module task through ansible-playbook; return its registered result."""
    import subprocess

    out = tmp_path / ("result-%s.json" % uuid.uuid4().hex[:6])
    play = [{"hosts": "localhost", "gather_facts": False, "connection": "local", "tasks": [
        {"name": "module under test", "nodeops.kubernetes." + module: args, "register": "r", "ignore_errors": True,
         "check_mode": check, "diff": diff},
        {"name": "save result", "ansible.builtin.copy": {"content": "{{ r | to_json }}", "dest": str(out)},
         "check_mode": False},
    ]}]
    playbook = tmp_path / ("play-%s.yml" % uuid.uuid4().hex[:6])
    playbook.write_text(json.dumps(play))
    run_env = dict(os.environ, KUBECONFIG=KUBECONFIG, ANSIBLE_NOCOLOR="1")
    run_env.update(env or {})
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                           "-e", "ansible_python_interpreter=" + sys.executable,
                           str(playbook)], env=run_env, capture_output=True, text=True, timeout=timeout, check=False)
    if not out.exists():
        raise AssertionError("ansible-playbook produced no result:\n%s\n%s" % (proc.stdout, proc.stderr))
    return json.loads(out.read_text())


def rest_client(kubeconfig=KUBECONFIG):
    """The collection's own client, for driving the engine directly."""
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._ansible.connection import (
        auth_settings,
        connection_config,
    )
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.api import RestClient

    return RestClient(connection_config(auth_settings({"kubeconfig": kubeconfig}, {}), environ={}))


def server_version():
    """(major, minor) the apiserver reports."""
    info = rest_client().get("/version")
    return int(info["major"]), int(info["minor"].rstrip("+"))


def native_ttl_engine():
    """The apiVersion in which the apiserver serves MutatingAdmissionPolicy (what dangling_job_ttl's native engine
    needs), as discovery says: admissionregistration.k8s.io/v1 from Kubernetes 1.36, v1beta1 before it where the
    cluster was started with NODEOPS_MUTATING_ADMISSION_POLICY_BETA=1, else None. It must be what the version and
    that variable say, so no cluster that should serve it takes a test's fallback branch."""
    def served(group_version):
        listing = rest_client().get_or_none("/apis/" + group_version) or {}
        return any(r["name"] == "mutatingadmissionpolicies" for r in listing.get("resources") or [])
    v1, beta = "admissionregistration.k8s.io/v1", "admissionregistration.k8s.io/v1beta1"
    version = server_version()
    assert served(v1) == (version >= NATIVE_TTL_SINCE), "Kubernetes %d.%d %s MutatingAdmissionPolicy v1" % (
        version + ("serves" if served(v1) else "does not serve",))
    if version >= NATIVE_TTL_SINCE:
        return v1
    wanted = os.environ.get("NODEOPS_MUTATING_ADMISSION_POLICY_BETA") == "1"
    assert served(beta) == wanted, "Kubernetes %d.%d with NODEOPS_MUTATING_ADMISSION_POLICY_BETA=%s %s v1beta1" % (
        version + ("1" if wanted else "unset", "serves" if served(beta) else "does not serve"))
    return beta if wanted else None


class RealNodeHelper:
    """The real node as a test sees it: its name, the fence to get onto it, and its host.

    Its host is read through the node's own namespaces (nsenter into its init), never through
    the collection, so a test checks real effects with independent means.
    """

    def __init__(self):
        import realnode

        self.mod = realnode
        self.name = realnode.NODE_NAME
        self.taint_key = realnode.TAINT_KEY
        self.label = {realnode.LABEL_KEY: "true"}
        self.tolerations = [{"key": realnode.TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]
        self.image = __import__("images").PYTHON_IMAGE
        self.node = realnode.Node(STATE, None, None, None)

    def absent_reason(self):
        why = self.node.unavailable_reason()
        if why:
            return why
        if self.node.pid() is None:
            return "not running (make cluster starts it)"
        return None

    def sh(self, script, check=True):
        """Run a shell script on the node's host (its mount and PID namespaces); return stdout."""
        proc = self.node.exec_in_node(["sh", "-c", script], capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise AssertionError("on the node: %s -> %d\n%s" % (script, proc.returncode, proc.stderr))
        return proc.stdout

    def crictl_images(self):
        """{ref: size} of every tagged image on the node, as crictl reports it."""
        out = json.loads(self.sh("crictl images -o json"))
        found = {}
        for image in out.get("images") or []:
            for ref in image.get("repoTags") or []:
                found[ref] = int(image.get("size") or 0)
        return found

    def import_images(self, refs):
        """Import built test images the node lacks (a prune test removes them)."""
        import images

        built = images.build_all(log=lambda msg: None)
        have = self.crictl_images()
        for ref in refs:
            if ref not in have:
                self.sh("ctr -n k8s.io images import %s >/dev/null" % built[ref])
        # containerd 2.x's CRI image store takes ctr's imports from events, a moment after ctr returns.
        wait_for("the runtime to list %s" % ", ".join(refs), lambda: set(refs) <= set(self.crictl_images()))

    def recorded_host_state(self):
        """The host as it was before the node first started (written by ``realnode.Node.start``)."""
        with open(self.node.p("host-before.json")) as f:
            return json.load(f)


RUN_POD_VERBS = ("create", "get", "list", "watch", "delete", "deletecollection")


def run_rules(pod_verbs=RUN_POD_VERBS, pod_logs=True, extra=()):
    """The namespaced rules a broadcast_job run uses, for ``grant``: pods with ``pod_verbs``, their logs
    unless ``pod_logs`` is false, the run record's ConfigMap, then ``extra``. A test that withholds one
    right says which by its arguments."""
    rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": list(pod_verbs)}]
    if pod_logs:
        rules.append({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]})
    rules.append({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "patch", "delete"]})
    return rules + list(extra)


def grant(api_client, namespace, subject, rules):
    """A Role with ``rules`` in ``namespace`` and a ClusterRole to read nodes, bound to ``subject``
    (a User name, or a subject dict). Returns the names of the cluster-scoped objects, to remove after."""
    from kubernetes import client as k8s

    rbac = k8s.RbacAuthorizationV1Api(api_client)
    subjects = [subject if isinstance(subject, dict) else {"kind": "User", "name": subject}]
    name = unique("nodeops-test")
    rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": rules})
    rbac.create_namespaced_role_binding(namespace, {"metadata": {"name": name}, "subjects": subjects, "roleRef": {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}})
    rbac.create_cluster_role({"metadata": {"name": name}, "rules": [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}]})
    rbac.create_cluster_role_binding({"metadata": {"name": name}, "subjects": subjects, "roleRef": {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}})
    return name


def revoke(api_client, namespace, name, cluster_role=True):
    """Delete the bindings ``grant`` made (the run loses its rights), and with cluster_role its ClusterRole."""
    from kubernetes import client as k8s

    rbac = k8s.RbacAuthorizationV1Api(api_client)
    for delete in (lambda: rbac.delete_namespaced_role_binding(name, namespace),
                   lambda: rbac.delete_cluster_role_binding(name),
                   (lambda: rbac.delete_cluster_role(name)) if cluster_role else (lambda: None)):
        try:
            delete()
        except ApiException as exc:
            if exc.status != 404:
                raise


def engine_opts(namespace, **overrides):
    """broadcast_job's validated options, as the engine takes them: every default, image_prune as a dry run
    (nothing removed), and ``overrides`` (name, timeouts, ...) on top."""
    import copy
    from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import options

    params = dict((k, copy.deepcopy(v.get("default"))) for k, v in options.BROADCAST_OPTIONS.items())
    params.update(name="bj", namespace=namespace, run_id=None, preset="image_prune",
                  image_prune={"include": [], "exclude": [], "dry_run": True}, timeout=120, pending_timeout=30)
    params.update(overrides)
    return options.validate(params)


def managed_pods(core, namespace):
    """The pods this collection made in ``namespace``."""
    return core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/managed-by=nodeops.kubernetes").items


def pod_creates(audit, mark, namespace):
    """The pods created in ``namespace`` since ``mark``, as the audit log records them (dry runs excluded)."""
    return [w for w in audit.writes_since(mark, namespace=namespace) if w["verb"] == "create"
            and w["resource"] == "pods" and not w["subresource"] and w["code"] == 201]


def on_real_node(real_node, namespace, **args):
    """Module args that put a broadcast (``name`` rn unless given) on the real node only, with the locally
    built Python image."""
    base = {"name": "rn", "namespace": namespace, "nodes": [real_node.name], "tolerations": real_node.tolerations,
            "image": real_node.image, "pending_timeout": 120, "timeout": 180}
    base.update(args)
    return base


def kill_playbook_mid_run(tmp_path, args, until, what, timeout=30):
    """Run broadcast_job ``args`` in an ansible-playbook of its own, wait for ``until()`` and kill the whole
    process tree: the module too, not only ansible-playbook (its worker runs it in a session of its own).
    Returns the pids killed."""
    import subprocess

    playbook = tmp_path / "kill.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "connection": "local",
                                     "tasks": [{"nodeops.kubernetes.broadcast_job": args}]}]))
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
               "-e", "ansible_python_interpreter=" + sys.executable, str(playbook)]
    proc = subprocess.Popen(command, env=dict(os.environ, KUBECONFIG=KUBECONFIG),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(what, until, timeout=timeout)
    finally:
        killed = kill_process_tree(proc.pid)
        proc.wait()
    return killed
