"""``labhub-portal demo``: the portal on an embedded SQLite database fed by the SIMULATED cluster.

Nothing external is needed.  The demo

* creates a fresh SQLite database (a temporary directory, removed on exit, unless ``--database``),
  migrates it with the portal's alembic migrations,
* seeds departments, users and ``--history-days`` of past sessions by replaying the simulator
  through the portal's own recorder (see :mod:`labhub_portal.demo.seed`),
* serves the normal app (``create_app``) with the simulator as its cluster, so the same recorder
  keeps observing it every ``--record-interval`` seconds while simulated users start and stop
  servers, and stopping pods from the UI deletes them from the simulator.

Authentication: the demo binds to a loopback address only and configures no token and no hub
login, which the portal's settings allow on 127.0.0.1 only; requests then run as the local user
and unsafe requests still need the CSRF token that the pages carry.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..config import LOOPBACK_HOSTS, Settings
from .simulator import SimulatedCluster

log = logging.getLogger("labhub_portal.demo")
# Simulated time between two recorder observations while the history is generated (30 days = 360 cycles).
HISTORY_STEP = timedelta(hours=2)


@dataclass
class DemoOptions:
    host: str = "127.0.0.1"
    port: int = 8780
    database: str | None = None
    history_days: float = 30.0
    record_interval: float = 5.0
    seed: int = 7
    churn: bool = True
    mysql_url: str | None = None
    report_sync_interval: float = 300.0
    timezone: str | None = None
    private_mariadb: bool = False


def demo_settings(options: DemoOptions, database_path: str) -> Settings:
    """Settings of the demo: explicit values, so a stray env file cannot turn the demo into something else."""
    values: dict[str, Any] = {
        "demo": True, "bind_host": options.host, "bind_port": options.port,
        "database_url": f"sqlite+aiosqlite:///{database_path}",
        "record_interval": options.record_interval, "report_sync_interval": options.report_sync_interval,
        # no token and no hub login: allowed on loopback only (Settings refuses it elsewhere)
        "token": None, "hub_api_url": None, "hub_api_token": None, "cookie_secret": None,
        "cookie_secure": False,  # plain HTTP on 127.0.0.1
        "kubeconfig": None, "kube_in_cluster": False, "mysql_url": options.mysql_url,
    }
    if options.timezone:
        values["timezone"] = options.timezone
    # no env file: an installed portal's /etc/labhub/portal.env (0600, service user) is not the demo's
    return Settings(_env_file=None, **values)


def build_simulator(settings: Settings, options: DemoOptions) -> SimulatedCluster:
    return SimulatedCluster(namespace=settings.hub_namespace, seed=options.seed, churn=options.churn,
                            zone=settings.zone, tick_seconds=max(options.record_interval, 1.0),
                            min_running=5)


async def prepare(settings: Settings, cluster: SimulatedCluster, history_days: float) -> int:
    """Seed directory data and history into the (migrated) demo database; returns recorder cycles run."""
    from sqlalchemy import event

    from ..db.engine import make_engine, make_sessionmaker
    from .seed import replay_history, seed_directory

    engine = make_engine(settings.database_url)

    @event.listens_for(engine.sync_engine, "connect")
    def _fast_seed(dbapi_conn, _record):  # throwaway demo data: no fsync per recorder cycle while seeding
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.close()

    try:
        sessionmaker = make_sessionmaker(engine)
        await seed_directory(sessionmaker, cluster)
        if history_days > 0:
            return await replay_history(settings, sessionmaker, cluster, days=history_days, step=HISTORY_STEP)
        cluster.populate()
        return 0
    finally:
        await engine.dispose()


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _plain_keyboard_interrupt():
    """Ctrl-C or SIGTERM stops the demo at once (main() while it starts; build_demo() for other callers).

    (asyncio.run would turn SIGINT into a task cancellation, which a cancellation-swallowing
    ``asyncio.wait_for`` of Python 3.11 can lose; a handler that raises is not replaced by it.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(_signum, _frame):
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, _raise) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class PortInUse(Exception):
    """The demo's port is taken: said before any data is prepared or any service starts."""


def claim_port(host: str, port: int) -> socket.socket:
    """Bind and listen on host:port now, so a busy port fails at once with a clear message (uvicorn
    would report it only after the app's services started, then wait for them); uvicorn serves on
    this very socket."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise PortInUse(f"cannot listen on {host} port {port}: {exc.strerror or exc}; another program (or another "
                        f"demo) uses it - stop it, or choose another port with --port") from exc
    sock.set_inheritable(True)
    return sock


def build_demo(options: DemoOptions, database_path: str):
    """Migrate and seed the database, then return (settings, simulator, app)."""
    from ..app import create_app
    from ..db.migrate import upgrade

    settings = demo_settings(options, database_path)
    with _plain_keyboard_interrupt():
        upgrade(settings.database_url)
        cluster = build_simulator(settings, options)
        asyncio.run(prepare(settings, cluster, options.history_days))
    app = create_app(settings, cluster=cluster)
    return settings, cluster, app


def parse_args(argv: list[str] | None) -> DemoOptions:
    parser = argparse.ArgumentParser(
        prog="labhub-portal demo",
        description="Serve the portal on demo data: embedded SQLite + a simulated cluster (no Kubernetes, "
                    "no PostgreSQL, nothing external).")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8780, help="port to serve on (default 8780)")
    parser.add_argument("--database", metavar="PATH",
                        help="SQLite file to use and keep (default: a temporary file removed on exit)")
    parser.add_argument("--history-days", type=float, default=30.0,
                        help="days of past usage to generate before serving (default 30)")
    parser.add_argument("--record-interval", type=float, default=5.0,
                        help="seconds between recorder cycles in the demo (default 5)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the simulation")
    parser.add_argument("--no-churn", dest="churn", action="store_false",
                        help="simulated users do not start or stop servers by themselves")
    parser.add_argument("--mysql-url", default=os.environ.get("PORTAL_MYSQL_URL") or None,
                        help="optional MySQL/MariaDB target for the Sync tab (default: $PORTAL_MYSQL_URL; unset = "
                             "report sync off)")
    parser.add_argument("--mariadb", action="store_true",
                        help="start a private, throwaway MariaDB server (Unix socket only; needs the mariadb-server "
                             "package) as the report-sync target, so the Sync tab can write pod_report")
    parser.add_argument("--timezone", default=None, help="IANA zone for display (default: the portal's default)")
    args = parser.parse_args(argv)
    if args.host not in LOOPBACK_HOSTS:
        parser.error(f"--host {args.host!r}: the demo has no authentication and serves loopback addresses only "
                     f"({', '.join(sorted(LOOPBACK_HOSTS))})")
    if not 1 <= args.port <= 65535:
        parser.error("--port must be between 1 and 65535")
    if args.mariadb and args.mysql_url:
        parser.error("--mariadb and --mysql-url/PORTAL_MYSQL_URL exclude each other")
    return DemoOptions(host=args.host, port=args.port, database=args.database, history_days=args.history_days,
                       record_interval=args.record_interval, seed=args.seed, churn=args.churn,
                       mysql_url=args.mysql_url, timezone=args.timezone, private_mariadb=args.mariadb)


def main(argv: list[str] | None = None) -> int:
    """Ctrl-C and SIGTERM stop the demo at any point, with its cleanup (temporary files, private
    MariaDB): while it prepares, at once (KeyboardInterrupt); once it serves, by asking uvicorn to
    shut down (no exception raised into whatever runs at that moment)."""
    with _plain_keyboard_interrupt():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    import uvicorn

    options = parse_args(sys.argv[2:] if argv is None and sys.argv[1:2] == ["demo"] else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tmpdir = tempfile.mkdtemp(prefix="labhub-portal-demo-")
    keep_database = bool(options.database)
    database_path = os.path.abspath(options.database) if options.database else os.path.join(tmpdir, "demo.sqlite3")
    mariadb = None
    try:
        listener = claim_port(options.host, options.port)
    except PortInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        shutil.rmtree(tmpdir, ignore_errors=True)
        return 2
    try:
        if options.private_mariadb:
            from .mariadb import MariaDBUnavailable, PrivateMariaDB

            mariadb = PrivateMariaDB(tmpdir)
            try:
                options.mysql_url = mariadb.start()
            except MariaDBUnavailable as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
        print(f"Preparing demo data ({options.history_days:g} days of simulated history) ...", flush=True)
        settings, _cluster, app = build_demo(options, database_path)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        if threading.current_thread() is threading.main_thread():
            # from here a stop signal asks uvicorn to shut down gracefully (also before it serves); uvicorn
            # captures the signals itself while serving and raises them again here afterwards
            for sig in STOP_SIGNALS:
                signal.signal(sig, lambda _signum, _frame: setattr(server, "should_exit", True))
        host = f"[{options.host}]" if ":" in options.host else options.host
        url = f"http://{host}:{options.port}/"
        print(flush=True)
        print("  Labhub usage portal - DEMO DATA (simulated cluster, embedded SQLite)", flush=True)
        print(f"  Serving on {url}", flush=True)
        print(f"  Database:  {database_path}{'' if keep_database else ' (temporary)'}", flush=True)
        print("  Login:     none - the demo listens on loopback only with authentication off;", flush=True)
        print("             changes still need the CSRF token that the pages send.", flush=True)
        if mariadb is not None:
            sync = f"on -> private MariaDB at {mariadb.socket} (removed on exit)"
        elif settings.mysql_target is not None:
            sync = f"on -> {settings.mysql_target.database}"
        else:
            sync = "off (use --mariadb for a private MariaDB, or --mysql-url)"
        print(f"  Report sync: {sync}", flush=True)
        print("  Stop with Ctrl-C.", flush=True)
        print(flush=True)
        server.run(sockets=[listener])  # on the socket bound at the start
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        listener.close()
        if mariadb is not None:
            mariadb.stop()
        shutil.rmtree(tmpdir, ignore_errors=True)
    return 0
