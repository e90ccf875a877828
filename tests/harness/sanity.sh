#!/usr/bin/env bash
# ansible-test must run from .../ansible_collections/<namespace>/<name>. It copies
# the collection's tracked and untracked-but-not-ignored files (the same set
# `ansible-galaxy collection build` would ship, minus build_ignore) into a
# scratch tree and runs sanity for the venv's Python.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/labhub-sanity.XXXXXX)
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/labhub/platform"
mkdir -p "$dest"
cd "$top"
# portal/ and files/hub/ are Python projects of their own with their own linters;
# ansible-test only judges the collection content.
git ls-files -z --cached --others --exclude-standard \
  | grep -zv -E '^(portal/|files/hub/|bench/|docs/)' \
  | rsync -a --from0 --files-from=- ./ "$dest/"
cd "$dest"
git init -q . && git add -A >/dev/null
# ansible-test downloads a pip bootstrap script from a host CI cannot reach; give it
# the offline stand-in under the cache name it looks for.
pip_version=$(python - <<'PY'
import re, ansible_test._internal.python_requirements as m, inspect
print(re.search(r"pip='([0-9.]+)'", inspect.getsource(m)).group(1))
PY
)
mkdir -p ~/.ansible/test/cache
cp "$top/tests/harness/get_pip_offline.py" ~/.ansible/test/cache/get_pip_"${pip_version//./_}".py
py=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
ansible-test sanity --color no --python "$py" --requirements "$@"
