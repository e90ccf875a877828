"""labhub.platform.ctr_image against a real containerd (tests/harness/containerd.py).

Archives are built by the tests from a tiny rootfs (tests/integration/image_archives.py).
Most cases run the module file the way Ansible does (a child Python process with
ANSIBLE_MODULE_ARGS, the real ctr and the real containerd); the last cases run it
through ``ansible-playbook``: the integration target tests/integration/targets/ctr_image
(check / apply / check / apply for every change) and a diff-mode play.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import image_archives as ia

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "plugins" / "modules" / "ctr_image.py"
COLLECTIONS = REPO / ".cache" / "ansible_collections"
TARGETS = REPO / "tests" / "integration" / "targets"

pytestmark = pytest.mark.containerd

ROOTFS = {"etc/os-release": "ID=labhub-test\n", "usr/share/labhub/hello.txt": "hello from a tiny rootfs\n"}
ROOTFS_V2 = {"etc/os-release": "ID=labhub-test\n", "usr/share/labhub/hello.txt": "hello, changed content\n"}


def run_module(tmp_path: Path, check_mode: bool = False, diff: bool = False, **args) -> dict:
    """Run the module like Ansible's AnsiballZ wrapper would: args file in, JSON out."""
    args_file = tmp_path / ("args-%d.json" % len(list(tmp_path.glob("args-*.json"))))
    module_args = dict(args)
    module_args["_ansible_check_mode"] = check_mode
    module_args["_ansible_diff"] = diff
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": module_args}))
    env = dict(os.environ, PYTHONPATH=str(COLLECTIONS.parent))
    proc = subprocess.run([sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, env=env, check=False,
                          timeout=120)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("module printed no JSON (rc %s):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
    assert bool(result.get("failed")) == (proc.returncode != 0), result
    return result


@pytest.fixture
def archives(tmp_path):
    """The archives every case uses (built fresh per test, all tiny)."""
    d = tmp_path / "archives"
    d.mkdir()
    docker = d / "app.tar"
    ia.docker_archive(docker, [(["registry.example/lab/app:1.0"], ROOTFS)])
    retagged = d / "app-retagged.tar"
    ia.docker_archive(retagged, [(["registry.example/lab/app:1.0-rc"], ROOTFS)])
    changed = d / "app-changed.tar"
    ia.docker_archive(changed, [(["registry.example/lab/app:1.0"], ROOTFS_V2)])
    oci = ia.oci_archive(d / "tool-oci.tar", "registry.example/lab/tool:2.1", ROOTFS, d)
    return {"docker": str(docker), "retagged": str(retagged), "changed": str(changed), "oci": oci["path"],
            "oci_digest": oci["digest"], "dir": d}


def common(containerd, namespace):
    return {"address": containerd.address, "namespace": namespace, "ctr_path": "/usr/bin/ctr"}


def test_first_import_changes_second_does_not(tmp_path, containerd, namespace, archives):
    args = dict(common(containerd, namespace), src=archives["docker"], sha256=ia.sha256(Path(archives["docker"]).read_bytes()))
    first = run_module(tmp_path, **args)
    assert first["changed"] is True
    (image,) = first["images"]
    assert image["name"] == "registry.example/lab/app:1.0"
    assert image["action"] == "imported"
    assert image["previous_digest"] is None
    assert containerd.images(namespace) == {"registry.example/lab/app:1.0": image["digest"]}
    assert first["archive"] == {"format": "docker", "names": ["registry.example/lab/app:1.0"], "unnamed": 0}

    second = run_module(tmp_path, **args)
    assert second["changed"] is False
    assert second["images"][0]["action"] == "present"
    assert second["images"][0]["digest"] == image["digest"]


def test_check_mode_predicts_and_changes_nothing(tmp_path, containerd, namespace, archives):
    args = dict(common(containerd, namespace), src=archives["oci"])
    predicted = run_module(tmp_path, check_mode=True, diff=True, **args)
    assert predicted["changed"] is True
    assert predicted["images"][0]["action"] == "imported"
    assert predicted["images"][0]["digest"] == archives["oci_digest"]
    assert predicted["diff"] == {"before": {"images": {}},
                                 "after": {"images": {"registry.example/lab/tool:2.1": archives["oci_digest"]}}}
    assert containerd.images(namespace) == {}

    applied = run_module(tmp_path, **args)
    assert applied["changed"] is True
    assert applied["images"] == predicted["images"]
    assert containerd.images(namespace) == {"registry.example/lab/tool:2.1": archives["oci_digest"]}

    again = run_module(tmp_path, check_mode=True, **args)
    assert again["changed"] is False
    assert again["images"][0]["action"] == "present"


def test_retagged_archive_changes(tmp_path, containerd, namespace, archives):
    args = common(containerd, namespace)
    first = run_module(tmp_path, src=archives["docker"], **args)
    retag = run_module(tmp_path, src=archives["retagged"], **args)
    assert retag["changed"] is True
    assert retag["images"][0]["name"] == "registry.example/lab/app:1.0-rc"
    assert retag["images"][0]["action"] == "imported"
    # Same content, so the same synthesised manifest digest under a new name.
    assert retag["images"][0]["digest"] == first["images"][0]["digest"]
    assert set(containerd.images(namespace)) == {"registry.example/lab/app:1.0", "registry.example/lab/app:1.0-rc"}
    assert run_module(tmp_path, src=archives["retagged"], **args)["changed"] is False


def test_changed_content_same_name_is_reimported(tmp_path, containerd, namespace, archives):
    args = common(containerd, namespace)
    old = run_module(tmp_path, src=archives["docker"], **args)["images"][0]["digest"]
    check = run_module(tmp_path, src=archives["changed"], check_mode=True, **args)
    assert check["changed"] is True
    assert check["images"][0]["previous_digest"] == old
    new = run_module(tmp_path, src=archives["changed"], diff=True, **args)
    assert new["changed"] is True
    assert new["images"][0]["digest"] != old
    assert new["diff"]["before"]["images"] == {"registry.example/lab/app:1.0": old}
    assert containerd.images(namespace) == {"registry.example/lab/app:1.0": new["images"][0]["digest"]}


def test_bad_checksum_fails_and_leaves_nothing(tmp_path, containerd, namespace, archives):
    result = run_module(tmp_path, src=archives["docker"], sha256="0" * 64, **common(containerd, namespace))
    assert result["failed"] is True
    assert result["msg"].startswith("Failed to import image archive '%s' due to: checksum mismatch" % archives["docker"])
    assert containerd.images(namespace) == {}


def test_checksum_is_verified_only_when_importing(tmp_path, containerd, namespace, archives):
    """Documented: a wrong sha256 fails (also in check mode) whenever an import is needed, and a
    damaged file is reported as a checksum mismatch; when every image is already present with
    the archive's digests the file is not hashed."""
    args = dict(common(containerd, namespace), src=archives["docker"])
    good = ia.sha256(Path(archives["docker"]).read_bytes())
    bad = "sha256:" + "1" * 64
    predicted = run_module(tmp_path, check_mode=True, sha256=bad, **args)
    assert "checksum mismatch" in predicted["msg"]
    run_module(tmp_path, sha256=good, **args)
    present = run_module(tmp_path, sha256=bad, **args)
    assert present["changed"] is False and present["images"][0]["action"] == "present"

    data = Path(archives["changed"]).read_bytes()
    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes(data[:600] + b"\xff" * 200 + data[800:])
    args.update(src=str(damaged), sha256=ia.sha256(data))
    result = run_module(tmp_path, **args)
    assert result["msg"].startswith("Failed to import image archive '%s' due to: checksum mismatch" % damaged)
    assert containerd.images(namespace) == {"registry.example/lab/app:1.0": present["images"][0]["digest"]}


def test_missing_file_fails(tmp_path, containerd, namespace):
    src = str(tmp_path / "nope.tar")
    result = run_module(tmp_path, src=src, **common(containerd, namespace))
    assert result["msg"] == "Failed to import image archive '%s' due to: file not found" % src


def test_corrupt_archive_fails_and_leaves_nothing(tmp_path, containerd, namespace, archives):
    # A truncated tar: the archive reader refuses it before ctr is run.
    data = Path(archives["docker"]).read_bytes()
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(data[: len(data) // 2])
    result = run_module(tmp_path, src=str(truncated), **common(containerd, namespace))
    assert result["msg"].startswith("Failed to import image archive '%s' due to: corrupt archive" % truncated)
    not_tar = tmp_path / "not-a-tar.tar"
    not_tar.write_bytes(b"\x00garbage" * 1000)
    result = run_module(tmp_path, src=str(not_tar), **common(containerd, namespace))
    assert result["msg"].startswith("Failed to import image archive '%s' due to: corrupt archive" % not_tar)
    assert containerd.images(namespace) == {}


def test_import_failure_removes_the_images_it_added(tmp_path, containerd, namespace, archives):
    """An archive that is consistent (digests match) but whose layer is not a tar:
    ctr creates the image record, then fails to unpack; the module removes it again
    and leaves the image that was there before alone."""
    args = common(containerd, namespace)
    run_module(tmp_path, src=archives["docker"], **args)
    before = containerd.images(namespace)
    layout = ia.OciLayout(tmp_path / "bad-layout")
    desc = layout.manifest({}, layer_bytes=b"\x1f\x8b\x08 this is not a gzip stream" * 20)
    desc["mediaType"] = ia.OCI_MANIFEST
    layout.add(desc, ref_name="registry.example/lab/broken:1")
    bad = ia.tar_dir(layout.finish(), tmp_path / "broken.tar")
    result = run_module(tmp_path, src=str(bad), **args)
    assert result["failed"] is True
    assert result["msg"].startswith("Failed to import image archive '%s' due to: " % bad)
    assert "extract" in result["msg"] or "unpack" in result["msg"], result["msg"]
    assert containerd.images(namespace) == before


def test_unreachable_socket_fails_fast(tmp_path, namespace, archives):
    sock = str(tmp_path / "no-containerd.sock")
    result = run_module(tmp_path, src=archives["docker"], address=sock, namespace=namespace, ctr_path="/usr/bin/ctr")
    assert result["msg"].startswith("Failed to import image archive '%s' due to: containerd socket '%s' is not reachable"
                                    % (archives["docker"], sock))


def test_names_must_be_in_archive(tmp_path, containerd, namespace, archives):
    args = dict(common(containerd, namespace), src=archives["docker"])
    bad = run_module(tmp_path, names=["registry.example/lab/other:1"], **args)
    assert "does not contain 'registry.example/lab/other:1'" in bad["msg"]
    assert containerd.images(namespace) == {}
    ok = run_module(tmp_path, names=["registry.example/lab/app:1.0"], **args)
    assert ok["changed"] is True


def test_docker_short_names_are_normalised(tmp_path, containerd, namespace):
    src = tmp_path / "short.tar"
    ia.docker_archive(src, [(["labhub-busybox:1", "lab/tool:3"], ROOTFS)], legacy_layout=True)
    args = dict(common(containerd, namespace), src=str(src))
    result = run_module(tmp_path, names=["labhub-busybox:1"], **args)
    assert sorted(i["name"] for i in result["images"]) == ["docker.io/lab/tool:3", "docker.io/library/labhub-busybox:1"]
    assert set(containerd.images(namespace)) == {"docker.io/lab/tool:3", "docker.io/library/labhub-busybox:1"}
    assert run_module(tmp_path, **args)["changed"] is False


def test_skopeo_docker_archive_and_gzip_layers(tmp_path, containerd, namespace, archives):
    """Archives written by the real skopeo, and docker-archives with gzip layers."""
    layout = Path(archives["dir"]) / "tool-oci.tar.layout"
    skopeo = ia.skopeo_docker_archive(layout, "registry.example/lab/tool:2.1", tmp_path / "skopeo.tar", "registry.example/lab/tool:2.1")
    gz = tmp_path / "gz.tar"
    ia.docker_archive(gz, [(["registry.example/lab/gz:1"], ROOTFS)], compress=True)
    args = common(containerd, namespace)
    for src in (skopeo, gz):
        first = run_module(tmp_path, src=str(src), **args)
        assert first["changed"] is True
        assert containerd.images(namespace)[first["images"][0]["name"]] == first["images"][0]["digest"]
        assert run_module(tmp_path, src=str(src), **args)["changed"] is False


def test_oci_tag_only_names_need_base_name(tmp_path, containerd, namespace):
    layout = ia.OciLayout(tmp_path / "tagonly")
    layout.add(layout.manifest(ROOTFS), ref_name="7.0")
    src = ia.tar_dir(layout.finish(), tmp_path / "tagonly.tar")
    args = dict(common(containerd, namespace), src=str(src))
    refused = run_module(tmp_path, **args)
    assert "set base_name" in refused["msg"]
    named = run_module(tmp_path, base_name="registry.example/lab/tagged", **args)
    assert named["changed"] is True
    assert list(containerd.images(namespace)) == ["registry.example/lab/tagged:7.0"]
    assert run_module(tmp_path, base_name="registry.example/lab/tagged", **args)["changed"] is False


def test_platform_all_platforms_and_snapshotter(tmp_path, containerd, namespace):
    """A two-platform OCI index: --platform, --all-platforms and --snapshotter reach ctr."""
    layout = ia.OciLayout(tmp_path / "multi")
    amd = layout.manifest(ROOTFS, arch="amd64")
    arm = layout.manifest(ROOTFS_V2, arch="arm64")
    index = layout.index([amd, arm])
    layout.add(index, ref_name="registry.example/lab/multi:1")
    src = ia.tar_dir(layout.finish(), tmp_path / "multi.tar")
    args = dict(common(containerd, namespace), src=str(src))

    wrong = run_module(tmp_path, platform="linux/s390x", **args)
    assert wrong["msg"] == ("Failed to import image archive '%s' due to: image 'registry.example/lab/multi:1' has no "
                            "content for platform 'linux/s390x' (it has: linux/amd64, linux/arm64)" % src)
    assert containerd.images(namespace) == {}

    arm_only = run_module(tmp_path, platform="linux/arm64", snapshotter="native", **args)
    assert arm_only["changed"] is True
    assert arm_only["images"][0]["platforms"] == ["linux/amd64", "linux/arm64"]
    assert containerd.images(namespace) == {"registry.example/lab/multi:1": index["digest"]}
    # Unpacked into the native snapshotter (the daemon's default is overlayfs).
    snaps = containerd.ctr("snapshots", "--snapshotter", "native", "ls", namespace=namespace).stdout.splitlines()
    assert len(snaps) == 2, snaps
    assert run_module(tmp_path, all_platforms=True, **args)["changed"] is False

    other = namespace + "-all"
    args_all = dict(args)
    args_all.update(namespace=other, all_platforms=True)
    everything = run_module(tmp_path, **args_all)
    assert everything["changed"] is True
    check = containerd.ctr("images", "check", namespace=other).stdout
    assert "complete" in check and index["digest"] in check, check


def test_absent_removes(tmp_path, containerd, namespace, archives):
    args = common(containerd, namespace)
    run_module(tmp_path, src=archives["docker"], **args)
    run_module(tmp_path, src=archives["oci"], **args)
    check = run_module(tmp_path, src=archives["docker"], state="absent", check_mode=True, **args)
    assert check["changed"] is True and check["images"][0]["action"] == "removed"
    assert len(containerd.images(namespace)) == 2
    removed = run_module(tmp_path, src=archives["docker"], state="absent", **args)
    assert removed["changed"] is True
    assert list(containerd.images(namespace)) == ["registry.example/lab/tool:2.1"]
    again = run_module(tmp_path, src=archives["docker"], state="absent", **args)
    assert again["changed"] is False and again["images"][0]["action"] == "absent"
    by_name = run_module(tmp_path, names=["registry.example/lab/tool:2.1"], state="absent", **args)
    assert by_name["changed"] is True
    assert containerd.images(namespace) == {}


# ---------------------------------------------------------------- ansible-playbook


def ansible_env(tmp_path: Path) -> dict:
    bin_dir = REPO / ".venv" / "bin"
    return dict(
        os.environ,
        PATH="%s:%s" % (bin_dir, os.environ.get("PATH", "")),
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_ROLES_PATH=str(TARGETS),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
    )


def ansible_playbook(tmp_path: Path, playbook: str, *extra: str) -> subprocess.CompletedProcess:
    exe = REPO / ".venv" / "bin" / "ansible-playbook"
    if not exe.exists():
        pytest.skip("controller venv missing (make venv)")
    path = tmp_path / "play.yml"
    path.write_text(textwrap.dedent(playbook))
    return subprocess.run([str(exe), "-i", "localhost,", "-c", "local", str(path), *extra],
                          capture_output=True, text=True, env=ansible_env(tmp_path), timeout=600, check=False)


def test_integration_target_via_ansible_playbook(tmp_path, containerd, namespace, archives):
    """tests/integration/targets/ctr_image: every change four times (check, apply, check, apply)."""
    extra = {
        "ctr_image_test_address": containerd.address,
        "ctr_image_test_namespace": namespace,
        "ctr_image_test_ctr_path": "/usr/bin/ctr",
        "ctr_image_test_archive": archives["docker"],
        "ctr_image_test_archive_sha256": ia.sha256(Path(archives["docker"]).read_bytes()).split(":", 1)[1],
        "ctr_image_test_retagged": archives["retagged"],
        "ctr_image_test_changed": archives["changed"],
        "ctr_image_test_oci": archives["oci"],
        "ctr_image_test_missing_socket": str(tmp_path / "absent.sock"),
    }
    (tmp_path / "vars.json").write_text(json.dumps(extra))
    proc = ansible_playbook(tmp_path, """\
        - name: Run the ctr_image integration target
          hosts: all
          gather_facts: false
          roles:
            - ctr_image
        """, "-e", "@%s" % (tmp_path / "vars.json"))
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "failed=0" in proc.stdout
    assert containerd.images(namespace) == {}  # the target cleans up after itself


def test_diff_mode_via_ansible_playbook(tmp_path, containerd, namespace, archives):
    proc = ansible_playbook(tmp_path, """\
        - name: Diff of an import
          hosts: all
          gather_facts: false
          tasks:
            - name: Import with diff
              labhub.platform.ctr_image:
                src: %s
                address: %s
                namespace: %s
                ctr_path: /usr/bin/ctr
        """ % (archives["oci"], containerd.address, namespace), "--diff", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '-    "images": {}' in proc.stdout, proc.stdout
    assert '+        "registry.example/lab/tool:2.1": "%s"' % archives["oci_digest"] in proc.stdout, proc.stdout
    assert containerd.images(namespace) == {}
