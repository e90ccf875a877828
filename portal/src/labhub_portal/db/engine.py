"""Engine and session factory (async_sessionmaker(expire_on_commit=False))."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def make_engine(url: str, *, pool_size: int = 5, echo: bool = False) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, echo=echo)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:  # pragma: no cover - demo only
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    # jit=off: the stats aggregates have inflated row estimates (generate_series per session) and
    # PostgreSQL's JIT then spends seconds compiling them; the portal's queries gain nothing from it.
    return create_async_engine(url, echo=echo, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size,
                               pool_timeout=10, connect_args={"timeout": 10, "command_timeout": 60,
                                                              "server_settings": {"jit": "off"}})


def dialect_name(session: AsyncSession) -> str:
    """The SQL dialect of the engine the session is bound to ("postgresql" or "sqlite")."""
    bind = session.bind
    if bind is None:
        raise RuntimeError("the database session is not bound to an engine")
    return bind.dialect.name


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Request-scoped session: commit on success, roll back on error."""
    factory: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


SessionDep = Annotated[AsyncSession, Depends(get_session)]
