#!/usr/bin/env bash
# The first thing `make test` runs (make host-deps): the suite builds its Kubernetes control plane
# from Go modules (tests/harness/kube/build.sh), so a machine without Go, or with a Go older than
# the one build.sh requires, stops here in the first seconds with the reason, instead of after
# the Debian packages and venvs. The required version is read from build.sh (one place).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
need_go=$(sed -n 's/^need_go=//p' "$here/kube/build.sh")
if [ -z "$need_go" ]; then
  echo "labhub: cannot read the required Go version (need_go=) from $here/kube/build.sh" >&2
  exit 2
fi
if ! command -v go >/dev/null 2>&1; then
  echo "labhub: Go $need_go or newer is required to build the test control plane (tests/harness/kube), and 'go' is not on PATH. Install Go (https://go.dev/doc/install), put it on PATH and run again. Debian 12's golang-go package is too old." >&2
  exit 2
fi
have=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$need_go" "$have" | sort -V | head -1)" != "$need_go" ]; then
  echo "labhub: Go $need_go or newer is required to build the test control plane; this machine has go$have ($(command -v go)). Install a newer Go and run again." >&2
  exit 2
fi
echo "go-check: go$have ($(command -v go)), module proxy $(go env GOPROXY)"
