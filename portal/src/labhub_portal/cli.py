"""Command line: ``labhub-portal serve | migrate | import-history | record | report-sync | demo``."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import sys


def _serve(args) -> int:
    import uvicorn

    from .app import create_app
    from .config import Settings
    from .db.migrate import upgrade

    overrides = {}
    if args.host:
        overrides["bind_host"] = args.host
    if args.port:
        overrides["bind_port"] = args.port
    settings = Settings(**overrides)  # validated with the address actually bound
    if args.migrate:
        upgrade(settings.database_url)
    app = create_app(settings)
    uvicorn.run(app, host=settings.bind_host, port=settings.bind_port,
                log_level=settings.log_level, proxy_headers=True, forwarded_allow_ips="127.0.0.1")
    return 0


# `migrate --check` exit codes (the portal role relies on them): 0 up to date, 2 error (invalid
# settings, a schema version this package does not know), MIGRATE_PENDING when an upgrade would apply
# revisions. Other failures (e.g. the database is unreachable) exit 1 with a traceback.
MIGRATE_PENDING = 3


def _migrate(args) -> int:
    from .config import Settings
    from .db.migrate import MigrationError, status, upgrade

    settings = Settings()
    if not (args.check or args.json):
        upgrade(settings.database_url, args.revision)
        print(f"migrated to {args.revision}")
        return 0
    try:
        state = status(settings.database_url, args.revision)
    except MigrationError as exc:
        if args.json:
            print(json.dumps({"error": str(exc)}))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(state.as_dict(), sort_keys=True))
    elif state.up_to_date:
        print(f"up to date at {', '.join(state.current) or 'base'}")
    else:
        print(f"pending: {' '.join(state.pending)} (database at {', '.join(state.current) or 'base'})")
    return 0 if state.up_to_date else MIGRATE_PENDING


def _import_history(args) -> int:
    from .config import Settings
    from .history import import_history_file

    settings = Settings()
    try:
        result = asyncio.run(import_history_file(settings, args.file, args.zone, dry_run=args.dry_run))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'would import' if args.dry_run else 'imported'} {result['inserted']} sessions, "
          f"skipped {result['skipped']} already present")
    return 0


def _report_sync(_args) -> int:
    from .config import Settings
    from .db.engine import make_engine, make_sessionmaker
    from .reportsync.service import ReportSync

    settings = Settings()
    if settings.mysql_target is None:
        print("error: PORTAL_MYSQL_URL is not set", file=sys.stderr)
        return 2

    async def run() -> int:
        engine = make_engine(settings.database_url)
        sync = ReportSync(settings, make_sessionmaker(engine))
        try:
            return await sync.run_once()
        finally:
            await sync.close()
            await engine.dispose()

    print(f"synced {asyncio.run(run())} rows")
    return 0


def _record(_args) -> int:
    """One recorder cycle now (what the service does every PORTAL_RECORD_INTERVAL s): sessions of
    pods that are gone are ended at their last observation. The uninstall role runs it after it
    stopped the user servers and the service, so no session is left open in a kept database."""
    from .cluster import cluster_from_settings
    from .config import Settings
    from .db.engine import make_engine, make_sessionmaker
    from .recorder.service import Recorder

    settings = Settings()
    cluster = cluster_from_settings(settings)
    if cluster is None:  # the recorder is off: nothing was recorded, nothing to end
        print("no cluster is configured (PORTAL_KUBECONFIG or PORTAL_KUBE_IN_CLUSTER): the recorder is off",
              file=sys.stderr)
        print(json.dumps({"closed_sessions": 0, "last_error": None, "observed_pods": None, "open_sessions": None,
                          "state": "off"}, sort_keys=True))
        return 0

    async def run() -> dict:
        engine = make_engine(settings.database_url)
        try:
            return await Recorder(settings, make_sessionmaker(engine), cluster).run_once()
        finally:
            await cluster.close()
            await engine.dispose()

    status = asyncio.run(run())
    print(json.dumps({key: status[key] for key in ("state", "observed_pods", "closed_sessions", "open_sessions",
                                                   "last_error")}, sort_keys=True))
    return 0 if status["state"] == "ok" else 1


def _demo(args) -> int:
    return _run_demo(args.demo_args)


def _run_demo(demo_args: list[str]) -> int:
    import inspect

    demo = importlib.import_module("labhub_portal.demo")
    takes_args = bool(inspect.signature(demo.main).parameters)
    return (demo.main(demo_args) if takes_args else demo.main()) or 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labhub-portal", description="Labhub usage portal")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the web service (settings from PORTAL_* / /etc/labhub/portal.env)")
    serve.add_argument("--host", default=None, help="override PORTAL_BIND_HOST")
    serve.add_argument("--port", type=int, default=None, help="override PORTAL_BIND_PORT")
    serve.add_argument("--migrate", action="store_true", help="apply database migrations before serving")
    serve.set_defaults(func=_serve)

    migrate = sub.add_parser(
        "migrate", help="apply database migrations (alembic upgrade)",
        epilog=f"--check exit codes: 0 up to date, {MIGRATE_PENDING} revisions pending, 2 error")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.add_argument("--check", action="store_true",
                         help=f"change nothing: exit 0 when up to date, {MIGRATE_PENDING} and list the pending revisions")
    migrate.add_argument("--json", action="store_true",
                         help="with --check (implied): print {current, target, pending, up_to_date} as JSON")
    migrate.set_defaults(func=_migrate)

    history = sub.add_parser("import-history", help="import the older tool's sessions (CSV of local times)")
    history.add_argument("--zone", required=True, help="IANA zone the file's times are written in, e.g. Asia/Taipei")
    history.add_argument("--dry-run", action="store_true", help="validate and count, write nothing")
    history.add_argument("file", help="CSV file (see README: import-history format)")
    history.set_defaults(func=_import_history)

    record = sub.add_parser("record", help="run one recorder cycle now (end the sessions of pods that are gone); "
                            "prints its result as JSON (state off without a cluster), exit 1 when the cycle failed")
    record.set_defaults(func=_record)

    sync = sub.add_parser("report-sync", help="run one report sync to MySQL now and exit")
    sync.set_defaults(func=_report_sync)

    demo = sub.add_parser("demo", help="serve the portal on demo data (SQLite + simulated cluster)")
    demo.add_argument("demo_args", nargs=argparse.REMAINDER, help="arguments passed to the demo")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "demo" and not {"-h", "--help"} & set(argv[1:2]):
        # argparse's REMAINDER cannot start with an option (demo --port 8781): hand the rest over as is
        return _run_demo(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:  # settings errors etc.: one clear line, non-zero exit
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            print(f"error: invalid settings:\n{exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
