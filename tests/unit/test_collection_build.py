"""`ansible-galaxy collection build` produces a tarball that installs and documents itself.

Runs the real ansible-galaxy/ansible-doc from the controller venv: build into a temp dir,
install the tarball offline into an empty collections path (dependencies come from the
PyPI `ansible` package, as on an air-gapped controller), then read the modules' docs from
the installed copy, not from the checkout.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(args, env=None, cwd=None):
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=600, check=False)
    assert proc.returncode == 0, "%s\nstdout:\n%s\nstderr:\n%s" % (args, proc.stdout, proc.stderr)
    return proc.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    _run([str(BIN / "ansible-galaxy"), "collection", "build", "--force", "--output-path", str(out), str(REPO)])
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    tarball = out / ("labhub-platform-%s.tar.gz" % version)
    assert tarball.is_file(), sorted(os.listdir(out))
    return tarball


def test_tarball_ships_the_collection_and_nothing_local(built):
    with tarfile.open(built) as tar:
        names = set(tar.getnames())
    for required in ("MANIFEST.json", "FILES.json", "README.md", "meta/runtime.yml",
                     "plugins/modules/hardware_facts.py", "plugins/modules/ctr_image.py",
                     "plugins/module_utils/_cmd_runner.py", "roles/preflight/tasks/main.yml",
                     "playbooks/site.yml", "files/bundle-manifest.yml"):
        assert required in names, required
    local_prefixes = (".venv", ".cache", "portal/.venv", "files/hub/.venv", "files/hub/node_modules", "tests/output")
    leaked = [n for n in names if n.startswith(local_prefixes) or "/__pycache__/" in n]
    assert leaked == []


def test_tarball_installs_offline_and_documents_its_modules(built, tmp_path):
    dest = tmp_path / "collections"
    # Only the empty destination is on the collections path: the checkout's symlinked copy
    # must neither satisfy the install nor serve the documentation.
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(dest), ANSIBLE_NOCOLOR="1")
    _run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "--no-deps",
          "-p", str(dest), str(built)], env=env)
    installed = dest / "ansible_collections" / "labhub" / "platform"
    assert (installed / "MANIFEST.json").is_file()
    for module in ("hardware_facts", "ctr_image"):
        text = _run([str(BIN / "ansible-doc"), "-t", "module", "labhub.platform." + module], env=env)
        assert str(installed) in text, "documentation not read from the installed copy"
        for section in ("OPTIONS", "EXAMPLES", "RETURN VALUES"):
            assert section in text, (module, section)
