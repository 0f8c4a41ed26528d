# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every task of every module's EXAMPLES, run through ansible-playbook against the local cluster.

Each module's EXAMPLES is run as one play, in order, so that what a task registers feeds the tasks after
it as it would in a copied playbook. Every module task runs in check mode and must be accepted and return
its plan (PLAN_KEYS). The other tasks run as written, so they may only print, assert or set facts
(HARMLESS); any other task (a shell command, a file write, another collection's module) fails the test
rather than run here.

Two things are changed, and nothing else: each ``namespace`` (or ``sweep_namespace``) an example names is a fresh namespace of
this test (created first, deleted after), so that no example touches a namespace someone else uses; and
each module task's result is saved for the assertions below.

Where a follow-up task needs what only a real run returns, the task it reads also runs for real, right
after its check-mode run, as written (REAL_RUNS says which and why). A task that sets ``check_mode: false``
itself must be listed there too: whoever adds one decides whether the test may run it. broadcast_info's
examples read a cron broadcast's last run: the one cron_broadcast's examples install under that name is
installed for real first, and its runner run once (the_cron_broadcast_it_reads), then removed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import importlib
import json
import os
import subprocess
import sys
import uuid

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

import kube_helpers as kh

sys.path.insert(0, os.path.join(kh.REPO, "tools", "localcluster"))
import kyverno_tools  # noqa: E402  pylint: disable=wrong-import-position
import run_runner  # noqa: E402  pylint: disable=wrong-import-position

PREFIX = "nodeops.kubernetes."
MODULES = sorted(name[:-3] for name in os.listdir(os.path.join(kh.REPO, "plugins", "modules"))
                 if name.endswith(".py") and not name.startswith("_"))

# (module, task name): why that task also runs for real after its check-mode run.
REAL_RUNS = {
    ("broadcast_job", "See which images would be pruned on every worker"):
        "the next task prints prune.nodes, which only a run returns; image_prune with dry_run removes nothing",
}


# The tasks other than this collection's modules that an example may have: they run as written.
HARMLESS = ("ansible.builtin.debug", "ansible.builtin.assert", "ansible.builtin.set_fact")
# Task keywords, which are not the module a task calls. Those that would send a task elsewhere than the
# local cluster (environment, module_defaults, delegate_to, become) are not among them: a task with one is refused.
KEYWORDS = {"name", "register", "when", "loop", "loop_control", "vars", "tags", "check_mode", "changed_when",
            "failed_when", "ignore_errors", "no_log", "run_once", "until", "retries", "delay", "diff"}
# Module arguments that would point a module at another cluster than the local one.
CONNECTION_ARGS = {"kubeconfig", "context", "host", "api_key", "username", "password", "proxy"}
# Templating that runs code on the controller (lookup('pipe', ...)): refused anywhere in an example.
RUNS_CODE = ("lookup(", "query(", "q(")


def refuse_what_could_run_elsewhere(module, task):
    """Fail on an example task that could do more than print, assert, set facts or call this collection's
    modules against the local cluster."""
    text = json.dumps(task)
    assert not any(word in text for word in RUNS_CODE), (
        "%s's example task %r uses a lookup, which may run anything; not run here" % (module, task.get("name")))
    used = module_of(task)
    called = sorted(set(task) - KEYWORDS)
    assert called == [PREFIX + used] if used else (len(called) == 1 and called[0] in HARMLESS), (
        "%s's example task %r calls %s; only this collection's modules and %s run here"
        % (module, task.get("name"), called, ", ".join(HARMLESS)))
    given = set((task.get(PREFIX + used) or {}) if used else ()) & CONNECTION_ARGS
    assert not given, "%s's example task %r sets %s, which would leave the local cluster" % (
        module, task.get("name"), sorted(given))


def _absent(args):
    return args.get("state") == "absent"


def plan_keys(module, args):
    """The keys a module's check-mode result must hold: what it would do (its RETURN says when each is
    returned). A module not listed here fails the test: its examples are not left out."""
    if module == "broadcast_job":
        return ("deleted",) if _absent(args) else ("run_id", "plan")
    if module == "cron_broadcast":
        return ("deleted", "objects") if _absent(args) else ("changes", "objects", "next_runs")
    if module == "dangling_job_ttl":
        keys = ()
        if args.get("policy", True):
            keys += ("removed",) if _absent(args) else ("policy_engine", "policy_engine_reason", "policy_objects",
                                                        "removed")
        if args.get("sweep"):
            keys += ("sweep",)
        if args.get("sweep_schedule") and not _absent(args):
            keys += ("scheduled_sweep",)
        return keys
    if module == "broadcast_info":
        return ("cron_broadcasts", "runs")
    raise AssertionError("no plan keys for module %s: add them to plan_keys" % module)


def load(module):
    return importlib.import_module("ansible_collections.nodeops.kubernetes.plugins.modules." + module)


def examples(module):
    tasks = yaml.safe_load(load(module).EXAMPLES)
    assert isinstance(tasks, list) and tasks, "%s: EXAMPLES is not a list of tasks" % module
    return tasks


def undocumented_values(fields, result, where=""):
    """["<field>=<value>"] of the values in ``result`` that are not among their RETURN field's ``choices``
    (``fields``: RETURN, or a field's ``contains``)."""
    found = []
    for name, field in (fields or {}).items():
        value = result.get(name) if isinstance(result, dict) else None
        if value is None:
            continue
        if "choices" in field and value not in field["choices"]:
            found.append("%s%s=%r" % (where, name, value))
        if isinstance(value, dict):
            found += undocumented_values(field.get("contains"), value, where + name + ".")
    return found


def module_of(task):
    found = [key[len(PREFIX):] for key in task if key.startswith(PREFIX)]
    assert len(found) <= 1, task
    return found[0] if found else None


def with_namespaces(task, namespaces):
    """The task with its module's ``namespace`` (and ``sweep_namespace``) replaced by this test's one for it."""
    task = copy.deepcopy(task)
    module = module_of(task)
    args = task[PREFIX + module] if module else None
    for key in ("namespace", "sweep_namespace"):
        if args and key in args:
            args[key] = namespaces.setdefault(args[key], kh.unique("t-examples"))
    return task


def example_play(module, tasks, namespaces, out_dir):
    """The examples as one play: each module task in check mode, then (REAL_RUNS) as written; each module
    task's result saved as ``<index>-<check|real>.json``. Returns [(index, mode, task)] of the module tasks."""
    play, runs = [], []
    for index, task in enumerate(tasks):
        refuse_what_could_run_elsewhere(module, task)
        used = module_of(task)
        if used is None:
            play.append(task)
            continue
        assert used == module, "%s's examples use %s: %r" % (module, used, task.get("name"))
        key = (module, task.get("name"))
        if task.get("check_mode") is False:
            assert key in REAL_RUNS, "%r sets check_mode: false; say in REAL_RUNS whether it may run here" % (key,)
        modes = ["check", "real"] if key in REAL_RUNS else ["check"]
        for mode in modes:
            run = with_namespaces(task, namespaces)
            register = run.setdefault("register", "nodeops_example_%d" % index)
            run.update(check_mode=(mode == "check"), ignore_errors=True)
            dest = os.path.join(out_dir, "%d-%s.json" % (index, mode))
            play.append(run)
            play.append({"name": "save the result", "check_mode": False,
                         "ansible.builtin.copy": {"content": "{{ %s | to_json }}" % register, "dest": dest}})
            runs.append((index, mode, run))
    return [{"hosts": "localhost", "gather_facts": False, "connection": "local", "tasks": play}], runs


def run_play(tmp_path, play, timeout=900):
    playbook = tmp_path / ("examples-%s.yml" % uuid.uuid4().hex[:6])
    playbook.write_text(json.dumps(play))
    env = dict(os.environ, KUBECONFIG=kh.KUBECONFIG, ANSIBLE_NOCOLOR="1")
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                           "-e", "ansible_python_interpreter=" + sys.executable, str(playbook)],
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


def create_namespace(core, name):
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name, labels={"nodeops-test": "1"})))
    kh.wait_for("default ServiceAccount in %s" % name, lambda: core.read_namespaced_service_account("default", name))


def delete_namespace(core, name):
    try:
        core.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def install_kyverno_crds():
    """dangling_job_ttl's example for policy_engine=kyverno needs Kyverno's CRDs (from the pinned module)."""
    kyverno_tools.install_crds()

    def served():
        listing = kh.rest_client().get_or_none("/apis/policies.kyverno.io/v1") or {}
        return any(r["name"] == "mutatingpolicies" for r in listing.get("resources") or [])
    kh.wait_for("discovery to list Kyverno's MutatingPolicy", served)


def the_cron_broadcast_it_reads(tasks, namespaces):
    """broadcast_info's examples read the history of a cron broadcast: the one cron_broadcast's examples
    install under that name. Returns that task's arguments."""
    wanted = [t[PREFIX + "broadcast_info"] for t in tasks if module_of(t) == "broadcast_info"][0]
    installs = [t for t in examples("cron_broadcast")
                if (t.get(PREFIX + "cron_broadcast") or {}).get("name") == wanted["name"]]
    assert installs, "no cron_broadcast example installs %s, which broadcast_info's example reads" % wanted["name"]
    return with_namespaces(installs[0], namespaces)[PREFIX + "cron_broadcast"]


def install_and_run_once(tmp_path, core, args):
    """Install the cron broadcast for real and run its runner once here: kwok nodes run no containers, and
    run_runner.py runs the CronJob's own command with its ServiceAccount."""
    create_namespace(core, args["namespace"])
    installed = kh.run_module(tmp_path, "cron_broadcast", args)
    assert not installed.get("failed"), installed.get("msg")
    command, env = run_runner.runner_command(args["namespace"], args["name"], str(tmp_path))
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("task", [
    {"name": "x", "ansible.builtin.command": "rm -rf /tmp/x"},
    {"name": "x", "shell": "echo hi"},
    {"name": "x", "kubernetes.core.k8s": {"state": "absent", "kind": "Namespace", "name": "default"}},
    {"name": "x", "block": [{"ansible.builtin.debug": {"msg": "hi"}}]},
    {"name": "x", "nodeops.kubernetes.broadcast_job": {"name": "a"}, "environment": {"KUBECONFIG": "/elsewhere"}},
    {"name": "x", "nodeops.kubernetes.broadcast_job": {"name": "a"}, "delegate_to": "prod-bastion"},
])
def test_an_example_task_that_would_change_something_is_refused_not_run(task, tmp_path):
    with pytest.raises(AssertionError) as info:
        example_play("broadcast_job", [task], {}, str(tmp_path))
    assert "only this collection's modules and ansible.builtin.debug" in str(info.value), str(info.value)


@pytest.mark.parametrize("task, words", [
    ({"name": "x", "ansible.builtin.debug": {"msg": "{{ lookup('pipe', 'id') }}"}}, "uses a lookup"),
    ({"name": "x", "ansible.builtin.debug": {"var": "v"}, "vars": {"v": "{{ query('pipe', 'id') }}"}}, "uses a lookup"),
    ({"name": "x", "nodeops.kubernetes.broadcast_job": {"name": "a", "context": "prod"}}, "sets ['context']"),
    ({"name": "x", "nodeops.kubernetes.broadcast_job": {"name": "a", "kubeconfig": "/prod"}}, "sets ['kubeconfig']"),
])
def test_an_example_that_could_run_code_or_reach_another_cluster_is_refused_not_run(task, words, tmp_path):
    with pytest.raises(AssertionError) as info:
        example_play("broadcast_job", [task], {}, str(tmp_path))
    assert words in str(info.value), str(info.value)


def test_printing_asserting_and_setting_facts_run_as_written(tmp_path):
    tasks = [{"name": "p", "ansible.builtin.debug": {"var": "x"}, "when": "x is defined"},
             {"name": "a", "ansible.builtin.assert": {"that": ["true"]}}]
    play, runs = example_play("broadcast_job", tasks, {}, str(tmp_path))
    assert play[0]["tasks"] == tasks and runs == []


@pytest.mark.parametrize("module", MODULES)
def test_every_example_is_accepted_in_check_mode_and_returns_its_plan(module, tmp_path, core, cluster):
    tasks = examples(module)
    namespaces, installed = {}, None
    out_dir = tmp_path / "results"
    out_dir.mkdir()
    try:
        if module == "dangling_job_ttl":
            install_kyverno_crds()
        if module == "broadcast_info":
            installed = the_cron_broadcast_it_reads(tasks, namespaces)
            install_and_run_once(tmp_path, core, installed)
        play, runs = example_play(module, tasks, namespaces, str(out_dir))
        for name in namespaces.values():
            if not installed or name != installed["namespace"]:
                create_namespace(core, name)
        proc = run_play(tmp_path, play)
        # Where the apiserver has no MutatingAdmissionPolicy v1 (Kubernetes 1.34), the native engine's example is
        # refused, as documented; every other example runs.
        native = module != "dangling_job_ttl" or kh.native_ttl_engine()
        for index, mode, task in runs:
            path = out_dir / ("%d-%s.json" % (index, mode))
            assert path.exists(), "%r (%s) did not run:\n%s" % (task["name"], mode, proc.stdout[-4000:])
            result = json.loads(path.read_text())
            if not native and task[PREFIX + module].get("policy_engine") == "native":
                assert result.get("failed") and "policy_engine=native cannot be used here" in result["msg"], result
                continue
            assert not result.get("failed"), "%r (%s): %s" % (task["name"], mode, result.get("msg"))
            if mode == "check":
                missing = [k for k in plan_keys(module, task[PREFIX + module]) if k not in result]
                assert not missing, "%r returned no %s in check mode: %r" % (task["name"], missing, sorted(result))
            wrong = undocumented_values(yaml.safe_load(load(module).RETURN), result)
            assert not wrong, "%r (%s) returned values its RETURN does not list: %s" % (task["name"], mode, wrong)
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
        if module in ("broadcast_job", "broadcast_info"):
            # Their follow-ups print one line per node of the real run: the kwok workers succeeded.
            assert "kwok-worker-1: succeeded" in proc.stdout, proc.stdout[-6000:]
    finally:
        if installed:
            removed = kh.run_module(tmp_path, "cron_broadcast", {"name": installed["name"],
                                                                 "namespace": installed["namespace"], "state": "absent"})
            assert not removed.get("failed"), removed.get("msg")
        for name in namespaces.values():
            delete_namespace(core, name)
