# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""Per-node checks against the hardware labhub.platform.hardware_facts read on each node.

``site.hardware[host]`` is the ``labhub_hardware`` fact dict, or a dict
``{"error": "...", "unreachable": bool}`` when it could not be read.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.labhub.platform.plugins.module_utils._validation import (
    a_type_name,
    DNS_LABEL_RE,
    is_int,
    is_list,
)

GPU_DRIVER_MODES = ("host", "operator")
DEFAULT_SUPPORTED_OS = ({"id": "ubuntu", "version": "22.04"}, {"id": "ubuntu", "version": "24.04"},
                        {"id": "debian", "version": "12"})
DEFAULT_SUPPORTED_ARCH = ("x86_64", "aarch64")


def _num(value):
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _check_settings(site, report, host):
    """The preflight thresholds themselves: a negative or malformed one would turn a check off."""
    mem = site.get(host, "preflight_min_memory_mb", 0)
    if not is_int(mem) or mem < 0:
        report.add(host, "preflight_min_memory_mb", "is not a whole number of MiB (0 or more)",
                   "e.g. 8192", value=mem)
    disks = site.get(host, "preflight_min_disk_free", [])
    if not is_list(disks):
        report.add(host, "preflight_min_disk_free", "is %s, not a list" % a_type_name(disks),
                   "a list of {path, free_mb}", value=disks)
    else:
        for index, want in enumerate(disks):
            var = "preflight_min_disk_free[%d]" % index
            if not isinstance(want, dict) or set(want) != {"path", "free_mb"}:
                report.add(host, var, "must be a mapping with exactly path and free_mb", "{path: /var, free_mb: 40960}",
                           value=want)
            elif not isinstance(want["path"], str) or not want["path"].startswith("/"):
                report.add(host, var + ".path", "is not an absolute path", "e.g. /var", value=want["path"])
            elif not is_int(want["free_mb"]) or want["free_mb"] < 0:
                report.add(host, var + ".free_mb", "is not a whole number of MiB (0 or more)", "e.g. 40960",
                           value=want["free_mb"])


def _check_os(site, report, host, hw):
    supported = site.get(host, "preflight_supported_os", DEFAULT_SUPPORTED_OS) or DEFAULT_SUPPORTED_OS
    names = ["%s %s" % (o.get("id"), o.get("version")) for o in supported if isinstance(o, dict)]
    os_info = hw.get("os") or {}
    if not os_info.get("id") or not os_info.get("version"):
        report.add(host, "preflight_supported_os", "could not read the OS release (/etc/os-release)",
                   "one of: " + ", ".join(names))
    elif "%s %s" % (os_info["id"], os_info["version"]) not in names:
        report.add(host, "preflight_supported_os",
                   "%s (%s %s) is not supported" % (os_info.get("pretty_name") or os_info["id"], os_info["id"],
                                                    os_info["version"]),
                   "one of: " + ", ".join(names))
    arches = site.get(host, "preflight_supported_arch", DEFAULT_SUPPORTED_ARCH) or DEFAULT_SUPPORTED_ARCH
    arch = hw.get("arch")
    if not arch or arch not in arches:
        report.add(host, "preflight_supported_arch", "architecture %s is not supported" % (arch or "unknown"),
                   "one of: " + ", ".join(arches))


def _check_resources(site, report, host, hw):
    want_mem = _num(site.get(host, "preflight_min_memory_mb", 0))
    mem = hw.get("memory_mb")
    if mem is None:
        report.add(host, "preflight_min_memory_mb", "could not read the memory size (/proc/meminfo)",
                   "a readable /proc/meminfo")
    elif want_mem is not None and want_mem >= 0 and mem < want_mem:
        report.add(host, "preflight_min_memory_mb", "node has %d MiB of memory" % mem,
                   "at least %d MiB" % want_mem, value=want_mem)
    measured = {d.get("path"): d for d in (hw.get("disk_free") or []) if isinstance(d, dict)}
    disks = site.get(host, "preflight_min_disk_free", [])
    for want in disks if is_list(disks) else []:
        if not isinstance(want, dict) or _num(want.get("free_mb")) is None or _num(want.get("free_mb")) < 0:
            continue
        path, need = want.get("path"), _num(want.get("free_mb"))
        var = "preflight_min_disk_free[%s]" % path
        entry = measured.get(path)
        free = entry.get("free_mb") if entry else None
        if free is None:
            report.add(host, var, "could not measure the free space at %s" % path, "a readable file system")
        elif free < need:
            at = "" if entry.get("exists", True) else " (does not exist yet; measured at %s)" % entry.get("measured_path")
            report.add(host, var, "%s has %d MiB free%s" % (path, free, at), "at least %d MiB" % need, value=need)


def _check_gpu(site, report, host, hw):
    gpus = hw.get("gpus") or {}
    count = gpus.get("count") or 0
    smi = gpus.get("nvidia_smi") or {}
    is_gpu_node = host in site.group("labhub_gpu_nodes")
    mig = site.get(host, "gpu_operator_mig_profile", "") or ""
    mode = site.get(host, "gpu_operator_driver_mode")
    if is_gpu_node and count == 0:
        report.add(host, "groups.labhub_gpu_nodes", "host is a GPU node but no NVIDIA GPU was found (PCI vendor 0x10de)",
                   "NVIDIA GPUs on the node, or the host out of labhub_gpu_nodes")
    if mig and count == 0:
        report.add(host, "gpu_operator_mig_profile", "sets a MIG profile but the node has no NVIDIA GPU",
                   "no MIG profile on a node without GPUs", value=mig)
    if not is_gpu_node or mode is None:
        return
    if mode not in GPU_DRIVER_MODES:
        report.add(host, "gpu_operator_driver_mode", "is not a driver mode", "one of: " + ", ".join(GPU_DRIVER_MODES),
                   value=mode)
    elif mode == "host" and count > 0 and not gpus.get("driver_loaded"):
        report.add(host, "gpu_operator_driver_mode",
                   "is 'host' but the NVIDIA kernel driver is not loaded (no /proc/driver/nvidia/version)",
                   "the driver installed on the node, or 'operator'", value=mode)
    elif (mode == "host" and count > 0 and smi.get("present") and not smi.get("ok")
          and not str(smi.get("error") or "").startswith("not run")):
        error = re.sub(r"\s+", " ", str(smi.get("error") or "unknown error")).strip()
        report.add(host, "gpu_operator_driver_mode", "is 'host' but nvidia-smi fails: " + error,
                   "a working nvidia-smi, or 'operator'", value=mode)


def _check_infiniband(site, report, host, hw):
    hcas = [h.get("name") for h in ((hw.get("infiniband") or {}).get("hcas") or []) if isinstance(h, dict)]
    found = ", ".join(hcas) if hcas else "none"
    if host in site.group("labhub_ib_nodes") and not hcas:
        report.add(host, "groups.labhub_ib_nodes", "host is an InfiniBand node but no HCA was found (/sys/class/infiniband)",
                   "an HCA on the node, or the host out of labhub_ib_nodes")
    wanted = site.get(host, "network_operator_hcas", []) or []
    if not is_list(wanted):
        report.add(host, "network_operator_hcas", "is %s, not a list" % a_type_name(wanted), "a list of HCA names, e.g. [mlx5_0]",
                   value=wanted)
    else:
        for name in wanted:
            if name not in hcas:
                report.add(host, "network_operator_hcas", "names HCA %r but the node has %s" % (name, "HCAs: " + found if hcas else "no HCA"),
                           "HCAs of the node: " + found, value=wanted)
    if site.get(host, "network_operator_sriov") is True and not hcas:
        report.add(host, "network_operator_sriov", "is true but the node has no HCA", "false on nodes without HCAs", value=True)


def check_hardware(site, report):
    """Every node in the playbook's scope against its hardware (read by preflight)."""
    for host in site.scope:
        _check_settings(site, report, host)
        if host not in site.hardware:
            continue
        hw = site.hardware[host]
        if not isinstance(hw, dict) or hw.get("error"):
            unreachable = isinstance(hw, dict) and hw.get("unreachable")
            error = (hw or {}).get("error", "no facts returned") if isinstance(hw, dict) else "no facts returned"
            report.add(host, "ansible_host" if unreachable else "preflight_hardware_root",
                       ("host is unreachable: " if unreachable else "labhub.platform.hardware_facts failed: ")
                       + re.sub(r"\s+", " ", str(error)).strip(),
                       "a reachable node (ssh, python3)" if unreachable else "a readable /proc, /sys and /etc")
            continue
        _check_os(site, report, host, hw)
        _check_resources(site, report, host, hw)
        _check_gpu(site, report, host, hw)
        _check_infiniband(site, report, host, hw)


__all__ = ["check_hardware", "DNS_LABEL_RE"]
