#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: bundle_fetch
short_description: Fetch one offline-bundle artifact (snap, Helm chart, image, OS packages or wheels), resumably
version_added: "0.1.0"
description:
  - Fetches one artifact of the Labhub bundle manifest into a bundle directory and records it in
    C(bundle.lock.json) (pin, source, image digest, sha256 of every file).
  - Skips the artifact when the lock already records the same pin and every recorded file is
    present with the recorded sha256, so an interrupted or repeated run only fetches what is missing
    or damaged.
  - Files are fetched into C(<bundle_dir>/.partial/) and renamed into place only after the fetch
    succeeded and was verified; a leftover partial file from an interrupted run is discarded.
  - "The remote transports are thin: C(snap download), C(skopeo copy docker://REF docker-archive:FILE:REF),
    C(helm pull), C(pip download --only-binary=:all:), C(apt-get install --download-only). O(source)
    replaces only the transport with a local one (an OCI layout for skopeo, a file or directory copy,
    a pip find-links directory); everything else (temp names, verification, lock) is the same code path."
  - "V(packages): one release's OS packages as a flat APT repository in one archive
    (C(packages/<release>.tar): C(Packages) index and C(.deb) files). APT itself resolves the whole
    dependency closure of the listed packages (Depends, Pre-Depends; no Recommends) against the
    release's signed archive, in a private APT root with an empty dpkg status (nothing of the
    machine's own APT state is read or changed). Nothing is left out as already present: a node
    installed from an older point release may need newer libraries than it has, and a minimal
    install may lack what a fuller one has. The versions resolved are recorded in the lock entry
    (C(versions)). Needs C(apt-get), C(apt-cache) and C(dpkg-deb) (any
    Debian or Ubuntu machine) and the archive's keyring (C(keyring) of the entry, or O(keyring))."
  - Runs on the machine that builds the bundle (normally C(localhost)).
author:
  - Labhub engineers (@labhub)
options:
  bundle_dir:
    description: Bundle directory; created if missing.
    type: path
    required: true
  kind:
    description: Artifact kind, the manifest section the O(spec) comes from.
    type: str
    required: true
    choices: [snap, chart, image, packages, wheels]
  spec:
    description:
      - The artifact's manifest entry as written in C(files/bundle-manifest.yml).
      - "V(snap): C(name), C(revision), C(file), C(assert) (C(channel), C(classic) are informational here)."
      - "V(chart): C(name), C(repo), C(version), C(file), optional C(sha256)."
      - "V(image): C(ref) (C(name:tag)), C(file), optional C(digest) (C(sha256:...)), optional C(sha256) of the archive."
      - "V(packages): C(name) (C(<ID>-<VERSION_ID>) of C(/etc/os-release), for example C(debian-12)), C(file)
        (C(packages/<name>.tar)), C(sources) (list of C(uri), C(suite), C(components)), C(keyring),
        C(packages) (names), optional C(architecture) (default C(amd64))."
      - "V(wheels): C(dir), C(python_version), C(platforms), optional C(implementation) (default C(cp)), optional C(name),
        optional C(projects) (list of C(path), C(name), C(version): Python projects of this repository whose own wheels
        are built with C(pip wheel --no-deps) from O(project_root) and must carry exactly that name and version)."
    type: dict
    required: true
  source:
    description:
      - Local source replacing the remote transport. V(image) - any skopeo source
        (for example C(oci:/path/layout:tag)). V(chart) - a chart C(.tgz) file. V(snap) - a
        directory holding the C(.snap) and C(.assert) files named as in O(spec).
        V(wheels) - a directory of wheels (pip C(--no-index --find-links)).
        V(packages) - a release repository archive another bundle holds (its C(packages/<release>.tar));
        it must hold every package the entry lists. (A local mirror of the archive is a C(file:) URI
        in the entry's C(sources) instead.)
      - Omit to fetch from the internet.
    type: str
  requirements:
    description: Pinned requirements file (pip-compile style) for V(wheels). Required when O(kind=wheels).
    type: path
  project_root:
    description:
      - Directory the C(path) of each entry in the wheels' C(projects) is relative to (the collection root).
      - Required when the V(wheels) spec lists C(projects).
    type: path
  keyring:
    description: Keyring that signs the release's archive, replacing the entry's C(keyring) (V(packages) only).
    type: path
  arch:
    description: Architecture to fetch for (skopeo C(--override-arch)).
    type: str
    default: amd64
  force:
    description: Fetch again even when the lock says the artifact is present and verified.
    type: bool
    default: false
  skopeo_path:
    description: skopeo executable (name or path).
    type: str
    default: skopeo
  snap_path:
    description: snap executable (name or path).
    type: str
    default: snap
  helm_path:
    description: helm executable (name or path).
    type: str
    default: helm
  python_path:
    description: Python used for C(python -m pip download).
    type: str
    default: python3
notes:
  - Check mode reports whether the artifact would be fetched and changes nothing.
  - Supports diff mode (lock entry before and after).
seealso:
  - module: labhub.platform.bundle_verify
"""

EXAMPLES = r"""
- name: Fetch the z2jh hub image into the bundle
  labhub.platform.bundle_fetch:
    bundle_dir: /srv/labhub-bundle
    kind: image
    spec:
      ref: quay.io/jupyterhub/k8s-hub:4.4.0
      file: images/quay.io_jupyterhub_k8s-hub_4.4.0.tar

- name: Same code path from a local OCI layout (tests, or a mirror on disk)
  labhub.platform.bundle_fetch:
    bundle_dir: /tmp/bundle
    kind: image
    spec:
      ref: quay.io/jupyterhub/k8s-hub:4.4.0
      file: images/quay.io_jupyterhub_k8s-hub_4.4.0.tar
    source: oci:/tmp/layout:k8s-hub

- name: Portal wheels for Python 3.11 on x86_64
  labhub.platform.bundle_fetch:
    bundle_dir: /srv/labhub-bundle
    kind: wheels
    requirements: "{{ playbook_dir }}/../portal/requirements.lock"
    spec:
      dir: wheels
      python_version: "3.11"
      platforms: [manylinux2014_x86_64, manylinux_2_28_x86_64]
"""

RETURN = r"""
action:
  description: V(present) (already fetched and verified), V(fetched), or V(fetch) (check mode, would fetch).
  returned: always
  type: str
  sample: fetched
artifact:
  description: The artifact's id in the lock file.
  returned: always
  type: str
  sample: image:quay.io/jupyterhub/k8s-hub:4.4.0
files:
  description: Files of the artifact (relative to O(bundle_dir)) with their sha256.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: Path relative to the bundle directory.
      type: str
    sha256:
      description: sha256 of the file (empty in check mode when not fetched yet).
      type: str
  sample: [{"path": "images/quay.io_jupyterhub_k8s-hub_4.4.0.tar", "sha256": "b68e..."}]
digest:
  description: Manifest digest of the image source (V(image) only).
  returned: when kind is image and the artifact is present or fetched
  type: str
  sample: sha256:c37515bac21ef272202a2c69166f4c8eec059af3aa66f7efade9b0174699d920
reason:
  description: Why the artifact was (or would be) fetched.
  returned: when action is not present
  type: str
  sample: sha256 of images/x.tar differs from the lock
"""

import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.labhub.platform.plugins.module_utils._bundle import (
    BundleError, LockUpdate, PARTIAL_DIR, artifact_files, artifact_id, artifact_pin, canonical_name,
    normalize_sha256, read_lock, safe_relpath, sha256_file, split_image_ref, wheel_name_version,
)
from ansible_collections.labhub.platform.plugins.module_utils._cmd_runner import CmdError, CmdRunner, fmt
from ansible_collections.labhub.platform.plugins.module_utils._os_packages import (
    PackagesError, apt_output, check_spec, deb_file_name, field, index_entry, parse_stanzas, read_repository, repository_tar,
    source_lines,
)

REQUIRED = {
    "snap": ("name", "revision", "file", "assert"),
    "chart": ("name", "repo", "version", "file"),
    "image": ("ref", "file"),
    "wheels": ("python_version", "platforms"),
    "packages": ("name", "file", "sources", "keyring", "packages"),
}

# The private APT root of a packages fetch: nothing of the machine's own APT configuration,
# lists, caches or dpkg status is read or written.
APT_CONF = """Dir "%(root)s/";
Dir::State::status "%(root)s/status";
APT::Architecture "%(arch)s";
APT::Architectures { "%(arch)s"; };
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT::Sandbox::User "root";
Acquire::Languages "none";
Acquire::GzipIndexes "false";
Acquire::Retries "3";
Debug::NoLocking "true";
"""


class Fetcher:
    def __init__(self, module):
        self.module = module
        p = module.params
        self.kind = p["kind"]
        self.spec = dict(p["spec"])
        self.source = p["source"]
        self.bundle_dir = os.path.abspath(p["bundle_dir"])
        self.art = None
        self.tmp = None
        self.extra = {}

    # ------------------------------------------------------------------ helpers
    def cleanup(self):
        """Drop this artifact's partial files (and .partial when it is empty)."""
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            try:
                os.rmdir(os.path.dirname(self.tmp))
            except OSError:
                pass

    def fail(self, reason, **extra):
        self.cleanup()
        name = self.art or self.kind
        self.module.fail_json(msg="Failed to fetch %s '%s' due to: %s" % (self.kind, name, reason), **extra)

    def runner(self, option, base=(), formats=None):
        exe = self.module.params[option]
        path = self.module.get_bin_path(exe, required=False) if not os.path.isabs(exe) else exe
        if not path or not os.path.exists(path):
            self.fail("'%s' not found (option %s)" % (exe, option))
        return CmdRunner(self.module, [path] + list(base), formats or {})

    def validate(self):
        missing = [k for k in REQUIRED[self.kind] if self.spec.get(k) in (None, "", [])]
        if missing:
            self.fail("spec lacks %s" % ", ".join(missing))
        if self.kind == "image":
            name, tag = split_image_ref(self.spec["ref"])
            if not tag or tag == "latest":
                self.fail("image ref '%s' must be pinned to a tag other than latest" % self.spec["ref"])
            self.spec["digest"] = ("sha256:" + normalize_sha256(self.spec["digest"])) if self.spec.get("digest") else None
        if self.spec.get("sha256"):
            normalize_sha256(self.spec["sha256"])
        if self.kind == "packages":
            if self.module.params["keyring"]:
                self.spec["keyring"] = self.module.params["keyring"]
            problems = check_spec(self.spec)
            if problems:
                self.fail("; ".join(problems))

        if self.kind == "wheels":
            req = self.module.params["requirements"]
            if not req:
                self.fail("option requirements is required for kind=wheels")
            if not os.path.isfile(req):
                self.fail("requirements file '%s' not found" % req)
            self.spec.setdefault("dir", "wheels")
            safe_relpath(self.spec["dir"])

    def pin(self):
        req_sha = sha256_file(self.module.params["requirements"]) if self.kind == "wheels" else None
        return artifact_pin(self.kind, self.spec, req_sha)

    # ------------------------------------------------------------------ state
    def present(self, entry, pin):
        """(True, None) when the lock entry matches the pin and every file verifies."""
        if not entry:
            return False, "not in the lock"
        if entry.get("pin") != pin:
            return False, "the lock holds another pin"
        files = entry.get("files") or {}
        if not files:
            return False, "the lock lists no files"
        wanted = artifact_files(self.kind, self.spec)
        if wanted and sorted(wanted) != sorted(files):
            return False, "the lock lists other file names"
        for rel, digest in sorted(files.items()):
            path = os.path.join(self.bundle_dir, rel)
            if not os.path.isfile(path):
                return False, "%s is missing" % rel
            if sha256_file(path) != digest:
                return False, "sha256 of %s differs from the lock" % rel
        pinned = normalize_sha256(self.spec.get("sha256"))
        if pinned and files.get(safe_relpath(self.spec["file"])) != pinned:
            return False, "sha256 of %s differs from the manifest" % self.spec["file"]
        return True, None

    # ------------------------------------------------------------------ transports
    def fetch_image(self, tmp):
        name, dummy = split_image_ref(self.spec["ref"])
        digest = self.spec.get("digest")
        src = self.source or ("docker://%s@%s" % (name, digest) if digest else "docker://%s" % self.spec["ref"])
        arch = self.module.params["arch"]
        skopeo = self.runner("skopeo_path", formats={
            "arch": fmt.as_opt_val("--override-arch"),
            "os": fmt.as_opt_val("--override-os"),
        })
        got = skopeo.run(["inspect", "--format", "{{.Digest}}", src], arch=arch, os="linux").stdout.strip()
        if digest and got != digest:
            self.fail("source %s has digest %s, the manifest pins %s" % (src, got, digest))
        out = os.path.join(tmp, os.path.basename(self.spec["file"]))
        skopeo.run(["copy", "--retry-times", "3", src, "docker-archive:%s:%s" % (out, self.spec["ref"])],
                   arch=arch, os="linux")
        return {safe_relpath(self.spec["file"]): out}, got, src

    def fetch_chart(self, tmp):
        if self.source:
            src = self.source
            shutil.copyfile(src, os.path.join(tmp, "chart.tgz"))
        else:
            src = "%s %s %s" % (self.spec["repo"], self.spec["name"], self.spec["version"])
            helm = self.runner("helm_path", base=["pull"], formats={
                "repo": fmt.as_opt_val("--repo"),
                "version": fmt.as_opt_val("--version"),
                "dest": fmt.as_opt_val("--destination"),
            })
            helm.run([self.spec["name"]], repo=self.spec["repo"], version=str(self.spec["version"]), dest=tmp)
        tgz = [f for f in os.listdir(tmp) if f.endswith(".tgz")]
        if len(tgz) != 1:
            self.fail("expected one chart archive, got %s" % (sorted(tgz) or "none"))
        return {safe_relpath(self.spec["file"]): os.path.join(tmp, tgz[0])}, None, src

    def fetch_snap(self, tmp):
        snap_base = os.path.basename(self.spec["file"])
        assert_base = os.path.basename(self.spec["assert"])
        if self.source:
            src = self.source
            for base in (snap_base, assert_base):
                path = os.path.join(src, base)
                if not os.path.isfile(path):
                    self.fail("local source has no %s" % path)
                shutil.copyfile(path, os.path.join(tmp, base))
            got_snap, got_assert = os.path.join(tmp, snap_base), os.path.join(tmp, assert_base)
        else:
            src = "snap store %s revision %s" % (self.spec["name"], self.spec["revision"])
            basename = "%s_%s" % (self.spec["name"], self.spec["revision"])
            snap = self.runner("snap_path", base=["download"], formats={
                "revision": fmt.as_opt_eq_val("--revision"),
                "target": fmt.as_opt_eq_val("--target-directory"),
                "basename": fmt.as_opt_eq_val("--basename"),
            })
            snap.run([self.spec["name"]], revision=self.spec["revision"], target=tmp, basename=basename)
            got_snap = os.path.join(tmp, basename + ".snap")
            got_assert = os.path.join(tmp, basename + ".assert")
            for path in (got_snap, got_assert):
                if not os.path.isfile(path):
                    self.fail("snap download did not produce %s" % os.path.basename(path))
        return {safe_relpath(self.spec["file"]): got_snap, safe_relpath(self.spec["assert"]): got_assert}, None, src

    def fetch_packages(self, tmp):
        spec = self.spec
        out = os.path.join(tmp, os.path.basename(spec["file"]))
        if self.source:
            try:
                versions = read_repository(self.source)
            except PackagesError as exc:
                self.fail("source %s is not a release repository archive: %s" % (self.source, exc))
            lacking = [str(n) for n in spec["packages"] if n not in versions]
            if lacking:
                self.fail("source %s lacks %s" % (self.source, ", ".join(lacking)))
            shutil.copyfile(self.source, out)
            self.extra = {"versions": versions}
            return {safe_relpath(spec["file"]): out}, None, self.source
        keyring = os.path.abspath(spec["keyring"])
        if not os.path.isfile(keyring):
            self.fail("keyring %s not found (the archive's signing keys; on Debian, Ubuntu's come from "
                      "Ubuntu's ubuntu-keyring package)" % keyring)
        root = os.path.join(tmp, "apt")
        for sub in ("etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/sources.list.d",
                    "var/lib/apt/lists/partial", "var/cache/apt/archives/partial"):
            os.makedirs(os.path.join(root, sub))
        with open(os.path.join(root, "etc/apt/sources.list"), "w") as fh:
            fh.write("\n".join(source_lines(spec, keyring)) + "\n")
        open(os.path.join(root, "status"), "w").close()
        conf = os.path.join(root, "apt.conf")
        with open(conf, "w") as fh:
            fh.write(APT_CONF % {"root": root, "arch": spec.get("architecture", "amd64")})
        env = {"APT_CONFIG": conf, "LC_ALL": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}

        def run(argv):
            exe = self.module.get_bin_path(argv[0], required=False)
            if not exe:
                self.fail("'%s' not found (needed to fetch OS packages; any Debian or Ubuntu machine has it)" % argv[0])
            rc, out, err = self.module.run_command([exe] + argv[1:], environ_update=env)
            if rc != 0:
                self.fail("%s exited %d: %s" % (" ".join(argv[:2]), rc, apt_output(out, err)))
            return out

        run(["apt-get", "-q", "update"])
        run(["apt-get", "-q", "-y", "--download-only", "install"] + [str(n) for n in spec["packages"]])
        archives = os.path.join(root, "var/cache/apt/archives")
        entries, versions = [], {}
        for deb in sorted(f for f in os.listdir(archives) if f.endswith(".deb")):
            path = os.path.join(archives, deb)
            control = run(["dpkg-deb", "--field", path])
            stanza = parse_stanzas(control)[0]
            pkg, ver, arch = field(stanza, "Package"), field(stanza, "Version"), field(stanza, "Architecture")
            name = deb_file_name(pkg, ver, arch)
            with open(path, "rb") as fh:
                data = fh.read()
            entries.append((name, data, index_entry(control, name, data)))
            versions[pkg] = ver
        missing = [n for n in spec["packages"] if n not in versions]
        if missing:
            self.fail("APT fetched nothing for %s" % ", ".join(missing))
        with open(out, "wb") as fh:
            fh.write(repository_tar(entries))
        shutil.rmtree(root)
        self.extra = {"versions": versions}
        return {safe_relpath(spec["file"]): out}, None, "; ".join(source_lines(spec, keyring))

    def fetch_wheels(self, tmp):
        spec = self.spec
        pip = self.runner("python_path", base=["-m", "pip", "download"], formats={
            "dest": fmt.as_opt_val("--dest"),
            "requirement": fmt.as_opt_val("--requirement"),
            "python_version": fmt.as_opt_val("--python-version"),
            "implementation": fmt.as_opt_val("--implementation"),
            "platforms": fmt.as_list("--platform"),
            "no_index": fmt.as_bool("--no-index"),
            "find_links": fmt.as_opt_val("--find-links"),
        })
        pip.run(["--only-binary=:all:", "--no-deps", "--disable-pip-version-check", "--no-input"],
                dest=tmp, requirement=self.module.params["requirements"],
                python_version=str(spec["python_version"]), implementation=spec.get("implementation", "cp"),
                platforms=spec["platforms"], no_index=bool(self.source), find_links=self.source)
        for project in spec.get("projects") or []:
            self.build_project_wheel(project, tmp)
        wheels = sorted(f for f in os.listdir(tmp) if f.endswith(".whl"))
        if not wheels:
            self.fail("pip download produced no wheels")
        src = self.source or "PyPI"
        return dict((os.path.join(spec["dir"], w), os.path.join(tmp, w)) for w in wheels), None, src

    def build_project_wheel(self, project, tmp):
        """`pip wheel --no-deps` of a project of this repository (the portal): its own wheel
        is in no index, and must match the name and version the manifest pins."""
        root = self.module.params["project_root"]
        if not root:
            self.fail("the wheels spec lists projects but project_root is not set")
        for key in ("path", "name", "version"):
            if not project.get(key):
                self.fail("wheels project entry %s lacks %s" % (project, key))
        src = os.path.join(root, project["path"])
        if not os.path.isfile(os.path.join(src, "pyproject.toml")):
            self.fail("project '%s' has no pyproject.toml under %s" % (project["name"], src))
        out = tempfile.mkdtemp(dir=tmp)
        pip = self.runner("python_path", base=["-m", "pip", "wheel"], formats={
            "wheel_dir": fmt.as_opt_val("--wheel-dir"),
        })
        pip.run(["--no-deps", "--disable-pip-version-check", "--no-input", src], wheel_dir=out)
        built = [f for f in os.listdir(out) if f.endswith(".whl")]
        want = (canonical_name(project["name"]), str(project["version"]))
        if len(built) != 1 or wheel_name_version(built[0]) != want:
            self.fail("building project '%s' gave %s, but the manifest pins %s==%s"
                      % (project["path"], built or "no wheel", want[0], want[1]))
        os.rename(os.path.join(out, built[0]), os.path.join(tmp, built[0]))
        os.rmdir(out)

    # ------------------------------------------------------------------ main
    def run(self):
        self.validate()
        self.art = artifact_id(self.kind, self.spec)
        pin = self.pin()
        entry = None
        if os.path.isdir(self.bundle_dir):
            entry = read_lock(self.bundle_dir, strict=False)["artifacts"].get(self.art)
        ok, reason = self.present(entry, pin)
        if ok and not self.module.params["force"]:
            files = [{"path": k, "sha256": v} for k, v in sorted(entry["files"].items())]
            return dict(changed=False, action="present", artifact=self.art, files=files,
                        **({"digest": entry.get("digest")} if self.kind == "image" else {}))
        if ok:
            reason = "force=true"
        before = entry or {}
        if self.module.check_mode:
            wanted = artifact_files(self.kind, self.spec)
            files = [{"path": p, "sha256": ""} for p in wanted]
            return dict(changed=True, action="fetch", artifact=self.art, files=files, reason=reason,
                        diff=dict(before=before, after={"pin": pin}))

        os.makedirs(self.bundle_dir, exist_ok=True)
        tmp = os.path.join(self.bundle_dir, PARTIAL_DIR, self.art.replace("/", "_").replace(":", "_"))
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        os.makedirs(tmp)
        self.tmp = tmp
        try:
            produced, digest, src = getattr(self, "fetch_" + self.kind)(tmp)
        except (CmdError, IOError, OSError) as exc:
            self.fail(str(exc))

        files = {}
        for rel, path in produced.items():
            files[rel] = sha256_file(path)
        pinned = normalize_sha256(self.spec.get("sha256"))
        if pinned and files.get(safe_relpath(self.spec["file"])) != pinned:
            self.fail("sha256 %s of the fetched file differs from the manifest's %s"
                      % (files.get(safe_relpath(self.spec["file"])), pinned))

        with LockUpdate(self.bundle_dir) as lock:
            old = lock["artifacts"].get(self.art) or {}
            for rel, path in sorted(produced.items()):
                dest = os.path.join(self.bundle_dir, rel)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                os.replace(path, dest)
            for rel in sorted(set(old.get("files") or {}) - set(files)):
                stale = os.path.join(self.bundle_dir, rel)
                if os.path.isfile(stale):
                    os.unlink(stale)
            after = {"kind": self.kind, "pin": pin, "source": src, "files": files}
            if digest:
                after["digest"] = digest
            after.update(self.extra)
            lock["artifacts"][self.art] = after
        self.cleanup()
        result = dict(changed=True, action="fetched", artifact=self.art, reason=reason,
                      files=[{"path": k, "sha256": v} for k, v in sorted(files.items())],
                      diff=dict(before=before, after=after))
        if self.kind == "image":
            result["digest"] = digest
        return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            bundle_dir=dict(type="path", required=True),
            kind=dict(type="str", required=True, choices=["snap", "chart", "image", "packages", "wheels"]),
            spec=dict(type="dict", required=True),
            source=dict(type="str"),
            requirements=dict(type="path"),
            project_root=dict(type="path"),
            keyring=dict(type="path"),
            arch=dict(type="str", default="amd64"),
            force=dict(type="bool", default=False),
            skopeo_path=dict(type="str", default="skopeo"),
            snap_path=dict(type="str", default="snap"),
            helm_path=dict(type="str", default="helm"),
            python_path=dict(type="str", default="python3"),
        ),
        supports_check_mode=True,
    )
    fetcher = Fetcher(module)
    try:
        result = fetcher.run()
    except BundleError as exc:
        fetcher.fail(str(exc))
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
