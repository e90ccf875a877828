#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: microk8s_cert
short_description: Put extra names or addresses in the MicroK8s API server certificate, once
version_added: 0.1.0
description:
  - MicroK8s' API server certificate (C($SNAP_DATA/certs/server.crt)) covers the C(kubernetes.*)
    names, V(127.0.0.1), V(10.152.183.1) and the node's own addresses only, so clients that reach
    the API server through a DNS name or a virtual IP fail TLS verification.
  - The module adds each of O(names) MicroK8s does not already put there to the C([ alt_names ])
    section of C($SNAP_DATA/certs/csr.conf.template), as C(DNS.<n>) or C(IP.<n>) lines before the
    C(#MOREIPS) marker (the way MicroK8s documents; its own address list keeps being rendered
    there), then, when C(server.crt) lacks any of them, runs
    C(microk8s refresh-certs --cert server.crt), which renders C(csr.conf) from the template,
    re-issues C(server.crt) from the cluster CA and restarts kubelite and the cluster agent on this
    node. Run it on one control-plane node at a time.
  - The node's own addresses, which MicroK8s renders into C(csr.conf) itself, are not added to the
    template.
  - C(changed) is exact; check mode reads the template and the certificate (C(openssl)) only.
author:
  - Labhub engineers (@labhub)
extends_documentation_fragment:
  - labhub.platform.microk8s
options:
  names:
    description: DNS names and IP addresses the API server certificate must carry.
    type: list
    elements: str
    required: true
  snap_data:
    description: MicroK8s' C($SNAP_DATA) directory (holding C(certs/)).
    type: path
    default: /var/snap/microk8s/current
attributes:
  check_mode:
    support: full
    description: Check mode runs only C(openssl x509) and predicts C(changed) exactly.
  diff_mode:
    support: full
    description: Returns the template before and after.
notes:
  - Needs C(openssl) on the node (Ubuntu ships it; MicroK8s' own copy under C(/snap/microk8s/current/usr/bin) is used otherwise).
"""

EXAMPLES = r"""
- name: The API server certificate also covers the site's API name and VIP
  labhub.platform.microk8s_cert:
    names: [k8s.lab.example.org, 10.20.0.10]
  throttle: 1
"""

RETURN = r"""
added:
  description: The lines added to C(csr.conf.template) (or that would be).
  returned: success
  type: list
  elements: str
  sample: ["DNS.6 = k8s.lab.example.org", "IP.3 = 10.20.0.10"]
missing:
  description: The names C(server.crt) lacked before the call.
  returned: success
  type: list
  elements: str
refreshed:
  description: Whether C(microk8s refresh-certs --cert server.crt) ran (or would run).
  returned: success
  type: bool
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.labhub.platform.plugins.module_utils._bundle import write_atomic
from ansible_collections.labhub.platform.plugins.module_utils._cmd_runner import CmdError, CmdRunner
from ansible_collections.labhub.platform.plugins.module_utils._microk8s import (
    add_csr_alt_names, csr_alt_names, Microk8s, Microk8sError, MICROK8S_COMMON_ARGS, norm_san, parse_cert_sans,
    san_kind)


def _read(path):
    with open(path) as handle:
        return handle.read()


def _write(path, text):
    """Replace ``path`` atomically, keeping its mode."""
    write_atomic(path, text.encode(), os.stat(path).st_mode & 0o7777)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            names=dict(type="list", elements="str", required=True),
            snap_data=dict(type="path", default="/var/snap/microk8s/current"),
            **MICROK8S_COMMON_ARGS
        ),
        supports_check_mode=True,
    )
    p = module.params

    def fail(reason, **kwargs):
        module.fail_json(msg="Failed to put %s in the MicroK8s API server certificate due to: %s"
                         % (", ".join(p["names"]), reason), **kwargs)

    names = [n.strip() for n in p["names"] if n and n.strip()]
    certs = os.path.join(p["snap_data"], "certs")
    template_path = os.path.join(certs, "csr.conf.template")
    server_crt = os.path.join(certs, "server.crt")
    for path in (template_path, server_crt):
        if not os.path.isfile(path):
            fail("%s does not exist (is MicroK8s installed on this node?)" % path)
    openssl = module.get_bin_path("openssl", opt_dirs=["/snap/microk8s/current/usr/bin"])
    if not openssl:
        fail("no openssl command on the node")
    reader = CmdRunner(module, [openssl, "x509", "-noout", "-ext", "subjectAltName", "-in"])

    def cert_sans():
        try:
            return parse_cert_sans(reader.run([server_crt]).stdout)
        except CmdError as exc:
            fail(str(exc))

    template = _read(template_path)
    conf = _read(os.path.join(certs, "csr.conf")) if os.path.isfile(os.path.join(certs, "csr.conf")) else ""
    own = set((k, norm_san(k, v)) for k, _i, v in csr_alt_names(template))
    # the node's addresses render_csr_conf writes into csr.conf from #MOREIPS
    rendered = set((k, norm_san(k, v)) for k, _i, v in csr_alt_names(conf)) - own
    wanted = [n for n in names if (san_kind(n), norm_san(san_kind(n), n)) not in rendered]
    try:
        new_template, added = add_csr_alt_names(template, wanted)
    except Microk8sError as exc:
        fail(str(exc))
    sans = cert_sans()
    missing = [n for n in names if (san_kind(n), norm_san(san_kind(n), n)) not in sans]
    result = dict(changed=bool(added or missing), added=added, missing=missing, refreshed=bool(missing))
    if module._diff:
        result["diff"] = dict(before=template, after=new_template, before_header=template_path,
                              after_header=template_path)
    if module.check_mode or not result["changed"]:
        module.exit_json(**result)
    if added:
        _write(template_path, new_template)
    if missing:
        mk = Microk8s(module, p["microk8s_path"])
        try:
            mk.refresh_server_cert()
        except CmdError as exc:
            fail("%s (stdout: %s)" % (exc, exc.stdout.strip()[-500:]), **result)
        after = cert_sans()
        still = [n for n in names if (san_kind(n), norm_san(san_kind(n), n)) not in after]
        if still:
            fail("after 'microk8s refresh-certs --cert server.crt' %s still lacks %s" % (server_crt, ", ".join(still)),
                 **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
