#!/usr/bin/env bash
# Baseline: the one-off pipeline from the Kyverno write-up in the seeds, which
# lists every Job as JSON, selects the ownerless ones with jq and deletes them
# one `kubectl delete` process at a time. Restricted here, as our sweep is, to
# finished Jobs outside the excluded namespace, so both do the same work.
# Usage: sweep_pipeline.sh EXCLUDED_NAMESPACE
set -euo pipefail
kubectl get job -o json -A \
  | jq -r --arg skip "$1" '.items[]
      | select(.metadata.ownerReferences == null)
      | select(.metadata.namespace != $skip)
      | select(any(.status.conditions[]?; (.type == "Complete" or .type == "Failed") and .status == "True"))
      | "kubectl delete job -n " + .metadata.namespace + " " + .metadata.name' \
  | xargs -I {} bash -c "{} >/dev/null"
