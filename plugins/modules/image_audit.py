#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: image_audit
short_description: List every image a Labhub site will run and fail naming each one the bundle lacks
version_added: "0.1.0"
description:
  - Reads what C(playbooks/audit_images.yml) rendered for a site (the hub's values and manifests, the GPU and
    Network Operators' values, the NicClusterPolicy, the ingress and portal objects) and renders each chart
    from the bundle's own chart archive with C(helm template), offline.
  - Collects every image of every pod template (containers, init and ephemeral containers, Helm hooks), the
    C(*_IMAGE) environment variables operators take their operands from, the operands the pinned GPU Operator
    and Network Operator create from the ClusterPolicy and NicClusterPolicy (driver tags with each node's OS),
    the images the hub spawns, and MicroK8s' own images for the enabled addons.
  - An image is in the bundle when the bundle's C(bundle-manifest.yml) lists it and its archive file is in the
    bundle. Returns every image with where it is used; fails naming each one missing unless
    O(fail_on_missing=false).
  - Changes nothing.
author:
  - Labhub engineers (@labhub)
options:
  bundle_dir:
    description: The offline bundle (its C(bundle-manifest.yml), C(charts/) and C(images/)).
    type: path
    required: true
  render_dir:
    description:
      - What the audit playbook rendered - C(jupyterhub/values.yaml) and C(jupyterhub/manifests/) (required);
        C(gpu_operator/{values,plan}.yaml), C(network_operator/{values,nicclusterpolicy,plan}.yaml),
        C(ingress/) and C(portal/) when present.
    type: path
    required: true
  helm_binary:
    description: Helm 3 on the controller (only C(helm template) is run; no repository, no cluster).
    type: str
    default: helm
  kube_version:
    description:
      - Kubernetes version the charts are rendered for (C(helm template --kube-version)).
      - Empty = the MicroK8s track of the bundle's manifest (snap C(microk8s), channel C(1.36/stable) gives C(1.36.0)).
    type: str
    default: ""
  hub_release:
    description: Release name of the hub chart.
    type: str
    default: jupyterhub
  microk8s_addons:
    description: MicroK8s addons with images and whether the site enables each (V(dns), V(hostpath-storage), V(metrics-server)).
    type: dict
    default: {}
  sandbox_image:
    description:
      - containerd's sandbox (pause) image on the nodes (microk8s_sandbox_image).
      - Empty = the manifest's image used by V(microk8s) named C(.../pause), as role microk8s chooses it.
    type: str
    default: ""
  fail_on_missing:
    description: Fail when an image is missing from the bundle (the result still lists them).
    type: bool
    default: true
notes:
  - Supports check mode (it never changes anything).
seealso:
  - module: labhub.platform.bundle_verify
"""

EXAMPLES = r"""
- name: Audit the images of the site against the bundle
  labhub.platform.image_audit:
    bundle_dir: /srv/labhub-bundle
    render_dir: /tmp/labhub-audit
    microk8s_addons: {dns: true, hostpath-storage: true, metrics-server: false}
"""

RETURN = r"""
images:
  description: Every image the site will run, sorted by reference.
  returned: always
  type: list
  elements: dict
  contains:
    ref:
      description: The reference as containerd names it (registry, path, tag).
      type: str
    status:
      description: V(in bundle), V(not in the manifest) or V(archive missing).
      type: str
    file:
      description: The archive's path in the bundle (null when the manifest does not list the image).
      type: str
    sources:
      description: Where the image is used (chart or role, object, container or ClusterPolicy component, node).
      type: list
      elements: str
missing:
  description: The images of RV(images) that are not in the bundle.
  returned: always
  type: list
  elements: dict
unused:
  description: Images of the bundle manifest no part of this site uses (for information; not a failure).
  returned: always
  type: list
  elements: str
kube_version:
  description: The Kubernetes version the charts were rendered for.
  returned: always
  type: str
  sample: 1.36.0
table:
  description: RV(images) as text lines (STATUS, IMAGE, USED BY).
  returned: always
  type: list
  elements: str
"""

import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.labhub.platform.plugins.module_utils import _image_audit as audit
from ansible_collections.labhub.platform.plugins.module_utils._bundle import manifest_pause

try:
    import yaml
except ImportError:  # pragma: no cover - ansible-core requires PyYAML
    yaml = None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            bundle_dir=dict(type="path", required=True),
            render_dir=dict(type="path", required=True),
            helm_binary=dict(type="str", default="helm"),
            kube_version=dict(type="str", default=""),
            hub_release=dict(type="str", default="jupyterhub"),
            microk8s_addons=dict(type="dict", default={}),
            sandbox_image=dict(type="str", default=""),
            fail_on_missing=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    bundle_dir = params["bundle_dir"]

    def fail(reason, **extra):
        module.fail_json(msg="Failed to audit images of bundle '%s' due to: %s" % (bundle_dir, reason), **extra)

    manifest_file = os.path.join(bundle_dir, "bundle-manifest.yml")
    try:
        with open(manifest_file) as handle:
            manifest = yaml.safe_load(handle) or {}
    except (IOError, OSError, yaml.YAMLError) as exc:
        fail("cannot read its manifest %s: %s" % (manifest_file, exc))
    kube_version = params["kube_version"] or audit.kube_version(manifest)
    if not kube_version:
        fail("its manifest has no microk8s snap with a channel like 1.36/stable, and image_audit_kube_version is empty")
    charts = dict((c.get("name"), c.get("file")) for c in manifest.get("charts") or [] if isinstance(c, dict))
    helm = params["helm_binary"] if os.sep in params["helm_binary"] else module.get_bin_path(params["helm_binary"])
    if not helm or not os.access(helm, os.X_OK):
        fail("Helm 3 ('%s', image_audit_helm_binary) is not an executable on the controller; MicroK8s nodes carry "
             "one at /snap/microk8s/current/bin/helm" % params["helm_binary"])
    home = tempfile.mkdtemp(prefix="labhub-audit-helm-")
    # Helm keeps no state here and reaches no repository: local chart archives only.
    env = dict(HELM_CACHE_HOME=home, HELM_CONFIG_HOME=home, HELM_DATA_HOME=home, HELM_PLUGINS=home)

    def template(chart, release, namespace, values_file):
        archive = os.path.join(bundle_dir, str(charts.get(chart) or ""))
        if not charts.get(chart) or not os.path.isfile(archive):
            raise audit.AuditError("chart '%s' is not in the bundle (%s)" % (chart, charts.get(chart) or "not in its manifest"))
        rc, out, err = module.run_command(
            [helm, "template", release, archive, "--namespace", namespace, "--values", values_file,
             "--kube-version", kube_version], environ_update=env)
        if rc != 0:
            raise audit.AuditError("helm template of chart '%s' failed: %s" % (chart, err.strip()[-2000:]))
        try:
            return [(chart, d) for d in yaml.safe_load_all(out) if d]
        except yaml.YAMLError as exc:
            raise audit.AuditError("helm template of chart '%s' gave no YAML: %s" % (chart, exc))

    try:
        addons = sorted(name for name, on in params["microk8s_addons"].items() if module.boolean(on))
        if addons and set(addons) - set(audit.MICROK8S_IMAGES):
            raise audit.AuditError("microk8s_addons names addons without an image table: %s"
                                   % ", ".join(sorted(set(addons) - set(audit.MICROK8S_IMAGES))))
        uses = audit.collect(params["render_dir"], template, addons,
                             params["sandbox_image"] or manifest_pause(manifest), params["hub_release"])
    except audit.AuditError as exc:
        fail(str(exc))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    bundle = audit.bundle_images(manifest, bundle_dir)
    images, missing = audit.audit(uses, bundle)
    used = set(i["ref"] for i in images)
    unused = sorted(audit.normalize(e["ref"]) for e in manifest.get("images") or []
                    if isinstance(e, dict) and e.get("ref") and audit.normalize(e["ref"]) not in used)
    result = dict(changed=False, kube_version=kube_version, images=images, missing=missing, unused=unused, table=audit.table(images))
    if missing and params["fail_on_missing"]:
        fail("%d of the %d images the site will run are not in the bundle: %s" % (
            len(missing), len(images), "; ".join("%s (%s; used by %s)" % (m["ref"], m["status"], m["sources"][0])
                                                 for m in missing)), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
