#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver, kube-controller-manager, kube-scheduler, etcd,
# KWOK, Helm 3, kubectl) from the Go modules pinned in go.mod/go.sum into the machine's cache,
# $LABHUB_CACHE_DIR (default ${XDG_CACHE_HOME:-~/.cache}/labhub)/kube/<digest>/bin, outside the
# checkout so that a fresh clone on a warm machine (as CI makes) builds nothing either. Prints the
# directory on the last line of stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# The Go check itself is tests/harness/go-check.sh (also the first step of `make test`); it reads
# need_go from this file (so it is not used below).
# shellcheck disable=SC2034
need_go=1.26
"$here/../go-check.sh" >&2
digest=$(cat "$here/go.sum" "$here/go.mod" "$here/build.sh" "$here"/etcd/*.go | sha256sum | cut -c1-16)
cache="${LABHUB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/labhub}/kube"
out="$cache/$digest"
# One build at a time (several test sessions and checkouts share the cache): a second caller waits
# here and then finds the cache the first one built, instead of racing on $out.tmp.
mkdir -p "$cache"
exec 9>"$cache/.build.lock"
flock 9
if [ -x "$out/bin/kube-apiserver" ] && [ -f "$out/kwok.yaml" ]; then
  touch "$out"  # in use: kept by the clean-up below
  echo "labhub: test control plane binaries cached ($out)" >&2
  echo "$out"
  exit 0
fi
start=$(date +%s)
mkdir -p "$out.tmp/bin"
cd "$here"
export CGO_ENABLED=0 GOFLAGS=-mod=readonly
# Version stamps, as the upstream release builds set them (kubernetes hack/lib/version.sh, helm's
# Makefile): without them the API server reports v0.0.0-master+$Format:%H$ and Helm refuses every
# chart with a kubeVersion constraint (the GPU and Network Operator charts have one).
kube_version=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
helm_version=$(go list -m -f '{{.Version}}' helm.sh/helm/v3)
kube_minor=$(echo "$kube_version" | cut -d. -f2)
ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$kube_minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
ldflags+=" -X helm.sh/helm/v3/internal/version.version=$helm_version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kube_minor"
ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$kube_minor"
go build -trimpath -ldflags="$ldflags" -o "$out.tmp/bin/" \
  ./etcd \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl \
  sigs.k8s.io/kwok/cmd/kwok \
  helm.sh/helm/v3/cmd/helm
# KWOK's own stages (node initialise + lease heartbeat, pod ready/complete/delete), taken from the
# pinned module at build time: the "fast" set kwokctl uses.
kwok_dir=$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
{
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"
    cat "$kwok_dir/kustomize/stage/$f"
  done
} > "$out.tmp/kwok.yaml"
rm -rf "$out"
mv "$out.tmp" "$out"
# Builds no checkout used for two weeks are dropped (other checkouts may pin another go.sum).
find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$digest" -mtime +14 -exec rm -rf {} +
echo "labhub: built the test control plane in $(( $(date +%s) - start )) s into $out" >&2
echo "$out"
