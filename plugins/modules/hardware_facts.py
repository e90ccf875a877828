#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: hardware_facts
short_description: Gather the hardware and software facts Labhub plans a node with
version_added: 0.1.0
description:
  - Reads procfs, sysfs and C(/etc) of a Linux host and returns one fact dictionary, C(labhub_hardware).
  - Covers the operating system, kernel, architecture, CPU, memory, host name, default IPv4 route,
    NVIDIA GPUs (from PCI, enriched by C(nvidia-smi) when it works), the NVIDIA kernel driver,
    InfiniBand/RoCE HCAs and their ports, loaded RDMA kernel modules, whether containerd, snapd and
    MicroK8s are installed, and free disk space at given paths.
  - The module changes nothing. C(changed) is always false and check mode behaves exactly like a
    normal run.
  - A missing or malformed file leaves the fact it feeds out (V(null)) and adds a warning; the module
    never fails because of the content of the host's files.
  - Only C(nvidia-smi) is run as a command; everything else is read from files, so O(root) can point
    at a copy of another machine's C(/proc), C(/sys) and C(/etc) (this is how the tests run it
    against fixture trees of real machines).
author:
  - Labhub engineers (@labhub)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
options:
  root:
    description:
      - Directory that stands for C(/). Every file is read relative to it (C(<root>/proc/cpuinfo),
        C(<root>/sys/bus/pci/devices), ...).
      - With a root other than C(/), values that only the running kernel knows are not taken from the
        controller's own host (for example the FQDN comes from C(<root>/etc/hosts) and C(nvidia-smi)
        is only run when O(nvidia_smi_path) is given).
    type: path
    default: /
  paths:
    description:
      - Paths whose file system free space is reported in C(disk_free), interpreted inside O(root).
      - A path that does not exist yet is measured at its closest existing parent directory
        (that is where data written to it would land), and reported with C(exists=false).
    type: list
    elements: path
    default: [/]
  nvidia_smi_path:
    description:
      - C(nvidia-smi) executable to run.
      - When omitted and O(root=/), it is looked up on E(PATH) and the usual sbin directories.
      - When omitted and O(root) is another directory, it is not run; C(nvidia_smi.present) then tells
        whether C(<root>/usr/bin/nvidia-smi) exists.
    type: path
  nvidia_smi_timeout:
    description:
      - Seconds each C(nvidia-smi) call may take before it is killed and reported as failed
        (a wedged driver can make it hang). Uses coreutils C(timeout) when available.
      - V(0) disables the limit.
    type: int
    default: 30
notes:
  - Supports check mode; it never changes anything.
  - Software detection looks for files, inside O(root), at the places the packages install them.
    C(containerd) is true when a containerd daemon binary exists in C(usr/bin), C(usr/local/bin),
    C(usr/sbin), C(usr/local/sbin), C(bin) or C(sbin). C(snapd) is true when C(usr/lib/snapd/snapd)
    or C(usr/libexec/snapd/snapd) exists. C(microk8s) is true when the snap is installed, that is
    C(snap/microk8s/current) or C(snap/bin/microk8s) exists (symlinks are not followed, so an
    absolute link inside a copied tree still counts). MicroK8s' own bundled containerd does not make
    C(containerd) true.
  - An RDMA module counts as loaded when it is listed in C(<root>/proc/modules) or has a directory
    C(<root>/sys/module/<name>) (which also covers modules built into the kernel).
  - C(default_ipv4.address) is the local address (from C(/proc/net/fib_trie)) that lies in a network
    directly connected to the default route's interface (from C(/proc/net/route)). On O(root=/) an
    ioctl on the interface is the fallback.
seealso:
  - module: ansible.builtin.setup
attributes:
  check_mode:
    support: full
    details: Nothing is ever changed; check mode gathers the same facts.
  diff_mode:
    support: none
  facts:
    support: full
  platform:
    platforms: posix
    details: Linux only (procfs and sysfs).
"""

EXAMPLES = r"""
- name: Gather Labhub hardware facts
  labhub.platform.hardware_facts:
    paths:
      - /
      - /var/snap

- name: Fail early on nodes without enough memory
  ansible.builtin.assert:
    that: ansible_facts.labhub_hardware.memory_mb >= 16000
    fail_msg: "{{ inventory_hostname }} has {{ ansible_facts.labhub_hardware.memory_mb }} MB"

- name: Only configure GPUs where they exist
  ansible.builtin.debug:
    msg: "{{ ansible_facts.labhub_hardware.gpus.count }} GPUs, driver {{ ansible_facts.labhub_hardware.gpus.driver_version }}"
  when: ansible_facts.labhub_hardware.gpus.count | default(0, true) > 0

- name: Read a copy of another machine's /proc, /sys and /etc
  labhub.platform.hardware_facts:
    root: /srv/hwcopies/gpu-node-07
    nvidia_smi_path: /srv/hwcopies/gpu-node-07/nvidia-smi-replay
"""

RETURN = r"""
ansible_facts:
  description: Facts added to the host.
  returned: always
  type: dict
  contains:
    labhub_hardware:
      description: Everything the module found. A fact whose source file was missing or malformed is V(null).
      returned: always
      type: dict
      contains:
        root:
          description: The O(root) the facts were read from.
          type: str
          sample: /
        os:
          description: From C(etc/os-release) (or C(usr/lib/os-release)).
          type: dict
          contains:
            id:
              description: C(ID), for example V(ubuntu) or V(debian).
              type: str
              sample: ubuntu
            version:
              description: C(VERSION_ID).
              type: str
              sample: "22.04"
            codename:
              description: C(VERSION_CODENAME) (or C(UBUNTU_CODENAME)).
              type: str
              sample: jammy
            pretty_name:
              description: C(PRETTY_NAME).
              type: str
              sample: Ubuntu 22.04.4 LTS
        kernel:
          description: Kernel release from C(proc/sys/kernel/osrelease).
          type: str
          sample: 5.15.0-105-generic
        arch:
          description:
            - Machine architecture from C(proc/sys/kernel/arch) (Linux 6.x), else the running kernel's C(uname -m)
              on O(root=/), else inferred from C(proc/cpuinfo) (x86 long mode flag, arm64 CPU architecture 8).
          type: str
          sample: x86_64
        cpu:
          description: From C(proc/cpuinfo); topology from C(sys/devices/system/cpu) when cpuinfo has none.
          type: dict
          contains:
            model:
              description: CPU model name.
              type: str
              sample: Intel(R) Xeon(R) Platinum 8480C
            cores:
              description: Logical CPUs (hardware threads) online.
              type: int
              sample: 224
            physical_cores:
              description: Distinct physical cores over all sockets.
              type: int
              sample: 112
            sockets:
              description: Distinct CPU packages.
              type: int
              sample: 2
        memory_mb:
          description: C(MemTotal) from C(proc/meminfo) in MiB.
          type: int
          sample: 2063937
        hostname:
          description: From C(proc/sys/kernel/hostname) (or C(etc/hostname)).
          type: str
          sample: dgx-01
        fqdn:
          description: Resolver FQDN on O(root=/); otherwise the canonical name in C(etc/hosts), else the host name.
          type: str
          sample: dgx-01.cluster.example.org
        default_ipv4:
          description: Default IPv4 route. All three keys are V(null) when there is no default route.
          type: dict
          contains:
            address:
              description: Local address on the route's interface.
              type: str
              sample: 10.20.0.11
            interface:
              description: Interface of the default route.
              type: str
              sample: bond0
            gateway:
              description: Gateway of the default route.
              type: str
              sample: 10.20.0.1
        gpus:
          description: NVIDIA GPUs.
          type: dict
          contains:
            count:
              description:
                - NVIDIA VGA/3D controllers (vendor C(0x10de), class C(0x0300)/C(0x0302)) under C(sys/bus/pci/devices).
                  NVSwitches and audio functions are not counted.
                - V(null) (with a warning) when C(sys/bus/pci/devices) cannot be listed. A device whose files cannot be
                  read is left out with a warning.
              type: int
              sample: 8
            devices:
              description:
                - One entry per GPU, ordered by PCI address. C(name), C(memory_mb) and C(mig_mode) are V(null) unless nvidia-smi
                  succeeded. V(null) when C(count) is.
              type: list
              elements: dict
              contains:
                pci_address:
                  description: PCI address as in sysfs.
                  type: str
                  sample: "0000:18:00.0"
                vendor_id:
                  description: PCI vendor id.
                  type: str
                  sample: "0x10de"
                device_id:
                  description: PCI device id (V(0x2330) is an H100 SXM5 80GB).
                  type: str
                  sample: "0x2330"
                name:
                  description: Product name from nvidia-smi.
                  type: str
                  sample: NVIDIA H100 80GB HBM3
                memory_mb:
                  description: Total framebuffer memory in MiB from nvidia-smi.
                  type: int
                  sample: 81559
                mig_mode:
                  description: Current MIG mode from nvidia-smi (V(Enabled)/V(Disabled)); V(null) when the GPU has no MIG.
                  type: str
                  sample: Disabled
            driver_loaded:
              description: Whether C(proc/driver/nvidia/version) exists, that is the NVIDIA kernel driver is loaded.
              type: bool
              sample: true
            driver_version:
              description: Kernel driver version from C(proc/driver/nvidia/version).
              type: str
              sample: 535.129.03
            nvidia_smi:
              description: What running nvidia-smi gave.
              type: dict
              contains:
                present:
                  description: Whether an nvidia-smi executable was found.
                  type: bool
                path:
                  description: The nvidia-smi that was (or would be) run.
                  type: str
                ok:
                  description: Whether it ran and its output parsed. False when missing, failed or not run.
                  type: bool
                error:
                  description: Why C(ok) is false.
                  type: str
                  sample: "nvidia-smi exited 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
                driver_version:
                  description: Driver version nvidia-smi reports.
                  type: str
                  sample: 535.129.03
                cuda_version:
                  description: Highest CUDA version the driver supports (C(nvidia-smi -q) header).
                  type: str
                  sample: "12.2"
        infiniband:
          description: RDMA devices and modules.
          type: dict
          contains:
            hcas:
              description: One entry per device under C(sys/class/infiniband) (InfiniBand and RoCE alike). Empty when the directory does not exist.
              type: list
              elements: dict
              contains:
                name:
                  description: RDMA device name.
                  type: str
                  sample: mlx5_0
                pci_address:
                  description: PCI address the device link points at (V(null) for non-PCI devices).
                  type: str
                  sample: "0000:1a:00.0"
                fw_ver:
                  description: Firmware version when the driver exposes it.
                  type: str
                  sample: 28.39.1002
                ports:
                  description: One entry per port.
                  type: list
                  elements: dict
                  contains:
                    port:
                      description: Port number.
                      type: int
                      sample: 1
                    state:
                      description: Logical state (V(ACTIVE), V(INIT), V(DOWN), ...).
                      type: str
                      sample: ACTIVE
                    phys_state:
                      description: Physical state (V(LinkUp), V(Polling), V(Disabled), ...).
                      type: str
                      sample: LinkUp
                    link_layer:
                      description: V(InfiniBand) or V(Ethernet) (RoCE).
                      type: str
                      sample: InfiniBand
                    rate:
                      description: Rate as the kernel prints it.
                      type: str
                      sample: 400 Gb/sec (4X NDR)
                    rate_gbps:
                      description: The number in C(rate).
                      type: float
                      sample: 400
            rdma_modules:
              description: Whether each RDMA module is loaded or built in (C(proc/modules), C(sys/module)). V(null) values when neither can be read.
              type: dict
              contains:
                rdma_cm:
                  description: RDMA connection manager.
                  type: bool
                ib_umad:
                  description: Userspace MAD access (needed by C(ibstat), subnet managers).
                  type: bool
                ib_uverbs:
                  description: Userspace verbs (needed by every RDMA application).
                  type: bool
        software:
          description: Installed software that decides how Labhub deploys (see the notes for how each is detected).
          type: dict
          contains:
            containerd:
              description: A containerd daemon binary is installed outside MicroK8s.
              type: bool
            snapd:
              description: snapd is installed.
              type: bool
            microk8s:
              description: The microk8s snap is installed.
              type: bool
        disk_free:
          description: One entry per O(paths) item, in order.
          type: list
          elements: dict
          contains:
            path:
              description: The path as given.
              type: str
              sample: /
            exists:
              description: Whether the path exists; if not, the closest existing parent was measured.
              type: bool
            measured_path:
              description: The path whose file system was measured (inside O(root)).
              type: str
            free_mb:
              description: Space available to unprivileged users, MiB.
              type: int
            total_mb:
              description: Size of the file system, MiB.
              type: int
"""

import errno
import os
import platform
import socket
import struct

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.labhub.platform.plugins.module_utils import _hardware as hw
from ansible_collections.labhub.platform.plugins.module_utils._cmd_runner import CmdError, CmdRunner, fmt

MIB = 1024 * 1024
BIN_DIRS = ("usr/bin", "usr/local/bin", "usr/sbin", "usr/local/sbin", "bin", "sbin")


class Unavailable(Exception):
    """A fact cannot be determined; the message becomes the warning."""


class HardwareFacts:
    def __init__(self, module):
        self.module = module
        self.root = os.path.abspath(module.params["root"])
        self.live = self.root == "/"

    # -- helpers ---------------------------------------------------------
    def path(self, rel):
        return os.path.normpath(os.path.join(self.root, rel.lstrip("/")))

    def warn(self, fact, message):
        self.module.warn("hardware_facts: %s omitted: %s" % (fact, message))

    def read(self, rel, required=True):
        """Text of ``<root>/rel``; None when missing and not required, else Unavailable."""
        try:
            with open(self.path(rel), "rb") as handle:
                data = handle.read()
        except (IOError, OSError) as exc:
            if exc.errno == errno.ENOENT and not required:
                return None
            raise Unavailable("cannot read '%s': %s" % (self.path(rel), exc.strerror or exc))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")

    def parsed(self, rel, parser, *args):
        text = self.read(rel)
        try:
            return parser(text, *args)
        except hw.MalformedError as exc:
            raise Unavailable("malformed '%s': %s" % (self.path(rel), exc))

    def gather(self, fact, func, default=None):
        """Run one collector; any problem becomes a warning and ``default``."""
        try:
            return func()
        except Unavailable as exc:
            self.warn(fact, to_native(exc))
        except Exception as exc:  # pylint: disable=broad-except
            # A safety net: a host's files must never make this module fail.
            self.warn(fact, "unexpected %s: %s" % (type(exc).__name__, to_native(exc)))
        return default

    # -- collectors ------------------------------------------------------
    def os_release(self):
        rel = "etc/os-release"
        if not os.path.exists(self.path(rel)) and os.path.exists(self.path("usr/lib/os-release")):
            rel = "usr/lib/os-release"
        return self.parsed(rel, hw.parse_os_release)

    def kernel(self):
        value = self.read("proc/sys/kernel/osrelease").strip()
        if not value:
            raise Unavailable("'%s' is empty" % self.path("proc/sys/kernel/osrelease"))
        return value

    def arch(self):
        text = self.read("proc/sys/kernel/arch", required=False)
        if text and text.strip():
            return text.strip()
        if self.live:
            return platform.machine()
        guess = self.parsed("proc/cpuinfo", hw.arch_from_cpuinfo)
        if guess is None:
            raise Unavailable("'%s' is missing and '%s' does not tell" % (
                self.path("proc/sys/kernel/arch"), self.path("proc/cpuinfo")))
        return guess

    def cpu(self):
        info = self.parsed("proc/cpuinfo", hw.parse_cpuinfo)
        if info["sockets"] is None:
            info["physical_cores"], info["sockets"] = hw.count_topology(self._sysfs_topology())
        return info

    def _sysfs_topology(self):
        base = self.path("sys/devices/system/cpu")
        pairs = []
        try:
            names = os.listdir(base)
        except OSError:
            return pairs
        for name in names:
            if not (name.startswith("cpu") and name[3:].isdigit()):
                continue
            topo = os.path.join(base, name, "topology")
            try:
                with open(os.path.join(topo, "physical_package_id")) as handle:
                    package = handle.read().strip()
                with open(os.path.join(topo, "core_id")) as handle:
                    core = handle.read().strip()
            except (IOError, OSError):
                continue
            pairs.append((package, core))
        return pairs

    def memory_mb(self):
        return self.parsed("proc/meminfo", hw.parse_meminfo_total_mb)

    def hostname(self):
        for rel in ("proc/sys/kernel/hostname", "etc/hostname"):
            text = self.read(rel, required=False)
            if text and text.strip():
                return text.strip()
        raise Unavailable("neither '%s' nor '%s' is readable" % (
            self.path("proc/sys/kernel/hostname"), self.path("etc/hostname")))

    def fqdn(self, hostname):
        if self.live:
            return socket.getfqdn()
        if hostname is None:
            raise Unavailable("no host name")
        text = self.read("etc/hosts", required=False)
        return (text and hw.hostname_fqdn_from_hosts(text, hostname)) or hostname

    def default_ipv4(self):
        routes = self.parsed("proc/net/route", hw.parse_proc_net_route)
        route = hw.default_route(routes)
        if route is None:
            return {"address": None, "interface": None, "gateway": None}
        address = None
        text = self.read("proc/net/fib_trie", required=False)
        if text is not None:
            try:
                address = hw.address_on_interface(routes, route["iface"], hw.parse_fib_trie_local(text))
            except hw.MalformedError as exc:
                self.warn("default_ipv4.address", "malformed '%s': %s" % (self.path("proc/net/fib_trie"), exc))
        if address is None and self.live:
            address = self._ioctl_address(route["iface"])
        return {"address": address, "interface": route["iface"], "gateway": route["gateway"]}

    @staticmethod
    def _ioctl_address(iface):
        import fcntl  # pylint: disable=import-outside-toplevel
        siocgifaddr = 0x8915
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            packed = fcntl.ioctl(sock.fileno(), siocgifaddr, struct.pack("256s", iface[:15].encode()))
            return socket.inet_ntoa(packed[20:24])
        except (IOError, OSError):
            return None
        finally:
            sock.close()

    def pci_gpus(self):
        base = "sys/bus/pci/devices"
        try:
            addresses = sorted(os.listdir(self.path(base)))
        except OSError as exc:
            raise Unavailable("cannot list '%s': %s" % (self.path(base), exc.strerror or exc))
        gpus = []
        for address in addresses:
            if not hw.is_pci_address(address):
                continue
            dev = "%s/%s" % (base, address)
            try:
                vendor = self.parsed(dev + "/vendor", hw.parse_hex_id)
                if vendor != hw.NVIDIA_VENDOR_ID:
                    continue
                if not hw.is_nvidia_gpu(vendor, self.parsed(dev + "/class", hw.parse_hex_id)):
                    continue
                device_id = self.parsed(dev + "/device", hw.parse_hex_id)
            except Unavailable as exc:
                # One unreadable device must not hide the others; it is not counted.
                self.warn("gpus.devices[%s]" % address, to_native(exc))
                continue
            gpus.append({
                "pci_address": address,
                "vendor_id": vendor,
                "device_id": device_id,
                "name": None,
                "memory_mb": None,
                "mig_mode": None,
            })
        return gpus

    def nvidia_driver(self):
        text = self.read("proc/driver/nvidia/version", required=False)
        if text is None:
            return False, None
        try:
            return True, hw.parse_nvidia_driver_version(text)
        except hw.MalformedError as exc:
            self.warn("gpus.driver_version", "malformed '%s': %s" % (self.path("proc/driver/nvidia/version"), exc))
            return True, None

    def nvidia_smi(self, gpus):
        result = {"present": False, "path": None, "ok": False, "error": None,
                  "driver_version": None, "cuda_version": None, "ran": False}
        path = self.module.params["nvidia_smi_path"]
        if path is None and self.live:
            path = self.module.get_bin_path("nvidia-smi")
        elif path is None:
            candidate = self.path("usr/bin/nvidia-smi")
            if os.path.lexists(candidate):
                result.update(present=True, path=candidate,
                              error="not run: root is not '/' and nvidia_smi_path is not set")
            else:
                result["error"] = "nvidia-smi not found under %s" % self.root
            return result
        if path is None:
            result["error"] = "nvidia-smi not found"
            return result
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            result.update(path=path, error="'%s' is not an executable file" % path)
            return result
        result.update(present=True, path=path, ran=True)

        base = [path]
        timeout = self.module.params["nvidia_smi_timeout"]
        timeout_bin = self.module.get_bin_path("timeout") if timeout else None
        if timeout_bin:
            base = [timeout_bin, "--kill-after=5", str(timeout)] + base
        runner = CmdRunner(self.module, base, {
            "query_gpu": fmt.as_opt_eq_val("--query-gpu"),
            "format": fmt.as_opt_eq_val("--format"),
            "display": fmt.as_opt_val("-d"),
        }, environ_update={"LC_ALL": "C"})

        try:
            out = runner.run(query_gpu=",".join(hw.NVIDIA_SMI_FIELDS), format="csv,noheader,nounits").stdout
            rows = [hw.nvidia_smi_gpu(row) for row in hw.parse_nvidia_smi_csv(out)]
            header = runner.run(["-q"], display="COMPUTE").stdout
        except CmdError as exc:
            if timeout_bin and exc.rc in (124, 137):
                result["error"] = "nvidia-smi timed out after %ss" % timeout
            else:
                result["error"] = "nvidia-smi exited %s: %s" % (exc.rc, _last_line(exc.stderr, exc.stdout))
            return result
        except hw.MalformedError as exc:
            result["error"] = "unexpected nvidia-smi output: %s" % exc
            return result

        result.update(ok=True, cuda_version=hw.parse_nvidia_smi_cuda_version(header))
        versions = sorted(set(r["driver_version"] for r in rows if r["driver_version"]))
        result["driver_version"] = versions[0] if versions else None
        by_address = dict((r["pci_address"], r) for r in rows)
        for gpu in gpus or []:
            row = by_address.get(gpu["pci_address"])
            if row:
                gpu.update(name=row["name"], memory_mb=row["memory_mb"], mig_mode=row["mig_mode"])
        return result

    def gpus(self):
        devices = self.gather("gpus.count", self.pci_gpus)
        loaded, version = self.gather("gpus.driver_loaded", self.nvidia_driver, (None, None))
        smi = self.gather("gpus.nvidia_smi", lambda: self.nvidia_smi(devices), {
            "present": None, "path": None, "ok": False, "error": "unexpected failure, see warnings",
            "driver_version": None, "cuda_version": None, "ran": False})
        if smi.pop("ran") and not smi["ok"] and (devices or loaded):
            self.module.warn("hardware_facts: nvidia-smi failed, GPU names/memory/MIG mode omitted: %s" % smi["error"])
        return {
            "count": None if devices is None else len(devices),
            "devices": devices,
            "driver_loaded": loaded,
            "driver_version": version,
            "nvidia_smi": smi,
        }

    def hcas(self):
        base = "sys/class/infiniband"
        if not os.path.isdir(self.path(base)):
            return []
        hcas = []
        for name in sorted(os.listdir(self.path(base))):
            dev = "%s/%s" % (base, name)
            pci_address = None
            link = self.path(dev + "/device")
            if os.path.islink(link):
                target = os.path.basename(os.readlink(link).rstrip("/"))
                pci_address = target if hw.is_pci_address(target) else None
            fw_ver = self.read(dev + "/fw_ver", required=False)
            ports = []
            ports_dir = self.path(dev + "/ports")
            port_names = os.listdir(ports_dir) if os.path.isdir(ports_dir) else []
            for port in sorted((p for p in port_names if p.isdigit()), key=int):
                ports.append(self._ib_port(dev, port))
            hcas.append({"name": name, "pci_address": pci_address,
                         "fw_ver": fw_ver.strip() if fw_ver else None, "ports": ports})
        return hcas

    def _ib_port(self, dev, port):
        rel = "%s/ports/%s/" % (dev, port)
        fact = "infiniband.hcas[%s].ports[%s]" % (dev.rsplit("/", 1)[1], port)
        entry = {"port": int(port)}
        for key, parser in (("state", hw.parse_ib_enum), ("phys_state", hw.parse_ib_enum),
                            ("link_layer", None), ("rate", None)):
            entry[key] = self.gather("%s.%s" % (fact, key),
                                     lambda k=key, p=parser: self.parsed(rel + k, p) if p else self.read(rel + k).strip())
        entry["rate_gbps"] = hw.parse_ib_rate_gbps(entry["rate"]) if entry["rate"] else None
        return entry

    def rdma_modules(self):
        # /sys/module/<name> exists for loaded and for built-in modules; /proc/modules lists
        # only loadable ones. Either source is enough; with neither the fact is unknown.
        sys_module = self.path("sys/module")
        have_sys = os.path.isdir(sys_module)
        loaded = set()
        if os.path.exists(self.path("proc/modules")) or not have_sys:
            loaded.update(self.parsed("proc/modules", hw.parse_proc_modules))
        if have_sys:
            loaded.update(name for name in hw.RDMA_MODULES if os.path.isdir(os.path.join(sys_module, name)))
        return dict((name, name in loaded) for name in hw.RDMA_MODULES)

    def software(self):
        def exists(rels, follow=True):
            check = os.path.exists if follow else os.path.lexists
            return any(check(self.path(rel)) for rel in rels)
        return {
            "containerd": exists(["%s/containerd" % d for d in BIN_DIRS]),
            "snapd": exists(["usr/lib/snapd/snapd", "usr/libexec/snapd/snapd"]),
            "microk8s": exists(["snap/microk8s/current", "snap/bin/microk8s"], follow=False),
        }

    def disk_free(self):
        entries = []
        for given in self.module.params["paths"]:
            target = self.path(given)
            measured = target
            while not os.path.exists(measured) and measured != self.root and os.path.dirname(measured) != measured:
                measured = os.path.dirname(measured)
            entry = {"path": given, "exists": os.path.exists(target), "measured_path": measured,
                     "free_mb": None, "total_mb": None}
            try:
                st = os.statvfs(measured)
                entry.update(free_mb=st.f_bavail * st.f_frsize // MIB, total_mb=st.f_blocks * st.f_frsize // MIB)
            except OSError as exc:
                self.warn("disk_free[%s]" % given, "cannot stat '%s': %s" % (measured, exc.strerror or exc))
            entries.append(entry)
        return entries

    def collect(self):
        hostname = self.gather("hostname", self.hostname)
        facts = {
            "root": self.root,
            "os": self.gather("os", self.os_release),
            "kernel": self.gather("kernel", self.kernel),
            "arch": self.gather("arch", self.arch),
            "cpu": self.gather("cpu", self.cpu),
            "memory_mb": self.gather("memory_mb", self.memory_mb),
            "hostname": hostname,
            "fqdn": self.gather("fqdn", lambda: self.fqdn(hostname)),
            "default_ipv4": self.gather("default_ipv4", self.default_ipv4),
            "gpus": self.gpus(),
            "infiniband": {
                "hcas": self.gather("infiniband.hcas", self.hcas, []),
                "rdma_modules": self.gather("infiniband.rdma_modules", self.rdma_modules,
                                            dict((name, None) for name in hw.RDMA_MODULES)),
            },
            "software": self.gather("software", self.software),
            "disk_free": self.gather("disk_free", self.disk_free, []),
        }
        return facts


def _last_line(*texts):
    for text in texts:
        lines = (text or "").strip().splitlines()
        if lines:
            return lines[-1].strip()
    return "no output"


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", default="/"),
            paths=dict(type="list", elements="path", default=["/"]),
            nvidia_smi_path=dict(type="path"),
            nvidia_smi_timeout=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    if not os.path.isdir(module.params["root"]):
        module.fail_json(msg="Failed to gather hardware facts from root '%s' due to: not a directory" % module.params["root"])
    if module.params["nvidia_smi_timeout"] < 0:
        module.fail_json(msg="Failed to gather hardware facts from root '%s' due to: nvidia_smi_timeout must be >= 0"
                         % module.params["root"])
    facts = HardwareFacts(module).collect()
    module.exit_json(changed=False, ansible_facts={"labhub_hardware": facts})


if __name__ == "__main__":
    main()
