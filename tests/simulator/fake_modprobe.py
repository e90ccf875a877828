# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""FAKE modprobe for tests (tests/simulator; run through the `modprobe` entry point): it loads NOTHING into any kernel.

Containers and CI machines have no RDMA hardware or modules, so the network_operator role's
module loading is tested against this stand-in. It edits a fixture tree instead of a kernel:
`modprobe NAME` appends NAME to $LABHUB_SIM_ROOT/proc/modules (the file the role and
labhub.platform.hardware_facts read) and records the call in
$LABHUB_SIM_ROOT/var/lib/labhub-sim/modprobe.log. A module already listed (or built in:
$LABHUB_SIM_ROOT/sys/module/NAME) is left alone, as modprobe does.

Modules it "knows": the RDMA stack and the mlx5 drivers (KNOWN below), plus the names listed one
per line in $LABHUB_SIM_ROOT/var/lib/labhub-sim/modules-available. Any other name fails with
modprobe's message. Fault knob ($LABHUB_SIM_ROOT/var/lib/labhub-sim/faults.json):
{"modprobe_fails": ["ib_umad"]} makes loading those modules fail like a missing module.
"""
from __future__ import annotations

import json
import os
import sys

KNOWN = {"rdma_cm", "rdma_ucm", "ib_umad", "ib_uverbs", "ib_core", "ib_cm", "iw_cm", "ib_ipoib",
         "mlx5_core", "mlx5_ib", "mlxfw"}


def path(root, rel):
    return os.path.join(root, rel)


def read_lines(file_name):
    try:
        with open(file_name, encoding="utf-8") as handle:
            return [line.rstrip("\n") for line in handle]
    except FileNotFoundError:
        return []


def release(root):
    lines = read_lines(path(root, "proc/sys/kernel/osrelease"))
    return lines[0].strip() if lines and lines[0].strip() else "6.1.0-labhub-sim"


def main(argv):
    root = os.environ.get("LABHUB_SIM_ROOT", "")
    if not root or not os.path.isdir(root):
        sys.stderr.write("modprobe (labhub FAKE): LABHUB_SIM_ROOT must name the node's fixture tree\n")
        return 1
    names = [arg for arg in argv if not arg.startswith("-")]
    if len(names) != 1 or len(names) != len(argv):
        sys.stderr.write("modprobe (labhub FAKE): only `modprobe NAME` is implemented, got %r\n" % (argv,))
        return 1
    name = names[0].replace("-", "_")
    state = path(root, "var/lib/labhub-sim")
    os.makedirs(state, exist_ok=True)
    try:
        with open(os.path.join(state, "faults.json"), encoding="utf-8") as handle:
            faults = json.load(handle)
    except (FileNotFoundError, ValueError):
        faults = {}
    available = KNOWN | {line.strip() for line in read_lines(os.path.join(state, "modules-available")) if line.strip()}
    with open(os.path.join(state, "modprobe.log"), "a", encoding="utf-8") as log:
        log.write("modprobe %s\n" % name)
    if name not in available or name in faults.get("modprobe_fails", []):
        sys.stderr.write("modprobe: FATAL: Module %s not found in directory /lib/modules/%s\n" % (name, release(root)))
        return 1
    modules = path(root, "proc/modules")
    loaded = {line.split(" ", 1)[0] for line in read_lines(modules) if line}
    if name in loaded or os.path.isdir(path(root, "sys/module/%s" % name)):
        return 0
    os.makedirs(os.path.dirname(modules), exist_ok=True)
    lines = read_lines(modules)
    lines = [line for line in lines if line] + ["%s 16384 0 - Live 0x0000000000000000" % name]
    with open(modules, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
