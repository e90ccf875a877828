# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""Write a SIMULATED offline snap pair for tests: <dir>/<name>_<rev>.snap and .assert.

The .snap is a small opaque file (the simulator never opens a squashfs); the .assert holds a
snap-declaration and a snap-revision assertion laid out like snapd's (headers, blank line,
signature) whose snap-sha3-384 is the digest of that file, which is how snapd (and the
simulator) match a local .snap with its acknowledged assertions.

usage: make_snap_fixture.py DIR NAME REVISION [--content TEXT]
"""
import argparse
import base64
import hashlib
import os
import time

SNAP_IDS = {"microk8s": "EaXqgt1lyCaxKaQCU349mlodBkDCXRcg", "core20": "DLqre5XGLbDqg9jPtiAhRRjDuPVa5X1q",
            "core22": "amcUKQILKXHHTlmSa7NMdnXSx02dNeeT"}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("name")
    parser.add_argument("revision")
    parser.add_argument("--content", default="")
    parser.add_argument("--snap-file")
    parser.add_argument("--assert-file")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    snap = args.snap_file or os.path.join(args.dir, "%s_%s.snap" % (args.name, args.revision))
    asrt = args.assert_file or os.path.join(args.dir, "%s_%s.assert" % (args.name, args.revision))
    payload = ("hsqs SIMULATED snap %s revision %s %s\n" % (args.name, args.revision, args.content)).encode()
    with open(snap, "wb") as handle:
        handle.write(payload)
    digest = base64.urlsafe_b64encode(hashlib.sha3_384(payload).digest()).decode().rstrip("=")
    snap_id = SNAP_IDS.get(args.name, hashlib.sha256(args.name.encode()).hexdigest()[:32])
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    sig = base64.b64encode(b"SIMULATED-SIGNATURE-" + payload[:16]).decode()
    with open(asrt, "w") as handle:
        handle.write(
            "type: snap-declaration\nauthority-id: canonical\nrevision: 1\nseries: 16\n"
            "snap-id: %s\npublisher-id: canonical\nsnap-name: %s\ntimestamp: %s\n"
            "sign-key-sha3-384: BWDEoaqyr25nF5SNCvEv2v7QnM9QsfCc0PBMYD_i2NGSQ32EF2d4D0hqUel3m8ul\n\n%s\n\n"
            "type: snap-revision\nauthority-id: canonical\nsnap-sha3-384: %s\ndeveloper-id: canonical\n"
            "snap-id: %s\nsnap-revision: %s\nsnap-size: %d\ntimestamp: %s\n"
            "sign-key-sha3-384: BWDEoaqyr25nF5SNCvEv2v7QnM9QsfCc0PBMYD_i2NGSQ32EF2d4D0hqUel3m8ul\n\n%s\n"
            % (snap_id, args.name, stamp, sig, digest, snap_id, args.revision, len(payload), stamp, sig))
    print(snap)
    print(asrt)


if __name__ == "__main__":
    main()
