#!/usr/bin/env bash
# Builds the Molecule base image locally (no registry is reachable): a Debian 12
# minbase rootfs with python3 and systemd, made by debootstrap from the Debian
# mirror this host already uses, imported into rootful podman.
#
# The image is tagged with a hash of this recipe, so it is cached between runs
# and rebuilt whenever the recipe changes. `localhost/labhub-debian12:latest`
# always points at the current recipe's image; molecule.yml files use that name.
set -euo pipefail

NAME=localhost/labhub-debian12
SUITE=bookworm
INCLUDE=python3,python3-apt,systemd,systemd-sysv,dbus,sudo,procps,iproute2,ca-certificates

recipe_hash=$( (cat "$0"; echo "$SUITE $INCLUDE") | sha256sum | cut -c1-12)
tag="$NAME:$recipe_hash"

if podman image exists "$tag"; then
  podman tag "$tag" "$NAME:latest"
  echo "base-image: $tag is current (cached)"
  exit 0
fi

mirror=${LABHUB_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -hoE '^(URIs:|deb) *(\[[^]]*\] *)?https?://[^ ]+' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | grep -v security | head -n1 | grep -oE 'https?://[^ ]+' || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

rootfs=$(mktemp -d /var/tmp/labhub-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "base-image: building $tag with debootstrap from $mirror (about a minute)"
debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
  tail -n 30 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"
# A container needs no getty, and systemd should not wait for udev.
rm -f "$rootfs"/etc/systemd/system/getty.target.wants/* || true
echo "labhub-molecule" >"$rootfs/etc/hostname"
apt_clean="$rootfs/var/cache/apt/archives"
find "$apt_clean" -name '*.deb' -delete || true
tar -C "$rootfs" -c . | podman import --change 'CMD ["/sbin/init"]' - "$tag" >/dev/null
podman tag "$tag" "$NAME:latest"
echo "base-image: built $tag"
