# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One exception class per kind of failure.

Every error carries ``msg`` and the extra result fields a module should return
with it (for example the per-node results gathered before a timeout). Modules
turn them into ``fail_json`` in exactly one place: ``_ansible/edge.run_module``.

This file imports nothing from Ansible: the in-cluster runner uses it too.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class NodeopsError(Exception):
    """Base class. ``result`` holds extra fields for the module result."""

    def __init__(self, msg, **result):
        super(NodeopsError, self).__init__(msg)
        self.msg = msg
        self.result = result


class InvalidInput(NodeopsError):
    """A parameter is wrong. Raised before anything is written to the cluster."""

    def __init__(self, param, value, accepted, why=None):
        text = "%s=%r is invalid" % (param, value)
        if why:
            text += ": %s" % why
        text += "; expected %s" % accepted
        super(InvalidInput, self).__init__(text, invalid_parameter=param)
        self.param = param
        self.value = value
        self.accepted = accepted


class PodSecurityRefused(InvalidInput):
    """The namespace's Pod Security level refuses the pods (a server-side dry run said so).

    ``result`` also carries ``pod_security``: the namespace, the level it enforces, the level the pods
    need and the ``kubectl label`` command that would admit them.
    """

    def __init__(self, param, value, accepted, why=None, **result):
        super(PodSecurityRefused, self).__init__(param, value, accepted, why=why)
        self.result.update(result)


class CriticalPodRefused(InvalidInput):
    """The API server refused a dry run of the critical pod a node under DiskPressure gets (a ResourceQuota, or its
    admission configuration's limitedResources, limits the priority class)."""


class NamespaceMissing(InvalidInput):
    """The namespace does not exist: a dry run into it answered 404, so nothing could be checked there."""


class MissingDependency(NodeopsError):
    """A Python package the module needs is not installed where it runs."""


class PolicyEngineUnavailable(NodeopsError):
    """The cluster serves no API for the admission policy engine asked for (or, with auto, for any)."""


class TamperedCode(NodeopsError):
    """Code we would run (a run's node script, a runner's code) is not what this collection wrote."""


class ForeignObject(NodeopsError):
    """An object we would write or delete exists and was not created by this collection."""


class ConnectionConfigError(NodeopsError):
    """The connection settings do not describe a reachable, authenticated cluster."""


class ApiError(NodeopsError):
    """The API server answered with an error status."""

    def __init__(self, msg, status=None, reason=None, body=None, **result):
        super(ApiError, self).__init__(msg, **result)
        self.status = status
        self.reason = reason
        self.body = body

    @property
    def retryable(self):
        # 429 is throttling; 500, 502, 503, 504 and "no answer" (status None) are usually a
        # restarting or overloaded apiserver. Everything else is permanent.
        return self.status is None or self.status in (429, 500, 502, 503, 504)


class ApiUnavailable(ApiError):
    """The API server could not be reached or the connection broke."""


Unavailable = ApiUnavailable


class Unauthorized(ApiError):
    """401: the credentials were refused (after one refresh)."""


class Forbidden(ApiError):
    """403: authenticated, but RBAC (or admission) does not allow it."""


class NotFound(ApiError):
    """404."""


class Conflict(ApiError):
    """409: it exists already, or it changed since it was read."""


class WatchExpired(ApiError):
    """410 Gone: the resourceVersion a watch or list continued from is too old."""


Gone = WatchExpired


class Invalid(ApiError):
    """422 (or 400): the apiserver refused the object itself."""


class TooManyRequests(ApiError):
    """429: throttled. ``retry_after`` is the server's Retry-After, in seconds, if it sent one."""

    def __init__(self, msg, retry_after=None, **kwargs):
        super(TooManyRequests, self).__init__(msg, **kwargs)
        self.retry_after = retry_after


ERRORS_BY_STATUS = {400: Invalid, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
                    410: WatchExpired, 422: Invalid, 429: TooManyRequests}


class RunTimeout(NodeopsError):
    """The whole run passed its ``timeout``. ``result`` carries what was observed."""


class RunAborted(NodeopsError):
    """The run stopped before its end (an API error it could not get past, an interrupt).

    Its pods were deleted and its record finished; ``result`` carries every node's outcome
    observed so far, and ``cause`` the exception that stopped it.
    """

    def __init__(self, msg, cause=None, **result):
        super(RunAborted, self).__init__(msg, **result)
        self.cause = cause


class RunHeld(NodeopsError):
    """Another process drives this run (it holds the run record's lease), or finished it meanwhile.

    Raised before this process writes anything of the run; ``result`` may carry the ``holder``. A run
    that loses its lease mid-way raises it too, with the results it had, having deleted nothing."""


class WindowClosed(NodeopsError):
    """The maintenance window closed before every node was started (with fail_on_window_closed)."""


class HealthGateStopped(NodeopsError):
    """The health gate stopped the run starting pods (too many NotReady nodes, or a node that went NotReady
    after its pod finished): the nodes not started are ``not_started`` with the reason HealthGate."""


class NodeFailures(NodeopsError):
    """The run finished, and the failure policy says the failed nodes fail it."""
