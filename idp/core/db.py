"""SQLAlchemy 2 declarative base, column types and the per-app database handle."""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Integer,
    MetaData,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from config import Settings, redact_url

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every back end (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self,
        value: datetime | None,
        dialect: Dialect,  # noqa: ARG002 - part of SQLAlchemy's signature
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(
        self,
        value: datetime | None,
        dialect: Dialect,  # noqa: ARG002 - part of SQLAlchemy's signature
    ) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-increments INTEGER PRIMARY KEY; elsewhere integers are BIGINT.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {  # noqa: RUF012 - SQLAlchemy's documented hook
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
        int: BigIntId,
    }


def enum_column_values(enum_class: type[enum.Enum]) -> list[str]:
    """Store enums by value, not by member name."""
    return [str(member.value) for member in enum_class]


class DatabaseUnavailable(Exception):
    """The database cannot be reached; the message names the URL without its password."""


def database_lost(exc: BaseException) -> bool:
    """True when ``exc`` says the database cannot be reached or the connection to it
    broke (refused, server gone, restarting, shut down): an outage, not a bug. The pool
    has then already discarded its connections; the next request connects afresh."""
    if isinstance(exc, DatabaseUnavailable | OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def error_summary(exc: BaseException) -> str:
    """One line about a database error: the driver's first line, without the SQL
    statement or its parameters (which may hold personal data)."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return reason[0] if reason else type(exc).__name__


class DatabaseSession(Session):
    """A session whose ``close()`` survives a lost connection. Closing rolls back what
    is open; on a connection the server dropped (restarted, killed) that ROLLBACK fails
    although there is nothing left to undo, and the failure would escape from request
    teardown as a bare 500. The connection is discarded instead (the pool connects
    afresh next time); any other error is raised as usual."""

    def close(self) -> None:
        try:
            super().close()
        except DBAPIError as exc:
            if not database_lost(exc):
                raise
            log.warning("database session closed on a lost connection: %s", error_summary(exc))
            self.invalidate()


class Database:
    """One engine and session factory for one app."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        self.engine = build_engine(url, pool_size=pool_size, echo=echo)
        self.sessions: sessionmaker[Session] = sessionmaker(
            self.engine, class_=DatabaseSession, expire_on_commit=False
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(settings.effective_database_url, pool_size=settings.database_pool_size)

    @classmethod
    def for_connection(cls, url: str, connection: Connection) -> Database:
        """A database whose sessions join an outer transaction (tests roll it back)."""
        database = cls.__new__(cls)
        database.url = url
        database.engine = connection.engine
        database.sessions = sessionmaker(
            bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )
        return database

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def check(self) -> None:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(
                f"cannot reach the database at {redact_url(self.url)}: {error_summary(exc)}"
            ) from None

    @contextmanager
    def session(self) -> Iterator[Session]:
        session = self.sessions()
        try:
            yield session
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def build_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> Engine:
    """``hide_parameters``: errors and logs show statements, never the values (tokens'
    hashes, usernames). No ping when a connection is taken from the pool (a round trip
    on every request): after the server restarts, the first request on a connection it
    closed gets a 503, and that disconnect discards the worker's whole pool, so the
    next requests connect afresh (docs/operations.md)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            echo=echo,
            hide_parameters=True,
            connect_args={"timeout": 15, "check_same_thread": False},
            **({"poolclass": StaticPool} if ":memory:" in url else {}),
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_recycle=3600,
        hide_parameters=True,
        connect_args={"connect_timeout": 5},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def utcnow() -> datetime:
    return datetime.now(UTC)
