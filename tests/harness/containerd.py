"""A throwaway containerd for tests and benchmarks.

Starts Debian's ``/usr/bin/containerd`` on a private config: root, state, GRPC
and TTRPC sockets all under one temp dir, the CRI plugin and everything else not
needed for ``ctr images import/ls/rm`` disabled (so it starts in milliseconds
and touches nothing of the host; the ``opt`` plugin, which would create
/opt/containerd, is disabled too). Used by tests/integration/conftest.py and
bench/ctr_image.py.

    with Containerd() as daemon:
        subprocess.run(["ctr", "--address", daemon.address, "images", "ls"])
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

CONTAINERD = os.environ.get("LABHUB_CONTAINERD", "/usr/bin/containerd")
CTR = os.environ.get("LABHUB_CTR", shutil.which("ctr") or "/usr/bin/ctr")

DISABLED_PLUGINS = [
    "io.containerd.grpc.v1.cri",
    "io.containerd.internal.v1.opt",
    "io.containerd.internal.v1.tracing",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
]

CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [{disabled}]

[grpc]
  address = "{address}"

[ttrpc]
  address = "{address}.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""
"""


def _socket_accepts(path: str) -> bool:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(0.5)
    try:
        sock.connect(path)
        return True
    except OSError:
        return False
    finally:
        sock.close()


class Containerd:
    """One private containerd process. ``address`` is its GRPC socket path."""

    def __init__(self, base_dir: str | os.PathLike | None = None, start_timeout: float = 30.0):
        if not os.path.exists(CONTAINERD):
            raise RuntimeError(f"{CONTAINERD} not found (apt-get install containerd; tests/harness/host-packages.sh)")
        # Short path: unix socket paths are limited to 108 bytes.
        self._own_dir = base_dir is None
        self.dir = Path(base_dir or tempfile.mkdtemp(prefix="labhub-ctrd-"))
        self.root = self.dir / "root"
        self.state = self.dir / "state"
        self.address = str(self.dir / "containerd.sock")
        self.config = self.dir / "config.toml"
        self.log = self.dir / "containerd.log"
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Containerd":
        self.root.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)
        self.config.write_text(CONFIG.format(
            root=self.root, state=self.state, address=self.address,
            disabled=", ".join('"%s"' % p for p in DISABLED_PLUGINS)))
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [CONTAINERD, "--config", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited with {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            if os.path.exists(self.address) and _socket_accepts(self.address):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"containerd did not open {self.address} within {self.start_timeout}s:\n{self.log.read_text()[-4000:]}")

    def ctr(self, *args: str, namespace: str = "default", check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([CTR, "--address", self.address, "--namespace", namespace, *args],
                              capture_output=True, text=True, check=check)

    def images(self, namespace: str) -> dict[str, str]:
        """{ref: digest} of a namespace, straight from ``ctr images ls``."""
        out = self.ctr("images", "ls", namespace=namespace).stdout.splitlines()
        return {line.split()[0]: line.split()[2] for line in out[1:] if line.strip()}

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        if self._own_dir:
            # Snapshots may hold overlay mounts only while containers run; none do here.
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Containerd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
