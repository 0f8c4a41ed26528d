# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pod Security: which level a pod needs, and what the API server's refusals and warnings say. Pure.

The apiserver's PodSecurity admission enforces a namespace's level (label
``pod-security.kubernetes.io/enforce``, or the cluster default) on Pods only: a CronJob
whose pods it would refuse is accepted, and fails at its first run. So the pods are
dry-run first, and a refusal is turned into one message that says what the namespace
enforces, what the pods need and the label that would admit them (``refusal_why``).

``required_level`` follows the Pod Security Standards (kubernetes.io/docs/concepts/security/
pod-security-standards) closely enough to name the level; the apiserver stays the judge, so
a level this file misjudges costs a less precise message, never a wrong verdict.

The standard library only: the in-cluster runner imports the engine, which imports this.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

LEVELS = ("privileged", "baseline", "restricted")   # from the most to the least permissive
ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"

_BASELINE_CAPABILITIES = frozenset([
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"])
_SAFE_SYSCTLS = frozenset([
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes"])
_SELINUX_TYPES = frozenset(["", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"])
_RESTRICTED_VOLUMES = frozenset(["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                                 "persistentVolumeClaim", "projected", "secret"])
_APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
# `violates PodSecurity "baseline:latest": host namespaces (hostPID=true), ...`
_REFUSAL = re.compile(r'violates PodSecurity "([a-z]+)(?::([^"]*))?"')
# One warning of a Warning header (RFC 7234 5.5): code, agent, quoted text, optional date.
_WARNING = re.compile(r'\s*(\d{3})\s+(\S+)\s+"((?:[^"\\]|\\.)*)"(?:\s+"[^"]*")?\s*(?:,|$)')


def _containers(pod_spec):
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from pod_spec.get(key) or []


def _contexts(pod_spec):
    """The pod's security context, then each container's (empty dicts where none is set)."""
    yield "pod", pod_spec.get("securityContext") or {}
    for container in _containers(pod_spec):
        yield "container %s" % container.get("name"), container.get("securityContext") or {}


def _baseline_context(where, ctx):
    """What in one security context (the pod's or a container's) the baseline level refuses."""
    found = []
    if (ctx.get("windowsOptions") or {}).get("hostProcess"):
        found.append("%s: windowsOptions.hostProcess" % where)
    if ctx.get("privileged"):
        found.append("%s: privileged" % where)
    added = set((ctx.get("capabilities") or {}).get("add") or []) - _BASELINE_CAPABILITIES
    if added:
        found.append("%s: capabilities.add %s" % (where, ",".join(sorted(added))))
    if (ctx.get("appArmorProfile") or {}).get("type") == "Unconfined":
        found.append("%s: appArmorProfile Unconfined" % where)
    selinux = ctx.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in _SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
        found.append("%s: seLinuxOptions" % where)
    if ctx.get("procMount") not in (None, "Default"):
        found.append("%s: procMount %s" % (where, ctx.get("procMount")))
    if (ctx.get("seccompProfile") or {}).get("type") == "Unconfined":
        found.append("%s: seccompProfile Unconfined" % where)
    return found


def baseline_violations(pod_spec, annotations=None):
    """What in a PodSpec (and its pod's annotations) the baseline level refuses; [] if nothing."""
    found = ["%s=true" % key for key in ("hostNetwork", "hostPID", "hostIPC") if pod_spec.get(key)]
    for where, ctx in _contexts(pod_spec):
        found.extend(_baseline_context(where, ctx))
    found.extend("hostPath volume %s" % v.get("name") for v in pod_spec.get("volumes") or [] if "hostPath" in v)
    found.extend("container %s: hostPort %s" % (c.get("name"), p["hostPort"]) for c in _containers(pod_spec)
                 for p in c.get("ports") or [] if p.get("hostPort"))
    sysctls = [s.get("name") for s in (pod_spec.get("securityContext") or {}).get("sysctls") or []]
    found.extend("sysctl %s" % name for name in sysctls if name not in _SAFE_SYSCTLS)
    found.extend("AppArmor %s" % value for key, value in sorted((annotations or {}).items())
                 if key.startswith(_APPARMOR_ANNOTATION) and value != "runtime/default"
                 and not value.startswith("localhost/"))
    return found


def _restricted_container(container, pod_ctx):
    """What in one container the restricted level refuses (beyond what baseline refuses)."""
    where = "container %s" % container.get("name")
    ctx = container.get("securityContext") or {}
    found = []
    if ctx.get("allowPrivilegeEscalation") is not False:
        found.append("%s: allowPrivilegeEscalation not false" % where)
    if not ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")):
        found.append("%s: runAsNonRoot not true" % where)
    if ctx.get("runAsUser") == 0:
        found.append("%s: runAsUser=0" % where)
    seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        found.append("%s: seccompProfile not RuntimeDefault or Localhost" % where)
    capabilities = ctx.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        found.append("%s: capabilities.drop lacks ALL" % where)
    if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
        found.append("%s: capabilities.add beyond NET_BIND_SERVICE" % where)
    return found


def restricted_violations(pod_spec):
    """What in a PodSpec the restricted level refuses beyond baseline; [] if nothing."""
    pod_ctx = pod_spec.get("securityContext") or {}
    found = ["volume %s" % v.get("name") for v in pod_spec.get("volumes") or []
             if not set(v) - {"name"} <= _RESTRICTED_VOLUMES]
    if pod_ctx.get("runAsUser") == 0:
        found.append("pod: runAsUser=0")
    for container in _containers(pod_spec):
        found.extend(_restricted_container(container, pod_ctx))
    return found


def required_level(pod_spec, annotations=None):
    """The least permissive level that admits a pod: privileged, baseline or restricted."""
    if baseline_violations(pod_spec, annotations):
        return "privileged"
    if restricted_violations(pod_spec):
        return "baseline"
    return "restricted"


def violations(pod_spec, annotations, level):
    """What in a pod the given level refuses; [] if it admits the pod."""
    if level == "baseline":
        return baseline_violations(pod_spec, annotations)
    if level == "restricted":
        return baseline_violations(pod_spec, annotations) + restricted_violations(pod_spec)
    return []


def refused_level(message):
    """The level a "violates PodSecurity" refusal names, e.g. "baseline"; None for any other message."""
    found = _REFUSAL.search(message or "")
    return found.group(1) if found and found.group(1) in LEVELS else None


def is_refusal(status, message):
    """Whether an API error (status, message) is PodSecurity admission refusing a pod."""
    return status == 403 and refused_level(message) is not None


def enforced_label(namespace):
    """The level a Namespace object's enforce label sets, or None when it has none."""
    return ((namespace.get("metadata") or {}).get("labels") or {}).get(ENFORCE_LABEL)


def label_command(namespace, level):
    return "kubectl label --overwrite namespace %s %s=%s" % (namespace, ENFORCE_LABEL, level)


def needed_level(pod_spec, annotations, refused_at):
    """The level the pod needs. A level the apiserver refused cannot be enough, whatever
    ``required_level`` says: then the next more permissive one."""
    computed = required_level(pod_spec, annotations)
    if refused_at in LEVELS and LEVELS.index(computed) >= LEVELS.index(refused_at):
        return LEVELS[max(0, LEVELS.index(refused_at) - 1)]
    return computed


def level_source(label, read_error=None):
    """Where a namespace's enforced level comes from, for a message: its enforce label (``label``), the
    cluster default (no label), or only the API server's word when the Namespace could not be read."""
    if read_error:
        return "as the API server said; the Namespace could not be read: %s" % read_error
    if label is None:
        return "the cluster default: the namespace has no %s label" % ENFORCE_LABEL
    return "its label %s=%s" % (ENFORCE_LABEL, label)


def refusal_why(namespace, refused_at, source, what, needed, reasons, detail):
    """One sentence on a Pod Security refusal: the namespace's level and where it comes from
    (``level_source``), what the pods need and why, and the API server's own words."""
    return ('namespace "%s" enforces Pod Security level "%s" (%s), and %s need level "%s"%s. '
            "The API server refused a dry run, nothing was written: %s"
            % (namespace, refused_at, source, what, needed,
               " (%s)" % ", ".join(reasons[:6]) if reasons else "", detail))


def warning_texts(header_values):
    """The texts of HTTP Warning headers (``299 - "text"``, several per header possible), in order,
    each once. A value that does not parse is kept as it is rather than lost."""
    out = []
    for value in header_values or []:
        pos, texts = 0, []
        while pos < len(value):
            found = _WARNING.match(value, pos)
            if not found:
                texts = [value.strip()]
                break
            texts.append(re.sub(r"\\(.)", r"\1", found.group(3)))
            pos = found.end()
        for text in texts:
            if text and text not in out:
                out.append(text)
    return out
