# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Search logs and files for secret values, raw or base64-encoded (any alignment).

    secret_scan.py --secret VALUE ... --secret-file FILE ... --scan PATH ... [--allow PATH ...]

Every --secret (and the content of every --secret-file) is searched, as is and in base64 (the
whole value, and the three alignments of the value inside a longer encoded text), in every file
under each --scan path except those under an --allow path (the places secrets belong: 0600
credential files, Kubernetes Secret manifests). Findings name the file and the secret's index,
never the secret. Exit 1 when anything is found. Used by Molecule's verify steps on the full
-vvv log of the scenario (ANSIBLE_LOG_PATH) and the files the runs wrote on the controller.
"""
import argparse
import base64
import os
import sys

MIN_LENGTH = 8


def needles(value):
    """The byte strings that give a secret away: raw, and base64 at each of the 3 alignments."""
    raw = value.encode("utf-8")
    found = {raw, base64.b64encode(raw)}
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw)
        # drop the characters that depend on the padding bytes and on what follows
        start = (pad * 8 + 5) // 6 + (1 if pad else 0)
        core = encoded[start:-4] if len(encoded) > start + 8 else b""
        if len(core) >= MIN_LENGTH:
            found.add(core)
    return found


def kubeconfig_secrets(path):
    """The user credentials of a kubeconfig (PyYAML is on every machine that runs Ansible)."""
    import yaml  # pylint: disable=import-outside-toplevel

    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    out = []
    for user in data.get("users") or []:
        for key in ("token", "client-key-data", "password"):
            value = (user.get("user") or {}).get(key)
            if value:
                out.append(str(value))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--secret", action="append", default=[])
    parser.add_argument("--secret-file", action="append", default=[])
    parser.add_argument("--kubeconfig", action="append", default=[],
                        help="a kubeconfig whose user credentials (token, client key, password) are secrets")
    parser.add_argument("--scan", action="append", default=[])
    parser.add_argument("--allow", action="append", default=[])
    args = parser.parse_args(argv)
    secrets = [s for s in args.secret if s]
    for path in args.secret_file:
        with open(path, encoding="utf-8") as handle:
            value = handle.read().strip()
        if value:
            secrets.append(value)
    for path in args.kubeconfig:
        secrets.extend(kubeconfig_secrets(path))
    short = [i for i, s in enumerate(secrets) if len(s) < MIN_LENGTH]
    if short:
        print("secret_scan: secrets %s are shorter than %d characters: not searchable" % (short, MIN_LENGTH))
        return 2
    allow = [os.path.realpath(p) for p in args.allow]
    table = [(i, n) for i, s in enumerate(secrets) for n in needles(s)]
    findings = []
    scanned = 0
    for top in args.scan:
        paths = [top] if os.path.isfile(top) else [os.path.join(d, f) for d, _dirs, fs in os.walk(top) for f in fs]
        for path in paths:
            real = os.path.realpath(path)
            if any(real == a or real.startswith(a + os.sep) for a in allow) or not os.path.isfile(real):
                continue
            with open(real, "rb") as handle:
                data = handle.read()
            scanned += 1
            for index, needle in table:
                if needle in data:
                    findings.append((path, index))
    for path, index in sorted(set(findings)):
        print("secret_scan: secret #%d found in %s" % (index, path))
    print("secret_scan: %d secret(s), %d file(s) scanned, %d finding(s)" % (len(secrets), scanned, len(set(findings))))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
