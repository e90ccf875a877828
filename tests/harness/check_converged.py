# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check mode on converged hosts must predict no change (Molecule's side_effect step).

    check_converged.py [--scenario NAME] [--log FILE]

Molecule's own ``check`` step runs the converge playbook with ``--check`` and only fails when the
playbook fails: a task that would change a converged host goes unnoticed. This runs the same
command, ``molecule converge -s NAME -- --check`` (the scenario's inventory, options, environment
and converge playbook; create and prepare are skipped because the instances exist), writes its
output to FILE, reads the PLAY RECAP and exits 1 when a host shows ``changed`` > 0, naming the
tasks that would change, as Molecule's idempotence step does for a second converge. Run by
molecule/shared/check_converged.yml, the side_effect playbook of every scenario that converges,
which takes the place of the check step after idempotence. The scenario defaults to
$MOLECULE_SCENARIO_NAME, FILE to $MOLECULE_EPHEMERAL_DIRECTORY/check-converged.log.
"""
import argparse
import os
import re
import subprocess
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)")


def read_recap(output):
    """{host: changed count} from the PLAY RECAP lines, and the 'TASK [...] host' lines that changed."""
    changed = {}
    tasks = []
    task = ""
    in_recap = False
    for line in ANSI.sub("", output).splitlines():
        line = line.lstrip(" \u2502\u250c\u2514")  # Molecule's command borders, if any
        if line.startswith("PLAY ["):
            in_recap = False
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        if line.startswith("TASK ") or line.startswith("RUNNING HANDLER "):
            task = line.rstrip(" *")
            in_recap = False
            continue
        if in_recap:
            match = RECAP.match(line.strip())
            if match:
                changed[match.group(1)] = changed.get(match.group(1), 0) + int(match.group(3))
            continue
        found = re.match(r"^changed: \[([^\]]+)\]", line)
        if found:
            tasks.append("%s  [%s]" % (task, found.group(1)))
    return changed, tasks


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--scenario", default=os.environ.get("MOLECULE_SCENARIO_NAME"))
    parser.add_argument("--log", default=os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "."),
                                                      "check-converged.log"))
    args = parser.parse_args()
    if not args.scenario:
        parser.error("no --scenario and no MOLECULE_SCENARIO_NAME")
    cmd = [sys.executable, "-m", "molecule", "converge", "--no-command-borders", "--no-report",
           "-s", args.scenario, "--", "--check"]
    cwd = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd())
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", NO_COLOR="1")
    with open(args.log, "w", encoding="utf-8") as log:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    with open(args.log, encoding="utf-8", errors="replace") as log:
        output = log.read()
    changed, tasks = read_recap(output)
    print("check mode on the converged hosts (molecule converge -s %s -- --check), output in %s"
          % (args.scenario, args.log))
    for host in sorted(changed):
        print("  %-24s changed=%d" % (host, changed[host]))
    if proc.returncode != 0:
        print("FAILED: the check run exited %d; last lines:" % proc.returncode)
        print("\n".join(output.splitlines()[-40:]))
        return 1
    if not changed:
        print("FAILED: no PLAY RECAP in the check run's output")
        return 1
    if any(changed.values()):
        print("FAILED: check mode predicts changes on converged hosts; the tasks that would change:")
        for line in tasks:
            print("  " + line)
        return 1
    print("ok: no change predicted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
