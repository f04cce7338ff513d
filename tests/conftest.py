"""Fixtures shared by the whole suite.

Storage back ends: every test that uses ``app``/``client``/``services`` runs twice,
on the embedded back end (SQLite file + in-process store) and on the production one
(PostgreSQL + Redis, from ``IDP_TEST_DATABASE_URL`` / ``IDP_TEST_REDIS_URL``). When
those variables are unset the production runs are skipped; when they are set and the
service cannot be reached, the run fails.

The schema always comes from the real Alembic migrations: once per run into a SQLite
template file (copied for each test) and into a fresh PostgreSQL schema (truncated
after each test). Tests commit for real, so several processes can share the data.
"""

from __future__ import annotations

import functools
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import Engine, make_url

from config import Settings
from config.settings import build_settings
from idp.app import Adapters, create_app
from idp.core.clock import FrozenClock
from idp.core.db import build_engine
from idp.core.keys import ensure_keys
from idp.core.runtime import Runtime
from idp.core.schema import upgrade
from idp.core.store import MemoryStore, RedisStore, Store
from idp.models import metadata
from tests.support import AppFactory

PG_URL = os.environ.get("IDP_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("IDP_TEST_REDIS_URL")
TEST_SECRET = "test-secret-" + "x" * 40
RUN_ID = uuid.uuid4().hex[:10]

BACKENDS = ["embedded", "production"]


@dataclass
class Backend:
    name: str
    database_url: str
    redis_url: str | None
    redis_namespace: str

    def make_store(self, data_dir: Path) -> Store:
        if self.redis_url:
            return RedisStore(self.redis_url, namespace=self.redis_namespace)
        return MemoryStore(lock_file=data_dir / "store.lock")


def _fail_unreachable(what: str, url: str, exc: Exception) -> None:
    pytest.fail(
        f"{what} at {url} is unreachable ({exc}); the production back end was "
        "requested, so this is a failure, not a skip",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "idp.sqlite3"
    engine = build_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_schema() -> Iterator[tuple[str, Engine]]:
    if not PG_URL:
        pytest.skip("IDP_TEST_DATABASE_URL is not set: production back end not tested")
    schema = f"idp_test_{RUN_ID}"
    admin = create_engine(PG_URL)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001 - any failure to connect fails the run
        _fail_unreachable("PostgreSQL", PG_URL, exc)
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    url_text = url.render_as_string(hide_password=False)
    engine = build_engine(url_text, pool_size=5)
    upgrade(engine)
    yield url_text, engine
    engine.dispose()
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    if not REDIS_URL:
        pytest.skip("IDP_TEST_REDIS_URL is not set: production back end not tested")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        _fail_unreachable("Redis", REDIS_URL, exc)
    yield client
    client.close()


def _truncate(engine: Engine) -> None:
    tables = [table.name for table in metadata.sorted_tables]
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        connection.execute(
            text("INSERT INTO audit_head (id, seq, mac) VALUES (1, 0, :mac)"), {"mac": "0" * 64}
        )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "embedded":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "idp.sqlite3"
        shutil.copyfile(template, target)
        yield Backend("embedded", f"sqlite:///{target}", None, "")
        return
    url, engine = request.getfixturevalue("pg_schema")
    client: redis.Redis = request.getfixturevalue("redis_client")
    namespace = f"idp-test:{RUN_ID}:{uuid.uuid4().hex[:8]}:"
    assert REDIS_URL is not None
    yield Backend("production", url, REDIS_URL, namespace)
    _truncate(engine)
    keys = list(client.scan_iter(match=namespace + "*", count=1000))
    if keys:
        client.delete(*keys)


@functools.cache
def _signing_material() -> list[tuple[str, str, bytes]]:
    """One ES256 and one RS256 key for the whole run (RSA generation is slow)."""
    from idp.oauth.keys import _generate, _pem

    material = []
    for alg in ("ES256", "RS256"):
        key = _generate(alg)
        material.append((key.thumbprint(), alg, _pem(key)))
    return material


def install_signing_keys(settings: Settings) -> None:
    """What `idp init` does for signing keys, without generating new ones."""
    from datetime import UTC, datetime

    from idp.core.keys import write_private_file
    from idp.oauth.models import KeyStatus, SigningKey

    engine = build_engine(settings.effective_database_url, pool_size=1)
    with engine.begin() as connection:
        for kid, alg, pem in _signing_material():
            path = settings.keys_dir / "signing" / f"{kid}.pem"
            if not path.exists():
                write_private_file(path, pem)
            exists = connection.execute(
                text("SELECT 1 FROM signing_keys WHERE kid = :kid"), {"kid": kid}
            ).first()
            if not exists:
                connection.execute(
                    insert(SigningKey).values(
                        kid=kid,
                        alg=alg,
                        status=KeyStatus.ACTIVE,
                        created_at=datetime.now(UTC),
                    )
                )
    engine.dispose()


def make_settings(tmp_path: Path, backend: Backend, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "issuer": "http://localhost",
        "data_dir": tmp_path,
        "database_url": backend.database_url,
        "redis_url": backend.redis_url,
        "redis_namespace": backend.redis_namespace or "idp:",
        "secret_key": TEST_SECRET,
        "log_format": "text",
        "log_level": "WARNING",
    }
    values.update(overrides)
    settings = build_settings(values)
    ensure_keys(settings)
    install_signing_keys(settings)
    return settings


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change settings for its apps."""
    return {}


@pytest.fixture
def settings(tmp_path: Path, backend: Backend, settings_overrides: dict[str, Any]) -> Settings:
    return make_settings(tmp_path, backend, **settings_overrides)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def store(backend: Backend, tmp_path: Path) -> Iterator[Store]:
    made = backend.make_store(tmp_path)
    yield made
    made.close()


class EnglishClient(FlaskClient):
    """Asks for English pages (assertions read English); tests of the default
    language send their own Accept-Language."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"


@pytest.fixture
def make_app(settings: Settings, store: Store, clock: FrozenClock) -> Iterator[AppFactory]:
    """Builds apps on the test's settings, store and clock; keyword arguments are the
    external services to replace (``Adapters``: ``registry=``, ``face=``, ``sms=``).
    Apps built for one test share its database and store, like workers of one
    deployment."""
    built: list[Flask] = []

    def make(**adapters: Any) -> Flask:
        application = create_app(settings, store=store, clock=clock, adapters=Adapters(**adapters))
        application.config["TESTING"] = True
        application.test_client_class = EnglishClient
        built.append(application)
        return application

    yield make
    for application in built:
        Runtime.of(application).database.dispose()


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
