# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""The offline bundle's data model, shared by ``bundle_fetch`` and ``bundle_verify``.

A bundle directory holds the artifacts listed in ``files/bundle-manifest.yml``
plus three meta files:

``bundle-manifest.yml``
    the manifest the bundle was built from (copied in by the ``bundle`` role);
``bundle.lock.json``
    what was actually fetched: per artifact its pin (``ref``), the source it came
    from, the image digest, and the sha256 of every file it produced;
``SHA256SUMS``
    ``sha256sum -c`` compatible list of every artifact file and the lock.

Pure Python (no Ansible imports) so the unit tests can use it directly.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import json
import os
import re
import tempfile

from ansible_collections.labhub.platform.plugins.module_utils._image_archive import file_sha256

LOCK_NAME = "bundle.lock.json"
SUMS_NAME = "SHA256SUMS"
MANIFEST_NAME = "bundle-manifest.yml"
PARTIAL_DIR = ".partial"
META_FILES = (LOCK_NAME, SUMS_NAME, MANIFEST_NAME)
KINDS = ("snap", "chart", "image", "packages", "wheels")
LOCK_SCHEMA = 1

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class BundleError(Exception):
    """A bundle problem worth reporting to the user as is."""


# One streamed file hash for the whole collection (ctr_image uses the same function).
sha256_file = file_sha256


def normalize_sha256(value):
    """'sha256:abc..' or 'abc..' -> 'abc..' (lower case); None stays None."""
    if value in (None, ""):
        return None
    value = str(value).strip().lower()
    if value.startswith("sha256:"):
        value = value[len("sha256:"):]
    if not _HEX64.match(value):
        raise BundleError("'%s' is not a sha256 hex digest" % value)
    return value


def safe_relpath(path):
    """Artifact file names are relative paths inside the bundle, never escaping it."""
    if not path or os.path.isabs(path):
        raise BundleError("file '%s' must be a relative path inside the bundle" % path)
    norm = os.path.normpath(path)
    if norm.startswith("..") or norm != path.rstrip("/") or norm in META_FILES or norm.startswith(PARTIAL_DIR):
        raise BundleError("file '%s' is not a clean path inside the bundle" % path)
    return norm


# --------------------------------------------------------------------------- refs

def split_image_ref(ref):
    """'quay.io/a/b:1.0' -> ('quay.io/a/b', '1.0'); no tag -> (ref, None).

    A digest suffix (``@sha256:..``) is not allowed in ``ref``; it goes in ``digest``.
    """
    if "@" in ref:
        raise BundleError("image ref '%s' must not carry a digest; put it in 'digest'" % ref)
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, None


def normalize_image_name(name):
    """Docker's short-name rules: 'traefik' -> 'docker.io/library/traefik'."""
    first = name.split("/", 1)[0]
    if "/" not in name:
        return "docker.io/library/" + name
    if "." not in first and ":" not in first and first != "localhost":
        return "docker.io/" + name
    return name


def manifest_pause(manifest):
    """The manifest's image used by microk8s named .../pause: containerd's sandbox image when
    microk8s_sandbox_image is empty (role microk8s), '' when there is none."""
    for entry in (manifest or {}).get("images") or []:
        if (isinstance(entry, dict) and "microk8s" in (entry.get("used_by") or [])
                and "/pause:" in str(entry.get("ref"))):
            return str(entry["ref"])
    return ""


def artifact_id(kind, spec):
    if kind == "image":
        return "image:%s" % spec["ref"]
    if kind == "wheels":
        return "wheels:%s" % spec.get("name", "portal")
    return "%s:%s" % (kind, spec["name"])


def artifact_pin(kind, spec, requirements_sha256=None):
    """The identity of what the manifest asks for; a lock entry is reused only if equal."""
    if kind == "image":
        digest = normalize_sha256(spec.get("digest"))
        return {"ref": spec["ref"], "digest": "sha256:" + digest if digest else None}
    if kind == "snap":
        return {"name": spec["name"], "revision": int(spec["revision"])}
    if kind == "chart":
        return {"name": spec["name"], "repo": spec["repo"], "version": str(spec["version"])}
    if kind == "packages":
        # What is asked for; the versions APT resolved are recorded in the lock entry instead
        # (an archive moves on with point releases and security updates).
        # closure "full": every dependency, none left out as present on a node (older bundles
        # left out a "minimal install" and are fetched again)
        return {"name": spec["name"], "architecture": spec.get("architecture", "amd64"), "closure": "full",
                "sources": ["%s %s %s" % (s.get("uri"), s.get("suite"), " ".join(s.get("components") or []))
                            for s in spec.get("sources") or []],
                "packages": sorted(str(n) for n in spec.get("packages") or [])}
    pin = {"requirements_sha256": requirements_sha256,
           "python_version": str(spec.get("python_version", "")),
           "platforms": list(spec.get("platforms") or [])}
    if spec.get("projects"):
        pin["projects"] = ["%s==%s" % nv for nv in project_pins(spec)]
    return pin


def project_pins(spec):
    """[(canonical_name, version)] of the wheels spec's own projects (built, not downloaded)."""
    return [(canonical_name(p.get("name", "")), str(p.get("version", ""))) for p in spec.get("projects") or []]


def artifact_files(kind, spec):
    """Fixed file names of an artifact (wheels have none up front)."""
    if kind == "snap":
        return [safe_relpath(spec["file"]), safe_relpath(spec["assert"])]
    if kind in ("chart", "image", "packages"):
        return [safe_relpath(spec["file"])]
    return []


def manifest_artifacts(manifest):
    """[(kind, spec)] for every artifact in a manifest, in manifest order."""
    out = []
    for key, kind in (("snaps", "snap"), ("charts", "chart"), ("images", "image"), ("packages", "packages")):
        for spec in manifest.get(key) or []:
            out.append((kind, spec))
    wheels = manifest.get("wheels")
    if wheels:
        out.append(("wheels", wheels))
    return out


# --------------------------------------------------------------------------- requirements

_REQ_LINE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;\\]+)")


def canonical_name(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirements(path):
    """Pinned requirements (``name==version``) of a pip-compile style lock file.

    Returns [(canonical_name, version)]. Unpinned lines are an error: a bundle
    must be reproducible.
    """
    pins = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            stripped = line.split("#", 1)[0].strip()
            if not stripped or stripped.startswith("--hash") or stripped.startswith("-"):
                continue
            m = _REQ_LINE.match(stripped)
            if not m:
                raise BundleError("%s:%d: '%s' is not pinned with ==" % (path, lineno, stripped))
            pins.append((canonical_name(m.group(1)), m.group(3)))
    return pins


def wheel_name_version(filename):
    """'Foo_Bar-1.2-py3-none-any.whl' -> ('foo-bar', '1.2'); None for non-wheels."""
    if not filename.endswith(".whl"):
        return None
    parts = filename[:-4].split("-")
    if len(parts) < 5:
        return None
    return canonical_name(parts[0]), parts[1]


# --------------------------------------------------------------------------- lock + sums

def read_lock(bundle_dir, strict=True):
    """The lock of a bundle directory ({} artifacts when there is none yet).

    A damaged lock is a BundleError when ``strict``; otherwise it counts as empty, so a
    fetch run re-verifies and re-records every artifact (and rewrites the lock).
    """
    path = os.path.join(bundle_dir, LOCK_NAME)
    empty = {"schema_version": LOCK_SCHEMA, "artifacts": {}}
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            return empty
        raise
    except ValueError as exc:
        if not strict:
            return empty
        raise BundleError("%s is not valid JSON: %s" % (path, exc))
    if not isinstance(data, dict) or not isinstance(data.get("artifacts"), dict):
        if not strict:
            return empty
        raise BundleError("%s has no 'artifacts' mapping" % path)
    return data


def write_atomic(path, data, mode=0o644):
    """Write bytes to a temp file beside ``path`` and rename it over ``path``."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def lock_bytes(lock):
    return (json.dumps(lock, indent=2, sort_keys=True) + "\n").encode("utf-8")


class LockUpdate:
    """``with LockUpdate(dir) as lock: lock['artifacts'][id] = ...`` under flock."""

    def __init__(self, bundle_dir):
        self.bundle_dir = bundle_dir
        self._fh = None
        self.lock = None
        self._before = None

    def __enter__(self):
        self._fh = open(os.path.join(self.bundle_dir, ".%s.flock" % LOCK_NAME), "a")
        fcntl.flock(self._fh, fcntl.LOCK_EX)
        self.lock = read_lock(self.bundle_dir, strict=False)
        self._before = lock_bytes(self.lock)
        return self.lock

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.lock["schema_version"] = LOCK_SCHEMA
                data = lock_bytes(self.lock)
                if data != self._before:
                    write_atomic(os.path.join(self.bundle_dir, LOCK_NAME), data)
        finally:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
        return False


def sums_text(lock, lock_sha256=None):
    """SHA256SUMS content for every file in the lock (and the lock itself)."""
    entries = {}
    for entry in lock.get("artifacts", {}).values():
        for rel, digest in entry.get("files", {}).items():
            entries[rel] = digest
    if lock_sha256:
        entries[LOCK_NAME] = lock_sha256
    return "".join("%s  %s\n" % (entries[k], k) for k in sorted(entries))


def read_sums(path):
    """{relpath: sha256} from a SHA256SUMS file; BundleError on a malformed line."""
    sums = {}
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            m = re.match(r"^([0-9a-fA-F]{64}) [ *](.+)$", line)
            if not m:
                raise BundleError("%s:%d is not '<sha256>  <file>'" % (path, lineno))
            sums[m.group(2)] = m.group(1).lower()
    return sums


# --------------------------------------------------------------------------- verification

def verify_bundle(bundle_dir, manifest, requirements=None):
    """Compare a bundle directory with its manifest, SHA256SUMS and lock.

    Returns (problems, checked) where problems is a list of
    {"problem": missing|corrupt|unexpected, "file": relpath, "artifact": id, "reason": str}
    sorted by problem then file, and checked is the number of files hashed.
    """
    problems = []

    def add(problem, rel, art, reason):
        problems.append({"problem": problem, "file": rel, "artifact": art, "reason": reason})

    sums_path = os.path.join(bundle_dir, SUMS_NAME)
    sums = {}
    if not os.path.isfile(sums_path):
        add("missing", SUMS_NAME, "-", "the bundle has no checksum list")
    else:
        try:
            sums = read_sums(sums_path)
        except BundleError as exc:
            add("corrupt", SUMS_NAME, "-", str(exc))
    lock_bad = False
    try:
        lock = read_lock(bundle_dir)
    except BundleError as exc:
        add("corrupt", LOCK_NAME, "-", str(exc))
        lock, lock_bad = {"artifacts": {}}, True

    expected = {}            # relpath -> (artifact id, pinned sha256 or None)
    for kind, spec in manifest_artifacts(manifest):
        art = artifact_id(kind, spec)
        entry = lock["artifacts"].get(art)
        if kind == "wheels":
            wheel_dir = safe_relpath(spec.get("dir", "wheels"))
            present = {}
            for rel in sums:
                if os.path.dirname(rel) == wheel_dir:
                    nv = wheel_name_version(os.path.basename(rel))
                    if nv:
                        present.setdefault(nv, []).append(rel)
            full = os.path.join(bundle_dir, wheel_dir)
            if os.path.isdir(full):
                for name in os.listdir(full):
                    nv = wheel_name_version(name)
                    rel = os.path.join(wheel_dir, name)
                    if nv and rel not in present.get(nv, []):
                        present.setdefault(nv, []).append(rel)
            pins = []
            if requirements:
                if not os.path.isfile(requirements):
                    add("missing", spec.get("requirements", requirements), art,
                        "requirements file '%s' not found" % requirements)
                else:
                    try:
                        pins = parse_requirements(requirements)
                    except BundleError as exc:
                        add("corrupt", spec.get("requirements", requirements), art, str(exc))
            pins = pins + project_pins(spec)
            wanted = set(pins)
            for nv in pins:
                if nv not in present:
                    add("missing", "%s/%s-%s-*.whl" % (wheel_dir, nv[0], nv[1]), art,
                        "no wheel for %s==%s" % nv)
            for nv, rels in present.items():
                for rel in rels:
                    if not requirements or nv in wanted:
                        expected[rel] = (art, None)
            continue
        for rel in artifact_files(kind, spec):
            pinned = normalize_sha256(spec.get("sha256")) if rel == spec.get("file") else None
            expected[rel] = (art, pinned)
        if entry is not None and entry.get("pin") != artifact_pin(kind, spec):
            for rel in artifact_files(kind, spec):
                if os.path.exists(os.path.join(bundle_dir, rel)):
                    add("corrupt", rel, art, "fetched for %s but the manifest pins %s"
                        % (_pin_text(entry.get("pin")), _pin_text(artifact_pin(kind, spec))))
                    expected[rel] = (art, "stale")

    checked = 0
    for rel in sorted(expected):
        art, pinned = expected[rel]
        path = os.path.join(bundle_dir, rel)
        if not os.path.isfile(path):
            add("missing", rel, art, "file not in the bundle")
            continue
        if pinned == "stale":
            continue
        actual = sha256_file(path)
        checked += 1
        if rel not in sums:
            add("corrupt", rel, art, "no checksum in %s" % SUMS_NAME)
        elif sums[rel] != actual:
            add("corrupt", rel, art, "sha256 %s, %s says %s" % (actual[:12], SUMS_NAME, sums[rel][:12]))
        elif pinned and pinned != actual:
            add("corrupt", rel, art, "sha256 %s, the manifest pins %s" % (actual[:12], pinned[:12]))

    for rel in sorted(sums):
        if rel in expected:
            continue
        if rel == LOCK_NAME:
            path = os.path.join(bundle_dir, rel)
            if lock_bad:
                continue
            if not os.path.isfile(path):
                add("missing", rel, "-", "listed in %s" % SUMS_NAME)
            elif sha256_file(path) != sums[rel]:
                add("corrupt", rel, "-", "sha256 differs from %s" % SUMS_NAME)
            checked += 1
            continue
        if not os.path.exists(os.path.join(bundle_dir, rel)):
            add("unexpected", rel, "-", "listed in %s but not in the manifest (file absent)" % SUMS_NAME)

    for root, dirs, files in os.walk(bundle_dir):
        dirs.sort()
        for name in sorted(files):
            rel = os.path.relpath(os.path.join(root, name), bundle_dir)
            if rel in expected or rel in META_FILES or rel == ".%s.flock" % LOCK_NAME:
                continue
            where = "in %s but " % SUMS_NAME if rel in sums else ""
            reason = "%snot in the manifest" % where
            if rel.startswith(PARTIAL_DIR + os.sep):
                reason = "left over by an interrupted bundle run"
            add("unexpected", rel, "-", reason)

    order = {"missing": 0, "corrupt": 1, "unexpected": 2}
    problems.sort(key=lambda p: (order[p["problem"]], p["file"]))
    return problems, checked


def _pin_text(pin):
    if not isinstance(pin, dict):
        return "nothing"
    return ", ".join("%s=%s" % (k, pin[k]) for k in sorted(pin) if pin[k] not in (None, "", []))


def problems_table(problems):
    """A fixed-width text table (list of lines) of verification problems."""
    headers = ("PROBLEM", "FILE", "ARTIFACT", "REASON")
    rows = [(p["problem"], p["file"], p["artifact"], p["reason"]) for p in problems]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    fmt_line = "  ".join("%%-%ds" % w for w in widths[:-1]) + "  %s"
    lines = [fmt_line % headers]
    lines.extend(fmt_line % r for r in rows)
    return lines
