"""Unit tests for plugins/module_utils/_image_archive.py (no containerd needed).

Archives are built by tests/integration/image_archives.py. The digests the reader
predicts for docker-archives are checked against real ctr in
tests/integration/test_ctr_image.py; here the structure and error handling.
"""
from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest

# The archive builder lives with the integration tests, which use it against containerd.
BUILDERS = Path(__file__).resolve().parents[3] / "integration"
if str(BUILDERS) not in sys.path:
    sys.path.insert(0, str(BUILDERS))

import image_archives as ia  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.labhub.platform.plugins.module_utils._image_archive import (  # noqa: E402
    ArchiveError, docker_reference, file_sha256, platform_matches, read_image_archive, same_reference,
)

ROOTFS = {"etc/hello": "hello\n"}


@pytest.mark.parametrize("ref, expected", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("jupyterhub/k8s-hub:4.0.0", "docker.io/jupyterhub/k8s-hub:4.0.0"),
    ("quay.io/jupyterhub/k8s-hub:4.0.0", "quay.io/jupyterhub/k8s-hub:4.0.0"),
    ("localhost/app", "localhost/app:latest"),
    ("registry:5000/a/b:c", "registry:5000/a/b:c"),
    ("docker.io/library/busybox:1", "docker.io/library/busybox:1"),
    ("busybox:1@sha256:" + "a" * 64, "docker.io/library/busybox@sha256:" + "a" * 64),
])
def test_docker_reference(ref, expected):
    assert docker_reference(ref) == expected


@pytest.mark.parametrize("ref", ["", "UPPER/case:1", "a b", "busybox:", "busybox@sha256:xyz", " busybox"])
def test_docker_reference_rejects(ref):
    with pytest.raises(ValueError):
        docker_reference(ref)


def test_same_reference():
    assert same_reference("busybox:1", "docker.io/library/busybox:1")
    assert not same_reference("busybox:1", "docker.io/library/busybox:2")
    assert not same_reference("Bad Ref", "docker.io/library/busybox:2")


def test_oci_single_manifest(tmp_path):
    info = ia.oci_archive(tmp_path / "a.tar", "example.org/lab/a:1", ROOTFS, tmp_path)
    archive = read_image_archive(info["path"])
    assert archive.format == "oci"
    assert archive.unnamed == 0
    (image,) = archive.images
    assert image.as_dict() == {
        "name": "example.org/lab/a:1",
        "digest": info["digest"],
        "media_type": ia.OCI_MANIFEST,
        "platforms": ["linux/amd64"],
        "config_digest": info["config_digest"],
    }
    assert archive.find("example.org/lab/a:1") is image
    assert archive.find("example.org/lab/b:1") is None


def test_oci_names_annotations_base_name_and_unnamed(tmp_path):
    layout = ia.OciLayout(tmp_path / "l")
    one = layout.manifest(ROOTFS)
    two = layout.manifest({"x": "y"})
    layout.add(one, ref_name="example.org/a:1", image_name="example.org/override:9")  # containerd name wins
    layout.add(two, ref_name="2.0")  # tag only
    layout.add(one)  # unnamed
    layout.add(two, ref_name="other.org/b:1")
    src = ia.tar_dir(layout.finish(), tmp_path / "l.tar")
    with pytest.raises(ArchiveError, match="set base_name"):
        read_image_archive(str(src))
    archive = read_image_archive(str(src), base_name="example.org/base")
    # other.org/b:1 does not start with the base name: ctr --base-name skips it.
    assert archive.names == ["example.org/override:9", "example.org/base:2.0"]
    assert archive.unnamed == 2
    assert archive.images[1].digest == two["digest"]


def test_oci_nested_index_platforms(tmp_path):
    layout = ia.OciLayout(tmp_path / "multi")
    amd = layout.manifest(ROOTFS, arch="amd64")
    arm = layout.manifest(ROOTFS, arch="arm64")
    index = layout.index([amd, arm])
    layout.add(index, ref_name="example.org/multi:1")
    archive = read_image_archive(str(ia.tar_dir(layout.finish(), tmp_path / "multi.tar")))
    (image,) = archive.images
    assert image.digest == index["digest"]
    assert image.media_type == ia.OCI_INDEX
    assert image.platforms == ["linux/amd64", "linux/arm64"]
    assert platform_matches("linux/arm64", image.platforms)
    assert not platform_matches("linux/s390x", image.platforms)


def _docker_manifest_digest(config: bytes, layers: list[tuple[str, bytes]]) -> str:
    doc = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
           "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": ia.sha256(config),
                      "size": len(config)},
           "layers": [{"mediaType": mt, "digest": ia.sha256(data), "size": len(data)} for mt, data in layers]}
    return ia.sha256(json.dumps(doc, separators=(",", ":")).encode())


@pytest.mark.parametrize("compress, legacy", [(False, False), (True, False), (False, True)])
def test_docker_archive_names_and_manifest_digest(tmp_path, compress, legacy):
    src = tmp_path / "d.tar"
    ia.docker_archive(src, [(["busybox:1", "example.org/x/y:2"], ROOTFS), ([], {"z": "z"})],
                      compress=compress, legacy_layout=legacy)
    archive = read_image_archive(str(src))
    assert archive.format == "docker"
    assert archive.names == ["docker.io/library/busybox:1", "example.org/x/y:2"]
    assert archive.unnamed == 1
    with tarfile.open(src) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        config = tar.extractfile(manifest[0]["Config"]).read()
        layer = tar.extractfile(manifest[0]["Layers"][0]).read()
    media = "application/vnd.docker.image.rootfs.diff.tar" + (".gzip" if compress else "")
    expected = _docker_manifest_digest(config, [(media, layer)])
    assert [i.digest for i in archive.images] == [expected, expected]
    assert archive.images[0].config_digest == ia.sha256(config)
    assert archive.images[0].platforms == ["linux/amd64"]
    assert archive.find("busybox:1").name == "docker.io/library/busybox:1"


def _rewrite(src: Path, dest: Path, change) -> Path:
    """Copy a tar, passing each (name, data) through change(); None drops the member."""
    with tarfile.open(src) as tin, tarfile.open(dest, "w") as tout:
        for member in tin.getmembers():
            if not member.isfile():
                tout.addfile(member)
                continue
            out = change(member.name, tin.extractfile(member).read())
            if out is None:
                continue
            member.size = len(out)
            tout.addfile(member, io.BytesIO(out))
    return dest


@pytest.mark.parametrize("change, message", [
    (lambda n, d: None if n.endswith("index.json") else d, "index.json' is missing"),
    (lambda n, d: b"{not json" if n.endswith("index.json") else d, "not valid JSON"),
    (lambda n, d: b'{"imageLayoutVersion": "9.9.9"}' if n.endswith("oci-layout") else d, "unsupported OCI layout version"),
    (lambda n, d: (d[:-1] + b" ") if "blobs/" in n and d.startswith(b'{"schemaVersion"') else d, "corrupt archive"),
    (lambda n, d: None if d and d[257:262] == b"ustar" else d, "layer .* is missing"),
])
def test_oci_corruption_detected(tmp_path, change, message):
    info = ia.oci_archive(tmp_path / "ok.tar", "example.org/a:1", ROOTFS, tmp_path)
    bad = _rewrite(Path(info["path"]), tmp_path / "bad.tar", change)
    with pytest.raises(ArchiveError, match=message):
        read_image_archive(str(bad))


def test_not_an_image_archive(tmp_path):
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        info = tarfile.TarInfo("README")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ArchiveError, match="unrecognized image format"):
        read_image_archive(str(plain))
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"\x01" * 4096)
    with pytest.raises(ArchiveError, match="tar"):
        read_image_archive(str(garbage))


def test_gzip_compressed_archive_is_refused(tmp_path):
    import gzip
    src = tmp_path / "d.tar"
    ia.docker_archive(src, [(["a:1"], ROOTFS)])
    gz = tmp_path / "d.tar.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    with pytest.raises(ArchiveError):
        read_image_archive(str(gz))


def test_truncated_archive(tmp_path):
    src = tmp_path / "d.tar"
    ia.docker_archive(src, [(["a:1"], ROOTFS)])
    data = src.read_bytes()
    with tarfile.open(src) as tar:
        offsets = sorted(m.offset_data + min(m.size, 100) // 2 for m in tar.getmembers() if m.size)
    for n, offset in enumerate(offsets):
        cut = tmp_path / ("cut%d.tar" % n)
        cut.write_bytes(data[:offset])  # ends inside a member's data
        with pytest.raises(ArchiveError):
            read_image_archive(str(cut))


def test_docker_missing_layer_and_config(tmp_path):
    src = tmp_path / "d.tar"
    ia.docker_archive(src, [(["a:1"], ROOTFS)])
    no_layer = _rewrite(src, tmp_path / "nolayer.tar", lambda n, d: None if n.endswith(".tar") else d)
    with pytest.raises(ArchiveError, match="layer .* is missing"):
        read_image_archive(str(no_layer))
    no_config = _rewrite(src, tmp_path / "noconfig.tar", lambda n, d: None if n.endswith(".json") and n != "manifest.json" else d)
    with pytest.raises(ArchiveError, match="image config .* is missing"):
        read_image_archive(str(no_config))


def test_file_sha256(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 3_000_000)
    assert file_sha256(str(path)) == hashlib.sha256(b"x" * 3_000_000).hexdigest()
