# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every preset shares, and what a preset is. Standard library only: presets run in the node pods too.

A preset is one module of this package, listed in ``REGISTRY`` (``registry.py``). What it declares is
the protocol ``Preset`` below (``NodePreset`` when its pod runs the node script); a module satisfies it by
its module-level names, and a unit test checks every registered preset against it, names and signatures
(tests/unit/plugins/module_utils/_presets/test_preset_contract.py).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import typing

HOST_PRIVILEGED = {"privileged": True}
CLUSTER_IMAGES = "cluster_images"
CLUSTER_IMAGES_FILE = "cluster-images.json"   # in the node script's directory (_node/)
# 64 bits of SHA-256 per image: a false match would only keep an image, never remove one.
IMAGE_KEY_CHARS = 16


def normalize_ref(ref):
    """An image reference as the runtime lists it: ``nginx`` is ``docker.io/library/nginx:latest``. Pure."""
    name, digest = (ref.split("@", 1) + [None])[:2]
    first = name.split("/", 1)[0]
    if "/" not in name or not ("." in first or ":" in first or first == "localhost"):
        name = "docker.io/" + (name if "/" in name else "library/" + name)
    if not digest and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name + ("@" + digest if digest else "")


def image_key(ref):
    """A short, fixed-size key of an image reference (normalised first), for the cluster_images input: at
    20,000 images, refs themselves could outgrow the 1 MiB of the ConfigMap that carries them. Pure."""
    return hashlib.sha256(normalize_ref(ref).encode("utf-8")).hexdigest()[:IMAGE_KEY_CHARS]


def compact_images(refs):
    """The cluster_images input as it is shipped: {"keys": [image_key(ref), ...]}, sorted. Pure."""
    return {"keys": sorted(set(image_key(r) for r in refs))}


@typing.runtime_checkable
class Preset(typing.Protocol):
    """What a preset module declares (its module-level names). The engine and the module read these."""

    # The preset's name: its ``preset`` choice, the module option that holds its options, its file name.
    NAME: str
    # One sentence for the ``preset`` option's documentation, starting with ``C(<NAME>) ``.
    SUMMARY: str
    # The argument spec of its options dict (Ansible's suboptions), checked before ``pod`` is called.
    OPTIONS: dict
    # That option's documentation as YAML (description, type, suboptions); tools/presets_doc.py copies it.
    DOCUMENTATION: str

    def pod(self, opts: dict) -> dict:
        """From its options (as the argument spec validated them), the part of the pod it needs: a
        ``pod_part``. Raises ``OptionError`` for options the argument spec cannot judge. Pure."""


@typing.runtime_checkable
class NodePreset(Preset, typing.Protocol):
    """A preset whose pod runs the node script (``pod_part(params=...)``), which calls its ``on_node``."""

    def on_node(self, params: dict) -> dict:
        """Runs in the node pod (the standard library and ``_node.main``'s helpers only) with the
        ``params`` its ``pod`` (or one of its ``init`` stages) gave. Returns the node's result: a dict
        with ``errors`` (a list; not empty fails the node), ``bytes_freed`` (but an ``init`` stage's) and
        whatever else the preset reports. Raises ``_node.main.HostProblem`` when the host lacks what it
        needs."""


class OptionError(ValueError):
    """A preset option is wrong: the broadcast options turn it into InvalidInput (before any write)."""

    def __init__(self, param, value, accepted, why=None):
        super(OptionError, self).__init__("%s=%r: %s" % (param, value, why or accepted))
        self.param = param
        self.value = value
        self.accepted = accepted
        self.why = why


def pod_part(container_name, params=None, command=None, host_pid=False, security=None, volumes=None,
             mounts=None, inputs=(), init=(), disk_relief=False):
    """The part of the pod a preset decides.

    ``params`` (JSON-able) makes the node pod run ``on_node(params)``; ``command`` instead runs that
    argv in the preset's container. ``volumes`` and ``mounts`` are the host paths it needs. ``inputs``
    names what the engine gathers from the cluster for the node side, at the start of each run:
    ``cluster_images`` puts every image the cluster's workloads refer to in ``CLUSTER_IMAGES_FILE``,
    next to the node script. ``init`` are node-script stages that run first, each in its own init container
    of the same image: ``{"name", "params", "security", "mounts"}`` (a stage that needs a wider view of the
    host than the preset's own container, and so gets fewer rights). ``disk_relief``: the preset frees disk
    space, so its pods run on nodes under DiskPressure too, as critical pods (``_broadcast/pressure.py``).
    """
    container = {"name": container_name}
    if command is not None:
        container["command"] = list(command)
    if security:
        container["securityContext"] = dict(security)
    if mounts:
        container["volumeMounts"] = list(mounts)
    return {"container": container, "params": params, "host_pid": bool(host_pid), "volumes": list(volumes or []),
            "inputs": sorted(inputs), "init": [dict(stage) for stage in init], "disk_relief": bool(disk_relief)}
