# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""What ``playbooks/uninstall.yml`` deletes and what it keeps, decided in ONE place.

Role uninstall computes this plan first (filter ``labhub.platform.uninstall_plan``), writes it in
render mode and otherwise carries out exactly it (roles/uninstall/tasks/remove.yml). The names
are those the installing roles create:

* the hub's objects are roles/jupyterhub/templates/manifests/*.yaml.j2 except the Namespace (a
  test compares them with every rendered scenario: tests/unit/test_jupyterhub_values.py);
* the portal's are roles/portal/templates/kubernetes/*.yml.j2 (ServiceAccount ``<sa>``, its token
  Secret ``<sa>-token``, Role and RoleBinding ``<sa>``, the node reader ClusterRole and binding
  ``<sa>-<namespace>-node-reader``) and its files those of roles/portal (install directory, unit,
  settings, kubeconfig).

User data (the hub namespace with the per-user PVCs and the hub database PVC, per-user hostPath
directories, the portal database) is deleted only when purging; NFS home directories, shared
volumes and the generated credentials never are. Unit-tested as data in
tests/unit/plugins/module_utils/test_uninstall.py.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

RBAC = "rbac.authorization.k8s.io/v1"

#: The settings the plan is made from (role uninstall's variables without the prefix).
INPUTS = ("purge", "portal", "hub_release", "hub_namespace", "storage_kind", "storage_hostpath_root",
          "storage_nfs", "portal_service_name", "portal_install_dir", "portal_config_dir",
          "portal_service_account", "portal_database_name", "portal_database_user", "portal_database_local")


def hub_objects(namespace):
    """Labhub's own hub objects (roles/jupyterhub/templates/manifests) but the Namespace."""
    return [
        {"kind": "ConfigMap", "name": "labhub-hub-extensions", "namespace": namespace},
        {"kind": "Secret", "name": "labhub-hub-secrets", "namespace": namespace},
        {"kind": "Secret", "name": "labhub-hub-tls", "namespace": namespace},
        {"kind": "NetworkPolicy", "name": "labhub-singleuser-egress", "namespace": namespace,
         "api_version": "networking.k8s.io/v1"},
        {"kind": "ResourceQuota", "name": "labhub-quota", "namespace": namespace},
        {"kind": "LimitRange", "name": "labhub-limits", "namespace": namespace},
        {"kind": "ClusterRoleBinding", "name": "labhub-hub-nodes-" + namespace, "api_version": RBAC},
        {"kind": "ClusterRole", "name": "labhub-hub-nodes-" + namespace, "api_version": RBAC},
    ]


def portal_objects(namespace, service_account):
    """The portal's access objects (roles/portal/templates/kubernetes), bindings before roles."""
    reader = "%s-%s-node-reader" % (service_account, namespace)
    return [
        {"kind": "RoleBinding", "name": service_account, "namespace": namespace, "api_version": RBAC},
        {"kind": "Role", "name": service_account, "namespace": namespace, "api_version": RBAC},
        {"kind": "Secret", "name": service_account + "-token", "namespace": namespace},
        {"kind": "ServiceAccount", "name": service_account, "namespace": namespace},
        {"kind": "ClusterRoleBinding", "name": reader, "api_version": RBAC},
        {"kind": "ClusterRole", "name": reader, "api_version": RBAC},
    ]


def plan(settings):
    """The uninstall plan from role uninstall's settings (``INPUTS``, booleans already booleans)."""
    missing = [key for key in INPUTS if key not in settings]
    if missing:
        raise ValueError("missing settings: %s" % ", ".join(missing))
    namespace = settings["hub_namespace"]
    portal = bool(settings["portal"])
    data = [{"what": "namespace %s with the per-user PVCs and the hub database PVC" % namespace,
             "kind": "namespace", "name": namespace}]
    if settings["storage_kind"] == "hostpath":
        root = settings["storage_hostpath_root"]
        data.append({"what": "per-user hostPath directories %s on every node of labhub_cluster" % root,
                     "kind": "hostpath", "name": root})
    if portal and settings["portal_database_local"]:
        data.append({"what": "portal database %s and its role %s" % (settings["portal_database_name"],
                                                                     settings["portal_database_user"]),
                     "kind": "database", "name": settings["portal_database_name"]})
    service = settings["portal_service_name"]
    files = []
    if portal:
        config = settings["portal_config_dir"]
        files = [settings["portal_install_dir"], "/etc/systemd/system/%s.service" % service,
                 config + "/portal.env", config + "/portal-kubeconfig"]
    never = []
    if settings["storage_kind"] == "nfs":
        never.append("per-user NFS directories %s (delete them on the NFS server)" % settings["storage_nfs"])
    never += ["shared datasets and models volumes (not owned by Labhub)",
              "generated hub credentials in the inventory credentials directory"]
    kept = []
    if portal:
        kept.append("the OS packages the portal role installed (PostgreSQL server, python3-venv), its system "
                    "user and the settings directory %s when other files are in it" % settings["portal_config_dir"])
    return {
        "purge": bool(settings["purge"]),
        "helm_release": {"name": settings["hub_release"], "namespace": namespace},
        "kubernetes_objects": hub_objects(namespace)
        + (portal_objects(namespace, settings["portal_service_account"]) if portal else []),
        "portal_files": files,
        "portal_service": service if portal else "",
        "user_data_deleted": data if settings["purge"] else [],
        "user_data_kept": [] if settings["purge"] else data,
        "never_deleted": never,
        "left_installed": kept,
    }


def object_stubs(objects):
    """The plan's objects as the minimal manifests ``kubernetes.core.k8s`` deletes in one run."""
    stubs = []
    for obj in objects:
        metadata = {"name": obj["name"]}
        if obj.get("namespace"):
            metadata["namespace"] = obj["namespace"]
        stubs.append({"apiVersion": obj.get("api_version", "v1"), "kind": obj["kind"], "metadata": metadata})
    return stubs
