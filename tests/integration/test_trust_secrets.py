# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets stay secret, and results stay readable: a kubeconfig dict through a real ansible-playbook -vvv.

The masking under test is Ansible's own (the module's no_log values applied to everything it prints), so
only a real run shows it. The kubeconfig is the local cluster's, renamed the way kind names things: its
cluster, context and user share a prefix with a node's name. With the whole kubeconfig no_log, that node
showed as ``********-worker`` and the context's namespace was masked wherever it appeared.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import sys
import uuid

import yaml
from kubernetes import client as k8s

import kube_helpers as kh


def _renamed_kubeconfig(name, namespace, token):
    """The local cluster's kubeconfig as a dict, its names set to ``name``, its namespace and a bearer token added.

    The local cluster authenticates by client certificate, so the apiserver never judges the added token
    (x509 comes first among its authenticators); it is there to be masked.
    """
    with open(kh.KUBECONFIG) as f:
        config = yaml.safe_load(f)
    cluster = config["clusters"][0]
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    user = next(u for u in config["users"] if u["name"] == context["context"]["user"])
    cluster["name"] = user["name"] = context["name"] = config["current-context"] = name
    context["context"] = dict(context["context"], cluster=name, user=name, namespace=namespace)
    user["user"]["token"] = token
    config.update(clusters=[cluster], contexts=[context], users=[user])
    return config, user["user"]


def _run_verbose(tmp_path, module, args, check=True, env=None):
    """One module task through ansible-playbook -vvv: (the process, its registered result)."""
    out = tmp_path / ("result-%s.json" % uuid.uuid4().hex[:6])
    play = [{"hosts": "localhost", "gather_facts": False, "connection": "local", "tasks": [
        {"name": "module under test", "nodeops.kubernetes." + module: args, "register": "r", "ignore_errors": True,
         "check_mode": check},
        {"name": "save result", "ansible.builtin.copy": {"content": "{{ r | to_json }}", "dest": str(out)},
         "check_mode": False},
    ]}]
    playbook = tmp_path / ("play-%s.yml" % uuid.uuid4().hex[:6])
    playbook.write_text(json.dumps(play))
    # No KUBECONFIG: the module's own options are the only way in.
    run_env = dict(os.environ, ANSIBLE_NOCOLOR="1", **(env or {}))
    run_env.pop("KUBECONFIG", None)
    run_env.pop("K8S_AUTH_KUBECONFIG", None)
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-vvv",
                           "-i", "localhost,", "-e", "ansible_python_interpreter=" + sys.executable, str(playbook)],
                          env=run_env, capture_output=True, text=True, timeout=300, check=False)
    if not out.exists():
        raise AssertionError("ansible-playbook produced no result:\n%s\n%s" % (proc.stdout, proc.stderr))
    return proc, json.loads(out.read_text())


def _shown_result(stdout, task):
    """The result ansible-playbook -vvv printed for ``task``, invocation included (a registered one has none)."""
    after = stdout.split("TASK [%s]" % task, 1)[1]
    start = after.index("] => {") + len("] => ")
    end = after.index("\n}\n", start) + 2
    return json.loads(after[start:end])


def test_a_kubeconfig_dict_keeps_node_names_and_namespace_readable_and_its_credentials_hidden(
        tmp_path, namespace, sim_nodes, cluster):
    name = kh.unique("trust")
    token = "nodeops-trust-token-" + uuid.uuid4().hex
    kubeconfig, user = _renamed_kubeconfig(name, namespace, token)
    secrets = [user["client-key-data"], user["client-certificate-data"], token]
    node = sim_nodes.add(name + "-worker", labels={"nodeops-trust": name})

    proc, result = _run_verbose(tmp_path, "broadcast_job", {
        "kubeconfig": kubeconfig, "name": "trust", "namespace": namespace, "preset": "image_prune",
        "node_selector": {"nodeops-trust": name}})
    output = proc.stdout + proc.stderr

    assert not result.get("failed"), result.get("msg") or output[-3000:]
    assert result["plan"]["eligible"] == [node]
    assert result["pod"]["metadata"]["namespace"] == namespace
    shown = _shown_result(proc.stdout, "module under test")
    assert shown["plan"]["eligible"] == [node]
    assert shown["invocation"]["module_args"]["namespace"] == namespace
    given = shown["invocation"]["module_args"]["kubeconfig"]
    assert [given["clusters"][0]["name"], given["contexts"][0]["name"], given["users"][0]["name"]] == [name] * 3
    assert given["contexts"][0]["context"]["namespace"] == namespace
    assert given["clusters"][0]["cluster"]["server"] == kubeconfig["clusters"][0]["cluster"]["server"]
    assert set(given["users"][0]["user"].values()) == {"VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"}
    # What a user reads on the terminal: the names as they are, no credential anywhere.
    assert node in proc.stdout and namespace in proc.stdout and name in proc.stdout
    assert "********-worker" not in output
    for secret in secrets:
        assert secret not in output
        assert secret not in json.dumps(result)


def test_api_key_is_not_logged(tmp_path, api_client, core, namespace, sim_nodes):
    """A real ServiceAccount token (TokenRequest) as ``api_key``, through ansible-playbook -vvv with a log
    file: a run it is good for (with a warning, from a right withheld) and a run it is refused. The token
    is in none of what Ansible prints, logs or registers: stdout, stderr, the log file, the results, their
    warnings and messages."""
    account = "nodeops-token-user"
    core.create_namespaced_service_account(namespace, {"metadata": {"name": account}})
    granted = kh.grant(api_client, namespace, {"kind": "ServiceAccount", "name": account, "namespace": namespace},
                       kh.run_rules())   # and no right to post events: a warning that quotes the API's refusal
    try:
        token = core.create_namespaced_service_account_token(account, namespace, k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=600))).status.token
        node = sim_nodes.add(labels={"nodeops-token": namespace})
        log_path = tmp_path / "ansible.log"
        connection = {"host": api_client.configuration.host, "api_key": token,
                      "ca_cert": os.path.join(kh.STATE, "pki", "ca.crt")}
        args = dict(connection, name="token", namespace=namespace, preset="image_prune",
                    node_selector={"nodeops-token": namespace})
        ran, ran_result = _run_verbose(tmp_path, "broadcast_job", args, check=False,
                                       env={"ANSIBLE_LOG_PATH": str(log_path)})
        refused, refused_result = _run_verbose(tmp_path, "broadcast_job", dict(args, namespace="default"),
                                               check=False, env={"ANSIBLE_LOG_PATH": str(log_path)})
    finally:
        kh.revoke(api_client, namespace, granted)

    # The token did its work, so it was really given, and both runs said something worth reading.
    assert not ran_result.get("failed"), ran_result.get("msg") or ran.stdout[-3000:]
    assert [rec["outcome"] for rec in ran_result["nodes"] if rec["node"] == node] == ["succeeded"]
    assert any("could not post" in w and "forbidden" in w.lower() for w in ran_result["warnings"]), ran_result
    assert refused_result["failed"] and "forbidden" in refused_result["msg"].lower(), refused_result
    log = log_path.read_text()
    # -vvv prints the module's arguments (the token's place among them) and the log has the task.
    assert _shown_result(ran.stdout, "module under test")["invocation"]["module_args"]["namespace"] == namespace
    assert "TASK [module under test]" in log
    for where, text in (("stdout", ran.stdout + refused.stdout), ("stderr", ran.stderr + refused.stderr),
                        ("ANSIBLE_LOG_PATH", log), ("results", json.dumps([ran_result, refused_result])),
                        ("warnings", json.dumps(ran_result["warnings"] + refused_result.get("warnings", []))),
                        ("messages", ran_result.get("msg", "") + refused_result["msg"])):
        assert token not in text, where
        # Not even a piece of it: the JWT's signature, the part no other token shares.
        assert token.rsplit(".", 1)[1] not in text, where
