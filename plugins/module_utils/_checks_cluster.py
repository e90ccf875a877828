# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""Checks of the cluster roles' inputs: microk8s, calico, offline_images, bundle, remove_node.

Also the helpers the role checks share (:func:`user_var`, the bundle manifest). Checks whose
name ends in ``_bundle`` look at files on the controller that exist only once the bundle is
built; the roles run them themselves, the playbooks' validation phase does not
(verify_bundle.yml checks the bundle).
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import os
import re
import shutil

from ansible_collections.labhub.platform.plugins.module_utils._bundle import manifest_pause
from ansible_collections.labhub.platform.plugins.module_utils._checks_inventory import check_quorum
from ansible_collections.labhub.platform.plugins.module_utils._os_packages import PackagesError, release_file, release_id
from ansible_collections.labhub.platform.plugins.module_utils._validation import (
    a_type_name,
    DNS_LABEL_RE,
    DNS_SUBDOMAIN_RE,
    HOSTNAME_RE,
    INVENTORY,
    is_bool,
    is_int,
    is_list,
    is_str,
    label_key_error,
    label_value_error,
    MISSING,
    port_error,
    truthy,
)

ROLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "roles")
CLUSTER = "labhub_cluster"

# Role variables the playbooks map from an inventory variable themselves (not in the role's defaults).
PLAYBOOK_ALIASES = {
    "bundle_dir": "labhub_bundle_dir",
    "bundle_sources": "labhub_bundle_sources",
    "bundle_kinds": "labhub_bundle_kinds",
    "bundle_manifest_file": "labhub_bundle_manifest_file",
}
_ALIAS_RE = re.compile(r"^\s*\{\{\s*(labhub_[A-Za-z0-9_]+)\s*(\|\s*default\b.*)?\}\}\s*$")
_CACHE = {}  # type: dict


# --------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------
def _load_yaml(path):
    import yaml  # controller side only

    key = ("yaml", path)
    if key not in _CACHE:
        try:
            with open(path) as handle:
                _CACHE[key] = (yaml.safe_load(handle), None)
        except (IOError, OSError, yaml.YAMLError) as exc:
            _CACHE[key] = (None, " ".join(str(exc).split())[:200])
    return _CACHE[key]


def role_defaults(role):
    """The raw defaults/main.yml of a role (for the inventory variable a default reads)."""
    data = _load_yaml(os.path.join(ROLES_DIR, role, "defaults", "main.yml"))[0]
    return data if isinstance(data, dict) else {}


def alias_of(role_var):
    """The inventory variable a role variable defaults to (nodes_labels for nodes_labels)."""
    if role_var in PLAYBOOK_ALIASES:
        return PLAYBOOK_ALIASES[role_var]
    role = _role_of(role_var)
    raw = role_defaults(role).get(role_var) if role else None
    match = _ALIAS_RE.match(raw) if isinstance(raw, str) else None
    return match.group(1) if match else None


def _role_of(var):
    for role in ("network_operator", "offline_images", "gpu_operator", "microk8s", "calico", "nodes", "bundle",
                 "packages"):
        if var.startswith(role + "_"):
            return role
    return None


def user_var(site, host, role_var):
    """The name the user writes: the role variable when set, else the inventory variable it reads."""
    alias = alias_of(role_var)
    if not alias:
        return role_var
    if site.has(host, role_var) and not (site.has(host, alias) and site.get(host, alias) == site.get(host, role_var)):
        return role_var
    return alias


def pos_int(value):
    """True for a whole number above 0 (an int, or a string of digits as Ansible's `| int` reads it)."""
    if isinstance(value, bool):
        return False
    if is_int(value):
        return value > 0
    return isinstance(value, str) and value.strip().isdigit() and int(value) > 0


def is_abs(value):
    return is_str(value) and value.startswith("/")


def manifest(path):
    """(data, error) of a bundle manifest file."""
    data, error = _load_yaml(path) if is_str(path) else (None, "not a path")
    if error is None and not isinstance(data, dict):
        error = "is not a mapping"
    return (data if error is None else None), error


def cluster_scope(site):
    """The hosts of the playbook's scope that are cluster nodes (per-node checks).

    An inventory without a labhub_cluster group (a role run alone on its own play hosts) has no
    such filter: every host of the scope is a node the role acts on, so each is checked (the
    roles configure their play hosts whether or not they are in labhub_cluster)."""
    if CLUSTER not in site.groups:
        return list(site.scope)
    cluster = site.group(CLUSTER)
    return [h for h in site.scope if h in cluster]


def _bundle_dir(site, report, host, var):
    value = site.get(host, var, "")
    if not is_str(value) or not value or not value.startswith("/"):
        report.add(host, user_var(site, host, var),
                   "is not the absolute path of the bundle on the controller (%s)" % var,
                   "e.g. -e labhub_bundle_dir=/srv/labhub-bundle", value=value)
        return None
    return value


def _file(path):
    return os.path.isfile(path)


# --------------------------------------------------------------------------------------
# microk8s
# --------------------------------------------------------------------------------------
RECLAIM_POLICIES = ("Delete", "Retain")
# The MicroK8s track Labhub supports: the newest stable track whose Kubernetes minor is in upstream
# support (canonical/microk8s tag v1.36). Its snap channel in the bundle manifest is checked.
MICROK8S_TRACK = "1.36"
MICROK8S_CHANNEL = MICROK8S_TRACK + "/stable"
INGRESS_REFUSED = ("MicroK8s %s's ingress addon installs Traefik from https://traefik.github.io/charts and the "
                   "Gateway API CRDs from github.com when it is enabled (microk8s-core-addons addons/ingress/enable), "
                   "which an air-gapped site cannot reach" % MICROK8S_TRACK)


def _ip(value):
    try:
        ipaddress.ip_address(str(value))
        return True
    except ValueError:
        return False


def _layout(site, report):
    """Control-plane and worker groups: the role's own group variables (default: labhub_*)."""
    hub = site.hub_host
    cp_group = site.get(hub, "microk8s_control_plane_group", "labhub_control_plane")
    wk_group = site.get(hub, "microk8s_worker_group", "labhub_workers")
    if not is_str(cp_group) or not is_str(wk_group):
        return None
    cp, workers = site.group(cp_group), site.group(wk_group)
    # The inventory topology check's rule (the same rows, so they appear once when both run).
    check_quorum(report, cp_group, cp)
    for host in site.hosts:
        if host in cp and host in workers:
            report.add(host, "groups.%s + groups.%s" % (cp_group, wk_group),
                       "host is in both %s and %s" % (cp_group, wk_group), "the host in only one of them")
    for host in cluster_scope(site):
        if host not in cp and host not in workers:
            report.add(host, "groups.%s / groups.%s" % (cp_group, wk_group),
                       "host is a cluster node in neither %s nor %s" % (cp_group, wk_group),
                       "every node in one of them")
    return cp


def check_microk8s(site, report):
    """The microk8s role's settings on every node of the scope, and the cluster layout."""
    cp = _layout(site, report)
    hub = site.hub_host
    first = site.get(hub, "microk8s_first_control_plane", "")
    if first and cp is not None:
        if not is_str(first) or first not in cp:
            report.add(hub, "microk8s_first_control_plane", "is not a host of the control-plane group (it issues "
                       "join tokens)", "one of: " + ", ".join(cp), value=first)
        elif site.playbook not in ("add_node", "remove_node", "preflight") and site.scope and first not in site.scope:
            report.add(hub, "microk8s_first_control_plane", "is not in the play (check --limit): it issues the join "
                       "tokens", "the host in the play", value=first)
    elif cp and site.playbook not in ("add_node", "remove_node", "preflight") and cluster_scope(site) \
            and cp[0] not in site.scope:
        report.add(hub, "microk8s_first_control_plane", "is empty and the first control-plane node %s, which issues "
                   "the join tokens, is not in the play (check --limit)" % cp[0],
                   "%s in the play, or microk8s_first_control_plane set to one that is" % cp[0], value=first)
    for host in cluster_scope(site):
        _microk8s_host(site, report, host)
    if site.get(hub, "microk8s_ingress_enabled", False) is True:
        report.add(hub, "microk8s_ingress_enabled", "is refused: " + INGRESS_REFUSED,
                   "false (role ingress installs the same controller, Traefik, from the bundle: ingress_enabled)", value=True)
    _microk8s_channel(site, report, hub)


def _microk8s_channel(site, report, host):
    """The manifest's MicroK8s snap follows the supported track (MICROK8S_CHANNEL)."""
    path = site.get(host, "microk8s_manifest_file")
    if not is_str(path):
        return
    data, error = manifest(path)
    if error:
        return  # reported by check_microk8s_bundle
    name = site.get(host, "microk8s_snap_name", "microk8s")
    snaps = [s for s in data.get("snaps") or [] if isinstance(s, dict) and s.get("name") == name]
    if len(snaps) == 1 and snaps[0].get("channel") != MICROK8S_CHANNEL:
        report.add(host, "microk8s_manifest_file", "pins snap %s to channel %s; Labhub supports MicroK8s %s (Kubernetes "
                   "%s, in upstream support)" % (name, snaps[0].get("channel"), MICROK8S_CHANNEL, MICROK8S_TRACK),
                   "a manifest whose %s snap has channel %s and a revision of it" % (name, MICROK8S_CHANNEL),
                   value=path)


def _microk8s_host(site, report, host):
    def add(var, problem, expected, value=MISSING):
        report.add(host, user_var(site, host, var), problem, expected,
                   value=site.get(host, var) if value is MISSING else value)

    _bundle_dir(site, report, host, "microk8s_bundle_dir")
    dns = site.get(host, "microk8s_dns_upstream_servers", [])
    if not is_list(dns):
        add("microk8s_dns_upstream_servers", "is %s, not a list" % a_type_name(dns), "a list of IP addresses")
    else:
        bad = [s for s in dns if not _ip(s)]
        if bad:
            add("microk8s_dns_upstream_servers", "has entries that are not IP addresses: %s" % ", ".join(map(str, bad)),
                "a list of IP addresses, e.g. [10.0.0.53]")
    policy = site.get(host, "microk8s_hostpath_storage_reclaim_policy", "Delete")
    if policy not in RECLAIM_POLICIES:
        add("microk8s_hostpath_storage_reclaim_policy", "is not a reclaim policy", "Delete or Retain")
    if not is_abs(site.get(host, "microk8s_hostpath_storage_dir", "/")):
        add("microk8s_hostpath_storage_dir", "is not an absolute path", "e.g. /var/snap/microk8s/common/default-storage")
    mirrors = site.get(host, "microk8s_registry_mirrors", [])
    if not is_list(mirrors):
        add("microk8s_registry_mirrors", "is %s, not a list" % a_type_name(mirrors), "a list of {registry, endpoints}")
    else:
        for index, mirror in enumerate(mirrors):
            if (not isinstance(mirror, dict) or not is_str(mirror.get("registry")) or not mirror.get("registry")
                    or not is_list(mirror.get("endpoints")) or not mirror.get("endpoints")):
                report.add(host, "%s[%d]" % (user_var(site, host, "microk8s_registry_mirrors"), index),
                           "needs registry (a name) and endpoints (a non-empty list of URLs)",
                           "{registry: docker.io, endpoints: [https://mirror.example.org]}", value=mirror)
    for var in ("microk8s_kubelet_max_pods", "microk8s_join_ready_timeout", "microk8s_join_ready_delay",
                "microk8s_join_token_ttl", "microk8s_wait_ready_timeout"):
        value = site.get(host, var, 1)
        if not pos_int(value):
            add(var, "is not a whole number above 0", "e.g. 600")
    if not is_str(site.get(host, "microk8s_kubelet_eviction_hard", "")):
        add("microk8s_kubelet_eviction_hard", "is not a string", "e.g. memory.available<100Mi,nodefs.available<1Gi")
    if not isinstance(site.get(host, "microk8s_kubelet_extra_args", {}), dict):
        add("microk8s_kubelet_extra_args", "is not a mapping", "a mapping of kubelet flag -> value")
    if not is_abs(site.get(host, "microk8s_kubeconfig_path", "/")):
        add("microk8s_kubeconfig_path", "is not an absolute path on the controller",
            "e.g. /srv/inventory/.credentials/kubeconfig")
    api = site.get(host, "microk8s_api_address", "")
    if not is_str(api):
        add("microk8s_api_address", "is not a string", "an IP address or DNS name, or '' (the node's own address)")
    elif api and not _ip(api) and not HOSTNAME_RE.match(api):
        add("microk8s_api_address", "is neither an IP address nor a host name", "an IP address or DNS name, or ''")
    cluster_address = site.get(host, "microk8s_cluster_address", "")
    if not is_str(cluster_address) or (cluster_address and not _ip(cluster_address)):
        add("microk8s_cluster_address", "is not an IP address (the address add-node's join URL must use)",
            "the node's IP address on the cluster network, or '' (its ansible_host when an IP address)")
    name = site.get(host, "microk8s_node_name", "")
    if not is_str(name):
        add("microk8s_node_name", "is not a string", "a Kubernetes node name, or '' (the node's host name)")
    if not is_str(site.get(host, "microk8s_snap_name", "microk8s")) or not site.get(host, "microk8s_snap_name", "x"):
        add("microk8s_snap_name", "is empty", "microk8s")


def check_microk8s_bundle(site, report):
    """The bundle holds the snaps the manifest lists, and a pause image for the sandbox."""
    for host in cluster_scope(site):
        bundle = site.get(host, "microk8s_bundle_dir", "")
        if not is_abs(bundle):
            continue  # reported by check_microk8s
        path = site.get(host, "microk8s_manifest_file")
        data, error = manifest(path)
        if error:
            report.add(host, "microk8s_manifest_file", "cannot be read: " + error, "the collection's files/bundle-manifest.yml",
                       value=path)
            continue
        snap_name = site.get(host, "microk8s_snap_name", "microk8s")
        snaps = [s for s in data.get("snaps") or [] if isinstance(s, dict)]
        if len([s for s in snaps if s.get("name") == snap_name]) != 1:
            report.add(host, "microk8s_snap_name", "is not listed once in the snaps of %s" % path,
                       "a snap of the bundle manifest", value=snap_name)
        absent = [f for s in snaps for f in (s.get("file"), s.get("assert")) if f and not _file(os.path.join(bundle, f))]
        if absent:
            report.add(host, user_var(site, host, "microk8s_bundle_dir"),
                       "does not hold %d snap file(s) of the manifest: %s" % (len(absent), ", ".join(absent[:4])),
                       "the bundle built by playbooks/bundle.yml (check it with playbooks/verify_bundle.yml)",
                       value=bundle)
        sandbox = site.get(host, "microk8s_sandbox_image", "")
        if not sandbox and not manifest_pause(data):
            report.add(host, "microk8s_sandbox_image", "is empty and the manifest has no pause image used by microk8s",
                       "an image reference, e.g. registry.k8s.io/pause:3.7", value=sandbox)


# --------------------------------------------------------------------------------------
# calico (cluster-wide, read on the first control-plane node)
# --------------------------------------------------------------------------------------
CALICO_METHODS = ("first-found", "interface", "cidr", "can-reach")
CALICO_VXLAN_MODES = {"vxlan": "Always", "vxlan-crosssubnet": "CrossSubnet"}
CALICO_REFUSED = {
    "ipip": "IP-in-IP needs BGP (BIRD), but MicroK8s runs Calico with calico_backend \"vxlan\"",
    "none": "unencapsulated routing needs BGP (BIRD), but MicroK8s runs Calico with calico_backend \"vxlan\"",
}
CALICO_VXLAN_OVERHEAD = 50


def _digits(value):
    return not isinstance(value, bool) and (is_int(value) or (is_str(value) and value.isdigit()))


def _cidr(value):
    if not is_str(value) or "/" not in value:
        return False
    try:
        ipaddress.ip_network(value, strict=False)
        return True
    except ValueError:
        return False


def check_calico(site, report):
    """The calico role's settings (cluster-wide)."""
    host = site.hub_host

    def add(var, problem, expected, value=MISSING):
        report.add(host, user_var(site, host, var), problem, expected,
                   value=site.get(host, var) if value is MISSING else value)

    method = site.get(host, "calico_ip_autodetection_method", "first-found")
    if method not in CALICO_METHODS:
        add("calico_ip_autodetection_method", "is not an autodetection method", "one of: " + ", ".join(CALICO_METHODS))
    elif method == "interface":
        iface = site.get(host, "calico_ip_autodetection_interface", "")
        if not is_str(iface) or not iface.strip():
            add("calico_ip_autodetection_interface", "is empty but calico_ip_autodetection_method is 'interface'",
                "a regular expression of interface names, e.g. 'eno1|ens.*'")
        elif re.search(r'[\s"]', iface):
            add("calico_ip_autodetection_interface", "contains spaces or quotes", "a regular expression, e.g. 'eno1|ens.*'")
    elif method == "cidr":
        cidrs = site.get(host, "calico_ip_autodetection_cidrs", [])
        if not is_list(cidrs) or not cidrs:
            add("calico_ip_autodetection_cidrs", "is not a non-empty list but calico_ip_autodetection_method is 'cidr'",
                "a list of CIDRs, e.g. [10.20.0.0/16]")
        else:
            for cidr in cidrs:
                if not _cidr(cidr):
                    add("calico_ip_autodetection_cidrs", "%s is not a CIDR" % _quote(cidr),
                        "address/prefix, e.g. 10.20.0.0/16")
    elif method == "can-reach":
        target = site.get(host, "calico_ip_autodetection_can_reach", "")
        if not is_str(target) or not (_ip(target) or HOSTNAME_RE.match(target)):
            add("calico_ip_autodetection_can_reach", "is not an IP address or host name but "
                "calico_ip_autodetection_method is 'can-reach'", "e.g. 10.20.0.1")
    mtu = site.get(host, "calico_mtu", 0)
    mtu_ok = _digits(mtu) and (int(mtu) == 0 or 1000 <= int(mtu) <= 9000)
    if not mtu_ok:
        add("calico_mtu", "is not 0 or a number between 1000 and 9000", "0 (detected by Calico) or e.g. 1450")
    underlay = site.get(host, "calico_underlay_mtu", 0)
    underlay_ok = _digits(underlay) and (int(underlay) == 0 or 1280 <= int(underlay) <= 65520)
    if not underlay_ok:
        add("calico_underlay_mtu", "is not 0 or a number between 1280 and 65520",
            "0 (not checked) or the node network's MTU, e.g. 1500")
    encap = site.get(host, "calico_encapsulation", "vxlan")
    if is_str(encap) and encap in CALICO_REFUSED:
        add("calico_encapsulation", "%s is refused: %s" % (encap, CALICO_REFUSED[encap]), "vxlan or vxlan-crosssubnet")
    elif encap not in CALICO_VXLAN_MODES:
        add("calico_encapsulation", "is not an encapsulation", "vxlan or vxlan-crosssubnet")
    elif mtu_ok and underlay_ok and int(mtu) > 0 and int(underlay) > 0 and int(mtu) + CALICO_VXLAN_OVERHEAD > int(underlay):
        add("calico_mtu", "%s plus the %d bytes VXLAN adds exceeds calico_underlay_mtu %s"
            % (mtu, CALICO_VXLAN_OVERHEAD, underlay), "at most %d" % (int(underlay) - CALICO_VXLAN_OVERHEAD))
    for var in ("calico_ready_timeout", "calico_ready_delay"):
        if not pos_int(site.get(host, var, 1)) or not _digits(site.get(host, var, 1)):
            add(var, "is not a positive number of seconds", "e.g. 600")
    group = site.get(host, "calico_control_plane_group", "labhub_control_plane")
    if not is_str(group) or not site.group(group):
        add("calico_control_plane_group", "names a group with no host", "the control-plane group, e.g. labhub_control_plane")
    for var in ("calico_kubeconfig", "calico_snap_data_dir"):
        if not is_abs(site.get(host, var, "/")):
            add(var, "is not an absolute path", "e.g. /var/snap/microk8s/current")


def _quote(value):
    import json

    return json.dumps(value, default=str)


def calico_derived(method, interface, cidrs, can_reach, encapsulation, mtu):
    """What the cluster and cni.yaml must say, from valid settings (filter labhub.platform.calico_settings)."""
    autodetect = {"first-found": "first-found",
                  "interface": "interface=%s" % str(interface or "").strip(),
                  "cidr": "cidr=%s" % ",".join(cidrs or []),
                  "can-reach": "can-reach=%s" % can_reach}[method]
    return {"autodetection": autodetect, "vxlan": CALICO_VXLAN_MODES[encapsulation], "veth_mtu": str(int(mtu))}


# --------------------------------------------------------------------------------------
# offline_images
# --------------------------------------------------------------------------------------
def check_offline_images(site, report):
    """The offline_images role's settings on every node of the scope."""
    for host in cluster_scope(site):
        _bundle_dir(site, report, host, "offline_images_bundle_dir")
        used_by = site.get(host, "offline_images_used_by", [])
        if not is_list(used_by):
            report.add(host, user_var(site, host, "offline_images_used_by"), "is %s, not a list" % a_type_name(used_by),
                       "a list of manifest used_by names, e.g. [microk8s], or [] for every image", value=used_by)
        if not is_abs(site.get(host, "offline_images_dest_dir", "/")):
            report.add(host, "offline_images_dest_dir", "is not an absolute path", "e.g. /var/lib/labhub/images",
                       value=site.get(host, "offline_images_dest_dir"))
        namespace = site.get(host, "offline_images_namespace", "k8s.io")
        if not is_str(namespace) or not namespace:
            report.add(host, "offline_images_namespace", "is empty", "containerd's namespace, k8s.io", value=namespace)
        if not is_abs(site.get(host, "offline_images_address", "/")):
            report.add(host, "offline_images_address", "is not an absolute path", "containerd's socket",
                       value=site.get(host, "offline_images_address"))


def _sums(path):
    key = ("sums", path)
    if key not in _CACHE:
        try:
            with open(path) as handle:
                lines = [line.split(None, 1) for line in handle.read().splitlines() if line.strip()]
            _CACHE[key] = set(parts[1].lstrip("*").strip() for parts in lines if len(parts) == 2)
        except (IOError, OSError):
            _CACHE[key] = None
    return _CACHE[key]


def check_offline_images_bundle(site, report):
    """The bundle has a SHA256SUMS and every image the node imports."""
    for host in cluster_scope(site):
        bundle = site.get(host, "offline_images_bundle_dir", "")
        used_by = site.get(host, "offline_images_used_by", [])
        if not is_abs(bundle) or not is_list(used_by):
            continue
        var = user_var(site, host, "offline_images_bundle_dir")
        sums = _sums(os.path.join(bundle, "SHA256SUMS"))
        if sums is None:
            report.add(host, var, "has no SHA256SUMS", "a bundle built by playbooks/bundle.yml", value=bundle)
            continue
        data, error = manifest(site.get(host, "offline_images_manifest_file"))
        if error:
            report.add(host, "offline_images_manifest_file", "cannot be read: " + error,
                       "the collection's files/bundle-manifest.yml", value=site.get(host, "offline_images_manifest_file"))
            continue
        images = [i for i in data.get("images") or [] if isinstance(i, dict)
                  and (not used_by or set(i.get("used_by") or []) & set(used_by))]
        if not images:
            report.add(host, user_var(site, host, "offline_images_used_by"), "selects no image of the manifest",
                       "used_by names of the manifest's images, or []", value=used_by)
        unlisted = [i["file"] for i in images if i.get("file") not in sums]
        absent = [i["file"] for i in images if i.get("file") in sums and not _file(os.path.join(bundle, i["file"]))]
        for what, files in (("not in its SHA256SUMS", unlisted), ("absent", absent)):
            if files:
                report.add(host, var, "%d image archive(s) %s: %s" % (len(files), what, ", ".join(files[:3])),
                           "the bundle built by playbooks/bundle.yml (check it with playbooks/verify_bundle.yml)",
                           value=bundle)


def offline_images_select(images, used_by):
    """The manifest images a node imports (filter labhub.platform.offline_images_select)."""
    return [i for i in images or [] if not used_by or set(i.get("used_by") or []) & set(used_by)]


# --------------------------------------------------------------------------------------
# bundle (on the controller; bundle.yml and verify_bundle.yml)
# --------------------------------------------------------------------------------------
BUNDLE_KINDS = ("snap", "chart", "image", "packages", "wheels")
_SOURCE_KEY_RE = re.compile(r"^(snap|chart|image|packages|wheels):.+")


def _bundle_host(site):
    return site.hub_host


def _bvar(site, host, var, default=None):
    """A bundle role variable as the playbook gives it: bundle.yml maps labhub_bundle_dir to bundle_dir."""
    alias = PLAYBOOK_ALIASES.get(var)
    if not site.has(host, var) and alias and site.has(host, alias):
        return site.get(host, alias, default)
    return site.get(host, var, default)


def check_bundle_verify(site, report):
    """Inputs of verify_bundle.yml (and of bundle.yml): the bundle directory and the manifest."""
    host = _bundle_host(site)
    bundle = _bvar(site, host, "bundle_dir", "")
    if not is_abs(bundle):
        report.add(host, user_var(site, host, "bundle_dir"), "is not an absolute path (bundle_dir)",
                   "-e labhub_bundle_dir=/srv/labhub-bundle", value=bundle)
    path = _bvar(site, host, "bundle_manifest_file")
    data, error = manifest(path)
    if error:
        report.add(host, user_var(site, host, "bundle_manifest_file"), "cannot be read: " + error,
                   "a bundle manifest (files/bundle-manifest.yml)", value=path)
    elif str(data.get("schema_version")) != "1":
        report.add(host, user_var(site, host, "bundle_manifest_file"), "is not a schema_version 1 bundle manifest",
                   "schema_version: 1", value=path)


def check_bundle(site, report):
    """Inputs of bundle.yml: kinds, sources, the wheels' requirements file."""
    host = _bundle_host(site)
    check_bundle_verify(site, report)
    kinds = _bvar(site, host, "bundle_kinds", list(BUNDLE_KINDS))
    if not is_list(kinds):
        report.add(host, user_var(site, host, "bundle_kinds"), "is %s, not a list" % a_type_name(kinds),
                   "a list of: " + ", ".join(BUNDLE_KINDS), value=kinds)
        kinds = []
    elif [k for k in kinds if k not in BUNDLE_KINDS]:
        report.add(host, user_var(site, host, "bundle_kinds"), "has unknown kinds: %s"
                   % ", ".join(str(k) for k in kinds if k not in BUNDLE_KINDS),
                   "a list of: " + ", ".join(BUNDLE_KINDS), value=kinds)
    sources = _bvar(site, host, "bundle_sources", {})
    if not isinstance(sources, dict):
        report.add(host, user_var(site, host, "bundle_sources"), "is %s, not a mapping" % a_type_name(sources),
                   "a mapping of image:<ref>, chart:<name>, snap:<name>, packages:<release>, wheels:<name> -> source", value=sources)
    else:
        bad = [k for k in sources if not is_str(k) or not _SOURCE_KEY_RE.match(k)]
        if bad:
            report.add(host, user_var(site, host, "bundle_sources"), "has keys that name no artifact: %s"
                       % ", ".join(map(str, bad)), "keys image:<ref>, chart:<name>, snap:<name>, packages:<release>, wheels:<name>",
                       value=sources)
    data = manifest(_bvar(site, host, "bundle_manifest_file"))[0]
    wheels = (data or {}).get("wheels")
    if "wheels" in kinds and isinstance(wheels, dict) and wheels.get("requirements"):
        root = site.get(host, "bundle_project_root", "")
        path = os.path.join(str(root), str(wheels["requirements"]))
        if not os.path.exists(path):
            report.add(host, "bundle_project_root", "has no %s (wheels.requirements of the manifest)" % wheels["requirements"],
                       "the project root holding it, or 'wheels' dropped from bundle_kinds", value=root)


# --------------------------------------------------------------------------------------
# packages: OS packages from the bundle's release repositories (role packages, on every cluster
# node and on the portal hosts)
# --------------------------------------------------------------------------------------
PACKAGES_SOURCES = ("bundle", "network")


def check_packages(site, report, hosts):
    """packages_source and, with the bundle as the source, that the bundle on the controller has the
    repository of each node's release (read by preflight's hardware facts, when there are any)."""
    for host in hosts:
        source = site.get(host, "packages_source", "bundle")
        if source not in PACKAGES_SOURCES:
            report.add(host, "packages_source", "is not a package source Labhub knows",
                       "bundle (the bundle's release repository) or network (the node's own APT sources)", value=source)
            continue
        if source != "bundle":
            continue
        bundle = _bundle_dir(site, report, host, "packages_bundle_dir")
        if bundle is None or not os.path.isdir(bundle):
            continue  # a bundle directory that is not there is reported by the bundle checks
        if str(site.get(host, "preflight_hardware_root", "/") or "/").rstrip("/"):
            continue  # facts read from another tree (preflight_hardware_root) do not tell the node's own release
        hw = site.hardware.get(host) if isinstance(getattr(site, "hardware", None), dict) else None
        os_info = hw.get("os") if isinstance(hw, dict) and isinstance(hw.get("os"), dict) else None
        try:
            release = release_id(os_info or {})
        except PackagesError:
            continue  # no hardware facts (or no readable os-release, reported by the hardware check)
        wanted = os.path.join(bundle, release_file(release))
        if not _file(wanted):
            shelf = os.path.dirname(wanted)
            have = sorted(n[:-len(".tar")] for n in (os.listdir(shelf) if os.path.isdir(shelf) else [])
                          if n.endswith(".tar"))
            report.add(host, user_var(site, host, "packages_bundle_dir"),
                       "has no %s for this node's release (it has: %s)" % (release_file(release), ", ".join(have) or "none"),
                       "a bundle built with %s in files/bundle-manifest.yml (section packages), or "
                       "packages_source: network where the node reaches a package mirror" % release, value=bundle)


def check_packages_nodes(site, report):
    """Role packages on the cluster nodes of the playbook's scope (site.yml, add_node.yml)."""
    check_packages(site, report, cluster_scope(site))


# --------------------------------------------------------------------------------------
# remove_node.yml's own arguments
# --------------------------------------------------------------------------------------
_BOOL_WORDS = ("true", "false", "yes", "no", "1", "0", "on", "off")


def check_remove_node(site, report):
    """node, force, remove_node_drain_timeout/delay/grace_period, remove_node_purge (extra vars)."""
    opts = site.options
    node = opts.get("node", MISSING)
    members = site.control_plane + site.group("labhub_workers")
    if node is MISSING or node in (None, ""):
        report.add(INVENTORY, "node", "is not set", "-e node=<inventory host>: one of " + ", ".join(sorted(site.hosts)))
    elif not is_str(node) or node not in site.hosts:
        report.add(INVENTORY, "node", "is not a host of the inventory", "one of: " + ", ".join(sorted(site.hosts)),
                   value=node)
    elif node not in members:
        report.add(INVENTORY, "node", "is in neither labhub_control_plane nor labhub_workers",
                   "a control-plane node or a worker", value=node)
    force = opts.get("force", False)
    if not is_bool(force) and str(force).lower() not in _BOOL_WORDS:
        report.add(INVENTORY, "force", "is not a boolean", "true or false", value=force)
    for var, default in (("remove_node_drain_timeout", 300), ("remove_node_drain_delay", 5)):
        if not pos_int(opts.get(var, default)):
            report.add(INVENTORY, var, "is not a positive number of seconds", "e.g. %d" % default,
                       value=opts.get(var))
    grace = opts.get("remove_node_grace_period", MISSING)
    if grace is not MISSING and grace is not None and not (pos_int(grace) or grace in (0, "0")):
        report.add(INVENTORY, "remove_node_grace_period", "is not a number of seconds", "e.g. 30", value=grace)
    purge = opts.get("remove_node_purge", False)
    if not is_bool(purge) and str(purge).lower() not in _BOOL_WORDS:
        report.add(INVENTORY, "remove_node_purge", "is not a boolean", "true or false", value=purge)


# --------------------------------------------------------------------------------------
# ingress: the controller the hub's Ingress needs (role ingress)
# --------------------------------------------------------------------------------------
def ingress_on(site, host):
    """Whether site.yml runs role ingress: ingress_enabled, by default on exactly when the hub is
    exposed through an ingress (roles/ingress/defaults/main.yml)."""
    value = site.get(host, "ingress_enabled", MISSING)
    if value is MISSING:
        return site.get(host, "jupyterhub_expose", "nodeport") == "ingress"
    return truthy(value)


def check_ingress(site, report):
    """The ingress role's settings, and that the hub's Ingress has a controller (cluster-wide)."""
    host = site.hub_host

    def add(var, problem, expected, value=MISSING):
        report.add(host, var, problem, expected, value=site.get(host, var) if value is MISSING else value)

    enabled = site.get(host, "ingress_enabled", MISSING)
    if enabled is not MISSING and not is_bool(enabled):
        add("ingress_enabled", "is %s, not a boolean" % a_type_name(enabled), "true or false (unquoted YAML)")
        return
    on = ingress_on(site, host)
    expose = site.get(host, "jupyterhub_expose", "nodeport")
    hub_class = site.get(host, "jupyterhub_ingress_class", "public")
    own_class = site.get(host, "ingress_class", "public")
    if expose == "ingress" and not on and hub_class == own_class:
        add("ingress_enabled", "is false while jupyterhub_expose is ingress with jupyterhub_ingress_class %s: no "
            "controller would serve the hub's Ingress (MicroK8s' ingress addon cannot be enabled offline)"
            % _quote(hub_class),
            "ingress_enabled: true (Labhub's controller, the default with jupyterhub_expose: ingress), or "
            "jupyterhub_ingress_class naming the IngressClass of the cluster's own controller", value=False)
    if not on:
        return
    if expose == "ingress" and is_str(hub_class) and is_str(own_class) and hub_class != own_class:
        add("jupyterhub_ingress_class", "is %s but Labhub's controller serves IngressClass %s (ingress_class)"
            % (_quote(hub_class), _quote(own_class)), "the same class in both, or ingress_enabled: false when "
            "another controller serves %s" % _quote(hub_class))
    if not (is_str(own_class) and DNS_SUBDOMAIN_RE.match(own_class)):
        add("ingress_class", "is not an IngressClass name", "a DNS subdomain name, e.g. public")
    namespace = site.get(host, "ingress_namespace", "ingress")
    if not (is_str(namespace) and DNS_LABEL_RE.match(namespace)):
        add("ingress_namespace", "is not a namespace name", "a DNS label: lower-case letters, digits, '-'")
    ports = {}
    for var, default in (("ingress_http_port", 80), ("ingress_https_port", 443)):
        value = site.get(host, var, default)
        error = port_error(value)
        if error:
            add(var, error, "a port number 1-65535")
        elif value in ports:
            add(var, "is the same port as %s" % ports[value], "two different host ports")
        else:
            ports[value] = var
    timeout = site.get(host, "ingress_read_timeout_seconds", 3600)
    if not is_int(timeout) or timeout < 0:
        add("ingress_read_timeout_seconds", "is not a whole number of seconds", "0 (no limit) or more, e.g. 3600")
    for var in ("ingress_wait_timeout", "ingress_wait_delay"):
        if not pos_int(site.get(host, var, 1)):
            add(var, "is not a whole number of seconds above 0", "e.g. 300 (timeout), 5 (delay)")
    selector = site.get(host, "ingress_node_selector", {})
    if not isinstance(selector, dict):
        add("ingress_node_selector", "is %s, not a mapping" % a_type_name(selector), "node labels, e.g. {labhub.io/ingress: \"true\"}")
    else:
        for key, val in selector.items():
            error = label_key_error(key) or label_value_error(val)
            if error:
                add("ingress_node_selector", error, "node labels, e.g. {labhub.io/ingress: \"true\"}", value={key: val})
    path = site.get(host, "ingress_manifest_file", MISSING)
    if path is not MISSING and not site.get(host, "ingress_render_dir", ""):
        data, error = manifest(path)
        refs = [i.get("ref") for i in ((data or {}).get("images") or []) if isinstance(i, dict)
                and "ingress" in (i.get("used_by") or [])]
        if error:
            add("ingress_manifest_file", "cannot be read: " + error, "the bundle manifest (files/bundle-manifest.yml)")
        elif len(refs) != 1:
            add("ingress_manifest_file", "lists %d images used_by ingress" % len(refs),
                "exactly one: the controller image, e.g. docker.io/library/traefik:v3.6.13")


def check_image_audit(site, report):
    """Inputs of audit_images.yml (role image_audit, on the controller): the bundle it compares
    with (its manifest and chart archives), Helm on the controller, the render directory."""
    host = site.hub_host
    bundle = site.get(host, "image_audit_bundle_dir", "")
    var = user_var(site, host, "image_audit_bundle_dir")
    if not is_abs(bundle):
        report.add(host, var, "is not the absolute path of the bundle on the controller",
                   "-e labhub_bundle_dir=/srv/labhub-bundle", value=bundle)
    elif not os.path.isdir(bundle):
        report.add(host, var, "is not a directory on the controller", "the bundle built by playbooks/bundle.yml",
                   value=bundle)
    else:
        data, error = manifest(os.path.join(bundle, "bundle-manifest.yml"))
        if error:
            report.add(host, var, "has no readable bundle-manifest.yml: " + error,
                       "the bundle built by playbooks/bundle.yml (check it with playbooks/verify_bundle.yml)", value=bundle)
        else:
            absent = [str(c.get("file")) for c in data.get("charts") or []
                      if isinstance(c, dict) and not os.path.isfile(os.path.join(bundle, str(c.get("file"))))]
            if absent:
                report.add(host, var, "lacks the chart archives %s" % ", ".join(absent),
                           "the bundle built by playbooks/bundle.yml (check it with playbooks/verify_bundle.yml)",
                           value=bundle)
    helm = site.get(host, "image_audit_helm_binary", "helm")
    found = (helm if os.sep in helm else shutil.which(helm)) if is_str(helm) and helm else None
    if not found or not os.path.isfile(found) or not os.access(found, os.X_OK):
        report.add(host, "image_audit_helm_binary", "is not an executable Helm 3 on the controller",
                   "helm on PATH, or a path; MicroK8s nodes carry a static one at /snap/microk8s/current/bin/helm",
                   value=helm)
    render_dir = site.get(host, "image_audit_render_dir", "")
    if render_dir not in ("", None) and not is_abs(render_dir):
        report.add(host, "image_audit_render_dir", "is not an absolute directory", "'' (a temporary one) or /absolute/dir",
                   value=render_dir)
    version = site.get(host, "image_audit_kube_version", "")
    if version not in ("", None) and not (is_str(version) and re.match(r"^v?\d+\.\d+(\.\d+)?$", version)):
        report.add(host, "image_audit_kube_version", "is not a Kubernetes version", "e.g. 1.36.0, or '' (the bundle's track)",
                   value=version)
    if not is_bool(site.get(host, "image_audit_fail_on_missing", True)):
        report.add(host, "image_audit_fail_on_missing", "is not a boolean", "true or false",
                   value=site.get(host, "image_audit_fail_on_missing"))


def monitoring_on(site, host):
    """Whether site.yml runs role monitoring (monitoring_enabled, default true)."""
    return truthy(site.get(host, "monitoring_enabled", True))


def check_monitoring(site, report):
    """Role monitoring's settings, against what Prometheus, Kubernetes and the bundle manifest accept."""
    from ansible_collections.labhub.platform.plugins.module_utils import _monitoring

    host = site.hub_host

    def add(var, problem, expected, value=MISSING):
        report.add(host, var, problem, expected, value=site.get(host, var) if value is MISSING else value)

    enabled = site.get(host, "monitoring_enabled", True)
    if not is_bool(enabled):
        add("monitoring_enabled", "is %s, not a boolean" % a_type_name(enabled), "true or false (unquoted YAML)")
        return
    if not enabled:
        return
    hub_metrics = site.get(host, "monitoring_hub_metrics", True)
    if not is_bool(hub_metrics):
        add("monitoring_hub_metrics", "is %s, not a boolean" % a_type_name(hub_metrics), "true or false (unquoted YAML)")
    namespace = site.get(host, "monitoring_namespace", "monitoring")
    if not (is_str(namespace) and DNS_LABEL_RE.match(namespace)):
        add("monitoring_namespace", "is not a namespace name", "a DNS label: lower-case letters, digits, '-'")
    for var, default in (("monitoring_scrape_interval", "30s"), ("monitoring_retention", "15d")):
        value = site.get(host, var, default)
        if not (is_str(value) and _monitoring.DURATION_RE.match(value)):
            add(var, "is not a Prometheus duration", "a number with a unit, e.g. 30s, 15d, 8w")
    size = site.get(host, "monitoring_retention_size", "")
    if size not in ("", None) and not (is_str(size) and _monitoring.RETENTION_SIZE_RE.match(size)):
        add("monitoring_retention_size", "is not a Prometheus size", "e.g. 15GB, or '' for no size cap")
    for var, default in (("monitoring_prometheus_storage", "20Gi"), ("monitoring_grafana_storage", "1Gi"),
                         ("monitoring_prometheus_memory", "2Gi")):
        value = site.get(host, var, default)
        if not (is_str(value) and _monitoring.SIZE_RE.match(value)):
            add(var, "is not a Kubernetes quantity", "e.g. 20Gi")
    storage_class = site.get(host, "monitoring_storage_class", "microk8s-hostpath")
    if storage_class not in ("", None) and not (is_str(storage_class) and DNS_SUBDOMAIN_RE.match(storage_class)):
        add("monitoring_storage_class", "is not a storage class name", "e.g. microk8s-hostpath, or '' (the default class)")
    port = site.get(host, "monitoring_grafana_nodeport", 30300)
    hub_ports = [site.get(host, v) for v in ("jupyterhub_nodeport_http", "jupyterhub_nodeport_https")
                 if site.get(host, "jupyterhub_expose", "nodeport") == "nodeport"]
    if not is_int(port) or isinstance(port, bool) or not (port == 0 or 30000 <= port <= 32767):
        add("monitoring_grafana_nodeport", "is not a NodePort", "30000-32767, or 0 for a ClusterIP Service only")
    elif port and port in hub_ports:
        add("monitoring_grafana_nodeport", "is a NodePort of the hub too", "a NodePort no other Service uses")
    hooks = site.get(host, "monitoring_alert_webhooks", [])
    if not is_list(hooks) or [h for h in hooks if not (is_str(h) and re.match(r"^https?://[^\s/]+", h))]:
        add("monitoring_alert_webhooks", "is not a list of http(s) URLs", "e.g. [https://chat.example.org/hooks/labhub]")
    extra = site.get(host, "monitoring_extra_scrape_configs", [])
    if not is_list(extra) or [j for j in extra if not (isinstance(j, dict) and is_str(j.get("job_name")))]:
        add("monitoring_extra_scrape_configs", "is not a list of scrape_config mappings with a job_name",
            "e.g. [{job_name: nas, static_configs: [{targets: ['nas01:9100']}]}]")
    target = site.get(host, "monitoring_portal_target", "")
    if target not in ("", None) and not (is_str(target) and re.match(r"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$", target)):
        add("monitoring_portal_target", "is not host:port", "e.g. 10.0.0.11:8780, or '' (derived)")
    from ansible_collections.labhub.platform.plugins.module_utils import _monitoring_rules

    thresholds = dict((name, site.get(host, "monitoring_alert_" + name, spec[0]))
                      for name, spec in _monitoring_rules.THRESHOLDS.items())
    for var, problem, expected in _monitoring_rules.check_thresholds(thresholds):
        add(var, problem, expected)
    boards = site.get(host, "monitoring_dashboards_dir")
    if boards:
        try:
            _monitoring.dashboards(boards, "jhub", 5)
        except (OSError, ValueError) as exc:
            add("monitoring_dashboards_dir", "cannot be read: %s" % exc, "a directory of Grafana dashboard JSON files")
    from ansible_collections.labhub.platform.plugins.module_utils import _monitoring_grafana

    grafana = dict((key, site.get(host, key, None)) for key in _monitoring_grafana.DEFAULTS)
    grafana["node_address"] = site.get(host, "ansible_host", host)
    for var, problem, expected in _monitoring_grafana.problems(grafana, os.path.exists):
        add(var, problem, expected)
    secret = site.get(host, "monitoring_grafana_oauth_client_secret", "")
    if secret not in ("", None) and not (is_str(secret) and len(secret) >= 32 and not re.search(r"\s", secret)):
        add("monitoring_grafana_oauth_client_secret", "is not a string of at least 32 characters without spaces",
            "e.g. 64 hex characters (or leave it unset: generated once into a 0600 file)")
    for var in ("monitoring_wait_timeout", "monitoring_wait_delay"):
        if not pos_int(site.get(host, var, 1)):
            add(var, "is not a whole number of seconds of at least 1", "e.g. 300")
    path = site.get(host, "monitoring_manifest_file")
    data, error = manifest(path) if path else (None, None)
    if error:
        add("monitoring_manifest_file", "cannot be read: " + error, "the collection's files/bundle-manifest.yml")
    elif data is not None:
        missing = [c for c in _monitoring.COMPONENTS if c not in _monitoring.images_from_manifest(data)]
        if missing:
            add("monitoring_manifest_file", "has no image used_by monitoring for: %s" % ", ".join(missing),
                "an images entry per component (quay.io/prometheus/prometheus:..., ...), used_by: [monitoring]",
                value=path)
