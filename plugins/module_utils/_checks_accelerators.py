# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""Checks of the gpu_operator and network_operator roles: settings, the bundle manifest, each node's GPUs/HCAs.

A node's hardware is what preflight read (``site.hardware``) or, when a role runs alone, the
``labhub_hardware`` fact the role read itself.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.labhub.platform.plugins.module_utils._validation import (
    a_type_name,
    is_bool,
    is_int,
    is_list,
    is_str,
    label_key_error,
    label_value_error,
    MISSING,
    truthy,
)
from ansible_collections.labhub.platform.plugins.module_utils._checks_cluster import (
    cluster_scope,
    manifest,
    pos_int,
    user_var,
)

GPU_DRIVER_MODES = ("host", "operator")
MIG_STRATEGIES = ("none", "single", "mixed")
GPU_IMAGE_KEYS = ("operator", "validator", "init_container", "driver", "driver_manager", "toolkit", "device_plugin",
                  "gfd", "dcgm", "dcgm_exporter", "mig_manager", "nfd")
# The MIG manager's default configurations (ConfigMap default-mig-parted-config) of the pinned GPU
# Operator v25.10.1. The chart (gpu-operator-v25.10.1.tgz) does not carry them: it only names the
# ConfigMap (crds/nvidia.com_clusterpolicies.yaml: migManager.config.name default
# "default-mig-parted-config"; values.yaml: migManager.config.default "all-disabled"); the operator
# creates it from NVIDIA/gpu-operator assets/state-mig-manager/0400_configmap.yaml (mig-configs keys).
MIG_DEFAULT_CONFIGS = frozenset((
    "all-disabled", "all-enabled", "all-balanced",
    "all-1g.5gb", "all-1g.5gb.me", "all-2g.10gb", "all-3g.20gb", "all-4g.20gb", "all-7g.40gb",
    "all-1g.10gb", "all-1g.10gb.me", "all-1g.20gb", "all-2g.20gb", "all-3g.40gb", "all-4g.40gb", "all-7g.80gb",
    "all-1g.6gb", "all-1g.6gb.me", "all-2g.12gb", "all-2g.12gb.me", "all-4g.24gb",
    "all-1g.12gb", "all-1g.12gb.me", "all-1g.24gb", "all-2g.24gb", "all-3g.47gb", "all-4g.47gb", "all-7g.94gb",
    "all-3g.48gb", "all-4g.48gb", "all-7g.96gb",
    "all-1g.45gb", "all-2g.45gb", "all-3g.90gb", "all-4g.90gb", "all-7g.180gb",
    "all-1g.47gb", "all-2g.47gb", "all-3g.93gb", "all-4g.93gb", "all-7g.186gb",
    "all-3g.95gb", "all-4g.95gb", "all-7g.189gb",
    "all-1g.23gb", "all-1g.23gb.me", "all-1g.24gb.me",
    "all-1g.18gb", "all-1g.18gb.me", "all-1g.35gb", "all-2g.35gb", "all-3g.71gb", "all-4g.71gb", "all-7g.141gb",
    "all-1g.36gb", "all-2g.36gb", "all-3g.72gb", "all-4g.72gb", "all-7g.144gb",
    "all-1g.24gb.gfx", "all-1g.24gb.me.all", "all-1g.24gb-me", "all-2g.48gb", "all-2g.48gb.gfx",
    "all-2g.48gb.me.all", "all-2g.48gb-me", "all-4g.96gb", "all-4g.96gb.gfx",
))
_K8S_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_DURATION_RE = re.compile(r"^([0-9]+(h|m|s))+$")
_DRIVER_REF_RE = re.compile(r"^[^:@]+:[^:@/]+$")
_RESOURCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
GPU_GROUP = "labhub_gpu_nodes"
IB_GROUP = "labhub_ib_nodes"


def _hw(site, host):
    hw = site.hardware.get(host)
    if hw is None:
        hw = site.get(host, "labhub_hardware")
    return hw if isinstance(hw, dict) and not hw.get("error") else None


def _enabled(site, host, var):
    return truthy(site.get(host, var, False))


def _bool_row(site, report, host, var):
    value = site.get(host, var, False)
    if not is_bool(value):
        report.add(host, user_var(site, host, var), "is %s, not a boolean" % a_type_name(value),
                   "true or false (unquoted YAML)", value=value)


def _seconds(site, report, host, var):
    value = site.get(host, var, 1)
    if isinstance(value, bool) or not pos_int(value):
        report.add(host, var, "is not a positive number of seconds", "e.g. 600", value=value)


# --------------------------------------------------------------------------------------
# gpu_operator
# --------------------------------------------------------------------------------------
def custom_mig_configs(extra_values):
    """MIG configuration names the operator is told about in gpu_operator_extra_values.

    Returns None when a ConfigMap of the user's is named but its content is unknown here
    (migManager.config.name without data): any valid name may then be one of its configurations.
    """
    import yaml

    config = ((extra_values or {}).get("migManager") or {}).get("config") or {} if isinstance(extra_values, dict) else {}
    if not isinstance(config, dict):
        return set()
    data = config.get("data") or {}
    names = set()
    if isinstance(data, dict):
        for text in data.values():
            try:
                parsed = yaml.safe_load(text) if is_str(text) else text
            except yaml.YAMLError:
                continue
            if isinstance(parsed, dict) and isinstance(parsed.get("mig-configs"), dict):
                names.update(str(k) for k in parsed["mig-configs"])
    if config.get("name") and not names:
        return None
    return names


def driver_repo_config(extra_values):
    """The ConfigMap of package repositories the driver container compiles with, from
    gpu_operator_extra_values.driver.repoConfig.configMapName ('' when not given)."""
    driver = extra_values.get("driver") if isinstance(extra_values, dict) else None
    repo = driver.get("repoConfig") if isinstance(driver, dict) else None
    name = repo.get("configMapName") if isinstance(repo, dict) else None
    return name if is_str(name) else ""


def _gpu_node(site, report, host, refs, manifest_var):
    in_group = host in site.group(site.get(host, "gpu_operator_gpu_group", GPU_GROUP) or GPU_GROUP)
    hw = _hw(site, host)
    mode = site.get(host, "gpu_operator_driver_mode", "host")
    mode_var = user_var(site, host, "gpu_operator_driver_mode")
    count = ((hw or {}).get("gpus") or {}).get("count") or 0
    if in_group:
        if mode not in GPU_DRIVER_MODES:
            report.add(host, mode_var, "is not a driver mode", "one of: " + ", ".join(GPU_DRIVER_MODES), value=mode)
        elif hw is not None:
            # The same rows as preflight's hardware check (once in the table when both run).
            gpus = hw.get("gpus") or {}
            smi = gpus.get("nvidia_smi") or {}
            if mode == "host" and count > 0 and not gpus.get("driver_loaded"):
                report.add(host, mode_var,
                           "is 'host' but the NVIDIA kernel driver is not loaded (no /proc/driver/nvidia/version)",
                           "the driver installed on the node, or 'operator'", value=mode)
            elif (mode == "host" and count > 0 and smi.get("present") and not smi.get("ok")
                  and not str(smi.get("error") or "").startswith("not run")):
                error = re.sub(r"\s+", " ", str(smi.get("error") or "unknown error")).strip()
                report.add(host, mode_var, "is 'host' but nvidia-smi fails: " + error,
                           "a working nvidia-smi, or 'operator'", value=mode)
            elif mode == "operator" and count > 0:
                os_info = hw.get("os") or {}
                suffix = "%s%s" % (os_info.get("id") or "", os_info.get("version") or "")
                images = site.get(host, "gpu_operator_images", {})
                driver = images.get("driver", "") if isinstance(images, dict) else ""
                precompiled = site.get(site.hub_host, "gpu_operator_driver_use_precompiled", False) is True
                ref = driver_image_ref(driver, suffix, hw.get("kernel") if precompiled else None)
                if refs is not None and ref not in refs:
                    if precompiled:
                        kernel = hw.get("kernel") or "(unknown)"
                        report.add(host, mode_var, "is 'operator' with precompiled drivers but the image for kernel "
                                   "%s on %s (%s) is not in %s" % (kernel, suffix or "an unknown OS", ref, manifest_var),
                                   "the precompiled driver image of each GPU node's kernel in the bundle "
                                   "(gpu_operator_images.driver names the driver branch, e.g. nvcr.io/nvidia/driver:580)",
                                   value=mode)
                    else:
                        report.add(host, mode_var, "is 'operator' but the driver image for %s (%s) is not in %s"
                                   % (suffix or "an unknown OS", ref, manifest_var),
                                   "'host' with the driver installed, or an OS the bundle has a driver image for",
                                   value=mode)
                elif not precompiled and not driver_repo_config(site.get(site.hub_host, "gpu_operator_extra_values", {})):
                    # Not precompiled, the driver container builds the module on the node and
                    # installs the kernel headers with the OS package manager from the
                    # distribution's repositories; spec.driver.repoConfig.configMapName replaces
                    # them (gpu-operator v25.10.1 controllers/object_controls.go mounts the
                    # ConfigMap at /etc/apt/sources.list.d or /etc/yum.repos.d).
                    report.add(host, mode_var, "is 'operator' with drivers built on the node "
                               "(gpu_operator_driver_use_precompiled: false), which downloads the kernel headers "
                               "for %s from the distribution's package repositories, and no local package "
                               "repository is given" % (suffix or "the node's OS"),
                               "gpu_operator_extra_values.driver.repoConfig.configMapName naming a ConfigMap of "
                               "the site's package mirror, precompiled drivers, or 'host'", value=mode)
    mig = site.get(host, "gpu_operator_mig_profile", "")
    mig_var = user_var(site, host, "gpu_operator_mig_profile")
    if mig is None or mig == "":
        return
    if not is_str(mig) or label_value_error(mig):
        report.add(host, mig_var, "is not a MIG manager configuration name usable as a label value",
                   "a configuration name, e.g. all-1g.10gb", value=mig)
        return
    custom = custom_mig_configs(site.get(host, "gpu_operator_extra_values", {}))
    if custom is not None and mig not in MIG_DEFAULT_CONFIGS and mig not in custom:
        report.add(host, mig_var, "is not a MIG configuration of the GPU Operator's default mig-parted config%s"
                   % (" nor of gpu_operator_extra_values.migManager.config" if custom else ""),
                   "e.g. all-1g.10gb, all-2g.20gb, all-3g.40gb, all-balanced, all-disabled (or a custom config "
                   "given in gpu_operator_extra_values.migManager.config)", value=mig)
    elif hw is not None and count == 0:
        report.add(host, "gpu_operator_mig_profile", "sets a MIG profile but the node has no NVIDIA GPU",
                   "no MIG profile on a node without GPUs", value=mig)
    strategy = site.get(site.hub_host, "gpu_operator_mig_strategy", "")
    if strategy == "none":
        report.add(host, mig_var, "sets a MIG profile but gpu_operator_mig_strategy is none",
                   "gpu_operator_mig_strategy single or mixed (or '' for automatic)", value=mig)


def driver_image_ref(driver, os_tag, kernel=None):
    """The driver image the GPU Operator runs on a node (gpu-operator v25.10.1
    controllers/object_controls.go resolveDriverTag): ``<driver>-<os tag>`` (os tag = os-release
    ID + VERSION_ID, e.g. ubuntu22.04), or with usePrecompiled ``<driver>-<kernel>-<os tag>``, the
    kernel as NFD's kernel-version.full label has it (uname -r) and the driver's version a branch."""
    return "%s-%s-%s" % (driver, kernel, os_tag) if kernel else "%s-%s" % (driver, os_tag)


def check_gpu_operator(site, report):
    """The gpu_operator role's settings, the bundle manifest's pins, and each GPU node in scope."""
    hub = site.hub_host
    _bool_row(site, report, hub, "gpu_operator_enabled")
    if not _enabled(site, hub, "gpu_operator_enabled"):
        # Off: still refuse a value that is wrong on its own (it would be wrong when turned on).
        for host in cluster_scope(site):
            mode = site.get(host, "gpu_operator_driver_mode", "host")
            if site.has(host, "gpu_operator_driver_mode") and mode not in GPU_DRIVER_MODES:
                report.add(host, user_var(site, host, "gpu_operator_driver_mode"), "is not a driver mode",
                           "one of: " + ", ".join(GPU_DRIVER_MODES), value=mode)
            if site.has(host, "gpu_operator_mig_profile"):
                _gpu_node(site, report, host, None, "gpu_operator_manifest_file")
        return
    manifest_file = site.get(hub, "gpu_operator_manifest_file")
    data, error = manifest(manifest_file)
    refs = None
    if error:
        report.add(hub, "gpu_operator_manifest_file", "cannot be read: " + error, "the collection's files/bundle-manifest.yml",
                   value=manifest_file)
    else:
        refs = set(i.get("ref") for i in data.get("images") or [] if isinstance(i, dict))
    for host in cluster_scope(site):
        _gpu_node(site, report, host, refs, "gpu_operator_manifest_file")
    strategy = site.get(hub, "gpu_operator_mig_strategy", "")
    if strategy not in ("",) + MIG_STRATEGIES:
        report.add(hub, "gpu_operator_mig_strategy", "is not a MIG strategy",
                   "one of: none, single, mixed, or '' (automatic)", value=strategy)
    replicas = site.get(hub, "gpu_operator_time_slicing_replicas", 1)
    if not pos_int(replicas) or not (is_int(replicas) or is_str(replicas)):
        report.add(hub, "gpu_operator_time_slicing_replicas", "is not a whole number of at least 1", "e.g. 4",
                   value=replicas)
    if _enabled(site, hub, "gpu_operator_time_slicing_enabled"):
        name = site.get(hub, "gpu_operator_time_slicing_configmap", "")
        if not is_str(name) or not _K8S_NAME_RE.match(name):
            report.add(hub, "gpu_operator_time_slicing_configmap", "is not a Kubernetes object name",
                       "lower-case letters, digits, '-', '.', e.g. labhub-time-slicing", value=name)
    for var in ("gpu_operator_wait_timeout", "gpu_operator_smoke_test_timeout"):
        _seconds(site, report, hub, var)
    helm_timeout = site.get(hub, "gpu_operator_helm_timeout", "10m")
    if not _DURATION_RE.match(str(helm_timeout)):
        report.add(hub, "gpu_operator_helm_timeout", "is not a Go duration", "e.g. 10m or 1h30m", value=helm_timeout)
    images = site.get(hub, "gpu_operator_images", {})
    if not isinstance(images, dict):
        report.add(hub, "gpu_operator_images", "is %s, not a mapping" % a_type_name(images),
                   "a mapping of image key -> reference", value=images)
        images = {}
    if data is not None:
        chart_name = site.get(hub, "gpu_operator_chart_name", "gpu-operator")
        charts = [c for c in data.get("charts") or [] if isinstance(c, dict) and c.get("name") == chart_name]
        version = site.get(hub, "gpu_operator_chart_version", "")
        if not charts:
            report.add(hub, "gpu_operator_chart_name", "is not a chart of %s" % manifest_file, "gpu-operator",
                       value=chart_name)
        elif str(charts[0].get("version")) != str(version):
            report.add(hub, "gpu_operator_chart_version", "is not the version the bundle manifest pins",
                       str(charts[0].get("version")), value=version)
        for key in GPU_IMAGE_KEYS:
            ref = images.get(key, "")
            if key == "driver":
                if not is_str(ref) or not _DRIVER_REF_RE.match(ref):
                    report.add(hub, "gpu_operator_images.driver", "is not <registry>/<path>/driver:<version> "
                               "(without the OS suffix)", "e.g. nvcr.io/nvidia/driver:580.105.08", value=ref)
            elif ref not in refs:
                report.add(hub, "gpu_operator_images.%s" % key, "is not in the bundle manifest (nodes only have "
                           "bundle images)", "an image of %s" % os.path.basename(str(manifest_file)), value=ref)
        smoke = site.get(hub, "gpu_operator_smoke_test_image", "")
        if _enabled(site, hub, "gpu_operator_smoke_test_enabled") and smoke not in refs:
            report.add(hub, "gpu_operator_smoke_test_image", "is not in the bundle manifest",
                       "an image of %s" % os.path.basename(str(manifest_file)), value=smoke)
    render_dir = site.get(hub, "gpu_operator_render_dir", "")
    if not render_dir:
        bundle = site.get(hub, "gpu_operator_bundle_dir", "")
        if not is_str(bundle) or not bundle.startswith("/"):
            report.add(hub, user_var(site, hub, "gpu_operator_bundle_dir"), "is not the absolute path of the bundle "
                       "on the controller (gpu_operator_bundle_dir)", "e.g. -e labhub_bundle_dir=/srv/labhub-bundle",
                       value=bundle)
        group = site.get(hub, "gpu_operator_control_plane_group", "labhub_control_plane")
        if not is_str(group) or not site.group(group):
            report.add(hub, "gpu_operator_control_plane_group", "names a group with no host (helm runs on its first host)",
                       "the control-plane group", value=group)


def check_gpu_operator_bundle(site, report):
    """The chart archive is in the bundle (the role installs it from there)."""
    hub = site.hub_host
    if not _enabled(site, hub, "gpu_operator_enabled") or site.get(hub, "gpu_operator_render_dir", ""):
        return
    bundle = site.get(hub, "gpu_operator_bundle_dir", "")
    data, error = manifest(site.get(hub, "gpu_operator_manifest_file"))
    if error or not is_str(bundle) or not bundle.startswith("/"):
        return
    name = site.get(hub, "gpu_operator_chart_name", "gpu-operator")
    charts = [c for c in data.get("charts") or [] if isinstance(c, dict) and c.get("name") == name]
    if charts and not os.path.isfile(os.path.join(bundle, str(charts[0].get("file")))):
        report.add(hub, user_var(site, hub, "gpu_operator_bundle_dir"), "has no %s" % charts[0].get("file"),
                   "the bundle built by playbooks/bundle.yml (check it with playbooks/verify_bundle.yml)", value=bundle)


# --------------------------------------------------------------------------------------
# network_operator
# --------------------------------------------------------------------------------------
def _ib_node(site, report, host):
    hw = _hw(site, host)
    group = site.get(host, "network_operator_ib_group", IB_GROUP) or IB_GROUP
    hcas = [h.get("name") for h in (((hw or {}).get("infiniband") or {}).get("hcas") or []) if isinstance(h, dict)]
    found = ", ".join(hcas) if hcas else "no HCA"
    if hw is not None and host in site.group(group) and not hcas:
        report.add(host, "groups." + group, "host is an InfiniBand node but no HCA was found (/sys/class/infiniband)",
                   "an HCA on the node, or the host out of %s" % group)
    wanted = site.get(host, "network_operator_hcas", [])
    var = user_var(site, host, "network_operator_hcas")
    if not is_list(wanted):
        report.add(host, var, "is %s, not a list" % a_type_name(wanted), "a list of HCA names, e.g. [mlx5_0]",
                   value=wanted)
    elif hw is not None:
        for name in wanted:
            if name not in hcas:
                report.add(host, var, "names HCA %r but the node has %s" % (name, "HCAs: " + found if hcas else "no HCA"),
                           "HCAs of the node: " + found, value=wanted)
        if (wanted and hcas and not set(wanted) - set(hcas) and len(set(wanted)) < len(hcas)
                and not site.get(site.hub_host, "network_operator_rdma_if_names", [])):
            report.add(host, var, "names %s of the HCAs %s, but the RDMA shared device plugin selects by vendor, "
                       "link type or netdevice, not by RDMA device name" % (", ".join(wanted), found),
                       "every HCA, or network_operator_rdma_if_names set to the netdevices of the wanted ones",
                       value=wanted)
    sriov = site.get(host, "network_operator_sriov", False)
    svar = user_var(site, host, "network_operator_sriov")
    if not is_bool(sriov):
        report.add(host, svar, "is %s, not a boolean" % a_type_name(sriov), "true or false (unquoted YAML)", value=sriov)
    elif sriov and hw is not None and not hcas:
        report.add(host, svar, "is true but the node has no HCA", "false on nodes without HCAs", value=True)


def check_network_operator(site, report):
    """The network_operator role's settings and each node's HCAs (when network_operator_enabled)."""
    hub = site.hub_host
    enabled = site.get(hub, "network_operator_enabled", False)
    if not is_bool(enabled):
        _bool_row(site, report, hub, "network_operator_enabled")
        return
    if not enabled:
        # Off: still refuse a value that is wrong on its own (it would be wrong when turned on).
        for host in cluster_scope(site):
            hcas = site.get(host, "network_operator_hcas", [])
            if site.has(host, "network_operator_hcas") and not is_list(hcas):
                report.add(host, "network_operator_hcas", "is %s, not a list" % a_type_name(hcas),
                           "a list of HCA names, e.g. [mlx5_0]", value=hcas)
        return
    for host in cluster_scope(site):
        _ib_node(site, report, host)
    name = site.get(hub, "network_operator_rdma_resource_name", "")
    if not is_str(name) or not _RESOURCE_RE.match(name):
        report.add(hub, "network_operator_rdma_resource_name", "is not a resource name (pods request rdma/<name>)",
                   "letters, digits, '_', '.', '-', e.g. hca_shared_devices_ib", value=name)
    hca_max = site.get(hub, "network_operator_rdma_hca_max", 1)
    if isinstance(hca_max, bool) or not pos_int(hca_max):
        report.add(hub, "network_operator_rdma_hca_max", "is not a positive number of pods per node", "e.g. 63",
                   value=hca_max)
    if_names = site.get(hub, "network_operator_rdma_if_names", [])
    if not is_list(if_names):
        report.add(hub, "network_operator_rdma_if_names", "is %s, not a list" % a_type_name(if_names),
                   "a list of netdevice names, e.g. [ib0]", value=if_names)
    group = site.get(hub, "network_operator_control_plane_group", "labhub_control_plane")
    if not is_str(group) or not site.group(group):
        report.add(hub, "network_operator_control_plane_group", "names a group with no host (helm runs on its first host)",
                   "the control-plane group", value=group)
    labels = site.get(hub, "network_operator_node_labels", MISSING)
    if not isinstance(labels, dict) or not labels:
        report.add(hub, "network_operator_node_labels", "is not a non-empty mapping", "e.g. {labhub.io/infiniband: 'true'}",
                   value=labels)
    else:
        for key, value in labels.items():
            error = label_key_error(key) or (label_value_error(value) if is_str(value) else "label value must be a string")
            if error:
                report.add(hub, "network_operator_node_labels.%s" % key, error, "a label key -> string value",
                           value=value)
    for var in ("network_operator_ready_timeout", "network_operator_ready_delay"):
        _seconds(site, report, hub, var)
    _one_nfd(site, report, hub)


def nfd_problem(gpu_nfd_runs, network_nfd_on):
    """Why the Node Feature Discovery setup is wrong, or None when exactly one NFD labels the nodes:
    both charts would deploy one (two nfd-masters writing the same labels), or neither does (nothing
    labels the NICs feature.node.kubernetes.io/pci-15b3.present, so the RDMA shared device plugin is
    never scheduled)."""
    if gpu_nfd_runs and network_nfd_on:
        return ("is true while the GPU Operator deploys its own Node Feature Discovery "
                "(gpu_operator_nfd_enabled): two NFDs would label the same nodes")
    if not gpu_nfd_runs and not network_nfd_on:
        return ("is false and no other Node Feature Discovery runs (GPU Operator off or "
                "gpu_operator_nfd_enabled false): nothing labels the NICs pci-15b3.present and the RDMA "
                "device plugin never starts")
    return None


def _one_nfd(site, report, hub):
    gpu_nfd_runs = truthy(site.get(hub, "gpu_operator_enabled", bool(site.group(GPU_GROUP)))) \
        and truthy(site.get(hub, "gpu_operator_nfd_enabled", True))
    values = {var: site.get(hub, var, default) for var, default in
              (("gpu_operator_nfd_enabled", True), ("network_operator_nfd_enabled", not gpu_nfd_runs))}
    wrong = [var for var, value in values.items() if not is_bool(value)]
    for var in wrong:
        _bool_row(site, report, hub, var)
    if wrong:
        return
    problem = nfd_problem(gpu_nfd_runs, values["network_operator_nfd_enabled"])
    if problem:
        report.add(hub, "network_operator_nfd_enabled", problem,
                   "unset (one NFD: the GPU Operator's when it runs with one, else the Network Operator's)",
                   value=values["network_operator_nfd_enabled"])
