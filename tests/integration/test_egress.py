"""tests/harness/egress.sh, the detector behind the Molecule scenarios' "zero network" proof
(issue 12): a container it cuts reaches only what it allows, and every other attempt (a TCP
connection, a DNS lookup) is rejected at once and counted, with its destination, so `check` fails.
A real podman container from the Molecule base image."""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EGRESS = REPO / "tests" / "harness" / "egress.sh"
IMAGE = "localhost/labhub-debian12:latest"

pytestmark = [pytest.mark.slow]

PROBE = r"""
import socket, sys
def connect(host, port):
    s = socket.socket(); s.settimeout(5)
    try:
        s.connect((host, port)); return "connected"
    except OSError as exc:
        return type(exc).__name__
print(connect(sys.argv[1], int(sys.argv[2])))
"""


def podman(*args, check=True):
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(REPO / "tests" / "harness" / "containers.conf"))
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, env=env, timeout=120)


@pytest.fixture
def container():
    if not shutil.which("podman") or podman("image", "exists", IMAGE, check=False).returncode != 0:
        pytest.fail("podman and the Molecule base image are needed (make base-image)")
    name = "labhub-egress-" + uuid.uuid4().hex[:8]
    podman("run", "-d", "--name", name, "--runtime=runc", "--ulimit", "nofile=20000:20000",
           "--ulimit", "nproc=32768:32768", IMAGE, "sleep", "300")
    gateway = podman("network", "inspect", "podman", "--format", "{{range .Subnets}}{{.Gateway}}{{end}}").stdout.strip()
    # a listener on the host's gateway address, the "test's own service" the container may reach
    server = subprocess.Popen(["python3", "-c", "import socket,time\ns=socket.socket()\n"
                               "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                               "s.bind(('%s', 0)); s.listen(5); print(s.getsockname()[1], flush=True)\n"
                               "time.sleep(120)" % gateway], stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    try:
        yield name, gateway, port
    finally:
        server.kill()
        podman("rm", "-f", "-t", "0", name, check=False)


def probe(name, host, port):
    return podman("exec", name, "python3", "-c", PROBE, host, str(port)).stdout.strip()


def test_cut_allows_only_the_given_address_and_check_counts_the_rest(container):
    name, gateway, port = container
    cut = subprocess.run([str(EGRESS), "cut", name, "%s:%d" % (gateway, port)], capture_output=True, text=True,
                         check=False)
    assert cut.returncode == 0, cut.stderr
    assert probe(name, gateway, port) == "connected"
    clean = subprocess.run([str(EGRESS), "check", name], capture_output=True, text=True, check=False)
    assert clean.returncode == 0 and "0 packets rejected" in clean.stdout, clean.stdout + clean.stderr
    # another port of the same host, an outside address and a name lookup: all rejected at once
    assert probe(name, gateway, port + 1) == "ConnectionRefusedError"
    assert probe(name, "192.0.2.77", 80) == "ConnectionRefusedError"
    lookup = podman("exec", name, "python3", "-c", "import socket; socket.getaddrinfo('deb.debian.org', 80)",
                    check=False)
    assert lookup.returncode != 0
    dirty = subprocess.run([str(EGRESS), "check", name], capture_output=True, text=True, check=False)
    assert dirty.returncode == 1, dirty.stdout + dirty.stderr
    assert "tried to reach the network" in dirty.stdout
    assert "192.0.2.77" in dirty.stdout and gateway in dirty.stdout


def test_check_refuses_a_container_that_was_never_cut(container):
    name = container[0]
    result = subprocess.run([str(EGRESS), "check", name], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "was it cut?" in result.stderr
