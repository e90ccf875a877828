#!/usr/bin/env python3
# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""Benchmark: labhub.platform.hardware_facts against Ansible's own `setup` module.

Both run on this host in the same ansible-playbook run, through the same local
connection, interleaved (hardware_facts, setup, setup subset, hardware_facts, ...) so
that drift in machine load hits all of them alike. Each task's time is the duration the
ansible.posix.json callback records for it (module transfer + execution, no
ansible-playbook start-up). Separately, whole `ansible localhost -m <module>` commands
are timed end to end, which is what an operator feels for an ad-hoc call.

Results: printed as a Markdown section; `--write-readme` replaces the `## hardware_facts`
section of bench/README.md with it (other sections are left alone).

    .venv/bin/python bench/hardware_facts.py --repeats 15 --write-readme
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "bench" / "README.md"
HEADING = "## hardware_facts"

VARIANTS = {
    "hardware_facts": ("labhub.platform.hardware_facts", {"paths": ["/", "/var"]}),
    "setup (default, gather_subset=all)": ("ansible.builtin.setup", {}),
    "setup gather_subset=hardware,network": ("ansible.builtin.setup", {"gather_subset": ["!all", "hardware", "network"]}),
}


def ansible_env() -> dict:
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".cache" / "ansible_collections"))
    env.update(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR="1",
               ANSIBLE_DEPRECATION_WARNINGS="0")
    return env


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    if not found:
        sys.exit("%s not found; run `make venv` first" % name)
    return found


def parse_time(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def in_playbook(repeats: int, warmup: int) -> dict:
    """Per-task durations (seconds) for each variant, from one interleaved playbook run."""
    tasks = []
    for round_no in range(warmup + repeats):
        for label, (module, args) in VARIANTS.items():
            tasks.append({"name": "%s|%d" % (label, round_no), module: args})
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks}]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yml"
        path.write_text(json.dumps(play))
        proc = subprocess.run([tool("ansible-playbook"), "-i", "localhost,", str(path)], env=ansible_env(),
                              capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit("ansible-playbook failed:\n" + proc.stdout[-3000:] + proc.stderr[-3000:])
    times: dict[str, list[float]] = {label: [] for label in VARIANTS}
    for task in json.loads(proc.stdout)["plays"][0]["tasks"]:
        label, round_no = task["task"]["name"].rsplit("|", 1)
        if int(round_no) < warmup:
            continue
        duration = task["hosts"]["localhost"].get("duration") or task["task"]["duration"]
        times[label].append(parse_time(duration["end"]) - parse_time(duration["start"]))
    return times


def ad_hoc(repeats: int) -> dict:
    """Wall time of whole `ansible localhost -m <module>` commands, interleaved."""
    times: dict[str, list[float]] = {label: [] for label in VARIANTS}
    for _ in range(repeats):
        for label, (module, args) in VARIANTS.items():
            start = time.perf_counter()
            argv = [tool("ansible"), "localhost", "-m", module] + (["-a", json.dumps(args)] if args else [])
            proc = subprocess.run(argv,
                                  env=ansible_env(), capture_output=True, text=True, check=False)
            elapsed = time.perf_counter() - start
            if proc.returncode != 0:
                sys.exit("ansible -m %s failed:\n%s%s" % (module, proc.stdout[-3000:], proc.stderr[-3000:]))
            times[label].append(elapsed)
    return times


def host_summary() -> str:
    proc = subprocess.run([tool("ansible"), "localhost", "-m", "labhub.platform.hardware_facts"],
                          env=ansible_env(), capture_output=True, text=True, check=True)
    facts = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]["ansible_facts"]["labhub_hardware"]
    return "%s %s, kernel %s, %s logical CPUs (%s), %s MiB RAM, %s NVIDIA GPUs, %s RDMA devices" % (
        facts["os"]["id"], facts["os"]["version"], facts["kernel"], facts["cpu"]["cores"], facts["cpu"]["model"],
        facts["memory_mb"], facts["gpus"]["count"], len(facts["infiniband"]["hcas"]))


def table(times: dict, baseline: str) -> list:
    base = statistics.median(times[baseline])
    rows = ["| module | median (s) | min (s) | max (s) | runs | ratio to `%s` |" % baseline,
            "|---|---:|---:|---:|---:|---:|"]
    for label, values in times.items():
        med = statistics.median(values)
        rows.append("| %s | %.3f | %.3f | %.3f | %d | %.2f |" % (label, med, min(values), max(values), len(values), med / base))
    return rows


def render(args, playbook_times: dict, adhoc_times: dict) -> str:
    import ansible  # pylint: disable=import-outside-toplevel
    baseline = "setup (default, gather_subset=all)"
    ratio = statistics.median(playbook_times["hardware_facts"]) / statistics.median(playbook_times[baseline])
    lines = [
        HEADING,
        "",
        "`labhub.platform.hardware_facts` against Ansible's own `setup` module on the same host, same run.",
        "Command: `.venv/bin/python bench/hardware_facts.py --repeats %d --adhoc-repeats %d --write-readme` (%s UTC)." % (
            args.repeats, args.adhoc_repeats, dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")),
        "Host: %s; Python %s, ansible-core %s; 1-minute load average %.1f at start, %.1f at end." % (
            host_summary(), platform.python_version(), ansible.__version__, args.load_before, os.getloadavg()[0]),
        "",
        "**Result: hardware_facts takes %.2fx the time of a default `setup` (ratio of medians, module task "
        "time inside one ansible-playbook run).**" % ratio,
        "",
        "Module task time (ansible.posix.json `duration` per task; %d interleaved rounds after %d warm-up):" % (
            args.repeats, args.warmup),
        "",
    ] + table(playbook_times, baseline) + [
        "",
        "Whole ad-hoc command, `ansible localhost -m <module>` wall time (%d interleaved rounds; includes "
        "ansible start-up, which dominates):" % args.adhoc_repeats,
        "",
    ] + table(adhoc_times, baseline) + [
        "",
        "Notes: both modules read procfs/sysfs; `setup` also runs helpers (e.g. `lsblk`, `findmnt`, `ip`) and "
        "probes many collectors. hardware_facts runs one command at most (`nvidia-smi`, twice, only where it "
        "exists), so on a GPU node its time adds those two nvidia-smi calls; this host has no GPU, so that cost "
        "is not in these numbers. The machine is shared with other test jobs: compare ratios, not absolute times.",
        "",
    ]
    return "\n".join(lines)


def write_readme(section: str) -> None:
    text = README.read_text() if README.exists() else "# Benchmarks\n\nEach section is written by its script in bench/.\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == HEADING), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "\n".join(lines[:start] + section.rstrip("\n").splitlines() + [""] + lines[end:])
    README.write_text(new.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds inside the playbook (default 15)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    parser.add_argument("--adhoc-repeats", type=int, default=5, help="rounds of whole ad-hoc commands (default 5)")
    parser.add_argument("--write-readme", action="store_true", help="replace the section in bench/README.md")
    parser.add_argument("--json", type=Path, help="also write the raw timings here")
    args = parser.parse_args()

    args.load_before = os.getloadavg()[0]
    playbook_times = in_playbook(args.repeats, args.warmup)
    adhoc_times = ad_hoc(args.adhoc_repeats)
    section = render(args, playbook_times, adhoc_times)
    print(section)
    if args.json:
        args.json.write_text(json.dumps({"playbook": playbook_times, "adhoc": adhoc_times}, indent=2))
    if args.write_readme:
        write_readme(section)
        print("updated %s" % README)


if __name__ == "__main__":
    main()
