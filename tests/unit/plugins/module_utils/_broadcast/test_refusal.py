# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A dry run's refusal names the option that set the refused field (refusal.py), not the preset or
pod template as a whole. The Status bodies are the real apiserver's (recorded from the local cluster;
tests/integration/test_dry_run_refusals.py asks it live)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import options, refusal
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.engine import Engine
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.api import RestClient
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import (
    ERRORS_BY_STATUS,
    Forbidden,
    InvalidInput,
)

from test_broadcast_pure import params

TEMPLATE = {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}

SA = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Forbidden", "code": 403,
      "message": 'pods "x" is forbidden: error looking up service account ops/nope-sa: serviceaccount "nope-sa" '
                 'not found', "details": {"name": "x", "kind": "pods"}}
PRIORITY = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Forbidden",
            "code": 403, "message": 'pods "x" is forbidden: no PriorityClass with name nope-pc was found',
            "details": {"name": "x", "kind": "pods"}}
IMAGE = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Invalid", "code": 422,
         "message": 'Pod "x" is invalid: spec.containers[0].image: Invalid value: "python:3.13-slim ": must not '
                    'have leading or trailing whitespace',
         "details": {"name": "x", "kind": "Pod", "causes": [{
             "reason": "FieldValueInvalid", "field": "spec.containers[0].image",
             "message": 'Invalid value: "python:3.13-slim ": must not have leading or trailing whitespace'}]}}
RESOURCES = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Invalid",
             "code": 422, "message": 'Pod "x" is invalid: spec.containers[0].resources.requests: Invalid value: "2": '
                                     'must be less than or equal to cpu limit of 1',
             "details": {"name": "x", "kind": "Pod", "causes": [{
                 "reason": "FieldValueInvalid", "field": "spec.containers[0].resources.requests",
                 "message": 'Invalid value: "2": must be less than or equal to cpu limit of 1'}]}}
QUANTITY = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "BadRequest",
            "code": 400, "message": "Pod in version \"v1\" cannot be handled as a Pod: quantities must match the "
                                    "regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"}
VOLUME = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Invalid", "code": 422,
          "message": 'Pod "x" is invalid: spec.volumes[0].hostPath.path: Required value',
          "details": {"causes": [{"reason": "FieldValueRequired", "field": "spec.volumes[0].hostPath.path",
                                  "message": "Required value"}]}}
WEBHOOK = {"kind": "Status", "message": 'admission webhook "images.example" denied the request: registry not allowed',
           "code": 403, "reason": "Forbidden"}

RESOURCES_OPTION = {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}


def opts(**overrides):
    return options.validate(params(**overrides))


@pytest.mark.parametrize("status, fields", [
    (SA, [("spec.serviceAccountName", SA["message"])]),
    (PRIORITY, [("spec.priorityClassName", PRIORITY["message"])]),
    (IMAGE, [("spec.containers[0].image", "spec.containers[0].image: " + IMAGE["details"]["causes"][0]["message"])]),
    (RESOURCES, [("spec.containers[0].resources.requests", "spec.containers[0].resources.requests: Invalid value: "
                  '"2": must be less than or equal to cpu limit of 1')]),
    (QUANTITY, [("spec.containers[].resources", QUANTITY["message"])]),
    (VOLUME, [("spec.volumes[0].hostPath.path", "spec.volumes[0].hostPath.path: Required value")]),
    (WEBHOOK, []),
    ({"message": "Internal error"}, []),
    (None, []),
    ("not a Status", []),
])
def test_the_fields_a_refusal_names(status, fields):
    assert refusal.refused_fields(status) == fields


@pytest.mark.parametrize("field, overrides, expected", [
    ("spec.serviceAccountName", dict(service_account="nope-sa"), ("service_account", "nope-sa")),
    ("spec.priorityClassName", dict(priority_class_name="nope-pc"), ("priority_class_name", "nope-pc")),
    ("spec.containers[0].image", dict(image="python:3.13-slim "), ("image", "python:3.13-slim ")),
    ("spec.initContainers[1].image", dict(image="python:3.13-slim "), ("image", "python:3.13-slim ")),
    ("spec.containers[0].resources.requests", dict(resources=RESOURCES_OPTION), ("resources", RESOURCES_OPTION)),
    ("spec.containers[].resources", dict(resources=RESOURCES_OPTION), ("resources", RESOURCES_OPTION)),
    # The pod template's own fields are the template's: only the options that replace them are named.
    ("spec.serviceAccountName", dict(service_account="nope-sa", preset=None, image_prune=None, pod_template=TEMPLATE),
     ("service_account", "nope-sa")),
    ("spec.priorityClassName", dict(priority_class_name="x", preset=None, image_prune=None, pod_template=TEMPLATE),
     ("priority_class_name", "x")),
    ("spec.containers[0].image", dict(image="python:3.13-slim ", preset=None, image_prune=None, pod_template=TEMPLATE),
     None),
    ("spec.containers[0].resources.limits", dict(resources=RESOURCES_OPTION, preset=None, image_prune=None,
                                                 pod_template=TEMPLATE), None),
    ("metadata.labels", dict(pod_labels={"team": "ops"}, preset=None, image_prune=None, pod_template=TEMPLATE), None),
    # A field set by no option given, or by the collection itself.
    ("spec.serviceAccountName", dict(), None),
    ("spec.priorityClassName", dict(), None),
    ("spec.containers[0].resources.requests", dict(), None),
    ("spec.tolerations[0]", dict(), None),
    ("spec.volumes[0].hostPath.path", dict(), None),
    ("spec.affinity.nodeAffinity", dict(), None),
    ("spec.serviceAccount", dict(service_account="nope-sa"), None),   # not spec.serviceAccountName
    ("", dict(service_account="nope-sa"), None),
])
def test_the_option_that_set_a_refused_field(field, overrides, expected):
    found = refusal.option_for_field(field, opts(**overrides))
    assert (found[:2] if found else None) == expected


@pytest.mark.parametrize("status, overrides, option, accepted", [
    (SA, dict(service_account="nope-sa"), "service_account", "a ServiceAccount that exists in namespace ops"),
    (PRIORITY, dict(priority_class_name="nope-pc"), "priority_class_name", "an existing PriorityClass"),
    (IMAGE, dict(image="python:3.13-slim "), "image", "an image reference the API server accepts"),
    (RESOURCES, dict(resources=RESOURCES_OPTION), "resources", "no request above its limit"),
    (QUANTITY, dict(resources={"requests": {"cpu": "lots"}}), "resources", "quantities such as 250m"),
])
def test_a_dry_run_refusal_names_the_option_its_value_and_the_api_servers_words(status, overrides, option, accepted):
    """Engine.dry_run_pod, with the apiserver's real answers: the option, not preset='image_prune'."""
    refused = ERRORS_BY_STATUS[status["code"]]("POST /api/v1/namespaces/ops/pods failed: %d %s: %s" % (
        status["code"], status["reason"], status["message"]), status=status["code"], reason=status["reason"],
        body=status)
    engine = Engine(RefusingApi(refused))
    checked = opts(**overrides)
    with pytest.raises(InvalidInput) as info:
        engine.preflight(checked, "r1", "worker-1")
    value = overrides[option] if option != "image" else overrides["image"]
    assert info.value.param == option and info.value.value == value
    assert info.value.result["invalid_parameter"] == option
    msg = info.value.msg
    assert msg.startswith("%s=%r is invalid: the API server refused a dry run of the pods of preset image_prune: "
                          % (option, value)), msg
    words = refusal.refused_fields(status)[0][1]
    assert words in msg and accepted in msg, msg
    assert "preset=" not in msg


@pytest.mark.parametrize("status, overrides, param, value", [
    (VOLUME, dict(), "preset", "image_prune"),
    (WEBHOOK, dict(service_account="sa"), "preset", "image_prune"),
    # A service account the pod template sets itself: the template is named, as before.
    (SA, dict(preset=None, image_prune=None, pod_template={"spec": dict(TEMPLATE["spec"], serviceAccountName="nope-sa")}),
     "pod_template", "(the pod it makes)"),
])
def test_a_refusal_no_option_caused_names_the_workload(status, overrides, param, value):
    refused = ERRORS_BY_STATUS[status["code"]]("POST /api/v1/namespaces/ops/pods failed: %s" % status["message"],
                                               status=status["code"], body=status)
    with pytest.raises(InvalidInput) as info:
        Engine(RefusingApi(refused)).preflight(opts(**overrides), "r1", "worker-1")
    assert info.value.param == param and info.value.value == value
    assert "the API server refused a dry run: POST /api/v1/namespaces/ops/pods failed: " in info.value.msg


def test_rbac_refusing_the_dry_run_itself_is_not_blamed_on_an_option():
    """"cannot create resource" is the credentials' refusal (check mode with a plan-only account): it stays Forbidden."""
    refused = Forbidden('POST /api/v1/namespaces/ops/pods failed: 403 Forbidden: pods is forbidden: User "plan" '
                        'cannot create resource "pods" in API group "" in the namespace "ops"', status=403,
                        body={"kind": "Status", "code": 403, "message": 'pods is forbidden: User "plan" cannot '
                              'create resource "pods"'})
    with pytest.raises(Forbidden):
        Engine(RefusingApi(refused)).preflight(opts(service_account="sa"), "r1", "worker-1")


def invalid(*causes):
    """A 422 Status as the API server words it, with a cause per (field, message)."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Invalid", "code": 422,
            "message": 'Pod "x" is invalid: ' + ", ".join("%s: %s" % c for c in causes),
            "details": {"name": "x", "kind": "Pod", "causes": [
                {"reason": "FieldValueInvalid", "field": f, "message": m} for f, m in causes]}}


LABEL_WORDS = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
               "start and end with an alphanumeric character")
NAME_WORDS = "name part must consist of alphanumeric characters, '-', '_' or '.'"


def preflight_refused(status, **overrides):
    refused = ERRORS_BY_STATUS[status["code"]]("POST /api/v1/namespaces/ops/pods failed: %d %s: %s" % (
        status["code"], status["reason"], status["message"]), status=status["code"], reason=status["reason"],
        body=status)
    with pytest.raises(InvalidInput) as info:
        Engine(RefusingApi(refused)).preflight(opts(**overrides), "r1", "worker-1")
    return info.value


@pytest.mark.parametrize("status, overrides, option, value", [
    # The user's label value, key and annotation key, as the API server quotes them (its real words).
    (invalid(("metadata.labels", 'Invalid value: "bad value!": ' + LABEL_WORDS)), dict(pod_labels={"team": "bad value!"}),
     "pod_labels", {"team": "bad value!"}),
    (invalid(("metadata.labels", 'Invalid value: "a b": ' + NAME_WORDS)), dict(pod_labels={"a b": "x"}),
     "pod_labels", {"a b": "x"}),
    (invalid(("metadata.annotations", 'Invalid value: "a b": ' + NAME_WORDS)), dict(pod_annotations={"a b": "x"}),
     "pod_annotations", {"a b": "x"}),
    # The user's toleration is the pod's first; the API server names its index.
    (invalid(("spec.tolerations[0].key", 'Invalid value: "bad key!": ' + NAME_WORDS)),
     dict(tolerations=[{"key": "bad key!", "operator": "Exists"}]), "tolerations",
     [{"key": "bad key!", "operator": "Exists"}]),
    # Keys the API server quotes escaped (Go's %q), as it answered for a"b.
    (invalid(("metadata.annotations", 'Invalid value: "a\\"b": ' + NAME_WORDS)), dict(pod_annotations={'a"b': "x"}),
     "pod_annotations", {'a"b': "x"}),
    (invalid(("metadata.annotations", 'Invalid value: "a\\tb": ' + NAME_WORDS)), dict(pod_annotations={"a\tb": "x"}),
     "pod_annotations", {"a\tb": "x"}),
    # Too many bytes of annotations in all: quoted nothing, and the user's alone are too many.
    (invalid(("metadata.annotations", "Too long: may not be more than 262144 bytes")),
     dict(pod_annotations={"big": "x" * 300000}), "pod_annotations", {"big": "x" * 300000}),
    # The same options on a pod template's pods.
    (invalid(("metadata.annotations", 'Invalid value: "a b": ' + NAME_WORDS)),
     dict(pod_annotations={"a b": "x"}, preset=None, image_prune=None, pod_template=TEMPLATE),
     "pod_annotations", {"a b": "x"}),
    (invalid(("spec.tolerations[1].key", 'Invalid value: "bad key!": ' + NAME_WORDS)),
     dict(tolerations=[{"key": "bad key!", "operator": "Exists"}], preset=None, image_prune=None,
          pod_template={"spec": dict(TEMPLATE["spec"], tolerations=[{"key": "t", "operator": "Exists"}])}),
     "tolerations", [{"key": "bad key!", "operator": "Exists"}]),
])
def test_a_refused_label_annotation_or_toleration_of_the_users_is_blamed_on_its_option(
        status, overrides, option, value):
    refused = preflight_refused(status, **overrides)
    assert (refused.param, refused.value) == (option, value), refused.msg


@pytest.mark.parametrize("status, overrides", [
    # What the collection added to the same fields: its node label and annotation, its real-node toleration.
    (invalid(("metadata.labels", 'Invalid value: "worker-1": ' + LABEL_WORDS)), dict(pod_labels={"team": "ops"})),
    (invalid(("metadata.annotations", 'Invalid value: "nodeops.io/node": ' + NAME_WORDS)),
     dict(pod_annotations={"team": "ops"})),
    (invalid(("metadata.labels", "Too long: must have at most 63 bytes")), dict(pod_labels={"team": "ops"})),
    (invalid(("metadata.annotations", "Too long: may not be more than 262144 bytes")),
     dict(pod_annotations={"team": "ops"})),
    (invalid(("spec.tolerations[1].key", 'Invalid value: "nodeops.io/real-node": ' + NAME_WORDS)),
     dict(tolerations=[{"key": "k", "operator": "Exists"}])),
])
def test_a_refused_part_the_collection_added_is_not_blamed_on_the_users_option(status, overrides):
    refused = preflight_refused(status, **overrides)
    assert (refused.param, refused.value) == ("preset", "image_prune"), refused.msg


def test_a_refused_toleration_of_the_pod_templates_own_is_not_blamed_on_the_option():
    """The template's toleration comes first in its pods; index 0 is the template's, not the option's."""
    template = {"spec": dict(TEMPLATE["spec"], tolerations=[{"key": "bad key!", "operator": "Exists"}])}
    refused = preflight_refused(invalid(("spec.tolerations[0].key", 'Invalid value: "bad key!": ' + NAME_WORDS)),
                                tolerations=[{"key": "k", "operator": "Exists"}], preset=None, image_prune=None,
                                pod_template=template)
    assert refused.param == "pod_template", refused.msg


def test_every_refused_field_of_the_blamed_option_is_in_the_message_and_only_those():
    status = invalid(("spec.containers[0].resources.requests", 'Invalid value: "2": must be less than or equal to cpu '
                      'limit of 1'), ("spec.serviceAccountName", 'Invalid value: "a b": a lowercase RFC 1123 subdomain'),
                     ("spec.containers[0].resources.limits", 'Invalid value: "-1": must be greater than or equal to 0'))
    refused = preflight_refused(status, resources=RESOURCES_OPTION, service_account="a b")
    assert refused.param == "resources", refused.msg
    assert "resources.requests: Invalid value: \"2\"" in refused.msg and "resources.limits: Invalid value: \"-1\"" in refused.msg
    assert "serviceAccountName" not in refused.msg


class RefusingApi:
    """Answers every pod dry run with ``refused``."""

    core_path = staticmethod(RestClient.core_path)

    def __init__(self, refused):
        self.refused = refused

    def create(self, path, body, dry_run=False, retry_for=0, warnings=None):
        assert dry_run, "a write"
        raise self.refused
