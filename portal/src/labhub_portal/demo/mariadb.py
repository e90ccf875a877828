"""A private, throwaway MariaDB server for the demo's Sync tab (``labhub-portal demo --mariadb``).

Uses the distribution's ``mariadbd``/``mariadb-install-db`` (Debian package ``mariadb-server``):
its own data directory inside the demo's temporary directory, a Unix socket only (no TCP port),
stopped and deleted when the demo exits.  The portal's report sync then writes the real
``pod_report`` table into it, so "Sync now" has a target without anything external.
"""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import quote


class MariaDBUnavailable(RuntimeError):
    pass


def _binary(name: str) -> str:
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)),
                                      None)
    if path is None:
        raise MariaDBUnavailable(f"{name} not found: install MariaDB (Debian: apt-get install mariadb-server) "
                                 "or run the demo without --mariadb")
    return path


class PrivateMariaDB:
    def __init__(self, base: str | os.PathLike) -> None:
        self.base = Path(base) / "mariadb"
        self.data = self.base / "data"
        self.socket = self.base / "mysqld.sock"
        self.log = self.base / "mariadbd.log"
        self.password = secrets.token_urlsafe(18)
        self.proc: subprocess.Popen | None = None
        self._user = ["--user=root"] if os.geteuid() == 0 else [f"--user={getpass.getuser()}"]

    @property
    def url(self) -> str:
        return (f"mysql://portal:{quote(self.password, safe='')}@localhost/jupyterhub"
                f"?unix_socket={quote(str(self.socket), safe='')}")

    def start(self, timeout: float = 60.0) -> str:
        import pymysql

        install, server = _binary("mariadb-install-db"), _binary("mariadbd")
        self.base.mkdir(parents=True, exist_ok=True)
        result = subprocess.run([install, "--no-defaults", *self._user, f"--datadir={self.data}",
                                 "--auth-root-authentication-method=normal", "--skip-test-db"],
                                capture_output=True, text=True, timeout=180, check=False)
        if result.returncode != 0:
            raise MariaDBUnavailable(f"mariadb-install-db failed: {(result.stderr or result.stdout)[-500:]}")
        self.proc = subprocess.Popen(
            [server, "--no-defaults", *self._user, f"--datadir={self.data}", f"--socket={self.socket}",
             "--skip-networking", f"--pid-file={self.base / 'mariadbd.pid'}", "--innodb-buffer-pool-size=32M",
             f"--log-error={self.log}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True)
                break
            except pymysql.err.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = self.log.read_text(errors="replace")[-800:] if self.log.exists() else ""
                    self.stop()
                    raise MariaDBUnavailable(f"mariadbd did not start: {log}") from None
                time.sleep(0.2)
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE DATABASE IF NOT EXISTS jupyterhub CHARACTER SET utf8mb4")
                cur.execute("CREATE USER IF NOT EXISTS 'portal'@'localhost' IDENTIFIED BY %s", (self.password,))
                cur.execute("GRANT ALL ON jupyterhub.* TO 'portal'@'localhost'")
        finally:
            conn.close()
        return self.url

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
