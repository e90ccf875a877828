"""Throwaway PostgreSQL and MariaDB servers (real ones) for the tests and the benchmarks, and the
loopback thread server the test doubles (fakes.py) and the fault injector (kube.py) run on.

Each database lives in a private temp dir, listens on 127.0.0.1 on a free port of the test range and
on a private unix socket; when run as root the servers run as the postgres / mysql users.
"""

from __future__ import annotations

import asyncio
import glob
import os
import random
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pymysql
from aiohttp import web

TEST_PORT_RANGE = (18000, 18299)

MYSQL_PASSWORD = "portal-test-password"


def free_port(lo: int = TEST_PORT_RANGE[0], hi: int = TEST_PORT_RANGE[1]) -> int:
    for port in random.sample(range(lo, hi + 1), hi - lo + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in the test range")


class ThreadServer:
    """Runs an aiohttp app on loopback (HTTPS when ``ssl_context`` is set) in a private thread/event
    loop, so sync tests (schemathesis, uvicorn in a thread) and async tests can use it alike."""

    ssl_context: ssl.SSLContext | None = None

    def __init__(self) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def build(self) -> web.Application:
        raise NotImplementedError

    def start(self):
        self._thread.start()

        async def _start():
            self._runner = web.AppRunner(self.build(), shutdown_timeout=2.0)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ssl_context).start()

        asyncio.run_coroutine_threadsafe(_start(), self.loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(15)
            except Exception:  # a handler still hanging: the thread is a daemon, drop it
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"


class SkipServer(RuntimeError):
    """A server binary is missing."""


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise SkipServer(f"PostgreSQL binary {name} not installed")
    return path


def _as_user(user: str) -> list[str]:
    return ["runuser", "-u", user, "--"] if os.geteuid() == 0 else []


class PostgresServer:
    """initdb + pg_ctl in a private temp dir, loopback TCP on a free port, private socket dir."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="labhub-portal-pg-"))
        os.chmod(self.base, 0o755)
        self.data = self.base / "data"
        self.sock = self.base / "sock"
        self.sock.mkdir()
        self.log = self.base / "postgres.log"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
            shutil.chown(self.sock, "postgres", "postgres")
        subprocess.run(_as_user("postgres") + [_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                                               "-E", "UTF8", "--no-sync", "--locale=C.UTF-8"],
                       check=True, capture_output=True)

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(_as_user("postgres") + [_pg_bin("pg_ctl"), "-D", str(self.data), *args],
                       check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self.pg_ctl("-l", str(self.log), "-w", "-t", "60", "-o",
                    f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                    f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=200", "start")

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("-m", mode, "-w", "stop")

    def url(self, db: str = "portal") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{db}"

    def createdb(self, name: str) -> None:
        subprocess.run(_as_user("postgres") + [_pg_bin("createdb"), "-h", str(self.sock), "-p", str(self.port),
                                               "-U", "postgres", name], check=True, capture_output=True)

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except Exception:
            pass
        shutil.rmtree(self.base, ignore_errors=True)


class MariaDBServer:
    """mariadb-install-db + mariadbd in a private temp dir; user portal@127.0.0.1 with a password."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="labhub-portal-mariadb-"))
        os.chmod(self.base, 0o755)
        self.data = self.base / "data"
        self.socket = self.base / "mysqld.sock"
        self.log = self.base / "mariadbd.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        user = ["--user=mysql"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(self.base, "mysql", "mysql")
        subprocess.run(["mariadb-install-db", "--no-defaults", *user, f"--datadir={self.data}",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True, timeout=180)

    def start(self) -> None:
        user = ["--user=mysql"] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen(
            [shutil.which("mariadbd") or "/usr/sbin/mariadbd", "--no-defaults", *user, f"--datadir={self.data}",
             f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1",
             f"--pid-file={self.base / 'mariadbd.pid'}", "--skip-name-resolve", "--innodb-buffer-pool-size=64M",
             "--innodb-flush-log-at-trx-commit=2", f"--log-error={self.log}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while True:
            try:
                pymysql.connect(unix_socket=str(self.socket), user="root").close()
                break
            except pymysql.err.OperationalError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"mariadbd did not start: {self.log.read_text()[-2000:]}")
                time.sleep(0.2)

    def bootstrap(self) -> None:
        conn = pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True)
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS jupyterhub CHARACTER SET utf8mb4")
            cur.execute(f"CREATE USER IF NOT EXISTS 'portal'@'127.0.0.1' IDENTIFIED BY '{MYSQL_PASSWORD}'")
            cur.execute("GRANT ALL ON jupyterhub.* TO 'portal'@'127.0.0.1'")
        conn.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)
        self.proc = None

    @property
    def url(self) -> str:
        return f"mysql://portal:{MYSQL_PASSWORD}@127.0.0.1:{self.port}/jupyterhub"

    def connect(self):
        return pymysql.connect(host="127.0.0.1", port=self.port, user="portal", password=MYSQL_PASSWORD,
                               database="jupyterhub", autocommit=True)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
