#!/usr/bin/env bash
# Builds the SIMULATED Grafana sign-in client (main.go: Grafana's generic OAuth client side, with
# the libraries Grafana uses) into the machine's cache $LABHUB_CACHE_DIR (default
# ${XDG_CACHE_HOME:-~/.cache}/labhub)/grafana-oauth-<hash of its sources>/; tests/unit's real-hub
# test runs it. Prints the binary's path on the last line of stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/../go-check.sh" >&2
hash=$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" | sha256sum | cut -c1-12)
cache="${LABHUB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/labhub}"
out="$cache/grafana-oauth-$hash"
mkdir -p "$cache"
exec 9>"$cache/.build-grafana-oauth.lock"
flock 9
if [ ! -x "$out/grafana-oauth" ]; then
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  (cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$out.tmp/grafana-oauth" .)
  rm -rf "$out" && mv "$out.tmp" "$out"
fi
echo "$out/grafana-oauth"
