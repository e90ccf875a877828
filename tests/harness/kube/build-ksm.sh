#!/usr/bin/env bash
# Builds kube-state-metrics from its Go module, at the version of the image role monitoring
# deploys (files/bundle-manifest.yml, used_by monitoring), into the machine's cache
# $LABHUB_CACHE_DIR (default ${XDG_CACHE_HOME:-~/.cache}/labhub)/kube/kube-state-metrics-<version>/,
# apart from the control plane's build (build.sh): its own module graph, so adding it rebuilt
# nothing there. tests/kube/test_site_example.py runs it against the real control plane for the
# real Prometheus. Prints the binary's path on the last line of stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/../go-check.sh" >&2
version=$(sed -n 's#^ *- ref: registry.k8s.io/kube-state-metrics/kube-state-metrics:\(v[0-9.]*\)$#\1#p' \
  "$here/../../../files/bundle-manifest.yml")
[ -n "$version" ] || { echo "build-ksm: no kube-state-metrics image in files/bundle-manifest.yml" >&2; exit 1; }
cache="${LABHUB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/labhub}/kube"
out="$cache/kube-state-metrics-$version"
mkdir -p "$cache"
exec 9>"$cache/.build-ksm.lock"
flock 9
if [ -x "$out/bin/kube-state-metrics" ]; then
  touch "$out"  # in use: kept by build.sh's clean-up of builds unused for two weeks
else
  start=$(date +%s)
  rm -rf "$out.tmp"
  # go install <module>@<version>: the module's own go.mod and go.sum, checked against the Go
  # checksum database like any module download
  CGO_ENABLED=0 GOBIN="$out.tmp/bin" go install -trimpath -ldflags="-s -w" "k8s.io/kube-state-metrics/v2@$version"
  rm -rf "$out" && mv "$out.tmp" "$out"
  echo "labhub: kube-state-metrics $version built in $(( $(date +%s) - start )) s ($out)" >&2
fi
echo "$out/bin/kube-state-metrics"
