# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""Read an image archive (docker-archive or OCI layout tar) without importing it.

``read_image_archive()`` learns what ``ctr images import`` (containerd 1.6) would
create from an archive: the image names and, for each, the digest of the
descriptor the image record will point at (manifest or index), plus the config
digest and platforms. It reads only the archive's tar headers and its small JSON
files (index.json, manifest.json, manifests, configs); layer blobs are never read
except for compressed docker-archive layers (whose digest is not recorded anywhere
else) and a few bytes to detect compression.

The naming rules follow containerd 1.6 ``images/archive`` and ``ctr images import``:

* a tar with an ``oci-layout`` file is read as an OCI layout (``index.json``),
  otherwise ``manifest.json`` is read as a docker-archive (Docker v1.1/v1.2);
* OCI: the name is the ``io.containerd.image.name`` annotation, else the
  ``org.opencontainers.image.ref.name`` annotation; a tag-only ref name (no ``/``,
  ``:`` or ``@``) becomes ``<base_name>:<tag>``; with a base name, full ref names
  that do not start with it are not imported;
* docker-archive: every ``RepoTags`` entry, normalised like Docker
  (``busybox:1`` -> ``docker.io/library/busybox:1``); the digest is the one of the
  schema2 manifest containerd synthesises from the config and layers.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import posixpath
import re
import tarfile

OCI_LAYOUT_FILE = "oci-layout"
OCI_LAYOUT_VERSION = "1.0.0"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"

INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_MANIFEST_LIST)
MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)

# JSON documents larger than this are not image metadata; refuse to load them.
MAX_JSON_SIZE = 16 * 1024 * 1024
_CHUNK = 1024 * 1024

_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*$")
_DOMAIN_RE = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?$")


class ArchiveError(Exception):
    """The archive is missing, unreadable, not an image archive, or inconsistent."""


def file_sha256(path):
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
    return digest.hexdigest()


def docker_reference(ref):
    """Normalise a reference like Docker's ``ParseDockerRef``.

    ``busybox`` -> ``docker.io/library/busybox:latest``; ``org/app:1`` ->
    ``docker.io/org/app:1``; a reference with a domain (contains ``.`` or ``:``
    or is ``localhost``) keeps it; ``name:tag@digest`` drops the tag.
    Raises ValueError for something that is not a reference.
    """
    if not isinstance(ref, str) or not ref or ref != ref.strip():
        raise ValueError("invalid image reference %r" % (ref,))
    name, digest = ref, None
    if "@" in name:
        name, digest = name.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise ValueError("invalid digest in image reference %r" % ref)
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not _TAG_RE.match(tag):
            raise ValueError("invalid tag in image reference %r" % ref)
    parts = name.split("/")
    if len(parts) > 1 and (parts[0] == "localhost" or "." in parts[0] or ":" in parts[0]):
        domain, path = parts[0], parts[1:]
        if not _DOMAIN_RE.match(domain):
            raise ValueError("invalid domain in image reference %r" % ref)
    else:
        domain, path = "docker.io", parts
        if len(path) == 1:
            path = ["library"] + path
    for component in path:
        if not _COMPONENT_RE.match(component):
            raise ValueError("invalid repository name in image reference %r" % ref)
    out = "%s/%s" % (domain, "/".join(path))
    if digest:
        return "%s@%s" % (out, digest)
    return "%s:%s" % (out, tag or "latest")


def same_reference(a, b):
    """True when two references name the same image (literally or once normalised)."""
    if a == b:
        return True
    try:
        return docker_reference(a) == docker_reference(b)
    except ValueError:
        return False


def _go_json(obj):
    """JSON encoded like Go's ``json.Marshal`` for the plain values used here."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    # Go escapes <, > and & as \u003c, \u003e, \u0026 (HTMLEscape).
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode("utf-8")


def _platform_string(platform):
    if not isinstance(platform, dict):
        return None
    os_name = platform.get("os")
    arch = platform.get("architecture")
    if not os_name or not arch:
        return None
    out = "%s/%s" % (os_name, arch)
    if platform.get("variant"):
        out += "/" + platform["variant"]
    return out


class ArchiveImage:
    """One image record ``ctr images import`` would create."""

    def __init__(self, name, digest, media_type, size, platforms, config_digest=None):
        self.name = name
        self.digest = digest
        self.media_type = media_type
        self.size = size
        self.platforms = list(platforms)
        self.config_digest = config_digest

    def as_dict(self):
        return {
            "name": self.name,
            "digest": self.digest,
            "media_type": self.media_type,
            "platforms": list(self.platforms),
            "config_digest": self.config_digest,
        }

    def __repr__(self):
        return "ArchiveImage(%r, %r)" % (self.name, self.digest)


class ImageArchive:
    """The result of reading an archive: its format and the images it names."""

    def __init__(self, path, archive_format, images, unnamed):
        self.path = path
        self.format = archive_format
        self.images = images
        self.unnamed = unnamed

    @property
    def names(self):
        return [image.name for image in self.images]

    def find(self, name):
        """The image whose name matches ``name`` (literally or normalised), or None."""
        for image in self.images:
            if image.name == name:
                return image
        for image in self.images:
            if same_reference(image.name, name):
                return image
        return None


class _Tar:
    """Member lookup over a plain (uncompressed) tar, reading data lazily."""

    def __init__(self, path):
        self.path = path
        try:
            self._tar = tarfile.open(path, mode="r:")
        except (tarfile.TarError, EOFError) as exc:
            raise ArchiveError("not a tar archive (%s)" % exc)
        except (IOError, OSError) as exc:
            raise ArchiveError("cannot read archive: %s" % exc)
        self.members = {}
        self.symlinks = {}
        try:
            for member in self._tar.getmembers():
                name = posixpath.normpath(member.name)
                if member.issym():
                    self.symlinks[name] = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
                elif member.isfile():
                    self.members[name] = member
        except (tarfile.TarError, EOFError) as exc:
            raise ArchiveError("truncated or corrupt tar (%s)" % exc)
        except (IOError, OSError) as exc:
            raise ArchiveError("cannot read archive: %s" % exc)
        for name, target in self.symlinks.items():
            if target in self.members:
                self.members.setdefault(name, self.members[target])
        self._size = None

    def close(self):
        self._tar.close()

    def member(self, name, what):
        member = self.members.get(posixpath.normpath(name))
        if member is None:
            raise ArchiveError("%s '%s' is missing from the archive" % (what, name))
        return member

    def _check_within_file(self, member):
        if self._size is None:
            self._tar.fileobj.seek(0, 2)
            self._size = self._tar.fileobj.tell()
        if member.offset_data + member.size > self._size:
            raise ArchiveError("truncated archive: '%s' ends past the end of the file" % member.name)

    def read(self, name, what, limit=MAX_JSON_SIZE):
        member = self.member(name, what)
        if member.size > limit:
            raise ArchiveError("%s '%s' is too large (%d bytes)" % (what, name, member.size))
        self._check_within_file(member)
        handle = self._tar.extractfile(member)
        data = handle.read()
        if len(data) != member.size:
            raise ArchiveError("truncated archive: %s '%s' is short" % (what, name))
        return data

    def head(self, name, count):
        member = self.member(name, "layer")
        self._check_within_file(member)
        return self._tar.extractfile(member).read(count)

    def sha256(self, name):
        member = self.member(name, "layer")
        self._check_within_file(member)
        handle = self._tar.extractfile(member)
        digest = hashlib.sha256()
        while True:
            chunk = handle.read(_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
        return "sha256:" + digest.hexdigest()

    def json(self, name, what):
        data = self.read(name, what)
        try:
            return json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ArchiveError("%s '%s' is not valid JSON (%s)" % (what, name, exc))


def _blob_path(digest):
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise ArchiveError("invalid or unsupported digest %r in the archive's index" % (digest,))
    return "blobs/sha256/" + digest.split(":", 1)[1]


def _oci_blob(tar, descriptor, what):
    """Read a small blob named by a descriptor and check its size and digest."""
    digest = descriptor.get("digest")
    path = _blob_path(digest)
    data = tar.read(path, what)
    if "size" in descriptor and descriptor["size"] != len(data):
        raise ArchiveError("%s %s has size %d, the index says %s" % (what, digest, len(data), descriptor["size"]))
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise ArchiveError("%s blob %s has digest %s (corrupt archive)" % (what, digest, actual))
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchiveError("%s %s is not valid JSON (%s)" % (what, digest, exc))


def _check_present(tar, descriptor, what):
    member = tar.member(_blob_path(descriptor.get("digest")), what)
    if "size" in descriptor and member.size != descriptor["size"]:
        raise ArchiveError("%s %s has size %d, its manifest says %s" % (what, descriptor.get("digest"), member.size, descriptor["size"]))
    tar._check_within_file(member)  # pylint: disable=protected-access


def _oci_manifest_platforms(tar, descriptor, depth=0):
    """Platforms of an OCI/Docker manifest or index descriptor, and the config digest."""
    media_type = descriptor.get("mediaType")
    if depth > 4:
        raise ArchiveError("index nesting too deep")
    document = _oci_blob(tar, descriptor, "manifest")
    if not media_type:
        media_type = document.get("mediaType") or (MT_OCI_INDEX if "manifests" in document else MT_OCI_MANIFEST)
    if media_type in INDEX_TYPES:
        platforms = []
        for child in document.get("manifests") or []:
            if not isinstance(child, dict):
                raise ArchiveError("malformed index entry in %s" % descriptor.get("digest"))
            plat = _platform_string(child.get("platform"))
            if plat is None:
                # Attestations and other unnamed children carry no platform; only
                # nested indexes/manifests whose content is in the archive add one.
                if child.get("mediaType") in INDEX_TYPES + MANIFEST_TYPES and _blob_path(child.get("digest")) in tar.members:
                    sub = _oci_manifest_platforms(tar, child, depth + 1)[0]
                    platforms.extend(p for p in sub if p not in platforms)
            elif plat not in platforms:
                platforms.append(plat)
        return platforms, None
    if media_type in MANIFEST_TYPES:
        config = document.get("config")
        if not isinstance(config, dict):
            raise ArchiveError("manifest %s has no config" % descriptor.get("digest"))
        config_doc = _oci_blob(tar, config, "config")
        for layer in document.get("layers") or []:
            _check_present(tar, layer, "layer")
        plat = _platform_string(descriptor.get("platform")) or _platform_string(config_doc)
        return ([plat] if plat else []), config.get("digest")
    raise ArchiveError("unsupported media type %r for %s" % (media_type, descriptor.get("digest")))


def _oci_name(annotations, base_name):
    annotations = annotations or {}
    name = annotations.get(ANNOTATION_IMAGE_NAME)
    if name:
        return name
    ref = annotations.get(ANNOTATION_REF_NAME)
    if not ref:
        return None
    if any(c in ref for c in "/:@"):
        if base_name and not _has_prefix(ref, base_name):
            return None
        return ref
    if not base_name:
        raise ArchiveError(
            "the archive names an image only by the tag '%s'; ctr would call it 'import-<date>:%s', "
            "set base_name to give it a stable name" % (ref, ref))
    return "%s:%s" % (base_name, ref)


def _has_prefix(ref, prefix):
    if not ref.startswith(prefix):
        return False
    return len(ref) == len(prefix) or ref[len(prefix)] in "/:@"


def _read_oci(tar, base_name):
    layout = tar.json(OCI_LAYOUT_FILE, "OCI layout file")
    version = layout.get("imageLayoutVersion") if isinstance(layout, dict) else None
    if version != OCI_LAYOUT_VERSION:
        raise ArchiveError("unsupported OCI layout version %r" % (version,))
    index = tar.json("index.json", "OCI index")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise ArchiveError("index.json has no manifests list")
    images = {}
    unnamed = 0
    for entry in index["manifests"]:
        if not isinstance(entry, dict):
            raise ArchiveError("malformed entry in index.json")
        name = _oci_name(entry.get("annotations"), base_name)
        platforms, config_digest = _oci_manifest_platforms(tar, entry)
        if not name:
            unnamed += 1
            continue
        images[name] = ArchiveImage(
            name, entry.get("digest"), entry.get("mediaType") or MT_OCI_MANIFEST, entry.get("size"),
            platforms, config_digest)
    return ImageArchive(tar.path, "oci", list(images.values()), unnamed)


def _read_docker(tar):
    manifest = tar.json("manifest.json", "docker manifest")
    if not isinstance(manifest, list):
        raise ArchiveError("manifest.json is not a list")
    images = {}
    unnamed = 0
    for entry in manifest:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise ArchiveError("malformed entry in manifest.json")
        config_data = tar.read(entry["Config"], "image config")
        try:
            config = json.loads(config_data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ArchiveError("image config '%s' is not valid JSON (%s)" % (entry["Config"], exc))
        if not isinstance(config, dict):
            raise ArchiveError("image config '%s' is not an object" % entry["Config"])
        diff_ids = ((config.get("rootfs") or {}).get("diff_ids")) or []
        layer_files = entry.get("Layers") or []
        if not isinstance(layer_files, list):
            raise ArchiveError("malformed Layers in manifest.json")
        layers = []
        for position, layer_file in enumerate(layer_files):
            member = tar.member(layer_file, "layer")
            head = tar.head(layer_file, 6)
            compressed = head[:3] == b"\x1f\x8b\x08" or head[:4] == b"\x28\xb5\x2f\xfd" or head[:3] == b"BZh" \
                or head[:6] == b"\xfd7zXZ\x00"
            if not compressed and position < len(diff_ids) and isinstance(diff_ids[position], str) \
                    and _DIGEST_RE.match(diff_ids[position]):
                # An uncompressed layer's digest is its diff_id: no need to read it.
                digest = diff_ids[position]
            else:
                digest = tar.sha256(layer_file)
            layers.append({
                "mediaType": MT_DOCKER_LAYER_GZIP if compressed else MT_DOCKER_LAYER,
                "digest": digest,
                "size": member.size,
            })
        config_digest = "sha256:" + hashlib.sha256(config_data).hexdigest()
        document = {
            "schemaVersion": 2,
            "mediaType": MT_DOCKER_MANIFEST,
            "config": {"mediaType": MT_DOCKER_CONFIG, "digest": config_digest, "size": len(config_data)},
            "layers": layers,
        }
        data = _go_json(document)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        plat = _platform_string(config)
        tags = entry.get("RepoTags") or []
        if not tags:
            unnamed += 1
        for tag in tags:
            try:
                name = docker_reference(tag)
            except ValueError as exc:
                raise ArchiveError("RepoTags: %s" % exc)
            images[name] = ArchiveImage(name, digest, MT_DOCKER_MANIFEST, len(data), [plat] if plat else [], config_digest)
    return ImageArchive(tar.path, "docker", list(images.values()), unnamed)


def read_image_archive(path, base_name=None):
    """Read ``path`` and return an :class:`ImageArchive`; raise :class:`ArchiveError`."""
    tar = _Tar(path)
    try:
        if OCI_LAYOUT_FILE in tar.members:
            return _read_oci(tar, base_name)
        if "manifest.json" in tar.members:
            return _read_docker(tar)
        raise ArchiveError("unrecognized image format: neither an OCI layout (oci-layout, index.json) "
                           "nor a docker-archive (manifest.json)")
    except (tarfile.TarError, EOFError) as exc:
        raise ArchiveError("corrupt tar (%s)" % exc)
    except (IOError, OSError) as exc:
        raise ArchiveError("cannot read archive: %s" % exc)
    finally:
        tar.close()


def platform_matches(wanted, available):
    """True if platform string ``wanted`` (os/arch[/variant]) is in ``available``."""
    want = wanted.strip().lower().split("/")
    for plat in available:
        have = plat.lower().split("/")
        if want[:2] == have[:2] and (len(want) < 3 or len(have) < 3 or want[2] == have[2]):
            return True
    return False
