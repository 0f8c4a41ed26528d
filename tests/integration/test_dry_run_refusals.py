# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A pod the real apiserver refuses in the preflight dry run names the option that set the refused field.

service_account (the ServiceAccount admission plugin: it does not exist), priority_class_name (the
Priority plugin: no such PriorityClass), image (validation: a reference with a trailing space) and
resources (validation: a request above its limit), pod_annotations and tolerations (validation: a key
that is not a name; the collection adds its own to both fields): each refusal names that option, its value and the
apiserver's words, not ``preset='image_prune'`` or ``pod_template='(the pod it makes)'``; and nothing is
written, by broadcast_job (check mode or not) or cron_broadcast, which dry-runs the same pods.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from kubernetes import client as k8s

import kube_helpers as kh

# In the compatibility suite on the older Kubernetes minor (make k8s-compat): the bad-input refusals the apiserver decides.
pytestmark = pytest.mark.k8s_compat

# (option, value, the apiserver's words; %(namespace)s is the test's namespace)
CASES = [
    ("service_account", "nodeops-no-such-sa",
     'error looking up service account %(namespace)s/nodeops-no-such-sa: serviceaccount "nodeops-no-such-sa" not found'),
    ("priority_class_name", "nodeops-no-such-priority", "no PriorityClass with name nodeops-no-such-priority was found"),
    ("image", "python:3.13-slim ",
     'spec.containers[0].image: Invalid value: "python:3.13-slim ": must not have leading or trailing whitespace'),
    ("resources", {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}},
     'spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1'),
    # Fields the collection adds to as well: the option is named for its own key, and its own toleration.
    ("pod_annotations", {"team": "ops", "a b": "x"}, 'metadata.annotations: Invalid value: "a b": name part must'),
    ("tolerations", [{"key": "bad key!", "operator": "Exists"}],
     'spec.tolerations[0].key: Invalid value: "bad key!": name part must'),
]
TEMPLATE = {"spec": {"containers": [{"name": "c", "image": "python:3.13-slim", "command": ["true"]}]}}


def job_args(namespace, tag, **extra):
    args = {"name": "refused", "namespace": namespace, "preset": "image_prune", "image_prune": {"dry_run": True},
            "node_selector": {"nodeops-test": tag}, "parallelism": "100%"}
    args.update(extra)
    return args


def cron_args(namespace, tag, **extra):
    args = {"name": "refused", "namespace": namespace, "schedule": "0 3 * * *", "preset": "image_prune",
            "image_prune": {"dry_run": True}, "node_selector": {"nodeops-test": tag}}
    args.update(extra)
    return args


def ours(writes, namespace):
    """The writes of this test's objects: in its namespace, or named after it (cron_broadcast's cluster-scoped
    RBAC and its Role for Node events carry the namespace in their names)."""
    return [w for w in writes if w["namespace"] == namespace or namespace in (w["name"] or "")]


def refused_dry_runs(audit, mark, namespace):
    """Pod creates in ``namespace`` that the apiserver refused, each a dry run."""
    return [e for e in audit.events_since(mark) if e.get("stage") == "ResponseComplete"
            and e.get("verb") == "create" and (e.get("objectRef") or {}).get("resource") == "pods"
            and (e.get("objectRef") or {}).get("namespace") == namespace
            and (e.get("responseStatus") or {}).get("code") in (400, 403, 422) and "dryRun=All" in e.get("requestURI", "")]


def assert_names_the_option_and_writes_nothing(result, option, value, words, namespace, audit, mark, api_client):
    assert result.get("failed"), result
    msg = result["msg"]
    assert msg.startswith("%s=%r is invalid: the API server refused a dry run of the pods of preset image_prune: "
                          % (option, value)) or msg.startswith(
        "%s=%r is invalid: the API server refused a dry run of the pods of this pod_template: " % (option, value)), msg
    assert words % {"namespace": namespace} in msg, msg
    assert "preset='image_prune'" not in msg and "(the pod it makes)" not in msg, msg
    assert result["invalid_parameter"] == option, result
    assert refused_dry_runs(audit, mark, namespace), "the apiserver was not asked (no refused dry run in the audit log)"
    assert audit.writes_since(mark, namespace=namespace) == []
    assert ours(audit.writes_since(mark, namespace=None), namespace) == []
    core = k8s.CoreV1Api(api_client)
    assert core.list_namespaced_pod(namespace).items == []
    assert core.list_namespaced_config_map(namespace, label_selector="app.kubernetes.io/managed-by").items == []
    assert k8s.BatchV1Api(api_client).list_namespaced_cron_job(namespace).items == []


@pytest.mark.parametrize("option, value, words", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("module, args, check", [
    ("broadcast_job", job_args, True),
    ("broadcast_job", job_args, False),
    ("cron_broadcast", cron_args, False),
], ids=["broadcast_job-check", "broadcast_job", "cron_broadcast"])
def test_a_refused_pod_names_the_option_its_value_and_the_api_servers_words_and_writes_nothing(
        tmp_path, api_client, namespace, sim_nodes, audit, module, args, check, option, value, words):
    tag = kh.unique("refused")
    sim_nodes.add(name=tag, labels={"nodeops-test": tag})
    mark = audit.mark()
    result = kh.run_module(tmp_path, module, args(namespace, tag, **{option: value}), check=check)
    try:
        assert_names_the_option_and_writes_nothing(result, option, value, words, namespace, audit, mark, api_client)
    finally:
        if module == "cron_broadcast" and not result.get("failed"):
            # Its cluster-scoped RBAC outlives the namespace.
            kh.run_module(tmp_path, "cron_broadcast", {"name": "refused", "namespace": namespace, "state": "absent"})


@pytest.mark.parametrize("option, value, words", CASES[:2], ids=[c[0] for c in CASES[:2]])
def test_with_a_pod_template_the_option_that_replaces_its_field_is_named(
        tmp_path, api_client, namespace, sim_nodes, audit, option, value, words):
    tag = kh.unique("refused")
    sim_nodes.add(name=tag, labels={"nodeops-test": tag})
    mark = audit.mark()
    args = job_args(namespace, tag, pod_template=TEMPLATE, **{option: value})
    del args["preset"], args["image_prune"]
    result = kh.run_module(tmp_path, "broadcast_job", args)
    assert_names_the_option_and_writes_nothing(result, option, value, words, namespace, audit, mark, api_client)
