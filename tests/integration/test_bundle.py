"""playbooks/bundle.yml and playbooks/verify_bundle.yml, end to end, offline.

The bundle is built through the real playbook, role and bundle_fetch module with
*local sources* replacing only the internet transports: a tiny OCI layout built
here is copied by the real skopeo into docker-archive files; a chart .tgz, a
snap + assert pair and a wheel are copied from local files (wheels through the
real `pip download --no-index --find-links`). Then the bundle is damaged in
different ways and the playbooks must notice.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))

from make_oci_image import build as build_oci  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.labhub.platform.plugins.module_utils import _os_packages  # noqa: E402

pytestmark = [pytest.mark.slow]

IMG_A = "quay.io/labhub-test/alpha:1.0"
IMG_B = "docker.io/library/bravo:2.0"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_wheel(dest: Path, name: str, version: str) -> Path:
    dist = name.replace("-", "_")
    path = dest / f"{dist}-{version}-py3-none-any.whl"
    files = {
        f"{dist}/__init__.py": b"VALUE = 1\n",
        f"{dist}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: labhub-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{n},,\n" for n in files) + f"{dist}-{version}.dist-info/RECORD,,\n"
    files[f"{dist}-{version}.dist-info/RECORD"] = record.encode()
    with zipfile.ZipFile(path, "w") as zf:
        for n, data in files.items():
            info = zipfile.ZipInfo(n, date_time=(2020, 1, 1, 0, 0, 0))
            zf.writestr(info, data)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Local sources plus a manifest that points at them."""
    if not shutil.which("skopeo"):
        pytest.skip("skopeo not installed")
    root = tmp_path_factory.mktemp("bundle")
    src = root / "sources"
    digests = build_oci(str(src / "oci"), ["alpha", "bravo"])
    chart_tgz = src / "mychart-0.1.0.tgz"
    with tarfile.open(chart_tgz, "w:gz") as tar:
        body = b"apiVersion: v2\nname: mychart\nversion: 0.1.0\n"
        info = tarfile.TarInfo("mychart/Chart.yaml")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    snaps = src / "snaps"
    snaps.mkdir()
    (snaps / "foo_7.snap").write_bytes(b"hsqs" + os.urandom(2048))
    (snaps / "foo_7.assert").write_text("type: snap-revision\nsnap-revision: 7\n")
    wheels = src / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "labhub-demo", "1.0")
    make_wheel(wheels, "labhub-extra", "2.1")
    # A release repository as another bundle holds it (packages/<release>.tar): one real .deb built
    # by dpkg-deb, in the flat repository archive bundle_fetch writes.
    pkg = src / "deb" / "labhub-demo"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text("Package: labhub-demo\nVersion: 1.0-1\nArchitecture: all\n"
                                            "Maintainer: Labhub <labhub@example.org>\nDescription: demo\n")
    deb = src / "deb" / "labhub-demo.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(pkg), str(deb)], check=True, capture_output=True)
    control = subprocess.run(["dpkg-deb", "--field", str(deb)], check=True, capture_output=True, text=True).stdout
    deb_name = _os_packages.deb_file_name("labhub-demo", "1.0-1", "all")
    repo_tar = src / "debian-12.tar"
    repo_tar.write_bytes(_os_packages.repository_tar(
        [(deb_name, deb.read_bytes(), _os_packages.index_entry(control, deb_name, deb.read_bytes()))]))
    project = root / "project"
    (project / "portal").mkdir(parents=True)
    (project / "portal" / "requirements.lock").write_text(
        "# pinned\nlabhub-demo==1.0\n    # via portal\nlabhub_extra==2.1\n")
    manifest = {
        "schema_version": 1,
        "snaps": [{"name": "foo", "channel": "latest/stable", "revision": 7, "classic": False,
                   "file": "snaps/foo_7.snap", "assert": "snaps/foo_7.assert"}],
        "charts": [{"name": "mychart", "repo": "https://charts.invalid/", "version": "0.1.0",
                    "file": "charts/mychart-0.1.0.tgz", "sha256": sha256(chart_tgz)}],
        "images": [
            {"ref": IMG_A, "file": "images/quay.io_labhub-test_alpha_1.0.tar", "used_by": ["test"]},
            {"ref": IMG_B, "digest": digests["bravo"], "file": "images/docker.io_library_bravo_2.0.tar",
             "used_by": ["test"]},
        ],
        "packages": [{"name": "debian-12", "file": "packages/debian-12.tar",
                      "keyring": "/usr/share/keyrings/debian-archive-keyring.gpg",
                      "sources": [{"uri": "http://deb.invalid/debian", "suite": "bookworm", "components": ["main"]}],
                      "packages": ["labhub-demo"]}],
        "wheels": {"name": "portal", "requirements": "portal/requirements.lock", "dir": "wheels",
                   "python_version": "3.11", "implementation": "cp", "platforms": ["manylinux2014_x86_64"]},
    }
    manifest_path = root / "manifest.yml"
    manifest_path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    sources = {
        f"image:{IMG_A}": f"oci:{src / 'oci'}:alpha",
        f"image:{IMG_B}": f"oci:{src / 'oci'}:bravo",
        "chart:mychart": str(chart_tgz),
        "snap:foo": str(snaps),
        "wheels:portal": str(wheels),
        "packages:debian-12": str(repo_tar),
    }
    return {"root": root, "manifest": manifest, "manifest_path": manifest_path, "sources": sources,
            "project": project, "digests": digests, "chart_tgz": chart_tgz, "src": src}


def run_playbook(world, playbook, bundle_dir, *extra_args, extra_vars=None, check=False):
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".cache" / "ansible_collections"))
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_STDOUT_CALLBACK"] = "default"
    env["ANSIBLE_LOCALHOST_WARNING"] = "false"
    env["ANSIBLE_INVENTORY_UNPARSED_WARNING"] = "false"
    variables = {
        "labhub_bundle_dir": str(bundle_dir),
        "labhub_bundle_manifest_file": str(world["manifest_path"]),
        "labhub_bundle_sources": world["sources"],
        "bundle_project_root": str(world["project"]),
    }
    variables.update(extra_vars or {})
    varfile = world["root"] / "extra-vars.json"
    varfile.write_text(json.dumps(variables))
    cmd = [shutil.which("ansible-playbook") or "ansible-playbook", str(REPO / "playbooks" / playbook),
           "-e", f"@{varfile}", *extra_args]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    out = proc.stdout + proc.stderr
    m = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", out)
    changed = int(m.group(2)) if m else None
    return proc.returncode, changed, out


def read_sums(bundle: Path) -> dict:
    sums = {}
    for line in (bundle / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        sums[name] = digest
    return sums


@pytest.fixture(scope="module")
def built(world):
    """A bundle built once from the local sources (the first run)."""
    bundle = world["root"] / "out"
    rc, changed, out = run_playbook(world, "bundle.yml", bundle)
    assert rc == 0, out
    return bundle, changed, out


def test_first_run_fetches_everything_and_writes_sums_and_lock(world, built):
    bundle, changed, out = built
    assert changed and changed >= 7, out
    sums = read_sums(bundle)
    expected = {"snaps/foo_7.snap", "snaps/foo_7.assert", "charts/mychart-0.1.0.tgz",
                "images/quay.io_labhub-test_alpha_1.0.tar", "images/docker.io_library_bravo_2.0.tar",
                "wheels/labhub_demo-1.0-py3-none-any.whl", "wheels/labhub_extra-2.1-py3-none-any.whl",
                "packages/debian-12.tar", "bundle.lock.json"}
    assert set(sums) == expected
    for name, digest in sums.items():
        assert sha256(bundle / name) == digest, name
    # the snap and chart are byte copies of the local sources
    assert sha256(bundle / "charts/mychart-0.1.0.tgz") == sha256(world["chart_tgz"])
    # images are real docker-archives tagged with the manifest ref
    with tarfile.open(bundle / "images/docker.io_library_bravo_2.0.tar") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == [IMG_B]
    lock = json.loads((bundle / "bundle.lock.json").read_text())
    entry = lock["artifacts"][f"image:{IMG_B}"]
    assert entry["digest"] == world["digests"]["bravo"]
    assert entry["pin"] == {"ref": IMG_B, "digest": world["digests"]["bravo"]}
    assert entry["source"] == world["sources"][f"image:{IMG_B}"]
    assert lock["artifacts"][f"image:{IMG_A}"]["digest"] == world["digests"]["alpha"]
    assert set(lock["artifacts"]["wheels:portal"]["files"]) == {
        "wheels/labhub_demo-1.0-py3-none-any.whl", "wheels/labhub_extra-2.1-py3-none-any.whl"}
    packages = lock["artifacts"]["packages:debian-12"]
    assert packages["versions"] == {"labhub-demo": "1.0-1"}
    assert packages["pin"]["packages"] == ["labhub-demo"] and packages["source"] == world["sources"]["packages:debian-12"]
    assert _os_packages.read_repository(str(bundle / "packages/debian-12.tar")) == {"labhub-demo": "1.0-1"}
    assert (bundle / "bundle-manifest.yml").read_text() == world["manifest_path"].read_text()
    assert not (bundle / ".partial").exists()
    assert "verified" in out


def test_second_run_changes_nothing(world, built):
    bundle = built[0]
    before = {p: p.stat().st_mtime_ns for p in bundle.rglob("*") if p.is_file()}
    rc, changed, out = run_playbook(world, "bundle.yml", bundle)
    assert rc == 0, out
    assert changed == 0, out
    after = {p: p.stat().st_mtime_ns for p in bundle.rglob("*") if p.is_file()}
    assert before == after


def test_check_mode_on_empty_dir_creates_nothing(world):
    bundle = world["root"] / "check-only"
    rc, changed, out = run_playbook(world, "bundle.yml", bundle, check=True)
    assert rc == 0, out
    assert changed and changed > 0
    assert not bundle.exists()


def copy_bundle(built, world, name):
    dest = world["root"] / name
    shutil.copytree(built[0], dest)
    return dest


def test_corrupt_file_is_fetched_again(world, built):
    bundle = copy_bundle(built, world, "corrupt")
    image = bundle / "images/quay.io_labhub-test_alpha_1.0.tar"
    good = sha256(image)
    with open(image, "r+b") as fh:
        fh.seek(100)
        fh.write(b"XXXXXXXX")
    assert sha256(image) != good
    rc, changed, out = run_playbook(world, "bundle.yml", bundle)
    assert rc == 0, out
    assert changed == 1, out          # only that image; lock and SHA256SUMS content unchanged
    assert sha256(image) == good
    assert re.search(r"changed: \[localhost\] => \(item=quay.io/labhub-test/alpha:1.0\)", out), out


def test_interrupted_run_resumes(world, built):
    bundle = copy_bundle(built, world, "interrupted")
    image = bundle / "images/docker.io_library_bravo_2.0.tar"
    good = sha256(image)
    # what a run killed in the middle of skopeo copy leaves behind: a partial temp file,
    # and the final file never renamed into place
    partial_dir = bundle / ".partial" / "image_docker.io_library_bravo_2.0"
    partial_dir.mkdir(parents=True)
    (partial_dir / image.name).write_bytes(image.read_bytes()[:1000])
    image.unlink()
    rc, dummy, out = run_playbook(world, "verify_bundle.yml", bundle)
    assert rc != 0
    assert re.search(r"missing\s+images/docker.io_library_bravo_2.0.tar", out), out
    assert re.search(r"unexpected\s+\.partial/image_docker.io_library_bravo_2.0/", out), out
    rc, changed, out = run_playbook(world, "bundle.yml", bundle)
    assert rc == 0, out
    assert changed == 1, out          # only the image; the module discards the partial file itself
    assert sha256(image) == good
    assert not (bundle / ".partial").exists()
    rc, dummy, out = run_playbook(world, "verify_bundle.yml", bundle)
    assert rc == 0, out


def test_damaged_lock_is_reported_then_rebuilt(world, built):
    bundle = copy_bundle(built, world, "bad-lock")
    (bundle / "bundle.lock.json").write_text("{truncated")
    rc, dummy, out = run_playbook(world, "verify_bundle.yml", bundle)
    assert rc != 0
    assert re.search(r"corrupt\s+bundle.lock.json\s+-\s+.*not valid JSON", out), out
    rc, changed, out = run_playbook(world, "bundle.yml", bundle)
    assert rc == 0, out
    assert changed == 5, out      # the snap, chart, image, packages and wheel tasks: everything re-fetched
    lock = json.loads((bundle / "bundle.lock.json").read_text())
    assert set(lock["artifacts"]) == {"snap:foo", "chart:mychart", f"image:{IMG_A}", f"image:{IMG_B}",
                                      "packages:debian-12", "wheels:portal"}
    assert read_sums(bundle) == read_sums(built[0])


def build_with_changed_manifest(world, name, change, kind):
    """bundle.yml for one kind with a changed copy of the world's manifest: (bundle, rc, output)."""
    manifest = json.loads(json.dumps(world["manifest"]))
    change(manifest)
    path = world["root"] / f"{name}.yml"
    path.write_text(yaml.safe_dump(manifest))
    bundle = world["root"] / name
    rc, dummy, out = run_playbook(
        world, "bundle.yml", bundle,
        extra_vars={"labhub_bundle_manifest_file": str(path), "labhub_bundle_kinds": [kind]})
    return bundle, rc, out


def test_digest_mismatch_fails_and_leaves_no_file(world):
    def wrong_digest(manifest):
        manifest["images"][1]["digest"] = world["digests"]["alpha"]   # wrong on purpose
    bundle, rc, out = build_with_changed_manifest(world, "bad-digest", wrong_digest, "image")
    assert rc != 0
    assert "Failed to fetch image 'image:docker.io/library/bravo:2.0' due to:" in out
    assert "the manifest pins " + world["digests"]["alpha"] in out
    assert not (bundle / "images/docker.io_library_bravo_2.0.tar").exists()
    assert not (bundle / ".partial").exists()


def test_packages_source_lacking_a_package_fails_and_leaves_no_file(world):
    bundle, rc, out = build_with_changed_manifest(
        world, "bad-packages", lambda manifest: manifest["packages"][0]["packages"].append("postgresql"), "packages")
    assert rc != 0
    assert "Failed to fetch packages 'packages:debian-12' due to: source %s lacks postgresql" % (
        world["sources"]["packages:debian-12"]) in out
    assert not (bundle / "packages/debian-12.tar").exists()
    assert not (bundle / ".partial").exists()


def test_verify_good_bundle_passes(world, built):
    rc, changed, out = run_playbook(world, "verify_bundle.yml", built[0])
    assert rc == 0, out
    assert changed == 0
    assert "verified: 9 files match" in out


@pytest.mark.parametrize("damage, problem, path", [
    ("missing", "missing", "charts/mychart-0.1.0.tgz"),
    ("corrupt", "corrupt", "snaps/foo_7.assert"),
    ("unexpected", "unexpected", "images/stray.tar"),
    ("wheel", "missing", "wheels/labhub_extra-2.1-py3-none-any.whl"),
])
def test_verify_reports_problem_and_fails(world, built, damage, problem, path):
    bundle = copy_bundle(built, world, "verify-" + damage)
    if damage == "missing":
        (bundle / path).unlink()
    elif damage == "corrupt":
        (bundle / path).write_text("tampered\n")
    elif damage == "unexpected":
        (bundle / path).write_bytes(b"not in the manifest")
    elif damage == "wheel":
        (bundle / "wheels/labhub_extra-2.1-py3-none-any.whl").unlink()
    rc, dummy, out = run_playbook(world, "verify_bundle.yml", bundle)
    assert rc != 0, out
    assert re.search(r"PROBLEM\s+FILE\s+ARTIFACT\s+REASON", out), out
    assert re.search(r"%s\s+%s" % (problem, re.escape(path)), out), out
    assert "failed verification" in out


def test_second_run_in_check_mode_reports_nothing_to_do(world, built):
    rc, changed, out = run_playbook(world, "bundle.yml", built[0], check=True)
    assert rc == 0, out
    assert changed == 0, out


def test_real_manifest_check_mode(world):
    """The collection's own manifest goes through the module's validation (no network in check mode)."""
    bundle = world["root"] / "real-check"
    rc, changed, out = run_playbook(
        world, "bundle.yml", bundle, check=True,
        extra_vars={"labhub_bundle_manifest_file": str(REPO / "files" / "bundle-manifest.yml"),
                    "labhub_bundle_sources": {}, "bundle_project_root": str(REPO),
                    "labhub_bundle_kinds": ["snap", "chart", "image"]
                    + (["wheels"] if (REPO / "portal" / "requirements.lock").is_file() else [])})
    assert rc == 0, out
    manifest = yaml.safe_load((REPO / "files" / "bundle-manifest.yml").read_text())
    would_fetch = re.findall(r"changed: \[localhost\] => \(item=([^)]+)\)", out)
    assert len(would_fetch) == len(manifest["images"]) + len(manifest["snaps"]) + len(manifest["charts"]), out
    assert "quay.io/jupyterhub/k8s-hub:4.4.0" in would_fetch
    assert not bundle.exists()


# --------------------------------------------------------------------------- remote transports
# No snapd, Helm repository or registry is reachable here. These tests run the *online* code path
# (no source override) against clearly labelled simulators: fake `snap` and `helm` executables that
# record their argv and write what the real tools write, and a `skopeo` wrapper that records argv
# and hands the call to the real skopeo with the docker:// source mapped to the local OCI layout.

FAKE_SNAP = r"""#!/usr/bin/env python3
# SIMULATOR of `snap download` (no snapd here): records argv, writes <basename>.snap/.assert.
import json, os, sys
with open(os.environ["SIM_LOG"], "a") as fh:
    fh.write(json.dumps(["snap"] + sys.argv[1:]) + "\n")
assert sys.argv[1] == "download", sys.argv
opts = dict(a.split("=", 1) for a in sys.argv[2:] if a.startswith("--"))
base = os.path.join(opts["--target-directory"], opts["--basename"])
open(base + ".snap", "wb").write(b"hsqs simulated snap " + opts["--revision"].encode())
open(base + ".assert", "w").write("type: snap-revision\n")
"""

FAKE_HELM = r"""#!/usr/bin/env python3
# SIMULATOR of `helm pull` (no chart repository here): records argv, writes <name>-<version>.tgz.
import io, json, os, sys, tarfile
with open(os.environ["SIM_LOG"], "a") as fh:
    fh.write(json.dumps(["helm"] + sys.argv[1:]) + "\n")
args = sys.argv[1:]
assert args[0] == "pull", args
name = args[-1]
opts = dict(zip(args[1:-1:2], args[2:-1:2]))
body = ("name: %s\nversion: %s\n" % (name, opts["--version"])).encode()
with tarfile.open(os.path.join(opts["--destination"], "%s-%s.tgz" % (name, opts["--version"])), "w:gz") as tar:
    info = tarfile.TarInfo(name + "/Chart.yaml"); info.size = len(body)
    tar.addfile(info, io.BytesIO(body))
"""

SKOPEO_WRAPPER = r"""#!/usr/bin/env python3
# SIMULATED REGISTRY: records argv, maps docker://<name>@<digest> or docker://<ref> to the local
# OCI layout (SIM_OCI_MAP, JSON), then runs the real skopeo.
import json, os, sys
with open(os.environ["SIM_LOG"], "a") as fh:
    fh.write(json.dumps(["skopeo"] + sys.argv[1:]) + "\n")
mapping = json.loads(os.environ["SIM_OCI_MAP"])
args = [mapping.get(a, a) for a in sys.argv[1:]]
os.execv(os.environ["SIM_SKOPEO"], ["skopeo"] + args)
"""


def test_online_transports_against_simulators(world, tmp_path):
    tools = tmp_path / "bin"
    tools.mkdir()
    for name, body in (("snap", FAKE_SNAP), ("helm", FAKE_HELM), ("skopeo", SKOPEO_WRAPPER)):
        (tools / name).write_text(body)
        (tools / name).chmod(0o755)
    log = tmp_path / "argv.log"
    oci = world["src"] / "oci"
    digest_b = world["digests"]["bravo"]
    os.environ["SIM_LOG"] = str(log)
    os.environ["SIM_SKOPEO"] = shutil.which("skopeo")
    os.environ["SIM_OCI_MAP"] = json.dumps({
        f"docker://{IMG_A}": f"oci:{oci}:alpha",
        f"docker://docker.io/library/bravo@{digest_b}": f"oci:{oci}:bravo",
    })
    try:
        bundle = tmp_path / "online"
        rc, changed, out = run_playbook(
            world, "bundle.yml", bundle,
            extra_vars={"labhub_bundle_sources": {"wheels:portal": world["sources"]["wheels:portal"]},
                        "bundle_snap_path": str(tools / "snap"), "bundle_helm_path": str(tools / "helm"),
                        "bundle_skopeo_path": str(tools / "skopeo"),
                        "labhub_bundle_kinds": ["snap", "image", "wheels"]})
        assert rc == 0, out
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        assert ["snap", "download", "--revision=7", f"--target-directory={bundle}/.partial/snap_foo",
                "--basename=foo_7", "foo"] in calls
        inspect_a = ["skopeo", "--override-arch", "amd64", "--override-os", "linux", "inspect", "--format",
                     "{{.Digest}}", f"docker://{IMG_A}"]
        assert inspect_a in calls
        copy_b = [c for c in calls if c[:1] == ["skopeo"] and "copy" in c and IMG_B in c[-1]]
        assert copy_b and copy_b[0][-2] == f"docker://docker.io/library/bravo@{digest_b}"   # pulled by digest
        assert copy_b[0][-1] == (f"docker-archive:{bundle}/.partial/image_docker.io_library_bravo_2.0/"
                                 f"docker.io_library_bravo_2.0.tar:{IMG_B}")
        lock = json.loads((bundle / "bundle.lock.json").read_text())
        assert lock["artifacts"]["snap:foo"]["source"] == "snap store foo revision 7"
        assert lock["artifacts"][f"image:{IMG_B}"]["source"] == f"docker://docker.io/library/bravo@{digest_b}"
        assert (bundle / "snaps/foo_7.snap").read_bytes() == b"hsqs simulated snap 7"

        # helm pull: its own run so the chart's pinned sha256 (of the local test chart) is not in the way
        manifest = json.loads(json.dumps(world["manifest"]))
        del manifest["charts"][0]["sha256"]
        path = tmp_path / "nosha.yml"
        path.write_text(yaml.safe_dump(manifest))
        rc, changed, out = run_playbook(
            world, "bundle.yml", tmp_path / "online-chart",
            extra_vars={"labhub_bundle_manifest_file": str(path), "labhub_bundle_sources": {},
                        "bundle_helm_path": str(tools / "helm"), "labhub_bundle_kinds": ["chart"]})
        assert rc == 0, out
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        assert ["helm", "pull", "--repo", "https://charts.invalid/", "--version", "0.1.0",
                "--destination", f"{tmp_path}/online-chart/.partial/chart_mychart", "mychart"] in calls
        assert (tmp_path / "online-chart/charts/mychart-0.1.0.tgz").is_file()
    finally:
        for key in ("SIM_LOG", "SIM_SKOPEO", "SIM_OCI_MAP"):
            os.environ.pop(key, None)


# An in-tree PEP 517 backend (build requires nothing, so pip's isolated build stays offline):
# enough to build the wheel of a small project the way `pip wheel` builds the portal's.
_LOCAL_BACKEND = '''
import os, zipfile

NAME, VERSION = open(os.path.join(os.path.dirname(__file__), "NAME-VERSION")).read().split()


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    dist = NAME.replace("-", "_")
    filename = "%s-%s-py3-none-any.whl" % (dist, VERSION)
    info = "%s-%s.dist-info" % (dist, VERSION)
    files = {
        dist + "/__init__.py": "VALUE = 1\\n",
        info + "/METADATA": "Metadata-Version: 2.1\\nName: %s\\nVersion: %s\\n" % (NAME, VERSION),
        info + "/WHEEL": "Wheel-Version: 1.0\\nGenerator: labhub-test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    files[info + "/RECORD"] = "".join("%s,,\\n" % n for n in files) + info + "/RECORD,,\\n"
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return filename
'''


def make_local_project(path: Path, name: str, version: str) -> None:
    path.mkdir(parents=True)
    (path / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\n')
    (path / "backend.py").write_text(_LOCAL_BACKEND)
    (path / "NAME-VERSION").write_text(f"{name} {version}\n")


def test_wheels_include_the_repositorys_own_projects(world, tmp_path):
    """The portal's own wheel is in no index: bundle.yml builds it from the checkout
    (`pip wheel --no-deps`), verify_bundle.yml expects it, and a version that differs from
    the manifest's pin fails the fetch, naming both."""
    project_root = tmp_path / "project"
    shutil.copytree(world["project"], project_root)
    make_local_project(project_root / "tool", "labhub-tool", "3.2")
    manifest = {"schema_version": 1, "snaps": [], "charts": [], "images": [],
                "wheels": dict(world["manifest"]["wheels"],
                               projects=[{"path": "tool", "name": "labhub-tool", "version": "3.2"}])}
    manifest_path = tmp_path / "manifest.yml"
    manifest_path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    here = dict(world, root=tmp_path, project=project_root, manifest_path=manifest_path)
    only_wheels = {"labhub_bundle_kinds": ["wheels"]}

    bundle = tmp_path / "out"
    rc, changed, out = run_playbook(here, "bundle.yml", bundle, extra_vars=only_wheels)
    assert rc == 0, out
    assert (bundle / "wheels" / "labhub_tool-3.2-py3-none-any.whl").is_file()
    assert "wheels/labhub_tool-3.2-py3-none-any.whl" in read_sums(bundle)
    rc, _changed, out = run_playbook(here, "verify_bundle.yml", bundle, extra_vars=only_wheels)
    assert rc == 0, out
    rc, changed, out = run_playbook(here, "bundle.yml", bundle, extra_vars=only_wheels)
    assert rc == 0 and changed == 0, out

    (bundle / "wheels" / "labhub_tool-3.2-py3-none-any.whl").unlink()
    rc, _changed, out = run_playbook(here, "verify_bundle.yml", bundle, extra_vars=only_wheels)
    assert rc != 0 and "missing  wheels/labhub_tool-3.2-py3-none-any.whl" in out, out

    manifest["wheels"]["projects"][0]["version"] = "9.9"
    manifest_path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    rc, _changed, out = run_playbook(here, "bundle.yml", tmp_path / "out2", extra_vars=only_wheels)
    assert rc != 0, out
    assert "labhub-tool==9.9" in out and "labhub_tool-3.2-py3-none-any.whl" in out, out
