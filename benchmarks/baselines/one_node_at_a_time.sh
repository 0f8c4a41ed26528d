#!/usr/bin/env bash
# Baseline: one node at a time, the way the Helm chart in the seeds drives
# `kubectl node-shell`: for each node, start a pod pinned to it, wait for it,
# read its log, delete it and wait until it is gone, then go to the next node.
# Usage: one_node_at_a_time.sh POD_DIR NAMESPACE   (one <pod-name>.json per node)
set -euo pipefail
dir=$1 ns=$2
for f in "$dir"/*.json; do
  name=$(basename "$f" .json)
  kubectl create -f "$f" >/dev/null
  kubectl wait -n "$ns" --for=jsonpath='{.status.phase}'=Succeeded "pod/$name" --timeout=300s >/dev/null
  kubectl logs -n "$ns" "$name" --tail=20 >/dev/null
  kubectl delete -n "$ns" "pod/$name" --wait=true >/dev/null
done
