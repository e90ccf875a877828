"""Run alembic migrations from the installed package (no alembic.ini needed).

The alembic environment drives an async engine with ``asyncio.run``; when called from code that
already runs an event loop, the migration runs in a helper thread (blocking the caller until done).
"""

from __future__ import annotations

import asyncio
import threading

from alembic import command
from alembic.config import Config

from ..config import normalise_database_url


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", "labhub_portal:migrations")
    config.set_main_option("sqlalchemy.url", normalise_database_url(database_url).replace("%", "%%"))
    return config


def _outside_loop(fn, *args) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        fn(*args)
        return
    errors: list[BaseException] = []

    def target():
        try:
            fn(*args)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="alembic")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def upgrade(database_url: str, revision: str = "head") -> None:
    _outside_loop(command.upgrade, alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    _outside_loop(command.downgrade, alembic_config(database_url), revision)
