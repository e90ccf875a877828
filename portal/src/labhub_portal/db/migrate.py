"""Run alembic migrations from the installed package (no alembic.ini needed).

The alembic environment drives an async engine with ``asyncio.run``; when called from code that
already runs an event loop, the migration runs in a helper thread (blocking the caller until done).
"""

from __future__ import annotations

import asyncio
import threading

from dataclasses import dataclass

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import create_async_engine

from ..config import normalise_database_url


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", "labhub_portal:migrations")
    config.set_main_option("sqlalchemy.url", normalise_database_url(database_url).replace("%", "%%"))
    return config


def _outside_loop(fn, *args):
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args)
    results: list = []
    errors: list[BaseException] = []

    def target():
        try:
            results.append(fn(*args))
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="alembic")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]


def upgrade(database_url: str, revision: str = "head") -> None:
    _outside_loop(command.upgrade, alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    _outside_loop(command.downgrade, alembic_config(database_url), revision)


class MigrationError(RuntimeError):
    """The database's schema version cannot be related to this package's migrations."""


@dataclass(frozen=True)
class MigrationStatus:
    current: tuple[str, ...]   # revisions recorded in alembic_version (empty: never migrated)
    target: tuple[str, ...]    # the revision(s) ``revision`` resolves to (``head``: the newest)
    pending: tuple[str, ...]   # revisions an upgrade would apply, in the order it applies them

    @property
    def up_to_date(self) -> bool:
        return not self.pending

    def as_dict(self) -> dict:
        return {"current": list(self.current), "target": list(self.target), "pending": list(self.pending),
                "up_to_date": self.up_to_date}


async def _current_heads(database_url: str) -> tuple[str, ...]:
    engine = create_async_engine(normalise_database_url(database_url))
    try:
        async with engine.connect() as connection:
            # read only: MigrationContext does not create alembic_version just to read it
            return tuple(await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_heads()))
    finally:
        await engine.dispose()


def _status(database_url: str, revision: str) -> MigrationStatus:
    script = ScriptDirectory.from_config(alembic_config(database_url))
    current = asyncio.run(_current_heads(database_url))
    try:
        target = tuple(rev.revision for rev in script.get_revisions(revision))
        # newest first, down to (excluding) what the database has; implicit_base: from empty
        steps = script.revision_map.iterate_revisions(target, current, implicit_base=True)
        pending = tuple(reversed([rev.revision for rev in steps]))
    except Exception as exc:  # alembic's ResolutionError/CommandError/RangeNotAncestorError
        raise MigrationError(f"cannot plan an upgrade from {list(current) or 'an empty schema'} to "
                             f"'{revision}': {exc}") from exc
    return MigrationStatus(current=current, target=target, pending=pending)


def status(database_url: str, revision: str = "head") -> MigrationStatus:
    """What ``upgrade(database_url, revision)`` would apply, without changing anything."""
    return _outside_loop(_status, database_url, revision)
