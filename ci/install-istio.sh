#!/usr/bin/env bash
# Installs Istio ambient at a pinned version into one kube context and waits until istiod, the
# istio-cni node agent and ztunnel are rolled out. Labels nothing: the harness puts its own
# namespaces in the mesh.
#
#   ISTIO_VERSION         Istio release (default below)
#   KUBE_CONTEXT          context to install into (default kind-${MESHCERT_CLUSTER:-meshcert})
#   ISTIO_READY_TIMEOUT   bound on each rollout wait (default 300s)
#   ISTIOCTL_SHA256       expected archive checksum, instead of the one published beside it
#   MESHCERT_CACHE        where istioctl is kept (default ${XDG_CACHE_HOME:-~/.cache}/meshcert)
#   MESHCERT_ALLOW_NON_KIND=1  install into a context that is not a kind cluster
set -euo pipefail

# 1.30.5: latest patch of a supported Istio minor found in istio.io's release notes; Istio 1.30
# supports Kubernetes 1.32-1.36, so it covers ci/kind.yaml's 1.34.
ISTIO_VERSION="${ISTIO_VERSION:-1.30.5}"
context="${KUBE_CONTEXT:-kind-${MESHCERT_CLUSTER:-meshcert}}"
timeout="${ISTIO_READY_TIMEOUT:-300s}"
cache="${MESHCERT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshcert}/istio-${ISTIO_VERSION}"

die() {
  echo "install-istio: $*" >&2
  exit 1
}

missing=()
for tool in curl tar kubectl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if command -v sha256sum >/dev/null 2>&1; then
  sha256() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
  sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
  missing+=(sha256sum)
fi
[ "${#missing[@]}" -eq 0 ] || die "missing on PATH: ${missing[*]}"

[[ "$ISTIO_VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "ISTIO_VERSION=$ISTIO_VERSION is not a release version like 1.30.5"
kubectl config get-contexts "$context" >/dev/null 2>&1 ||
  die "no kube context $context in ${KUBECONFIG:-$HOME/.kube/config} (make the cluster with ci/create-cluster.sh, or set KUBE_CONTEXT)"
# Istio is cluster-wide; a typo in KUBE_CONTEXT must not install it into someone's real cluster.
if [[ "$context" != kind-* && "${MESHCERT_ALLOW_NON_KIND:-0}" != 1 ]]; then
  die "refusing to install Istio into $context: not a kind cluster (set MESHCERT_ALLOW_NON_KIND=1 to install there anyway)"
fi

# Release asset names: istioctl-<version>-<platform>.tar.gz, with .sha256 beside each.
case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) platform=linux-amd64 ;;
  Linux/aarch64 | Linux/arm64) platform=linux-arm64 ;;
  Darwin/x86_64) platform=osx ;;
  Darwin/arm64) platform=osx-arm64 ;;
  *) die "Istio publishes no istioctl for $(uname -s)/$(uname -m)" ;;
esac

istioctl="$cache/istioctl"
if [ ! -x "$istioctl" ]; then
  archive="istioctl-${ISTIO_VERSION}-${platform}.tar.gz"
  url="https://github.com/istio/istio/releases/download/${ISTIO_VERSION}/${archive}"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "install-istio: downloading $url"
  curl -fsSL --retry 3 -o "$tmp/$archive" "$url" || die "could not download $url"
  if [ -n "${ISTIOCTL_SHA256:-}" ]; then
    expected="$ISTIOCTL_SHA256"
  else
    expected="$(curl -fsSL --retry 3 "$url.sha256" | cut -d' ' -f1)" ||
      die "could not download the published checksum $url.sha256 (set ISTIOCTL_SHA256 to give one)"
  fi
  actual="$(sha256 "$tmp/$archive")"
  [ "$actual" = "$expected" ] || die "checksum mismatch for $archive: expected $expected, got $actual"
  tar -xzf "$tmp/$archive" -C "$tmp" istioctl
  mkdir -p "$cache"
  # Moved into place only once verified, so a cached istioctl is always a checked one.
  mv "$tmp/istioctl" "$istioctl"
  chmod 0755 "$istioctl"
fi
"$istioctl" version --remote=false 2>/dev/null | grep -qF "$ISTIO_VERSION" ||
  die "$istioctl does not report version $ISTIO_VERSION (remove $cache and run again)"

kc() { kubectl --context "$context" "$@"; }

# Reinstalling the same version changes nothing but costs a minute; skip it on a reused cluster.
istiod_image="$(kc -n istio-system get deployment istiod -o jsonpath='{.spec.template.spec.containers[0].image}' 2>/dev/null || true)"
if [[ "$istiod_image" == *":${ISTIO_VERSION}"* ]] && kc -n istio-system get daemonset ztunnel >/dev/null 2>&1; then
  echo "install-istio: Istio $ISTIO_VERSION ambient already installed in $context"
else
  echo "install-istio: installing Istio $ISTIO_VERSION, profile ambient, into $context"
  "$istioctl" install --context "$context" --set profile=ambient --skip-confirmation
fi

wait_rollout() {
  kc -n istio-system rollout status "$1" --timeout="$timeout" >/dev/null ||
    die "$1 in istio-system not rolled out after $timeout (kubectl --context $context -n istio-system describe $1)"
}
wait_rollout deployment/istiod
wait_rollout daemonset/istio-cni-node
wait_rollout daemonset/ztunnel

ztunnel_image="$(kc -n istio-system get daemonset ztunnel -o jsonpath='{.spec.template.spec.containers[*].image}')"
echo "install-istio: Istio $ISTIO_VERSION ambient ready in $context; ztunnel image: $ztunnel_image"
