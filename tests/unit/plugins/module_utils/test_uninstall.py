# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The uninstall plan (module_utils/_uninstall.py) as data, and the filter role uninstall calls
(plugins/filter/uninstall.py)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.labhub.platform.plugins.filter.uninstall import uninstall_plan
from ansible_collections.labhub.platform.plugins.module_utils import _uninstall

BASE = {"purge": False, "portal": True, "hub_release": "labhub", "hub_namespace": "jhub", "storage_kind": "hostpath",
        "storage_hostpath_root": "/srv/labhub/home", "storage_nfs": ":", "portal_service_name": "labhub-portal",
        "portal_install_dir": "/opt/labhub/portal", "portal_config_dir": "/etc/labhub",
        "portal_service_account": "labhub-portal", "portal_database_name": "labhub_portal",
        "portal_database_user": "labhub_portal", "portal_database_local": True}


def names(plan):
    return [(o["kind"], o["name"], o.get("namespace")) for o in plan["kubernetes_objects"]]


def test_default_plan_removes_software_and_keeps_every_kind_of_user_data():
    plan = _uninstall.plan(BASE)
    assert plan["purge"] is False and plan["helm_release"] == {"name": "labhub", "namespace": "jhub"}
    assert ("ClusterRole", "labhub-hub-nodes-jhub", None) in names(plan)
    # the portal's objects, bindings before what they bind; nothing namespaced outside the hub's namespace
    portal = [n for n in names(plan) if n[1].startswith("labhub-portal")]
    assert portal == [("RoleBinding", "labhub-portal", "jhub"), ("Role", "labhub-portal", "jhub"),
                      ("Secret", "labhub-portal-token", "jhub"), ("ServiceAccount", "labhub-portal", "jhub"),
                      ("ClusterRoleBinding", "labhub-portal-jhub-node-reader", None),
                      ("ClusterRole", "labhub-portal-jhub-node-reader", None)]
    assert {n[2] for n in names(plan)} == {"jhub", None}
    assert not any(o["kind"] in ("Namespace", "PersistentVolumeClaim") for o in plan["kubernetes_objects"])
    assert plan["portal_files"] == ["/opt/labhub/portal", "/etc/systemd/system/labhub-portal.service",
                                    "/etc/labhub/portal.env", "/etc/labhub/portal-kubeconfig"]
    assert plan["portal_service"] == "labhub-portal"
    assert plan["user_data_deleted"] == []
    assert [d["kind"] for d in plan["user_data_kept"]] == ["namespace", "hostpath", "database"]
    assert "NFS" not in " ".join(plan["never_deleted"]) and "system user" in plan["left_installed"][0]


def test_purge_moves_user_data_to_deleted():
    plan = _uninstall.plan(dict(BASE, purge=True))
    assert plan["user_data_kept"] == []
    assert [(d["kind"], d["name"]) for d in plan["user_data_deleted"]] == [
        ("namespace", "jhub"), ("hostpath", "/srv/labhub/home"), ("database", "labhub_portal")]


@pytest.mark.parametrize("kind", ["microk8s-hostpath", "none", "nfs"])
def test_only_hostpath_homes_are_deleted_by_path(kind):
    plan = _uninstall.plan(dict(BASE, purge=True, storage_kind=kind, storage_nfs="10.0.0.5:/export/home"))
    assert "hostpath" not in [d["kind"] for d in plan["user_data_deleted"]]
    assert ("10.0.0.5:/export/home" in plan["never_deleted"][0]) is (kind == "nfs")


def test_without_the_portal_nothing_of_it_is_touched():
    plan = _uninstall.plan(dict(BASE, purge=True, portal=False))
    assert not [n for n in names(plan) if "portal" in n[1]]
    assert plan["portal_files"] == [] and plan["portal_service"] == "" and plan["left_installed"] == []
    assert "database" not in [d["kind"] for d in plan["user_data_deleted"]]


def test_a_remote_portal_database_is_never_dropped():
    plan = _uninstall.plan(dict(BASE, purge=True, portal_database_local=False))
    assert "database" not in [d["kind"] for d in plan["user_data_deleted"]]


def test_names_follow_the_namespace_and_service_account():
    plan = _uninstall.plan(dict(BASE, hub_namespace="hub-b", portal_service_account="billing"))
    assert ("ClusterRole", "labhub-hub-nodes-hub-b", None) in names(plan)
    assert ("ClusterRole", "billing-hub-b-node-reader", None) in names(plan)
    assert ("Secret", "billing-token", "hub-b") in names(plan)


def test_filter_converts_booleans_and_refuses_bad_settings():
    assert uninstall_plan(dict(BASE, purge="true", portal="no"))["purge"] is True
    assert uninstall_plan(dict(BASE, portal="no"))["portal_service"] == ""
    with pytest.raises(AnsibleFilterError, match="purge is not a boolean"):
        uninstall_plan(dict(BASE, purge="maybe"))
    with pytest.raises(AnsibleFilterError, match="unknown settings extra, missing settings hub_release"):
        uninstall_plan({**{k: v for k, v in BASE.items() if k != "hub_release"}, "extra": 1})
    with pytest.raises(AnsibleFilterError, match="must be a mapping"):
        uninstall_plan(["purge"])
    with pytest.raises(ValueError, match="missing settings: purge"):
        _uninstall.plan({k: v for k, v in BASE.items() if k != "purge"})


def test_object_stubs_are_the_manifests_one_delete_takes():
    from ansible_collections.labhub.platform.plugins.filter.uninstall import uninstall_object_stubs

    stubs = uninstall_object_stubs(_uninstall.plan(BASE)["kubernetes_objects"])
    assert stubs[0] == {"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "labhub-hub-extensions", "namespace": "jhub"}}
    assert {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "labhub-portal-jhub-node-reader"}} in stubs
    assert len(stubs) == 14
    with pytest.raises(AnsibleFilterError, match="kubernetes_objects"):
        uninstall_object_stubs([{"kind": "Pod"}])
