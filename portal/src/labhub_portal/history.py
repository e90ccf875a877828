"""``labhub-portal import-history --zone ZONE FILE``: import the older tool's sessions.

The older tool stored local wall-clock times without a zone.  The CSV (UTF-8, header row) has:

    username,pod_name,started_at,ended_at[,pod_uid,server_name,namespace,image,node,
                                           cpu_request,memory_request,gpu_request,gpu_model]

* ``started_at``/``ended_at``: ``YYYY-MM-DD HH:MM[:SS]`` (or ``T`` separator) in ``--zone``; a value
  that carries its own offset keeps it.  Ambiguous wall times (DST fall-back) take the first
  occurrence; non-existent ones (spring-forward) are rejected.
* ``cpu_request`` in cores, ``memory_request`` as a Kubernetes quantity (``2Gi``) or bytes,
  ``gpu_request`` an integer.
* ``pod_uid`` missing: a stable ``import-<sha1>`` id is derived from user, pod and start, so running
  the import twice inserts nothing the second time.

All rows are validated first; one bad row aborts the import (nothing written).  Imported sessions
are ended (``end_reason='imported'``), count in stats and are picked up by the report sync.
"""

from __future__ import annotations

import csv
import hashlib
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select, text

from .cluster import parse_quantity
from .config import Settings
from .db.engine import dialect_name, make_engine, make_sessionmaker
from .db.models import ContainerSession
from .billing_terms import TERM_COLUMNS, load_calendar
from .recorder.repository import lock_changes, next_change_seq_sqlite

REQUIRED = ("username", "pod_name", "started_at", "ended_at")


def parse_local(value: str, zone: ZoneInfo) -> datetime:
    value = value.strip().replace("T", " ")
    parsed = None
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"):
        try:
            parsed = datetime.strptime(value, fmt)
            break
        except ValueError:
            continue
    if parsed is None:
        parsed = datetime.fromisoformat(value)  # with an explicit offset
        if parsed.tzinfo is None:
            raise ValueError(f"unrecognised time {value!r}")
        return parsed.astimezone(timezone.utc)
    local = parsed.replace(tzinfo=zone, fold=0)
    # Reject wall times that do not exist in the zone (spring-forward gap): they do not round-trip.
    if local.astimezone(timezone.utc).astimezone(zone).replace(tzinfo=None) != parsed:
        raise ValueError(f"{value!r} does not exist in {zone.key} (DST gap)")
    return local.astimezone(timezone.utc)


def parse_file(path: str, zone_name: str) -> list[dict]:
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown zone {zone_name!r}") from exc
    rows, errors = [], []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ValueError(f"header lacks columns: {', '.join(missing)}")
        for number, raw in enumerate(reader, start=2):
            rec = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k}
            try:
                for column in REQUIRED:
                    if not rec.get(column):
                        raise ValueError(f"{column} is empty")
                started = parse_local(rec["started_at"], zone)
                ended = parse_local(rec["ended_at"], zone)
                if ended < started:
                    raise ValueError("ended_at is before started_at")
                memory = parse_quantity(rec["memory_request"]) if rec.get("memory_request") else None
                if rec.get("memory_request") and memory is None:
                    raise ValueError("memory_request is not a quantity")
                uid = rec.get("pod_uid") or "import-" + hashlib.sha1(
                    f"{rec['username']}|{rec['pod_name']}|{started.isoformat()}".encode()).hexdigest()[:32]
                rows.append({
                    "pod_uid": uid, "pod_name": rec["pod_name"], "username": rec["username"],
                    "server_name": rec.get("server_name", ""), "namespace": rec.get("namespace") or "imported",
                    "image": rec.get("image") or None, "node": rec.get("node") or None, "profile": None,
                    "cpu_request": float(rec["cpu_request"]) if rec.get("cpu_request") else None,
                    "cpu_limit": None, "memory_request": int(memory) if memory is not None else None,
                    "memory_limit": None, "gpu_request": int(rec.get("gpu_request") or 0),
                    "gpu_limit": int(rec.get("gpu_request") or 0), "gpu_model": rec.get("gpu_model") or None,
                    "started_at": started, "first_seen_at": started, "last_seen_at": ended, "ended_at": ended,
                    "end_reason": "imported", "unobserved_seconds": 0.0, "source": "import"})
            except ValueError as exc:
                errors.append(f"row {number}: {exc}")
    if errors:
        raise ValueError("; ".join(errors[:20]) + (f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""))
    return rows


async def import_history_file(settings: Settings, path: str, zone: str, dry_run: bool = False) -> dict:
    rows = parse_file(path, zone)
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            async with session.begin():
                await lock_changes(session)
                present = set((await session.execute(select(ContainerSession.pod_uid).where(
                    ContainerSession.pod_uid.in_([r["pod_uid"] for r in rows])))).scalars())
                new = [r for r in rows if r["pod_uid"] not in present]
                if dry_run or not new:
                    return {"inserted": len(new), "skipped": len(rows) - len(new)}
                now = datetime.now(timezone.utc)
                if dialect_name(session) == "postgresql":
                    seqs = (await session.execute(text(
                        "SELECT nextval('container_sessions_change_seq') FROM generate_series(1, :n)"),
                        {"n": len(new)})).scalars().all()
                else:
                    first = await next_change_seq_sqlite(session)
                    seqs = list(range(first, first + len(new)))
                calendar = await load_calendar(session, {r["username"] for r in new})
                for row, seq in zip(new, seqs):
                    terms = calendar.terms(row["username"], row["started_at"], row.get("gpu_model"))
                    session.add(ContainerSession(**row, **{c: getattr(terms, c) for c in TERM_COLUMNS},
                                                 change_seq=seq, created_at=now, updated_at=now))
        return {"inserted": len(new), "skipped": len(rows) - len(new)}
    finally:
        await engine.dispose()
