#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: microk8s_snap
short_description: Install a snap offline from a .snap and its .assert at a pinned revision, and hold it
version_added: 0.1.0
description:
  - The offline install MicroK8s documents for air-gapped machines, C(snap ack <file>.assert)
    then C(snap install <file>.snap [--classic]), done only when C(snap list) does not already show
    the snap at O(revision).
  - With O(hold=true), C(snap refresh --hold <name>) keeps snapd from refreshing the snap (only when
    C(snap list) does not already mark it C(held)).
  - C(changed) is exact; check mode runs nothing but C(snap list).
  - Used by the microk8s role for the base snap (core22) and for MicroK8s itself.
  - With O(version_prefix), an installed snap whose version does not start with it fails (a
    pinned revision of another track, e.g. a MicroK8s v1.35.x where the manifest pins 1.36/stable).
author:
  - Labhub engineers (@labhub)
options:
  name:
    description: Snap name (V(microk8s), V(core22)).
    type: str
    required: true
  src:
    description: Path of the C(.snap) file on the node.
    type: path
    required: true
  assertion:
    description: Path of the C(.assert) file on the node (acknowledged before installing).
    type: path
    required: true
  revision:
    description: The revision the files hold; the snap is (re)installed when C(snap list) shows another.
    type: str
    required: true
  classic:
    description: Install with classic confinement (C(--classic)); MicroK8s needs it.
    type: bool
    default: false
  hold:
    description: Hold refreshes of the snap indefinitely. V(false) leaves an existing hold alone.
    type: bool
    default: true
  snap_path:
    description: The C(snap) command.
    type: path
    default: snap
  version_prefix:
    description:
      - The version the snap must have, as a prefix (V(v1.36.) for the MicroK8s 1.36 track); checked on
        the snap already installed (also in check mode) and after installing.
    type: str
attributes:
  check_mode:
    support: full
    description: Check mode runs only read-only commands and predicts C(changed) exactly.
  diff_mode:
    support: full
    description: Returns the state before and after as text.
"""

EXAMPLES = r"""
- name: MicroK8s from the bundle, held
  labhub.platform.microk8s_snap:
    name: microk8s
    src: /var/lib/labhub/snaps/microk8s_6782.snap
    assertion: /var/lib/labhub/snaps/microk8s_6782.assert
    revision: "6782"
    classic: true
"""

RETURN = r"""
before:
  description: What C(snap list) showed before (null when not installed).
  returned: always
  type: dict
  sample: {"revision": "9310", "version": "v1.36.3", "held": false}
installed:
  description: Whether the snap was (or in check mode would be) installed by this call.
  returned: success
  type: bool
held:
  description: Whether the snap was (or would be) put on hold by this call.
  returned: success
  type: bool
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.labhub.platform.plugins.module_utils._cmd_runner import CmdError
from ansible_collections.labhub.platform.plugins.module_utils._microk8s import Snap


def _describe(info):
    if info is None:
        return "not installed\n"
    return "revision: %s\nheld: %s\n" % (info["revision"], info["held"])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            src=dict(type="path", required=True),
            assertion=dict(type="path", required=True),
            revision=dict(type="str", required=True),
            classic=dict(type="bool", default=False),
            hold=dict(type="bool", default=True),
            snap_path=dict(type="path", default="snap"),
            version_prefix=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    name = p["name"]

    def fail(reason, **kwargs):
        module.fail_json(msg="Failed to install snap '%s' due to: %s" % (name, reason), **kwargs)

    def check_version(info, when):
        prefix = p["version_prefix"]
        if prefix and info is not None and not str(info["version"]).startswith(prefix):
            fail("%s %s has version %s, not %s* (revision %s is not a revision of the pinned track)"
                 % (when, name, info["version"], prefix, info["revision"]), before=before)

    snap = Snap(module, p["snap_path"])
    before = snap.list(name)
    install = before is None or str(before["revision"]) != str(p["revision"])
    if not install:
        check_version(before, "the installed")
    # In check mode the files may still be waiting to be copied by an earlier (predicted) task.
    if install and not module.check_mode:
        for path in (p["src"], p["assertion"]):
            if not os.path.isfile(path):
                fail("%s does not exist on the node" % path, before=before)
    hold = p["hold"] and (install or not before["held"])
    result = dict(changed=install or hold, before=before, installed=install, held=hold)
    if module._diff:
        after = {"revision": p["revision"], "held": bool(p["hold"] or (before and before["held"] and not install))}
        result["diff"] = dict(before=_describe(before), after=_describe(after))
    if module.check_mode or not result["changed"]:
        module.exit_json(**result)
    try:
        if install:
            snap.ack(p["assertion"])
            snap.install(p["src"], p["classic"] or None)
            now = snap.list(name)
            if now is None or str(now["revision"]) != str(p["revision"]):
                fail("after installing %s, snap list shows revision %s instead of %s"
                     % (p["src"], now and now["revision"], p["revision"]), before=before)
            check_version(now, "the newly installed")
        if hold:
            snap.hold(name)
    except CmdError as exc:
        fail(str(exc), before=before)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
