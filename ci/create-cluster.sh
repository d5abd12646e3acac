#!/usr/bin/env bash
# Makes the kind cluster of ci/kind.yaml (or reuses one of the same name), waits for its nodes,
# then installs Istio ambient into it with ci/install-istio.sh.
#
#   MESHCERT_CLUSTER        cluster name (default meshcert; kube context kind-<name>)
#   MESHCERT_NODES_TIMEOUT  how long nodes may take to become Ready (default 300s)
#   ISTIO_VERSION           passed on to ci/install-istio.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cluster="${MESHCERT_CLUSTER:-meshcert}"
context="kind-${cluster}"
nodes_timeout="${MESHCERT_NODES_TIMEOUT:-300s}"
# ci/kind.yaml has four workers, each with a zone label.
labelled_workers=4

die() {
  echo "create-cluster: $*" >&2
  exit 1
}

missing=()
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ "${#missing[@]}" -eq 0 ] || die "missing on PATH: ${missing[*]} (ci/README.md says where to get them)"
docker info >/dev/null 2>&1 || die "docker is installed but its daemon does not answer (is it running, and may $(id -un) use it?)"

if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  echo "create-cluster: reusing kind cluster $cluster"
  # The kubeconfig may have lost the context since the cluster was made; kind rewrites it.
  kind export kubeconfig --name "$cluster" >/dev/null
else
  # --wait covers the control plane; the workers are awaited below, for both paths.
  kind create cluster --name "$cluster" --config "$here/kind.yaml" --wait "$nodes_timeout"
fi

kubectl --context "$context" wait --for=condition=Ready node --all --timeout="$nodes_timeout" >/dev/null ||
  die "nodes of $cluster not Ready after $nodes_timeout (kubectl --context $context describe nodes)"

# A reused cluster must be the one ci/kind.yaml describes, or the locality scenarios would
# run against nodes without localities.
zoned="$(kubectl --context "$context" get nodes -l topology.kubernetes.io/zone -o name | wc -l)"
[ "$zoned" -eq "$labelled_workers" ] ||
  die "cluster $cluster has $zoned nodes with a zone label, ci/kind.yaml makes $labelled_workers; delete it with ci/delete-cluster.sh and run this again"

echo "create-cluster: $cluster ready ($(kubectl --context "$context" get nodes -o name | wc -l) nodes, context $context)"
KUBE_CONTEXT="$context" "$here/install-istio.sh"
