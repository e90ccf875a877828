#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: ctr_image
short_description: Import an image archive into containerd, only when needed
version_added: 0.1.0
description:
  - Imports a docker-archive or OCI layout tar into containerd with C(ctr images import),
    for MicroK8s' containerd (the default socket and C(microk8s ctr)) or any containerd.
  - The module reads the archive's C(index.json) or C(manifest.json) without importing it
    to learn which image names the import would create and the digest each would point at,
    compares them with C(ctr images ls) in O(namespace), and imports the archive only when an
    image is missing or holds a different digest. Check mode predicts exactly that.
  - "Naming follows containerd 1.6: docker-archive names are the C(RepoTags), normalised like
    Docker (V(busybox:1.36) becomes V(docker.io/library/busybox:1.36)); OCI names come from the
    C(io.containerd.image.name) annotation, else C(org.opencontainers.image.ref.name). A tag-only
    OCI ref name needs O(base_name) (ctr would otherwise invent V(import-<date>:<tag>))."
  - "A missing file, a checksum mismatch, a corrupt archive, an unreachable socket or a failed
    import fails with C(Failed to import image archive '<src>' due to: <reason>). When the import
    itself fails, image names that did not exist before this call are removed again, so a failed
    call adds no image. A name that already existed with another digest and was overwritten by a
    partly failed import is not restored."
  - With O(state=absent), removes the archive's image names (or O(names)) from the namespace.
    Only the image records are removed; containerd's garbage collector frees the content.
author:
  - Labhub engineers (@labhub)
extends_documentation_fragment:
  - labhub.platform.containerd
options:
  src:
    description:
      - Path of the image archive on the managed node, a plain (uncompressed) tar as written by
        C(skopeo copy ... docker-archive:), C(docker save), or an OCI layout in a tar.
      - Compressed archives are refused, as C(ctr images import) cannot read them.
      - Required with O(state=present). With O(state=absent) it names the images to remove
        unless O(names) is given.
    type: path
  sha256:
    description:
      - Expected SHA-256 of O(src) (hex, optionally prefixed with C(sha256:)).
      - With O(state=present) the file is hashed and compared before any import (and in check
        mode whenever an import would happen); a mismatch fails and nothing is imported.
      - When every image of the archive is already present with the archive's digests, the file
        is not hashed, because nothing is taken from it and containerd's content is addressed by those
        digests. This keeps re-runs over large bundles fast.
      - When the archive's index is unreadable, or lacks O(names) or O(platform), the checksum is
        verified first, so a damaged file is reported as a checksum mismatch.
      - Not checked with O(state=absent).
    type: str
  state:
    description:
      - V(present) imports the archive when one of its images is missing or differs.
      - V(absent) removes the images named by the archive or by O(names).
    type: str
    choices: [present, absent]
    default: present
  names:
    description:
      - Image names the caller expects.
      - With O(state=present), each name must be one the archive creates (compared literally or
        after Docker normalisation); otherwise the module fails before changing anything. The
        whole archive is still imported and every image in it is reported.
      - With O(state=absent), exactly these names are removed (O(src) is then optional).
    type: list
    elements: str
  base_name:
    description:
      - Passed to C(ctr images import --base-name). OCI images named only by a tag become
        C(<base_name>:<tag>), and OCI images whose full name does not start with O(base_name)
        are not imported (docker-archive names are not affected, as in ctr).
    type: str
  platform:
    description:
      - Import (and unpack) the content for this platform only, for example V(linux/arm64)
        (C(ctr images import --platform)). The default is the node's platform.
      - The module fails before importing when an image in the archive declares platforms and
        none matches.
      - Mutually exclusive with O(all_platforms).
    type: str
  all_platforms:
    description:
      - Import the content of every platform in the archive (C(--all-platforms)).
    type: bool
    default: false
  snapshotter:
    description:
      - Snapshotter to unpack into (C(--snapshotter)); containerd's default when not set.
    type: str
notes:
  - Images are compared by name and target digest. An image that is present with the expected
    digest is left alone even if O(platform), O(all_platforms) or O(snapshotter) differ from the
    import that created it.
  - For a docker-archive containerd synthesises the manifest; when the digest it holds differs
    from the predicted one (for example because it had stored compressed copies of the layers),
    the module compares the config digest of the stored manifest instead.
  - Check mode and diff mode are supported.
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
seealso:
  - name: ctr images import
    description: containerd's ctr client.
    link: https://github.com/containerd/containerd/blob/release/1.6/cmd/ctr/commands/images/import.go
"""

EXAMPLES = r"""
- name: Import the hub image from the offline bundle into MicroK8s
  labhub.platform.ctr_image:
    src: /var/lib/labhub/bundle/images/k8s-hub_4.0.0.tar
    sha256: 0f6a3c5e2b7d9e1f4a6b8c0d2e4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c6d8e0f
    names:
      - quay.io/jupyterhub/k8s-hub:4.0.0

- name: Import into a plain containerd, all platforms, native snapshotter
  labhub.platform.ctr_image:
    src: /srv/images/tools.tar
    address: /run/containerd/containerd.sock
    namespace: default
    ctr_path: /usr/bin/ctr
    all_platforms: true
    snapshotter: native

- name: Import an OCI archive whose index names images only by tag
  labhub.platform.ctr_image:
    src: /srv/images/app-oci.tar
    base_name: registry.example.org/lab/app

- name: Remove the images an archive created
  labhub.platform.ctr_image:
    src: /var/lib/labhub/bundle/images/k8s-hub_4.0.0.tar
    state: absent

- name: Remove images by name
  labhub.platform.ctr_image:
    names:
      - quay.io/jupyterhub/k8s-hub:3.3.8
    state: absent
"""

RETURN = r"""
images:
  description:
    - One entry per image name the call handled, in archive order (or O(names) order).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Image name (reference) in containerd.
      type: str
      sample: docker.io/library/busybox:1.36
    digest:
      description:
        - Digest the image points at after the call (manifest or index digest); for a removed
          image the digest it had; null for an absent image.
      type: str
      sample: sha256:6d9ac9237a84afe1516540f40a0fafdc86859b2141954b4d643af7066d598b74
    previous_digest:
      description: Digest the name pointed at before the call, null if it did not exist.
      type: str
    action:
      description:
        - V(imported) (was missing or held another digest; in check mode, would be imported),
          V(present) (already there with this digest), V(removed) (was removed; in check mode,
          would be removed), V(absent) (nothing to remove).
      type: str
      sample: imported
    platforms:
      description: Platforms the archive declares for the image (present state only).
      type: list
      elements: str
      sample: [linux/amd64]
archive:
  description: What the module learnt from O(src).
  returned: when O(src) was read
  type: dict
  contains:
    format:
      description: V(docker) or V(oci).
      type: str
    names:
      description: Image names the archive creates.
      type: list
      elements: str
    unnamed:
      description: Entries without a name (ctr imports their content but creates no image).
      type: int
diff:
  description: Image names and digests before and after (diff mode).
  returned: when diff mode is on
  type: dict
  sample:
    before:
      images:
        docker.io/library/app:1: sha256:1111111111111111111111111111111111111111111111111111111111111111
    after:
      images:
        docker.io/library/app:1: sha256:2222222222222222222222222222222222222222222222222222222222222222
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.labhub.platform.plugins.module_utils._containerd import (
    CONTAINERD_ARGUMENT_SPEC, ContainerdError, Ctr, resolve_ctr,
)
from ansible_collections.labhub.platform.plugins.module_utils._image_archive import (
    ArchiveError, file_sha256, platform_matches, read_image_archive, same_reference,
)

_SHA256_RE = re.compile(r"^(?:sha256:)?([0-9a-fA-F]{64})$")


class CtrImageFailure(Exception):
    """A failure whose message is the reason part of the module's error."""


def argument_spec():
    spec = dict(
        src=dict(type="path"),
        sha256=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        names=dict(type="list", elements="str"),
        base_name=dict(type="str"),
        platform=dict(type="str"),
        all_platforms=dict(type="bool", default=False),
        snapshotter=dict(type="str"),
    )
    spec.update(CONTAINERD_ARGUMENT_SPEC)
    return spec


def _current_for(name, current):
    """The containerd entry for ``name`` (literal match first, then normalised)."""
    if name in current:
        return name, current[name]
    for ref, info in current.items():
        if same_reference(ref, name):
            return ref, info
    return None, None


class CtrImage:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.src = self.params["src"]
        self.result = dict(changed=False, images=[])

    def ctr(self):
        try:
            ctr = Ctr(self.module, resolve_ctr(self.module, self.params["ctr_path"]),
                      self.params["address"], self.params["namespace"])
            ctr.check()
        except ContainerdError as exc:
            raise CtrImageFailure(str(exc))
        return ctr

    def read_archive(self):
        if not os.path.exists(self.src):
            raise CtrImageFailure("file not found")
        if not os.path.isfile(self.src):
            raise CtrImageFailure("not a regular file")
        try:
            archive = read_image_archive(self.src, base_name=self.params["base_name"])
        except ArchiveError as exc:
            raise self.content_failure("corrupt archive: %s" % exc)
        self.result["archive"] = dict(format=archive.format, names=archive.names, unnamed=archive.unnamed)
        return archive

    def content_failure(self, reason):
        """The failure for what the archive holds; a wrong checksum is the better reason if there is one."""
        if self.params["state"] == "present":
            self.verify_checksum()
        return CtrImageFailure(reason)

    def verify_checksum(self):
        wanted = self.params["sha256"]
        if not wanted:
            return
        match = _SHA256_RE.match(wanted.strip())
        if not match:
            raise CtrImageFailure("sha256 '%s' is not a hex SHA-256 digest" % wanted)
        try:
            actual = file_sha256(self.src)
        except (IOError, OSError) as exc:
            raise CtrImageFailure("cannot read file: %s" % exc)
        if actual != match.group(1).lower():
            raise CtrImageFailure("checksum mismatch: expected sha256 %s, file has %s" % (match.group(1).lower(), actual))

    # -- state=present -------------------------------------------------------------
    def present(self):
        if not self.src:
            raise CtrImageFailure("src is required with state=present")
        if not os.path.exists(self.src):
            raise CtrImageFailure("file not found")
        archive = self.read_archive()
        if not archive.images:
            raise self.content_failure("the archive names no image (%d unnamed entries), nothing would be imported under a name"
                                       % archive.unnamed)
        missing = [name for name in self.params["names"] or [] if archive.find(name) is None]
        if missing:
            raise self.content_failure("the archive does not contain %s (it contains: %s)"
                                       % (", ".join("'%s'" % n for n in missing), ", ".join(archive.names)))
        platform = self.params["platform"]
        if platform:
            for image in archive.images:
                if image.platforms and not platform_matches(platform, image.platforms):
                    raise self.content_failure("image '%s' has no content for platform '%s' (it has: %s)"
                                               % (image.name, platform, ", ".join(image.platforms)))

        ctr = self.ctr()
        try:
            before = ctr.list_images()
        except ContainerdError as exc:
            raise CtrImageFailure(str(exc))

        plan = []
        for image in archive.images:
            info = before.get(image.name)
            previous = info["digest"] if info else None
            action = "imported"
            if previous == image.digest:
                action = "present"
            elif previous and archive.format == "docker" and image.config_digest \
                    and ctr.config_digest(previous) == image.config_digest:
                action = "present"
            plan.append(dict(image=image, previous=previous, action=action))

        todo = [item for item in plan if item["action"] == "imported"]
        if todo:
            # Verified before any import (also in check mode, so it predicts the failure).
            self.verify_checksum()
        after = {}
        if todo and not self.module.check_mode:
            after = self.import_archive(ctr, archive, before)

        for item in plan:
            image = item["image"]
            digest = image.digest if item["action"] == "imported" else item["previous"]
            if image.name in after:
                digest = after[image.name]["digest"]
            self.result["images"].append(dict(
                name=image.name, digest=digest, previous_digest=item["previous"],
                action=item["action"], platforms=image.platforms))
        self.result["changed"] = bool(todo)
        if self.module._diff:
            self.result["diff"] = dict(
                before=dict(images=dict((i["name"], i["previous_digest"]) for i in self.result["images"] if i["previous_digest"])),
                after=dict(images=dict((i["name"], i["digest"]) for i in self.result["images"])),
            )

    def import_archive(self, ctr, archive, before):
        params = self.params
        try:
            ctr.import_archive(self.src, all_platforms=params["all_platforms"], platform=params["platform"],
                               snapshotter=params["snapshotter"], base_name=params["base_name"])
            after = ctr.list_images()
        except ContainerdError as exc:
            self.cleanup(ctr, archive, before)
            raise CtrImageFailure(str(exc))
        missing = [name for name in archive.names if name not in after]
        if missing:
            self.cleanup(ctr, archive, before)
            raise CtrImageFailure("ctr did not create the image(s) %s that the archive names" % ", ".join(missing))
        return after

    def cleanup(self, ctr, archive, before):
        """Remove the archive's names that did not exist before this call."""
        try:
            now = ctr.list_images()
            added = [name for name in archive.names if name in now and name not in before]
            ctr.remove(added)
        except ContainerdError as exc:
            self.module.warn("could not remove the images this failed import added: %s" % exc)

    # -- state=absent --------------------------------------------------------------
    def absent(self):
        names = self.params["names"]
        if not names:
            if not self.src:
                raise CtrImageFailure("state=absent needs src or names")
            names = self.read_archive().names
        ctr = self.ctr()
        try:
            current = ctr.list_images()
        except ContainerdError as exc:
            raise CtrImageFailure(str(exc))
        remove = []
        seen = set()
        for name in names:
            ref, info = _current_for(name, current)
            if ref and ref not in seen:
                seen.add(ref)
                remove.append(ref)
                self.result["images"].append(dict(name=ref, digest=info["digest"], previous_digest=info["digest"], action="removed"))
            elif not ref:
                self.result["images"].append(dict(name=name, digest=None, previous_digest=None, action="absent"))
        if remove and not self.module.check_mode:
            try:
                ctr.remove(remove)
            except ContainerdError as exc:
                raise CtrImageFailure(str(exc))
        self.result["changed"] = bool(remove)
        if self.module._diff:
            self.result["diff"] = dict(
                before=dict(images=dict((i["name"], i["digest"]) for i in self.result["images"] if i["digest"])),
                after=dict(images={}),
            )

    def run(self):
        if self.params["state"] == "present":
            what = "import image archive '%s'" % self.src
            handler = self.present
        elif self.src and not self.params["names"]:
            what = "remove the images of image archive '%s'" % self.src
            handler = self.absent
        else:
            what = "remove images '%s'" % ", ".join(self.params["names"] or [])
            handler = self.absent
        try:
            handler()
        except CtrImageFailure as exc:
            self.module.fail_json(msg="Failed to %s due to: %s" % (what, exc), **self.result)
        self.module.exit_json(**self.result)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_if=[("state", "present", ("src",))],
        required_one_of=[("src", "names")],
        supports_check_mode=True,
    )
    if module.params["platform"] and module.params["all_platforms"]:
        module.fail_json(msg="parameters are mutually exclusive: platform|all_platforms")
    CtrImage(module).run()


if __name__ == "__main__":
    main()
