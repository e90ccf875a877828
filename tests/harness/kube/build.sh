#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver, kube-controller-manager, kube-scheduler, etcd,
# KWOK, Helm 3, kubectl) from the Go modules pinned in go.mod/go.sum into
# .cache/kube/<go.sum digest>/bin. A warm run (same go.sum) builds nothing. Prints the directory
# on the last line of stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
need_go=1.26
if ! command -v go >/dev/null 2>&1; then
  echo "labhub: Go $need_go or newer is required to build the test control plane (tests/harness/kube), and 'go' is not on PATH. Install Go (https://go.dev/doc/install) and run again." >&2
  exit 2
fi
have=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$need_go" "$have" | sort -V | head -1)" != "$need_go" ]; then
  echo "labhub: Go $need_go or newer is required to build the test control plane; this machine has go$have. Install a newer Go and run again." >&2
  exit 2
fi
digest=$(cat "$here/go.sum" "$here/go.mod" "$here/build.sh" "$here"/etcd/*.go | sha256sum | cut -c1-16)
out="$root/.cache/kube/$digest"
if [ -x "$out/bin/kube-apiserver" ] && [ -f "$out/kwok.yaml" ]; then
  echo "labhub: test control plane binaries cached ($out)" >&2
  echo "$out"
  exit 0
fi
start=$(date +%s)
mkdir -p "$out.tmp/bin"
cd "$here"
export CGO_ENABLED=0 GOFLAGS=-mod=readonly
go build -trimpath -ldflags="-s -w" -o "$out.tmp/bin/" \
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
# Older builds are dropped: one cache per go.sum.
find "$root/.cache/kube" -mindepth 1 -maxdepth 1 -type d ! -name "$digest" -exec rm -rf {} +
echo "labhub: built the test control plane in $(( $(date +%s) - start )) s into $out" >&2
echo "$out"
