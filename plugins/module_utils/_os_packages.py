# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""OS packages in the offline bundle: the data side, shared by ``bundle_fetch`` (which builds a
release's package repository on the online machine) and ``os_packages`` (which installs from it on
a node).

A release's repository is ONE archive in the bundle, ``packages/<release>.tar`` (for example
``packages/debian-12.tar``): a flat APT repository (``Packages`` index and the ``.deb`` files side
by side, ``deb [trusted=yes] file:<dir> ./``). Its integrity comes from the bundle: the archive's
sha256 is in SHA256SUMS and the lock, and every ``.deb``'s sha256 is in the ``Packages`` index,
which APT checks while installing.

What goes in: the manifest's package names for that release and their whole dependency closure
(Depends and Pre-Depends, no Recommends), resolved by APT itself against the release's archive
with an empty dpkg status. Nothing is left out as "every install has it": a node installed from an
older point release may need newer libraries than it has (and APT on the node then takes them from
the repository), and minimal installs differ (debootstrap's minbase lacks perl, which APT's own
resolution of the required packages pulls in). On the node, APT installs only what is missing.

Pure Python (no Ansible imports) so the unit tests can use it directly.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import io
import os
import re
import tarfile

INDEX_NAME = "Packages"
RELEASE_RE = re.compile(r"^(debian|ubuntu)-[0-9]+(\.[0-9]+)?$")
# Debian's package-name rule (policy 5.6.1), without an architecture qualifier.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


class PackagesError(Exception):
    """A problem worth reporting to the user as is."""


def release_file(release):
    """The bundle file of a release's repository: packages/<release>.tar."""
    return "packages/%s.tar" % release


def release_id(os_info):
    """'<id>-<version>' of an os-release reading (_hardware.parse_os_release): debian-12,
    ubuntu-22.04. Debian's VERSION_ID is the major release, Ubuntu's "YY.MM". ID_LIKE is not
    used: a derivative's packages are not its parent's."""
    distro = str(os_info.get("id") or "").strip().lower()
    version = str(os_info.get("version") or "").strip()
    if not distro or not version:
        raise PackagesError("the OS release has no ID or VERSION_ID")
    return "%s-%s" % (distro, version)


def parse_stanzas(text):
    """deb822 paragraphs (Packages, dpkg status, control files) -> list of ordered
    [(field, value)] lists; continuation lines stay part of their field's value."""
    stanzas, current = [], []
    for line in text.splitlines():
        if not line.strip():
            if current:
                stanzas.append(current)
                current = []
            continue
        if line[0] in " \t":
            if not current:
                raise PackagesError("continuation line before any field: %r" % line)
            field, value = current[-1]
            current[-1] = (field, value + "\n" + line)
            continue
        if ":" not in line:
            raise PackagesError("line is not 'Field: value': %r" % line)
        field, value = line.split(":", 1)
        current.append((field.strip(), value.strip()))
    if current:
        stanzas.append(current)
    return stanzas


def field(stanza, name):
    for key, value in stanza:
        if key.lower() == name.lower():
            return value
    return None


def format_stanza(stanza):
    return "".join("%s: %s\n" % (key, value) if value else "%s:\n" % key for key, value in stanza)


def apt_output(out, err, limit=2000):
    """What an APT failure says, in one line: the problem lines of stdout (APT prints "The following
    packages have unmet dependencies" there) followed by stderr's errors, the end kept."""
    keep = []
    for line in (out or "").splitlines():
        text = line.strip()
        if text.startswith(("Reading ", "Building ", "Get:", "Hit:", "Ign:", "Fetched ", "0 upgraded")) or not text:
            continue
        keep.append(text)
    keep.extend(line.strip() for line in (err or "").splitlines() if line.strip())
    text = " | ".join(keep)
    return text[-limit:] if len(text) > limit else text


def deb_file_name(package, version, architecture):
    """A plain file name for a .deb in the flat repository (no epoch colon, nothing to escape)."""
    raw = "%s_%s_%s.deb" % (package, version, architecture)
    return re.sub(r"[^A-Za-z0-9.+~_-]", "_", raw)


def index_entry(control_text, file_name, data):
    """A Packages stanza for one .deb: its control fields plus Filename, Size and SHA256."""
    stanzas = parse_stanzas(control_text)
    if len(stanzas) != 1:
        raise PackagesError("%s: control has %d paragraphs" % (file_name, len(stanzas)))
    stanza = [(k, v) for k, v in stanzas[0] if k.lower() not in ("filename", "size", "md5sum", "sha256")]
    stanza += [("Filename", "./" + file_name), ("Size", str(len(data))),
               ("SHA256", hashlib.sha256(data).hexdigest())]
    return stanza


def repository_tar(entries):
    """Bytes of a reproducible tar of a flat repository.

    entries: list of (file_name, deb_bytes, index_stanza). Members sorted by name, owner root,
    mtime 0: the same packages always give the same archive (so a rerun changes nothing).
    """
    index = "\n".join(format_stanza(stanza) for dummy, dummy2, stanza in
                      sorted(entries, key=lambda e: e[0])).encode("utf-8")
    members = [(INDEX_NAME, index)] + sorted(((name, data) for name, data, dummy in entries), key=lambda m: m[0])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def read_repository(path):
    """{package: version} of a repository archive's Packages index; PackagesError when the
    archive is not a flat repository (no index, a member outside it, a listed .deb missing)."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            names = tar.getnames()
            for name in names:
                if os.path.isabs(name) or ".." in name.split("/") or "/" in name:
                    raise PackagesError("member '%s' is not a plain file name" % name)
            if INDEX_NAME not in names:
                raise PackagesError("no %s index" % INDEX_NAME)
            handle = tar.extractfile(INDEX_NAME)
            index = handle.read().decode("utf-8") if handle else ""
    except (tarfile.TarError, IOError, OSError) as exc:
        raise PackagesError("not a readable tar archive (%s)" % exc)
    out = {}
    for stanza in parse_stanzas(index):
        filename = (field(stanza, "Filename") or "")[2:]
        if filename not in names:
            raise PackagesError("%s lists %s, which the archive lacks" % (INDEX_NAME, filename or "a package"))
        out[field(stanza, "Package")] = field(stanza, "Version")
    return out


def check_spec(spec):
    """Problems (list of text) of one manifest `packages` entry."""
    problems = []
    name = spec.get("name") or ""
    if not RELEASE_RE.match(name):
        problems.append("name '%s' is not <debian|ubuntu>-<VERSION_ID> (as /etc/os-release gives it)" % name)
    elif spec.get("file") != release_file(name):
        problems.append("file must be %s (the name the roles look for), got %s" % (release_file(name), spec.get("file")))
    if not spec.get("keyring"):
        problems.append("keyring (the archive's signing keyring on the online machine) is missing")
    sources = spec.get("sources") or []
    if not sources:
        problems.append("sources is empty")
    for i, source in enumerate(sources):
        for key in ("uri", "suite", "components"):
            if not source.get(key):
                problems.append("sources[%d] lacks %s" % (i, key))
    names = spec.get("packages") or []
    if not names:
        problems.append("packages is empty")
    bad = [n for n in names if not NAME_RE.match(str(n))]
    if bad:
        problems.append("invalid package names: %s" % ", ".join(map(str, bad)))
    return problems


def source_lines(spec, keyring):
    """sources.list lines of a manifest entry (signed-by its keyring, one architecture)."""
    arch = spec.get("architecture", "amd64")
    out = []
    for source in spec["sources"]:
        components = source["components"]
        if isinstance(components, (list, tuple)):
            components = " ".join(components)
        out.append("deb [arch=%s signed-by=%s] %s %s %s" % (arch, keyring, source["uri"], source["suite"], components))
    return out


# --------------------------------------------------------------------------- what nodes need
# Every cluster node: PyYAML for kubernetes.core.helm (helm runs on the first control-plane node,
# and any node may become the first one after remove_node.yml).
CLUSTER_NODE_PACKAGES = ("python3-yaml",)
# kubelet mounts NFS volumes with the host's mount.nfs.
NFS_CLIENT_PACKAGES = ("nfs-common",)


def node_packages(storage_kind):
    """The OS packages site.yml and add_node.yml install on every cluster node."""
    names = list(CLUSTER_NODE_PACKAGES)
    if storage_kind == "nfs":
        names.extend(NFS_CLIENT_PACKAGES)
    return names
