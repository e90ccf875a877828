#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, only those that are missing,
# and says which. Everything the tests start (containerd, podman containers,
# PostgreSQL, MariaDB, Chromium, JupyterHub, the Kubernetes control plane) is started
# by the tests themselves on private sockets/ports/dirs; nothing here starts a service.
#
# An entry `package:command` is also satisfied by `command` on PATH (e.g. NodeSource's
# nodejs package ships npm and conflicts with Debian's npm package).
# Go is not here: the suite needs Go >= 1.26, newer than Debian 12's golang-go; see
# tests/harness/go-check.sh (run first by `make host-deps`).
set -euo pipefail

PACKAGES=(
  git make rsync curl ca-certificates python3-venv shellcheck
  # runuser (the portal's PostgreSQL runs as postgres), flock (one control-plane build at a time)
  util-linux
  # the control-plane harness makes its CA, serving and client certificates with the openssl CLI;
  # the secret canaries and the simulator sign and verify with it too
  openssl
  # Molecule driver: rootful podman, and debootstrap for the local base image
  # (netavark needs iptables for container networks; --no-install-recommends would leave it out)
  podman runc crun conmon catatonit fuse-overlayfs uidmap slirp4netns netavark aardvark-dns iptables
  debootstrap debian-archive-keyring
  # containerd for the ctr_image module tests; skopeo builds image archives
  containerd skopeo
  # throwaway database servers for the portal tests
  postgresql mariadb-server
  # a real Prometheus (and promtool) the portal's GPU utilisation tests and the monitoring test start on a
  # private port; node exporter for the monitoring test (tests/kube/monitoring_live.py)
  prometheus prometheus-node-exporter
  # headless browser tests of the portal UI (Playwright drives /usr/bin/chromium)
  chromium
  # configurable-http-proxy for the real JupyterHub of files/hub and the jupyterhub role tests
  # (npm ci of files/hub/package-lock.json)
  nodejs:node npm:npm
)

missing=()
for entry in "${PACKAGES[@]}"; do
  p=${entry%%:*}
  cmd=${entry#*:}
  if [ "$cmd" != "$entry" ] && command -v "$cmd" >/dev/null 2>&1; then
    continue
  fi
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "host-packages: all ${#PACKAGES[@]} Debian packages present"
  exit 0
fi

echo "host-packages: installing missing Debian packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "host-packages: must run as root to install packages" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "host-packages: installed ${missing[*]}"
