#!/usr/bin/env bash
# Applies ci/rbac.yaml and writes a kubeconfig that acts as the meshcert ServiceAccount with a
# short-lived token, so a run against the cluster proves the RBAC is enough (CI uses it).
#
#   ci/sa-kubeconfig.sh OUTPUT_FILE
#
#   KUBE_CONTEXT             admin context to apply RBAC with (default kind-${MESHCERT_CLUSTER:-meshcert})
#   MESHCERT_TOKEN_DURATION  token lifetime (default 2h)
#   MESHCERT_NODE_LABELLER=1 also bind meshcert-node-labeller (ci/rbac-node-labeller.yaml)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
context="${KUBE_CONTEXT:-kind-${MESHCERT_CLUSTER:-meshcert}}"
duration="${MESHCERT_TOKEN_DURATION:-2h}"

die() {
  echo "sa-kubeconfig: $*" >&2
  exit 1
}

[ "$#" -eq 1 ] || die "usage: ci/sa-kubeconfig.sh OUTPUT_FILE"
out="$1"
command -v kubectl >/dev/null 2>&1 || die "missing on PATH: kubectl"
kubectl config get-contexts "$context" >/dev/null 2>&1 ||
  die "no kube context $context in ${KUBECONFIG:-$HOME/.kube/config} (set KUBE_CONTEXT)"

kc() { kubectl --context "$context" "$@"; }

kc apply -f "$here/rbac.yaml" >/dev/null || die "could not apply ci/rbac.yaml in $context (is Istio installed, so istio-system exists?)"
if [ "${MESHCERT_NODE_LABELLER:-0}" = 1 ]; then
  kc apply -f "$here/rbac-node-labeller.yaml" >/dev/null || die "could not apply ci/rbac-node-labeller.yaml in $context"
fi

token="$(kc -n meshcert-system create token meshcert --duration "$duration")" ||
  die "could not get a token for meshcert-system/meshcert in $context"
server="$(kc config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')"
ca="$(kc config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
if [ -z "$server" ] || [ -z "$ca" ]; then
  die "context $context has no server or embedded CA certificate to copy"
fi

# The file holds a bearer token: readable by this user only.
umask 077
cat >"$out" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: meshcert
    cluster:
      server: $server
      certificate-authority-data: $ca
users:
  - name: meshcert
    user:
      token: $token
contexts:
  - name: meshcert
    context:
      cluster: meshcert
      user: meshcert
current-context: meshcert
EOF

# Spot checks that the file works and the grant is what ci/rbac.yaml says, not more; a file
# that fails them is removed rather than left for someone to use.
sa() { kubectl --kubeconfig "$out" auth can-i "$@" >/dev/null 2>&1; }
reject() {
  rm -f "$out"
  die "$*"
}
sa create namespaces || reject "the ServiceAccount cannot create namespaces; ci/rbac.yaml did not take effect"
sa get daemonsets -n istio-system || reject "the ServiceAccount cannot read DaemonSets in istio-system; ci/rbac.yaml did not take effect"
if sa get secrets --all-namespaces; then
  reject "the ServiceAccount can read secrets: something besides ci/rbac.yaml grants meshcert-system/meshcert more than it needs"
fi
echo "sa-kubeconfig: wrote $out (ServiceAccount meshcert-system/meshcert, token valid $duration)"
