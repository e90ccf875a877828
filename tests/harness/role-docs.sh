#!/usr/bin/env bash
# Role READMEs: the block between <!-- BEGIN_ANSIBLE_DOCS --> and <!-- END_ANSIBLE_DOCS --> of
# every roles/<role>/README.md is generated from the role's meta/argument_specs.yml by aar-doc
# (PyPI, pinned in tests/constraints.txt); everything outside the markers is written by hand.
#   tests/harness/role-docs.sh           regenerate every role README's block (make docs)
#   tests/harness/role-docs.sh --check   fail naming each README that is out of date (make lint)
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
mode=${1:-write}
work=$(mktemp -d /tmp/labhub-role-docs.XXXXXX)
trap 'rm -rf "$work"' EXIT
stale=()
for dir in "$top"/roles/*/; do
  role=$(basename "$dir")
  [ -f "$dir/meta/argument_specs.yml" ] || continue
  if ! grep -q '<!-- BEGIN_ANSIBLE_DOCS -->' "$dir/README.md"; then
    echo "role-docs: roles/$role/README.md has no <!-- BEGIN_ANSIBLE_DOCS --> block" >&2
    stale+=("roles/$role/README.md (no generated block)")
    continue
  fi
  # aar-doc names the role after its directory: generate in a copy named like the role.
  mkdir -p "$work/$role"
  cp -r "$dir/meta" "$dir/README.md" "$work/$role/"
  aar-doc "$work/$role" markdown >/dev/null
  if [ "$mode" = "--check" ]; then
    if ! diff -u "$dir/README.md" "$work/$role/README.md" > "$work/$role.diff"; then
      stale+=("roles/$role/README.md")
      head -40 "$work/$role.diff" >&2
    fi
  else
    cp "$work/$role/README.md" "$dir/README.md"
  fi
done
if [ ${#stale[@]} -gt 0 ]; then
  echo "role-docs: out of date (run 'make docs'): ${stale[*]}" >&2
  exit 1
fi
[ "$mode" = "--check" ] && echo "role-docs: every role README matches its meta/argument_specs.yml"
exit 0
