#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: bundle_verify
short_description: Verify an offline bundle against SHA256SUMS, its lock and the manifest
version_added: "0.1.0"
description:
  - Hashes every file of a Labhub offline bundle and compares it with C(SHA256SUMS), with the pins
    of the bundle manifest (including optional C(sha256) pins) and with C(bundle.lock.json).
  - Reports three kinds of problems - V(missing) (an artifact file of the manifest, a wheel for a
    pinned requirement, or C(SHA256SUMS) itself is absent), V(corrupt) (checksum mismatch, no checksum,
    or a file fetched for another pin than the manifest's), V(unexpected) (a file in the bundle, or a
    line in C(SHA256SUMS), that the manifest does not account for, such as leftovers of an
    interrupted run).
  - Returns the problems as data and as a text table; fails when there is any problem unless
    O(fail_on_problems=false).
  - Changes nothing.
author:
  - Labhub engineers (@labhub)
options:
  bundle_dir:
    description: Bundle directory to verify.
    type: path
    required: true
  manifest:
    description: The bundle manifest (the parsed content of C(files/bundle-manifest.yml)).
    type: dict
    required: true
  requirements:
    description:
      - Pinned requirements file the manifest's C(wheels) section refers to. Every C(name==version)
        in it must have a wheel in the bundle.
      - Omit to check only that the wheels present match C(SHA256SUMS).
    type: path
  fail_on_problems:
    description: Fail the task when any problem is found (the result still carries the table).
    type: bool
    default: true
notes:
  - Supports check mode (it never changes anything).
seealso:
  - module: labhub.platform.bundle_fetch
"""

EXAMPLES = r"""
- name: Verify the bundle, keep the table for the report
  labhub.platform.bundle_verify:
    bundle_dir: /srv/labhub-bundle
    manifest: "{{ lookup('ansible.builtin.file', 'files/bundle-manifest.yml') | from_yaml }}"
    requirements: "{{ playbook_dir }}/../portal/requirements.lock"
    fail_on_problems: false
  register: bundle_check

- name: Show problems
  ansible.builtin.debug:
    var: bundle_check.table
"""

RETURN = r"""
ok:
  description: True when no problem was found.
  returned: always
  type: bool
  sample: false
problems:
  description: Every problem found, sorted by problem kind then file.
  returned: always
  type: list
  elements: dict
  contains:
    problem:
      description: V(missing), V(corrupt) or V(unexpected).
      type: str
    file:
      description: Path relative to the bundle directory.
      type: str
    artifact:
      description: The manifest artifact the file belongs to (C(-) when none).
      type: str
    reason:
      description: What exactly is wrong.
      type: str
  sample: [{"problem": "corrupt", "file": "images/a.tar", "artifact": "image:quay.io/a:1", "reason": "sha256 ..."}]
counts:
  description: Number of problems per kind.
  returned: always
  type: dict
  sample: {"missing": 0, "corrupt": 1, "unexpected": 0}
table:
  description: The problems as fixed-width text lines (header first); only the header when all is well.
  returned: always
  type: list
  elements: str
checked:
  description: Number of files hashed.
  returned: always
  type: int
  sample: 42
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.labhub.platform.plugins.module_utils._bundle import (
    BundleError, problems_table, verify_bundle,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            bundle_dir=dict(type="path", required=True),
            manifest=dict(type="dict", required=True),
            requirements=dict(type="path"),
            fail_on_problems=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    bundle_dir = module.params["bundle_dir"]
    if not os.path.isdir(bundle_dir):
        module.fail_json(msg="Failed to verify bundle '%s' due to: it is not a directory" % bundle_dir,
                         ok=False, problems=[], counts={}, table=[], checked=0)
    try:
        problems, checked = verify_bundle(bundle_dir, module.params["manifest"], module.params["requirements"])
    except (BundleError, KeyError, TypeError, ValueError) as exc:
        module.fail_json(msg="Failed to verify bundle '%s' due to: malformed manifest or bundle: %s" % (bundle_dir, exc))
    except (IOError, OSError) as exc:
        module.fail_json(msg="Failed to verify bundle '%s' due to: %s" % (bundle_dir, exc))
    counts = dict((k, sum(1 for p in problems if p["problem"] == k)) for k in ("missing", "corrupt", "unexpected"))
    result = dict(changed=False, ok=not problems, problems=problems, counts=counts,
                  table=problems_table(problems), checked=checked)
    if problems and module.params["fail_on_problems"]:
        module.fail_json(msg="Failed to verify bundle '%s' due to: %d missing, %d corrupt, %d unexpected"
                         % (bundle_dir, counts["missing"], counts["corrupt"], counts["unexpected"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
