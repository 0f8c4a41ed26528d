# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The task, node selection and policy options shared by broadcast_job and
    # cron_broadcast (module_utils/broadcast_spec.py BROADCAST_OPTIONS).
    DOCUMENTATION = r"""
options:
  preset:
    description:
      - A ready-made task. Give either this or I(pod_template).
      - C(image_prune) removes images no container on the node uses, through the host's C(crictl).
        The pod runs privileged with the host PID namespace (C(nsenter) into PID 1's mount namespace).
      - C(path_cleanup) removes old or matching files under one host directory, which is the only thing it mounts.
      - C(host_command) runs a command in the host's namespaces (privileged, host PID).
    type: str
    choices: [ image_prune, path_cleanup, host_command ]
  image_prune:
    description:
      - Options of the C(image_prune) preset. The sandbox (pause) image, pinned images and
        every image a container uses (in any state) are always kept.
    type: dict
    suboptions:
      include:
        description:
          - Only images with a tag or digest matching one of these shell patterns are pruned.
        type: list
        elements: str
        default: []
      exclude:
        description:
          - Images with a tag or digest matching one of these shell patterns are kept.
        type: list
        elements: str
        default: []
      dry_run:
        description:
          - List what would be removed and remove nothing.
        type: bool
        default: false
  path_cleanup:
    description:
      - Options of the C(path_cleanup) preset.
      - Refused before anything is written for relative paths, paths with C(..), and protected
        system paths, what is inside them and what contains them (C(/), C(/etc), C(/usr), C(/boot),
        C(/proc), C(/sys), C(/dev), C(/var/lib/kubelet), C(/var/lib/containerd), C(/var/lib/etcd), ...).
      - Symbolic links are removed, never followed; other filesystems mounted below the path are not entered.
    type: dict
    suboptions:
      path:
        description:
          - Absolute host directory to clean.
        type: str
        required: true
      older_than_days:
        description:
          - Remove files last modified more than this many days ago.
        type: int
      patterns:
        description:
          - Remove only files whose name or relative path matches one of these shell patterns.
          - With I(older_than_days), files must match both. At least one of the two is required.
        type: list
        elements: str
        default: []
      dry_run:
        description:
          - List what would be removed and remove nothing. The directory is then mounted read-only.
        type: bool
        default: false
  host_command:
    description:
      - Options of the C(host_command) preset.
    type: dict
    suboptions:
      command:
        description:
          - The command as an argv list. A single shell string is accepted only with I(shell=true).
        type: raw
        required: true
      shell:
        description:
          - Run I(command), a string, with C(/bin/sh -c) on the host.
        type: bool
        default: false
  image:
    description:
      - Image for the preset pods. A stock image with C(python3) and C(nsenter); point it at a mirror
        for air-gapped clusters.
    type: str
    default: python:3.13-slim
  pod_template:
    description:
      - A raw pod template (C(metadata) and C(spec)) for full control, instead of a preset.
      - The module adds the node pinning, its labels, tolerations and C(restartPolicy).
    type: dict
  node_selector:
    description:
      - Only nodes with all these labels.
    type: dict
    default: {}
  node_label_selector:
    description:
      - Only nodes matching this label selector, in kubectl's syntax, for example C(zone in (a,b),!gpu).
    type: str
  nodes:
    description:
      - Only these nodes. Names that do not exist are reported as skipped.
    type: list
    elements: str
  tolerations:
    description:
      - Tolerations for the pods; nodes with a NoSchedule or NoExecute taint none of them tolerates are skipped.
    type: list
    elements: dict
    default: []
  tolerate_all_taints:
    description:
      - Tolerate every taint.
    type: bool
    default: false
  include_control_plane:
    description:
      - Also run on control-plane nodes, tolerating their taint.
    type: bool
    default: false
  include_not_ready:
    description:
      - Also run on nodes that are not Ready.
    type: bool
    default: false
  include_cordoned:
    description:
      - Also run on cordoned (unschedulable) nodes.
    type: bool
    default: false
  pin:
    description:
      - How each pod is tied to its node. C(affinity) uses a required node affinity on the node's name, so the
        scheduler still checks that the pod fits. C(node_name) sets C(spec.nodeName) and bypasses the scheduler.
    type: str
    default: affinity
    choices: [ affinity, node_name ]
  parallelism:
    description:
      - At most this many pods at once, as a number (C(10)) or a percentage of the eligible nodes (C(25%)).
      - Pods are created in slow-start batches of 1, 2, 4, ... up to this limit.
    type: raw
    default: 10
  failure_policy:
    description:
      - C(continue) runs every node, then fails if any node failed (see I(fail_on_node_failure)).
      - C(fail_fast) stops creating pods at the first failure, deletes the active ones and fails.
    type: str
    default: continue
    choices: [ continue, fail_fast ]
  fail_on_node_failure:
    description:
      - With C(failure_policy=continue), whether failed nodes fail the task.
    type: bool
    default: true
  restart_policy:
    description:
      - Pod restart policy.
    type: str
    default: Never
    choices: [ Never, OnFailure ]
  restart_limit:
    description:
      - With C(restart_policy=OnFailure), a pod restarted more often than this fails its node.
    type: int
    default: 3
  timeout:
    description:
      - Seconds the whole run may take. Nodes not finished by then are C(timed_out) and their pods deleted.
    type: int
    default: 600
  pending_timeout:
    description:
      - Seconds a pod may stay Pending. Then its node is C(unschedulable), with the scheduler's reason
        (or C(failed) with the container's waiting reason, when the pod was scheduled).
      - A pod the kubelet says can never start fails its node at once, without waiting for this timeout, with
        C(ImagePullBackOff), C(InvalidImageName), C(ErrImageNeverPull), C(CreateContainerConfigError),
        C(CreateContainerError), C(RunContainerError), and C(HostPathMissing) for a C(path_cleanup)
        path that does not exist on the node (from the kubelet's Warning event; this needs C(list) and
        C(watch) on events, and without them the node waits for this timeout).
    type: int
    default: 120
  cleanup:
    description:
      - Which pods to delete at the end, after their logs are read. C(on_success) keeps failed pods for debugging.
      - Kept pods stay owned by the run's record ConfigMap C(nodeops-run-<name>-<run_id>).
      - When no pod is kept, the run record is deleted and the garbage collector deletes the finished pods it owns,
        moments after the task returns; pods that never finished are deleted by the module itself.
    type: str
    default: on_success
    choices: [ on_success, always, never ]
  log_tail_lines:
    description:
      - Lines of each pod's log to return. C(0) reads no logs.
    type: int
    default: 20
  log_max_bytes:
    description:
      - At most this many bytes of each pod's log.
    type: int
    default: 8192
  pod_labels:
    description:
      - Extra labels for the pods.
    type: dict
    default: {}
  pod_annotations:
    description:
      - Extra annotations for the pods.
    type: dict
    default: {}
  resources:
    description:
      - Container resources (C(requests), C(limits)) for preset pods.
    type: dict
  priority_class_name:
    description:
      - PriorityClass of the pods.
    type: str
  service_account:
    description:
      - ServiceAccount of the pods. Preset pods mount no token.
    type: str
"""
