"""Build small image archives for the ctr_image tests and benchmark, offline.

Everything is written by hand from a tiny rootfs (a few text files): an OCI
image layout (blobs/sha256/*, index.json, oci-layout) put in a tar, and a
docker-archive (manifest.json + config + layer tar, the layout ``skopeo copy
... docker-archive:`` writes). ``skopeo_docker_archive`` converts an OCI layout
to a docker-archive with the real skopeo, as a cross-check of the hand-written one.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def rootfs_layer(files: dict[str, bytes | str]) -> bytes:
    """A deterministic layer tar holding ``files`` (path -> content) and their directories."""
    bio = io.BytesIO()
    dirs = set()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d + "/")
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
            content = files[name]
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return bio.getvalue()


def _config(layer_digests: list[str], arch: str = "amd64", os_name: str = "linux", label: str = "") -> bytes:
    return json.dumps({
        "architecture": arch,
        "os": os_name,
        "config": {"Env": ["PATH=/bin"], "Labels": {"labhub.test": label} if label else {}},
        "rootfs": {"type": "layers", "diff_ids": layer_digests},
        "history": [{"created_by": "labhub tests"}],
    }, sort_keys=True).encode()


class OciLayout:
    """An OCI image layout directory being written."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        self.entries: list[dict] = []

    def blob(self, data: bytes) -> str:
        digest = sha256(data)
        (self.path / "blobs" / "sha256" / digest.split(":", 1)[1]).write_bytes(data)
        return digest

    def manifest(self, files: dict, arch: str = "amd64", label: str = "", compress: bool = False,
                 layer_bytes: bytes | None = None) -> dict:
        """Write config, layer and manifest blobs; return the manifest descriptor."""
        layer = rootfs_layer(files) if layer_bytes is None else layer_bytes
        diff_id = sha256(layer)
        stored = gzip.compress(layer, mtime=0) if compress else layer
        layer_digest = self.blob(stored)
        config = _config([diff_id], arch=arch, label=label)
        config_digest = self.blob(config)
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER_GZIP if compress else OCI_LAYER, "digest": layer_digest, "size": len(stored)}],
        }).encode()
        return {"mediaType": OCI_MANIFEST, "digest": self.blob(manifest), "size": len(manifest),
                "platform": {"architecture": arch, "os": "linux"}, "config_digest": config_digest}

    def index(self, manifests: list[dict]) -> dict:
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {k: v for k, v in m.items() if k != "config_digest"} for m in manifests]}).encode()
        return {"mediaType": OCI_INDEX, "digest": self.blob(body), "size": len(body)}

    def add(self, descriptor: dict, ref_name: str | None = None, image_name: str | None = None) -> dict:
        entry = {k: v for k, v in descriptor.items() if k not in ("config_digest", "platform")}
        annotations = {}
        if ref_name:
            annotations["org.opencontainers.image.ref.name"] = ref_name
        if image_name:
            annotations["io.containerd.image.name"] = image_name
        if annotations:
            entry["annotations"] = annotations
        self.entries.append(entry)
        return entry

    def finish(self) -> Path:
        (self.path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        (self.path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": self.entries}))
        return self.path


def tar_dir(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Tar the contents of a directory (paths relative to it), deterministically."""
    src, dest = Path(src), Path(dest)
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(src.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(src)))
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if path.is_file():
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    return dest


def oci_archive(dest: str | os.PathLike, ref: str, files: dict, workdir: str | os.PathLike, label: str = "") -> dict:
    """One-image OCI archive; returns {name, digest, config_digest, path}."""
    layout = OciLayout(Path(workdir) / (Path(dest).name + ".layout"))
    desc = layout.manifest(files, label=label)
    layout.add(desc, ref_name=ref)
    tar_dir(layout.finish(), dest)
    return {"name": ref, "digest": desc["digest"], "config_digest": desc["config_digest"], "path": str(dest),
            "layout": str(layout.path)}


def docker_archive(dest: str | os.PathLike, entries: list[tuple[list[str], dict]], compress: bool = False,
                   legacy_layout: bool = False, label: str = "") -> list[dict]:
    """A docker-archive with one manifest.json entry per (repo_tags, files).

    ``legacy_layout`` writes layers as ``<id>/layer.tar`` like old ``docker save``
    (the file name is not the layer digest); otherwise ``<hex>.tar`` like skopeo.
    Returns, per entry, the config digest and the tags.
    """
    members: dict[str, bytes] = {}
    manifest = []
    out = []
    for n, (tags, files) in enumerate(entries):
        layer = rootfs_layer(files)
        diff_id = sha256(layer)
        stored = gzip.compress(layer, mtime=0) if compress else layer
        config = _config([diff_id], label=label)
        config_name = config_digest_hex = sha256(config).split(":", 1)[1]
        config_name = config_digest_hex + ".json"
        if legacy_layout:
            layer_name = "%064x/layer.tar" % (n + 1)
        else:
            layer_name = sha256(stored).split(":", 1)[1] + ".tar"
        members[config_name] = config
        members[layer_name] = stored
        manifest.append({"Config": config_name, "RepoTags": list(tags), "Layers": [layer_name]})
        out.append({"tags": list(tags), "config_digest": sha256(config)})
    members["manifest.json"] = json.dumps(manifest).encode()
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o444
            tar.addfile(info, io.BytesIO(data))
    return out


def skopeo_docker_archive(layout_dir: str | os.PathLike, oci_ref: str, dest: str | os.PathLike, name: str) -> Path:
    """Convert an OCI layout image to a docker-archive with skopeo (offline, local files only)."""
    subprocess.run(["skopeo", "--insecure-policy", "copy", "--quiet",
                    "oci:%s:%s" % (layout_dir, oci_ref), "docker-archive:%s:%s" % (dest, name)],
                   check=True, capture_output=True, text=True)
    return Path(dest)
