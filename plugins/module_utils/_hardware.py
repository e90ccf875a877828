# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""Parsers for the procfs/sysfs/etc files that ``hardware_facts`` reads.

Every parser takes the text of one file and returns plain Python data. A file
that does not have the expected shape raises ``MalformedError`` with a short
reason; the module turns that into a warning and leaves the fact out. Nothing
here touches the file system or runs commands, so the parsers are easy to test
on their own.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import shlex
import socket
import struct

NVIDIA_VENDOR_ID = "0x10de"
# PCI class codes (upper 16 bits of the 24-bit class): VGA and 3D controllers.
# NVSwitches (0x0680) and HDMI audio functions (0x0403) share the vendor id
# and are not GPUs.
GPU_PCI_CLASSES = ("0x0300", "0x0302")
RDMA_MODULES = ("rdma_cm", "ib_umad", "ib_uverbs")
NVIDIA_SMI_FIELDS = ("pci.bus_id", "name", "memory.total", "mig.mode.current", "driver_version")

_PCI_ADDRESS_RE = re.compile(r"^(?:([0-9a-fA-F]{4,8}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$")
_NVRM_VERSION_RE = re.compile(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+(?:\.\d+)+)\b")
_CUDA_VERSION_RE = re.compile(r"^\s*CUDA Version\s*:\s*(\S+)\s*$", re.MULTILINE)


class MalformedError(ValueError):
    """The file exists but its content is not what the parser expects."""


def _na(value):
    """nvidia-smi prints ``[N/A]`` (or ``N/A``) for fields a GPU does not have."""
    value = value.strip()
    if value in ("", "N/A", "[N/A]", "[Not Supported]", "Not Supported"):
        return None
    return value


def parse_os_release(text):
    """os-release(5): ``KEY=value`` lines, values quoted like shell strings."""
    data = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, raw = line.partition("=")
        if not sep or not re.match(r"^[A-Z0-9_]+$", key):
            raise MalformedError("line %d is not KEY=value: %r" % (lineno, line[:60]))
        try:
            parts = shlex.split(raw)
        except ValueError as exc:
            raise MalformedError("line %d: %s" % (lineno, exc))
        data[key] = " ".join(parts)
    if not data.get("ID"):
        raise MalformedError("no ID= line")
    return {
        "id": data["ID"],
        "version": data.get("VERSION_ID"),
        "codename": data.get("VERSION_CODENAME") or data.get("UBUNTU_CODENAME"),
        "pretty_name": data.get("PRETTY_NAME"),
    }


def _cpuinfo_blocks(text):
    block = {}
    for line in text.splitlines():
        if not line.strip():
            if block:
                yield block
                block = {}
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise MalformedError("line is not 'key : value': %r" % line[:60])
        block[key.strip()] = value.strip()
    if block:
        yield block


def parse_cpuinfo(text):
    """/proc/cpuinfo: model, logical CPUs, physical cores and sockets.

    ``physical_cores`` and ``sockets`` are None when the file has no topology
    (``physical id``/``core id``, e.g. on arm64); callers may fill them from
    sysfs with ``count_topology``.
    """
    model = None
    logical = 0
    packages = set()
    cores = set()
    for block in _cpuinfo_blocks(text):
        if "processor" not in block:
            # arm64 and others end with a machine-wide block ("Hardware", "Serial").
            model = model or block.get("Hardware") or block.get("Model")
            continue
        logical += 1
        model = model or block.get("model name") or block.get("Model") or block.get("cpu") or block.get("cpu model")
        if "physical id" in block and "core id" in block:
            packages.add(block["physical id"])
            cores.add((block["physical id"], block["core id"]))
    if logical == 0:
        raise MalformedError("no 'processor' entries")
    return {
        "model": model,
        "cores": logical,
        "physical_cores": len(cores) or None,
        "sockets": len(packages) or None,
    }


def arch_from_cpuinfo(text):
    """Best guess of ``uname -m`` from /proc/cpuinfo for kernels without kernel.arch.

    x86 CPUs with the ``lm`` (long mode) flag run x86_64 kernels in practice;
    arm64 prints ``CPU architecture: 8``. None when neither is recognisable.
    """
    for block in _cpuinfo_blocks(text):
        flags = block.get("flags")
        if flags is not None:
            return "x86_64" if "lm" in flags.split() else None
        if block.get("CPU architecture") == "8":
            return "aarch64"
    return None


def count_topology(pairs):
    """(package id, core id) pairs from sysfs cpu*/topology -> (physical cores, sockets)."""
    pairs = set(pairs)
    if not pairs:
        return None, None
    return len(pairs), len(set(p for p, _c in pairs))


def parse_meminfo_total_mb(text):
    m = re.search(r"^MemTotal:\s+(\d+)\s*kB\s*$", text, re.MULTILINE)
    if not m:
        raise MalformedError("no 'MemTotal: <n> kB' line")
    return int(m.group(1)) // 1024


def parse_proc_modules(text):
    """/proc/modules: the set of loaded module names (first column)."""
    names = set()
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 3 or not fields[1].isdigit():
            raise MalformedError("line is not '<name> <size> <refcount> ...': %r" % line[:60])
        names.add(fields[0])
    return names


def _hex_le_ipv4(value):
    try:
        return socket.inet_ntoa(struct.pack("<I", int(value, 16)))
    except (ValueError, struct.error):
        raise MalformedError("not a little-endian hex IPv4 address: %r" % value)


def parse_proc_net_route(text):
    """/proc/net/route -> list of dicts (iface, destination, gateway, mask, flags, metric)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].split() or lines[0].split()[0] != "Iface":
        raise MalformedError("missing the 'Iface Destination Gateway ...' header")
    header = lines[0].split()
    try:
        idx = dict((name, header.index(name)) for name in ("Iface", "Destination", "Gateway", "Flags", "Metric", "Mask"))
    except ValueError as exc:
        raise MalformedError("header lacks a column: %s" % exc)
    routes = []
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < len(header):
            raise MalformedError("short route line: %r" % line[:60])
        try:
            flags = int(fields[idx["Flags"]], 16)
            metric = int(fields[idx["Metric"]])
        except ValueError:
            raise MalformedError("bad Flags/Metric in: %r" % line[:60])
        routes.append({
            "iface": fields[idx["Iface"]],
            "destination": _hex_le_ipv4(fields[idx["Destination"]]),
            "gateway": _hex_le_ipv4(fields[idx["Gateway"]]),
            "mask": _hex_le_ipv4(fields[idx["Mask"]]),
            "flags": flags,
            "metric": metric,
        })
    return routes


def default_route(routes):
    """The usable default route with the lowest metric, or None."""
    rtf_up, rtf_gateway = 0x1, 0x2
    candidates = [r for r in routes
                  if r["destination"] == "0.0.0.0" and r["mask"] == "0.0.0.0"
                  and r["flags"] & rtf_up and r["flags"] & rtf_gateway]
    if not candidates:
        return None
    return sorted(candidates, key=lambda r: r["metric"])[0]


def parse_fib_trie_local(text):
    """/proc/net/fib_trie -> ordered list of the host's local IPv4 addresses."""
    if "--" not in text:
        raise MalformedError("no trie entries")
    addresses = []
    leaf = None
    for line in text.splitlines():
        stripped = line.strip()
        m = re.match(r"^\|--\s+(\d+\.\d+\.\d+\.\d+)$", stripped)
        if m:
            leaf = m.group(1)
            continue
        if re.match(r"^/32 host LOCAL$", stripped) and leaf and leaf not in addresses:
            addresses.append(leaf)
    return addresses


def _ip_int(address):
    return struct.unpack("!I", socket.inet_aton(address))[0]


def address_on_interface(routes, iface, local_addresses):
    """The local address inside one of ``iface``'s directly connected networks."""
    networks = [(_ip_int(r["destination"]), _ip_int(r["mask"])) for r in routes
                if r["iface"] == iface and not r["flags"] & 0x2 and r["mask"] != "0.0.0.0"]
    for address in local_addresses:
        value = _ip_int(address)
        for network, mask in networks:
            if value & mask == network:
                return address
    return None


def hostname_fqdn_from_hosts(text, hostname):
    """The canonical name /etc/hosts gives ``hostname`` when it has a dot, else None."""
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        names = fields[1:]
        if hostname in names or any(n.split(".", 1)[0] == hostname for n in names):
            if "." in names[0]:
                return names[0]
    return None


def normalise_pci_address(value):
    """``00000000:18:00.0`` (nvidia-smi) or ``0000:18:00.0`` (sysfs) -> ``0000:18:00.0``."""
    m = _PCI_ADDRESS_RE.match(value.strip())
    if not m:
        raise MalformedError("not a PCI address: %r" % value)
    domain = int(m.group(1) or "0", 16)
    return "%04x:%s:%s.%s" % (domain, m.group(2).lower(), m.group(3).lower(), m.group(4))


def is_pci_address(value):
    return bool(_PCI_ADDRESS_RE.match(value))


def parse_hex_id(text):
    """sysfs ``vendor``/``device``/``class`` files: ``0x10de`` -> ``0x10de``."""
    value = text.strip().lower()
    if not re.match(r"^0x[0-9a-f]+$", value):
        raise MalformedError("not a hex id: %r" % text.strip()[:20])
    return value


def is_nvidia_gpu(vendor, pci_class):
    return vendor == NVIDIA_VENDOR_ID and pci_class[:6] in GPU_PCI_CLASSES


def parse_nvidia_driver_version(text):
    """/proc/driver/nvidia/version -> ``535.129.03``.

    Proprietary: ``NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03  Thu ...``;
    open modules: ``NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.15  Release Build ...``.
    """
    for line in text.splitlines():
        if line.startswith("NVRM version:"):
            m = _NVRM_VERSION_RE.search(line)
            if m:
                return m.group(1)
            raise MalformedError("no version number in %r" % line[:80])
    raise MalformedError("no 'NVRM version:' line")


def parse_nvidia_smi_csv(text, fields=NVIDIA_SMI_FIELDS):
    """``--query-gpu=<fields> --format=csv,noheader,nounits`` -> list of dicts."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        values = [v.strip() for v in line.split(",")]
        if len(values) != len(fields):
            raise MalformedError("expected %d comma separated values, got %d: %r" % (len(fields), len(values), line[:80]))
        rows.append(dict(zip(fields, values)))
    return rows


def nvidia_smi_gpu(row):
    """One parsed CSV row -> the per-GPU facts nvidia-smi contributes."""
    memory = _na(row["memory.total"])
    if memory is not None:
        try:
            memory = int(float(memory))
        except ValueError:
            raise MalformedError("memory.total is not a number: %r" % memory)
    return {
        "pci_address": normalise_pci_address(row["pci.bus_id"]),
        "name": _na(row["name"]),
        "memory_mb": memory,
        "mig_mode": _na(row["mig.mode.current"]),
        "driver_version": _na(row["driver_version"]),
    }


def parse_nvidia_smi_cuda_version(text):
    """``nvidia-smi -q`` header line ``CUDA Version : 12.2`` -> ``12.2`` (None if absent)."""
    m = _CUDA_VERSION_RE.search(text)
    return _na(m.group(1)) if m else None


def parse_ib_enum(text):
    """``4: ACTIVE`` / ``5: LinkUp`` -> ``ACTIVE`` / ``LinkUp``."""
    value = text.strip()
    m = re.match(r"^\d+:\s*(\S.*)$", value)
    if not m:
        raise MalformedError("not '<n>: <NAME>': %r" % value[:40])
    return m.group(1)


def parse_ib_rate_gbps(text):
    """``400 Gb/sec (4X NDR)`` -> 400 (float for e.g. ``2.5 Gb/sec``), None if unparsable."""
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*Gb/sec", text)
    if not m:
        return None
    value = float(m.group(1))
    return int(value) if value.is_integer() else value
