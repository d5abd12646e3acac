#!/usr/bin/env bash
# Deletes the kind cluster made by ci/create-cluster.sh; does nothing if there is none.
#
#   MESHCERT_CLUSTER  cluster name (default meshcert)
set -euo pipefail

cluster="${MESHCERT_CLUSTER:-meshcert}"

die() {
  echo "delete-cluster: $*" >&2
  exit 1
}

missing=()
for tool in docker kind; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ "${#missing[@]}" -eq 0 ] || die "missing on PATH: ${missing[*]}"
# Without the daemon kind cannot list clusters, and "nothing to delete" would be a guess.
docker info >/dev/null 2>&1 || die "docker does not answer, so kind cluster $cluster cannot be looked up or deleted"

if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  kind delete cluster --name "$cluster"
else
  echo "delete-cluster: no kind cluster named $cluster; nothing to delete"
fi
