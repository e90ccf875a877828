#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: os_packages
short_description: Install OS packages from the offline bundle's repository, and from nothing else
version_added: "0.1.0"
description:
  - Installs Debian/Ubuntu packages on a node from a release repository of the Labhub bundle
    (C(packages/<release>.tar), a flat APT repository built by M(labhub.platform.bundle_fetch)).
  - APT runs with a private source list, list directory and no package caches, so it sees the
    bundle's repository and the installed packages only. The node's own APT sources are neither
    read nor changed, and nothing is fetched from a network.
  - Packages already installed (in any version) are left alone; when every name is installed the
    module changes nothing and does not need the archive.
  - The repository is unpacked into a temporary directory next to O(repository) and removed
    afterwards; APT checks every C(.deb) against the sha256 in the repository's C(Packages) index.
  - Returns the node's release id (C(<ID>-<VERSION_ID>) of C(/etc/os-release)), so a role can pick
    the right archive of the bundle after a check-mode call.
author:
  - Labhub engineers (@labhub)
options:
  names:
    description: Package names to have installed.
    type: list
    elements: str
    required: true
  repository:
    description:
      - Path on the node of the release's repository archive.
      - Needed only when something must be installed (not in check mode).
    type: path
notes:
  - Check mode reports the packages that would be installed and changes nothing.
seealso:
  - module: labhub.platform.bundle_fetch
"""

EXAMPLES = r"""
- name: Find what is missing (and the node's release)
  labhub.platform.os_packages:
    names: [postgresql, python3-psycopg2]
  check_mode: true
  register: missing

- name: Install it from the bundle's repository copied to the node
  labhub.platform.os_packages:
    names: [postgresql, python3-psycopg2]
    repository: /var/lib/labhub/packages/debian-12.tar
  when: missing is changed
"""

RETURN = r"""
release:
  description: The node's release id (C(<ID>-<VERSION_ID>) of C(/etc/os-release)).
  returned: always
  type: str
  sample: debian-12
repository_file:
  description: The bundle file of the node's release repository (C(packages/<release>.tar)), relative to the bundle.
  returned: always
  type: str
  sample: packages/debian-12.tar
missing:
  description: Names that were not installed before this run (installed now unless in check mode).
  returned: always
  type: list
  elements: str
  sample: [postgresql]
versions:
  description: Installed version of every name after the run (check mode - before).
  returned: always
  type: dict
  sample: {"postgresql": "15+248"}
"""

import os
import shutil
import tarfile
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.labhub.platform.plugins.module_utils._hardware import MalformedError, parse_os_release
from ansible_collections.labhub.platform.plugins.module_utils._os_packages import (
    PackagesError, apt_output, read_repository, release_file, release_id,
)

OS_RELEASE = "/etc/os-release"


def installed_versions(module, names):
    """{name: version} of the names dpkg has installed (fully: 'install ok installed')."""
    dpkg_query = module.get_bin_path("dpkg-query", required=True)
    # dpkg-query exits 1 when a name is unknown to dpkg, and still prints the others
    dummy, out, dummy2 = module.run_command([dpkg_query, "-W", "-f=${Package}\t${Status}\t${Version}\n"] + names)
    found = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[1] == "install ok installed":
            found[parts[0]] = parts[2]
    return found


def main():
    module = AnsibleModule(
        argument_spec=dict(
            names=dict(type="list", elements="str", required=True),
            repository=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    names = module.params["names"]
    label = ", ".join(names)

    def fail(reason, **extra):
        module.fail_json(msg="Failed to install packages '%s' due to: %s" % (label, reason), **extra)

    try:
        with open(OS_RELEASE) as fh:
            release = release_id(parse_os_release(fh.read()))
    except (IOError, OSError, MalformedError, PackagesError) as exc:
        fail("cannot tell the node's release from %s (%s)" % (OS_RELEASE, exc))
    if not names:
        module.exit_json(changed=False, release=release, repository_file=release_file(release), missing=[], versions={})

    before = installed_versions(module, names)
    missing = [n for n in names if n not in before]
    if not missing or module.check_mode:
        module.exit_json(changed=bool(missing), release=release, repository_file=release_file(release),
                         missing=missing, versions=before)

    repository = module.params["repository"]
    if not repository or not os.path.isfile(repository):
        fail("the release repository %s is not on the node (the bundle's %s)" % (repository, release_file(release)))
    try:
        offered = read_repository(repository)
    except PackagesError as exc:
        fail("%s is not a package repository: %s" % (repository, exc))
    absent = [n for n in missing if n not in offered]
    if absent:
        fail("%s does not hold %s (the bundle was built from a manifest without them)" % (repository, ", ".join(absent)))

    work = tempfile.mkdtemp(prefix=".repo-", dir=os.path.dirname(repository))
    try:
        repo = os.path.join(work, "repo")
        os.makedirs(repo)
        with tarfile.open(repository, mode="r:") as tar:
            for member in tar.getmembers():
                if not member.isfile() or "/" in member.name or member.name.startswith("."):
                    fail("%s has a member that is not a plain file: %s" % (repository, member.name))
                handle = tar.extractfile(member)
                with open(os.path.join(repo, member.name), "wb") as out:
                    shutil.copyfileobj(handle, out)
        os.makedirs(os.path.join(work, "lists", "partial"))
        source_list = os.path.join(work, "sources.list")
        with open(source_list, "w") as fh:
            fh.write("deb [trusted=yes] file:%s ./\n" % repo)
        apt_get = module.get_bin_path("apt-get", required=True)
        private = [
            "-o", "Dir::Etc::SourceList=%s" % source_list,
            "-o", "Dir::Etc::SourceParts=%s" % os.path.join(work, "none"),
            "-o", "Dir::State::Lists=%s" % os.path.join(work, "lists"),
            "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=",
            "-o", "APT::Get::List-Cleanup=false", "-o", "Acquire::Languages=none",
        ]
        env = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"}
        rc, out, err = module.run_command([apt_get, "-q"] + private + ["update"], environ_update=env)
        if rc != 0:
            fail("apt-get update of the bundle repository exited %d: %s" % (rc, apt_output(out, err)))
        rc, out, err = module.run_command(
            [apt_get, "-q", "-y", "--no-install-recommends",
             "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]
            + private + ["install"] + missing, environ_update=env)
        if rc != 0:
            fail("apt-get install exited %d: %s" % (rc, apt_output(out, err)))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    after = installed_versions(module, names)
    still = [n for n in names if n not in after]
    if still:
        fail("apt-get install succeeded but dpkg does not list %s as installed" % ", ".join(still))
    module.exit_json(changed=True, release=release, repository_file=release_file(release), missing=missing,
                     versions=after)


if __name__ == "__main__":
    main()
