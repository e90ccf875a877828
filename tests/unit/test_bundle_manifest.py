"""files/bundle-manifest.yml: complete for z2jh 4.4.0, pinned, unambiguous.

Also the bundle data model (plugins/module_utils/_bundle.py) on synthetic
bundle directories: what verify reports as missing, corrupt and unexpected.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.labhub.platform.plugins.module_utils import _bundle as b

REPO = Path(__file__).resolve().parents[2]
MANIFEST = yaml.safe_load((REPO / "files" / "bundle-manifest.yml").read_text())
Z2JH_VERSION = "4.4.0"


def z2jh_default_images(values):
    """Every {name, tag} image mapping anywhere in the chart's values, as full refs."""
    found = []

    def walk(node, path):
        if isinstance(node, dict):
            if isinstance(node.get("name"), str) and "tag" in node and path.endswith("image"):
                tag = str(node["tag"])
                if tag == "set-by-chartpress":
                    tag = Z2JH_VERSION
                found.append((path, node["name"], tag))
            for key, value in node.items():
                walk(value, "%s.%s" % (path, key) if path else key)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, "%s[%d]" % (path, i))

    walk(values, "")
    return found


def test_schema_version_and_sections():
    assert MANIFEST["schema_version"] == 1
    assert {"snaps", "charts", "images", "packages", "wheels"} <= set(MANIFEST)


def test_every_z2jh_default_image_is_in_the_manifest(shared_reference):
    values = yaml.safe_load((shared_reference / "z2jh-4.4.0" / "values.yaml").read_text())
    defaults = z2jh_default_images(values)
    # the walk must find the images we know are there, or it proves nothing
    paths = {entry[0] for entry in defaults}
    assert {"hub.image", "proxy.chp.image", "proxy.traefik.image", "singleuser.image",
            "scheduling.userScheduler.image", "prePuller.pause.image"} <= paths
    assert len(defaults) >= 9
    refs = {img["ref"] for img in MANIFEST["images"]}
    missing = []
    for path, name, tag in defaults:
        ref = "%s:%s" % (b.normalize_image_name(name), tag)
        if ref not in refs:
            missing.append("%s -> %s" % (path, ref))
    assert not missing, "z2jh defaults missing from files/bundle-manifest.yml: %s" % missing


def test_z2jh_images_are_tagged_for_z2jh():
    z2jh = [i for i in MANIFEST["images"] if "z2jh" in i["used_by"]]
    assert any(i["ref"] == "quay.io/jupyterhub/k8s-hub:%s" % Z2JH_VERSION for i in z2jh)


def test_all_files_unique_and_clean():
    files = []
    for kind, spec in b.manifest_artifacts(MANIFEST):
        files.extend(b.artifact_files(kind, spec))   # raises on unclean paths
    dupes = sorted({f for f in files if files.count(f) > 1})
    assert not dupes
    assert all(f.startswith(("snaps/", "charts/", "images/", "packages/")) for f in files)


def test_artifact_ids_unique():
    ids = [b.artifact_id(kind, spec) for kind, spec in b.manifest_artifacts(MANIFEST)]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("image", MANIFEST["images"], ids=lambda i: i["ref"])
def test_image_pinned_and_named(image):
    name, tag = b.split_image_ref(image["ref"])
    assert tag, "%s has no tag" % image["ref"]
    assert tag != "latest"
    assert b.normalize_image_name(name) == name, "%s must be fully qualified" % image["ref"]
    assert image["file"] == "images/%s.tar" % image["ref"].replace("/", "_").replace(":", "_")
    assert image["used_by"] and isinstance(image["used_by"], list)
    if image.get("digest"):
        assert re.match(r"^sha256:[0-9a-f]{64}$", image["digest"])


def test_snaps_pinned():
    names = {s["name"] for s in MANIFEST["snaps"]}
    # MicroK8s 1.36 is built on core22 (snap/snapcraft.yaml at the v1.36 tag)
    assert {"microk8s", "core22"} <= names
    for snap in MANIFEST["snaps"]:
        assert isinstance(snap["revision"], int) and snap["revision"] > 0
        assert snap["channel"]
        assert isinstance(snap["classic"], bool)
        assert snap["file"] == "snaps/%s_%d.snap" % (snap["name"], snap["revision"])
        assert snap["assert"] == "snaps/%s_%d.assert" % (snap["name"], snap["revision"])
    assert next(s for s in MANIFEST["snaps"] if s["name"] == "microk8s")["classic"] is True
    assert next(s for s in MANIFEST["snaps"] if s["name"] == "microk8s")["channel"] == "1.36/stable"


def test_charts_pinned():
    charts = {c["name"]: c for c in MANIFEST["charts"]}
    assert charts["jupyterhub"]["version"] == Z2JH_VERSION
    assert charts["jupyterhub"]["repo"] == "https://hub.jupyter.org/helm-chart/"
    for name in ("gpu-operator", "network-operator"):
        assert charts[name]["repo"] == "https://helm.ngc.nvidia.com/nvidia"
    for chart in charts.values():
        assert chart["file"] == "charts/%s-%s.tgz" % (chart["name"], chart["version"])


def test_operator_images_match_chart_versions():
    charts = {c["name"]: str(c["version"]).lstrip("v") for c in MANIFEST["charts"]}
    refs = {i["ref"] for i in MANIFEST["images"]}
    assert "nvcr.io/nvidia/gpu-operator:v%s" % charts["gpu-operator"] in refs
    assert "nvcr.io/nvidia/cloud-native/network-operator:v%s" % charts["network-operator"] in refs
    for used_by in ("microk8s", "gpu-operator", "network-operator"):
        assert any(used_by in i["used_by"] for i in MANIFEST["images"])


def test_wheels_section():
    wheels = MANIFEST["wheels"]
    assert wheels["requirements"] == "portal/requirements.lock"
    assert wheels["platforms"] and wheels["python_version"]


def test_wheels_projects_pin_the_portal_the_role_installs():
    """The portal role installs labhub-portal==<its version> from <bundle>/wheels/portal: the
    bundle must build exactly that wheel there."""
    import re
    projects = {p["path"]: p for p in MANIFEST["wheels"]["projects"]}
    pyproject = (REPO / "portal" / "pyproject.toml").read_text()
    project = pyproject.split("[project]", 1)[1]
    name = re.search(r'^name\s*=\s*"([^"]+)"', project, re.M).group(1)
    version = re.search(r'^version\s*=\s*"([^"]+)"', project, re.M).group(1)
    assert (projects["portal"]["name"], str(projects["portal"]["version"])) == (name, version)
    role_defaults = (REPO / "roles" / "portal" / "defaults" / "main.yml").read_text()
    assert "/" + MANIFEST["wheels"]["dir"] + "'" in role_defaults


# ----------------------------------------------------------------------------- the data model

def test_split_and_normalize_refs():
    assert b.split_image_ref("localhost:5000/a/b:1") == ("localhost:5000/a/b", "1")
    assert b.split_image_ref("localhost:5000/a/b") == ("localhost:5000/a/b", None)
    with pytest.raises(b.BundleError):
        b.split_image_ref("quay.io/a/b:1@sha256:" + "0" * 64)
    assert b.normalize_image_name("traefik") == "docker.io/library/traefik"
    assert b.normalize_image_name("calico/node") == "docker.io/calico/node"
    assert b.normalize_image_name("quay.io/a/b") == "quay.io/a/b"


def test_requirements_and_wheel_names(tmp_path):
    req = tmp_path / "req.lock"
    req.write_text("Foo_Bar==1.2  \\\n    --hash=sha256:abc\n# comment\nbaz[extra]==3.0 ; python_version>'3'\n")
    assert b.parse_requirements(str(req)) == [("foo-bar", "1.2"), ("baz", "3.0")]
    req.write_text("unpinned>=1\n")
    with pytest.raises(b.BundleError):
        b.parse_requirements(str(req))
    assert b.wheel_name_version("Foo_Bar-1.2-py3-none-any.whl") == ("foo-bar", "1.2")
    assert b.wheel_name_version("foo.tar.gz") is None


def test_unclean_paths_refused():
    for bad in ("/abs/x", "../x", "images/../../x", "SHA256SUMS", ".partial/x"):
        with pytest.raises(b.BundleError):
            b.safe_relpath(bad)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def bundle(tmp_path):
    """A small, correct bundle written by hand (files, lock, SHA256SUMS)."""
    root = tmp_path / "bundle"
    manifest = {
        "schema_version": 1,
        "snaps": [{"name": "s", "revision": 3, "channel": "c", "classic": False,
                   "file": "snaps/s_3.snap", "assert": "snaps/s_3.assert"}],
        "images": [{"ref": "quay.io/x/y:1", "file": "images/y.tar", "used_by": ["t"]}],
        "wheels": {"name": "portal", "requirements": "req.lock", "dir": "wheels",
                   "python_version": "3.11", "platforms": ["any"]},
    }
    content = {"snaps/s_3.snap": b"snap", "snaps/s_3.assert": b"assert",
               "images/y.tar": b"image", "wheels/w-1.0-py3-none-any.whl": b"wheel"}
    for rel, data in content.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    lock = {"schema_version": 1, "artifacts": {
        "snap:s": {"pin": b.artifact_pin("snap", manifest["snaps"][0]),
                   "files": {k: _sha(v) for k, v in content.items() if k.startswith("snaps/")}},
        "image:quay.io/x/y:1": {"pin": b.artifact_pin("image", manifest["images"][0]),
                                "files": {"images/y.tar": _sha(b"image")}},
        "wheels:portal": {"pin": {}, "files": {"wheels/w-1.0-py3-none-any.whl": _sha(b"wheel")}},
    }}
    (root / "bundle.lock.json").write_bytes(b.lock_bytes(lock))
    (root / "SHA256SUMS").write_text(b.sums_text(lock, _sha((root / "bundle.lock.json").read_bytes())))
    req = tmp_path / "req.lock"
    req.write_text("w==1.0\n")
    return root, manifest, str(req)


def test_verify_clean_bundle(bundle):
    root, manifest, req = bundle
    problems, checked = b.verify_bundle(str(root), manifest, req)
    assert problems == []
    assert checked == 5


def test_verify_reports_each_problem(bundle):
    root, manifest, req = bundle
    (root / "snaps/s_3.assert").unlink()
    (root / "images/y.tar").write_bytes(b"imagX")
    (root / "images/extra.tar").write_bytes(b"?")
    (root / ".partial" / "image_x").mkdir(parents=True)
    (root / ".partial" / "image_x" / "y.tar").write_bytes(b"half")
    with open(req, "a") as fh:
        fh.write("newdep==2.0\n")
    problems, dummy = b.verify_bundle(str(root), manifest, req)
    got = {(p["problem"], p["file"]) for p in problems}
    assert got == {
        ("missing", "snaps/s_3.assert"),
        ("missing", "wheels/newdep-2.0-*.whl"),
        ("corrupt", "images/y.tar"),
        ("unexpected", "images/extra.tar"),
        ("unexpected", ".partial/image_x/y.tar"),
    }
    table = b.problems_table(problems)
    assert table[0].split() == ["PROBLEM", "FILE", "ARTIFACT", "REASON"]
    assert len(table) == 6
    kinds = [p["problem"] for p in problems]
    assert kinds == sorted(kinds, key=["missing", "corrupt", "unexpected"].index)


def test_verify_stale_pin_and_missing_sums(bundle):
    root, manifest, req = bundle
    manifest["images"][0]["ref"] = "quay.io/x/y:1"
    manifest["snaps"][0]["revision"] = 4            # lock says revision 3
    problems, dummy = b.verify_bundle(str(root), manifest, req)
    stale = [p for p in problems if p["problem"] == "corrupt"]
    assert {p["file"] for p in stale} == {"snaps/s_3.snap", "snaps/s_3.assert"}
    assert "revision=3" in stale[0]["reason"] and "revision=4" in stale[0]["reason"]
    (root / "SHA256SUMS").unlink()
    problems, dummy = b.verify_bundle(str(root), manifest, req)
    assert ("missing", "SHA256SUMS") in {(p["problem"], p["file"]) for p in problems}


def test_verify_manifest_sha256_pin(bundle):
    root, manifest, req = bundle
    manifest["images"][0]["sha256"] = _sha(b"something else")
    problems, dummy = b.verify_bundle(str(root), manifest, req)
    assert [(p["problem"], p["file"]) for p in problems] == [("corrupt", "images/y.tar")]
    assert "manifest pins" in problems[0]["reason"]


def test_lock_update_is_atomic_and_skips_identical_writes(tmp_path):
    with b.LockUpdate(str(tmp_path)) as lock:
        lock["artifacts"]["image:a:1"] = {"files": {"images/a.tar": "0" * 64}}
    path = tmp_path / "bundle.lock.json"
    first = path.stat().st_mtime_ns
    assert json.loads(path.read_text())["artifacts"]["image:a:1"]["files"]
    with b.LockUpdate(str(tmp_path)):
        pass
    assert path.stat().st_mtime_ns == first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle.lock.json.")
                and not p.name.endswith(".flock")]


def test_damaged_lock(tmp_path):
    (tmp_path / "bundle.lock.json").write_text("{not json")
    with pytest.raises(b.BundleError):
        b.read_lock(str(tmp_path))
    assert b.read_lock(str(tmp_path), strict=False)["artifacts"] == {}
    with b.LockUpdate(str(tmp_path)) as lock:          # a fetch run starts the lock afresh
        lock["artifacts"]["snap:s"] = {"files": {}}
    assert json.loads((tmp_path / "bundle.lock.json").read_text())["artifacts"] == {"snap:s": {"files": {}}}


def test_image_pin_digest_normalized():
    spec = {"ref": "quay.io/a/b:1", "digest": "SHA256:" + "AB" * 32}
    assert b.artifact_pin("image", spec) == {"ref": "quay.io/a/b:1", "digest": "sha256:" + "ab" * 32}
    assert b.artifact_pin("image", {"ref": "quay.io/a/b:1"})["digest"] is None
