#!/usr/bin/env bash
# The bundle's OS packages for the tests: packages/debian-12.tar in a cache bundle directory
# (~/.cache/labhub/os-packages), fetched from Debian's archive by
# the real bundle_fetch (tests/harness/os_packages.yml) when missing or when the manifest's
# entry changed; the Molecule scenarios install from it with their network cut.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
dir=$HOME/.cache/labhub/os-packages
mkdir -p "$(dirname "$dir")"
start=$(date +%s)
ANSIBLE_COLLECTIONS_PATH=$top/.cache/ansible_collections ANSIBLE_STDOUT_CALLBACK=ansible.builtin.minimal \
  "$top/.venv/bin/ansible-playbook" "$top/tests/harness/os_packages.yml" \
  -e "os_packages_dir=$dir" -e '{"os_packages_releases": ["debian-12"]}' > "$dir.log" 2>&1 \
  || { cat "$dir.log"; exit 1; }
if grep -q '"action": "fetched"' "$dir.log"; then
  echo "os-packages: fetched $dir/packages/debian-12.tar in $(( $(date +%s) - start )) s"
else
  echo "os-packages: $dir/packages/debian-12.tar is current (cached)"
fi
