# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bundle's OS package repositories as data (module_utils/_os_packages.py): deb822 parsing, APT's
failure text, the flat repository archive, the manifest's packages section, and
what the roles install (which the manifest must list for every release)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.labhub.platform.plugins.filter.os_packages import node_os_packages
from ansible_collections.labhub.platform.plugins.module_utils import _bundle
from ansible_collections.labhub.platform.plugins.module_utils import _os_packages as op

REPO = Path(__file__).resolve().parents[4]
MANIFEST = yaml.safe_load((REPO / "files" / "bundle-manifest.yml").read_text())

PACKAGES_INDEX = """Package: libc6
Version: 2.36-9+deb12u13
Priority: optional
Depends: libgcc-s1
Description: GNU C Library
 Contains the standard libraries.
 .
 More text.

Package: base-files
Essential: yes
Priority: required
Version: 12.4+deb12u13
Filename: pool/main/b/base-files/base-files_12.4+deb12u13_amd64.deb

Package: dpkg
Priority: required
Version: 1.21.22
"""


def test_parse_stanzas_keeps_continuations_and_order():
    stanzas = op.parse_stanzas(PACKAGES_INDEX)
    assert [op.field(s, "Package") for s in stanzas] == ["libc6", "base-files", "dpkg"]
    assert op.field(stanzas[0], "description") == "GNU C Library\n Contains the standard libraries.\n .\n More text."
    assert op.field(stanzas[1], "Missing") is None


@pytest.mark.parametrize("text", ["no colon here\n", " continuation first\n"])
def test_parse_stanzas_refuses_garbage(text):
    with pytest.raises(op.PackagesError):
        op.parse_stanzas(text)


def test_apt_output_keeps_the_problem_lines():
    out = ("Reading package lists...\nBuilding dependency tree...\n\nThe following packages have unmet dependencies:\n"
           " postgresql-common : Depends: perl:any but it is not installable\n")
    err = "E: Unable to correct problems, you have held broken packages.\n"
    assert op.apt_output(out, err) == ("The following packages have unmet dependencies: | postgresql-common : Depends: "
                                       "perl:any but it is not installable | E: Unable to correct problems, you have "
                                       "held broken packages.")
    assert op.apt_output("x" * 50, "", limit=10) == "x" * 10


def test_deb_file_name_has_no_epoch_colon():
    assert op.deb_file_name("libcrypt1", "1:4.4.33-2", "amd64") == "libcrypt1_1_4.4.33-2_amd64.deb"
    assert op.deb_file_name("postgresql", "15+248", "all") == "postgresql_15+248_all.deb"


def fake_entries():
    entries = []
    for name, version in (("zeta", "1.0"), ("alpha", "2:3.0-1")):
        data = ("deb of %s" % name).encode()
        file_name = op.deb_file_name(name, version, "amd64")
        control = "Package: %s\nVersion: %s\nArchitecture: amd64\nSHA256: stale\n" % (name, version)
        entries.append((file_name, data, op.index_entry(control, file_name, data)))
    return entries


def test_index_entry_replaces_archive_fields():
    entries = fake_entries()
    name, data, stanza = entries[0]
    assert op.field(stanza, "Filename") == "./" + name
    assert op.field(stanza, "Size") == str(len(data))
    assert op.field(stanza, "SHA256") == hashlib.sha256(data).hexdigest()
    assert [pair[0] for pair in stanza].count("SHA256") == 1


def test_repository_tar_is_reproducible_and_readable(tmp_path):
    first = op.repository_tar(fake_entries())
    second = op.repository_tar(list(reversed(fake_entries())))
    assert first == second
    path = tmp_path / "debian-12.tar"
    path.write_bytes(first)
    with tarfile.open(path) as tar:
        names = tar.getnames()
        assert names[0] == op.INDEX_NAME and names[1:] == sorted(names[1:])
        assert all(m.mtime == 0 and m.uid == 0 and m.uname == "root" for m in tar.getmembers())
    assert op.read_repository(str(path)) == {"alpha": "2:3.0-1", "zeta": "1.0"}


def _tar(path, members):
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("members, reason", [
    ([("a.deb", b"x")], "no Packages index"),
    ([("Packages", b"Package: a\nVersion: 1\nFilename: ./a.deb\n")], "lists a.deb, which the archive lacks"),
    ([("Packages", b""), ("sub/a.deb", b"x")], "not a plain file name"),
])
def test_read_repository_refuses_what_is_not_a_flat_repository(tmp_path, members, reason):
    path = tmp_path / "bad.tar"
    _tar(path, members)
    with pytest.raises(op.PackagesError, match=reason):
        op.read_repository(str(path))


def test_read_repository_refuses_a_non_tar(tmp_path):
    path = tmp_path / "x.tar"
    path.write_bytes(b"not a tar at all" * 64)
    with pytest.raises(op.PackagesError, match="not a readable tar"):
        op.read_repository(str(path))


def test_a_real_deb_goes_through_index_entry(tmp_path):
    """dpkg-deb builds a real .deb; its control fields, as dpkg-deb --field prints them (what
    bundle_fetch reads), make the index entry."""
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: labhub-test\nVersion: 1:1.0-1\nArchitecture: all\nMaintainer: Labhub <labhub@example.org>\n"
        "Description: test package\n a longer description\n")
    deb = tmp_path / "labhub-test.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)], check=True,
                   capture_output=True)
    control = subprocess.run(["dpkg-deb", "--field", str(deb)], check=True, capture_output=True, text=True).stdout
    name = op.deb_file_name("labhub-test", "1:1.0-1", "all")
    stanza = op.index_entry(control, name, deb.read_bytes())
    assert op.field(stanza, "Description") == "test package\n a longer description"
    assert op.field(stanza, "Filename") == "./labhub-test_1_1.0-1_all.deb"


@pytest.mark.parametrize("os_info, expected", [
    ({"id": "debian", "version": "12"}, "debian-12"),
    ({"id": "ubuntu", "version": "24.04"}, "ubuntu-24.04"),
    ({"id": "Ubuntu", "version": " 22.04 "}, "ubuntu-22.04"),
])
def test_release_id(os_info, expected):
    assert op.release_id(os_info) == expected


def test_release_id_needs_both_fields():
    with pytest.raises(op.PackagesError):
        op.release_id({"id": "debian"})


# --------------------------------------------------------------------------- the manifest

def test_manifest_declares_the_supported_releases():
    """Ubuntu 22.04 and 24.04 and Debian 12: the releases preflight accepts (preflight_supported_os)."""
    preflight = yaml.safe_load((REPO / "roles" / "preflight" / "defaults" / "main.yml").read_text())
    supported = sorted("%s-%s" % (o["id"], o["version"]) for o in preflight["preflight_supported_os"])
    assert sorted(e["name"] for e in MANIFEST["packages"]) == supported


@pytest.mark.parametrize("entry", MANIFEST["packages"], ids=lambda e: e["name"])
def test_manifest_entries_are_valid(entry):
    assert op.check_spec(entry) == []
    assert _bundle.artifact_files("packages", entry) == [op.release_file(entry["name"])]
    assert all(s["uri"].startswith(("http://", "https://", "file:")) for s in entry["sources"])


def test_check_spec_names_each_problem():
    problems = op.check_spec({"name": "centos-9", "sources": [{"uri": "http://x"}], "packages": ["Bad_Name"]})
    text = "\n".join(problems)
    for needle in ("name 'centos-9'", "keyring", "sources[0] lacks suite", "sources[0] lacks components",
                   "invalid package names: Bad_Name"):
        assert needle in text
    assert op.check_spec({"name": "debian-12", "file": "packages/x.tar", "keyring": "/k",
                          "sources": [{"uri": "u", "suite": "s", "components": ["main"]}],
                          "packages": ["a1"]}) == ["file must be packages/debian-12.tar (the name the roles look for), "
                                                   "got packages/x.tar"]


def test_pin_and_source_lines():
    entry = MANIFEST["packages"][0]
    pin = _bundle.artifact_pin("packages", entry)
    assert pin["name"] == entry["name"] and pin["packages"] == sorted(entry["packages"])
    lines = op.source_lines(entry, "/k.gpg")
    assert lines[0] == "deb [arch=amd64 signed-by=/k.gpg] http://deb.debian.org/debian bookworm main"
    assert ("packages", entry) in _bundle.manifest_artifacts(MANIFEST)


def role_packages():
    """Every OS package name a role installs: the portal's (vars/Debian.yml) and the cluster nodes'
    (filter node_os_packages, with every storage kind)."""
    portal = yaml.safe_load((REPO / "roles" / "portal" / "vars" / "Debian.yml").read_text())
    names = set(portal["__portal_base_packages"]) | set(portal["__portal_postgresql_packages"])
    for kind in ("hostpath", "microk8s-hostpath", "nfs", "none"):
        names |= set(node_os_packages(kind))
    return names


@pytest.mark.parametrize("entry", MANIFEST["packages"], ids=lambda e: e["name"])
def test_manifest_lists_every_package_a_role_installs(entry):
    assert role_packages() - set(entry["packages"]) == set()


def test_node_os_packages():
    assert node_os_packages("microk8s-hostpath") == ["python3-yaml"]
    assert node_os_packages("nfs") == ["python3-yaml", "nfs-common"]
    with pytest.raises(AnsibleFilterError):
        node_os_packages(None)
