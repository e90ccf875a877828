#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, only those that are missing,
# and says which. Everything the tests start (containerd, podman containers,
# PostgreSQL, MariaDB, Chromium, JupyterHub) is started by the tests themselves
# on private sockets/ports/dirs; nothing here starts a service.
set -euo pipefail

PACKAGES=(
  git make rsync curl ca-certificates python3-venv shellcheck
  # Molecule driver: rootful podman, and debootstrap for the local base image
  # (netavark needs iptables for container networks; --no-install-recommends would leave it out)
  podman runc crun conmon catatonit fuse-overlayfs uidmap slirp4netns netavark aardvark-dns iptables debootstrap
  # containerd for the ctr_image module tests; skopeo builds image archives
  containerd skopeo
  # throwaway database servers for the portal tests
  postgresql mariadb-server
  # headless browser tests of the portal UI
  chromium
)

missing=()
for p in "${PACKAGES[@]}"; do
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
