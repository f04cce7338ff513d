"""The ``idp`` command (also reachable as ``flask --app wsgi``).

Exit codes: 0 success, 1 a refused operation or unreachable dependency, 2 usage or
invalid settings. ``idp.app`` alone is imported inside the commands that build an app
(start-up order, not a cycle): ``serve`` must set up Prometheus' multi-process directory
before ``prometheus_client`` (imported by the app's metrics) is first imported.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import secrets
import signal
import socket
import sys
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pyotp
from flask import Flask
from flask.cli import ScriptInfo

from accounts import COMMANDS as ACCOUNTS
from accounts.adapters.registry import import_records
from accounts.container import Accounts
from accounts.demo_people import DEMO_PERSON
from config import Settings, SettingsError, load_settings, redact_url
from config.settings import env_name
from federation import COMMANDS as FEDERATION
from idp import demo_province
from idp.core.audit.cli import COMMANDS as AUDIT
from idp.core.cli_support import EXIT_USAGE, echo_json, fail
from idp.core.clock import SystemClock
from idp.core.db import Database, DatabaseUnavailable
from idp.core.keys import KeysMissing, ensure_keys, load_keys
from idp.core.runtime import Runtime, db
from idp.core.schema import pending_migrations, upgrade
from idp.core.store import RedisStore, StoreUnavailable
from idp.demo.rp import RelyingParty, serve_rp
from idp.demo_province import Province
from idp.oauth.cli import COMMANDS as OAUTH
from idp.oauth.clients import Registration
from idp.oauth.keys import SigningKeys
from idp.oauth.server import OAuthRuntime
from idp.server import prepare_metrics_dir
from idp.server import serve as run
from pki.cli import COMMANDS as PKI
from pki.container import Pki
from pki.demo import (
    DEMO_CAS,
    SERVICES_PORT_OFFSET,
    DemoPkiError,
    default_directory,
    default_services_url,
    serve_demo_ca_services,
)
from pki.demo import run as run_pki_demo
from pki.demo_cli import describe as describe_pki_demo

DEMO_USERS = ("demo", "demo-mfa")
DEMO_REGISTRY = f"number,name\n{DEMO_PERSON[1]},{DEMO_PERSON[0]}\n"


def demo_organisations() -> str:
    """The demo PKI's enterprises for the legal-person registry copy: the demo person is
    their legal representative (so, at level 3, they can claim one)."""
    rows = {
        holder.identifier: holder.name
        for ca in DEMO_CAS
        for holder in ca.holders
        if holder.kind == "organisation"
    }
    lines = [f"{code},{name},{DEMO_PERSON[1]}" for code, name in rows.items()]
    return "number,name,representative\n" + "\n".join(lines) + "\n"


# (client id, name, colour, port offset from the provider's port, minimum real-name
# level): the third one needs level 3, so the demo shows the step-up
DEMO_SERVICES = (
    ("demo-social", "社保服务 Social security", "#1f6feb", 1, 1),
    ("demo-housing", "公积金服务 Housing fund", "#2da44e", 2, 1),
    ("demo-tax", "税务服务 Tax (real-name level 3)", "#9a6700", 3, 3),
)


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(
            os.environ, overrides={k: v for k, v in overrides.items() if v is not None}
        )
    except SettingsError as exc:
        fail(str(exc), EXIT_USAGE)


def build_cli_app() -> Flask:
    """The app for a command, with start-up errors as one line instead of a traceback."""
    from idp.app import StartupError, create_app

    # The embedded-mode banner is for servers; commands stay quiet.
    logging.getLogger("idp.core.store").setLevel(logging.ERROR)
    try:
        return create_app(load_settings(os.environ))
    except SettingsError as exc:
        fail(str(exc), EXIT_USAGE)
    except StartupError as exc:
        fail(str(exc))


@click.group()
@click.version_option(package_name="dongguan-idp")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Dongguan unified identity service."""
    # commands marked with_app build the app from this, when they run
    ctx.obj = ScriptInfo(create_app=build_cli_app, set_debug_flag=False)


def initialise(settings: Settings) -> list[str]:
    """Create the data directory, key files and schema; safe to run again."""

    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    created = ensure_keys(settings)
    database = Database.from_settings(settings)
    try:
        database.check()
    except DatabaseUnavailable as exc:
        fail(str(exc))
    upgrade(database.engine)

    signing = SigningKeys(
        database,
        settings.keys_dir,
        SystemClock(),
        refresh_seconds=1,
        retain_seconds=settings.longest_token_lifetime,
    )
    with database.session() as session:
        created += [f"signing key {kid}" for kid in signing.ensure(session)]
    database.dispose()
    return created


@main.command()
@click.option("--json", "as_json", is_flag=True)
def init(as_json: bool) -> None:
    """Create keys and bring the database schema up to date."""
    settings = _settings()
    created = initialise(settings)
    database = redact_url(settings.effective_database_url)
    if as_json:
        echo_json({"database": database, "created": created})
        return
    for path in created:
        click.echo(f"created {path}")
    click.echo(f"database {database} is up to date")


def preflight(settings: Settings) -> None:
    """Refuse to start what cannot work, with one line saying why."""

    if settings.redis_url is None and settings.workers > 1:
        fail(
            f"IDP_WORKERS={settings.workers} needs a shared store: the in-process store "
            "serves one process only; set IDP_REDIS_URL or use IDP_WORKERS=1"
        )
    try:
        load_keys(settings)
    except KeysMissing as exc:
        fail(str(exc))
    database = Database.from_settings(settings)
    try:
        database.check()
    except DatabaseUnavailable as exc:
        fail(str(exc))
    if pending_migrations(database.engine):
        fail("the database schema is not up to date; run `idp init`")
    database.dispose()
    if settings.redis_url:
        store = RedisStore(settings.redis_url, namespace=settings.redis_namespace)
        try:
            store.ping()
        except StoreUnavailable as exc:
            fail(str(exc))
        store.close()
    _check_remote_files(settings)
    for notice in remote_service_notices(settings):
        click.echo(f"NOTICE: {notice}", err=True)


def _check_remote_files(settings: Settings) -> None:

    if settings.registry_adapter != "http":
        return
    for field in ("registry_client_cert", "registry_client_key", "registry_ca_file"):
        path = getattr(settings, field)
        if path is not None and not os.access(path, os.R_OK):
            fail(f"{env_name(field)}={path} cannot be read")


def remote_service_notices(settings: Settings) -> list[str]:
    """What start-up says loudly about the remote services: the development stand-ins
    in use, and HTTP services whose requests are not signed."""
    notices = []
    if settings.registry_adapter == "local":
        notices.append(
            "registry checks (real-name level 3) are answered by the LOCAL COPY loaded "
            "with `idp registry import`, not by the population registry service"
        )
    if settings.sms_gateway == "development":
        notices.append(
            "SMS messages are NOT SENT, they are written to "
            f"{settings.data_dir / 'sms.log'} (sms_gateway=development)"
        )
    if settings.face_adapter == "development":
        notices.append(
            "face checks are answered by the DEVELOPMENT adapter, which compares no faces "
            "(face_adapter=development)"
        )
    for name, adapter, key in (
        ("registry", settings.registry_adapter, settings.registry_hmac_key),
        ("face", settings.face_adapter, settings.face_hmac_key),
        ("sms_gateway", settings.sms_gateway, settings.sms_gateway_hmac_key),
    ):
        if adapter == "http" and key is None:
            notices.append(
                f"requests to the {name} service are NOT SIGNED: {name}_hmac_key is not set"
            )
    return notices


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", type=click.IntRange(1, 256), default=None, help="Overrides IDP_WORKERS.")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="Overrides IDP_THREADS.")
def serve(host: str, port: int, workers: int | None, threads: int | None) -> None:
    """Serve the application with granian (several worker processes need Redis)."""
    settings = _settings(workers=workers, threads=threads)
    preflight(settings)

    prepare_metrics_dir(settings)
    run(settings, host, port)


def _demo_app(settings: Settings) -> Flask:
    from idp.app import StartupError, create_app

    try:
        return create_app(settings)
    except StartupError as exc:
        fail(str(exc))


def _demo_data(
    app: Flask, settings: Settings, host: str, port: int, pki_url: str
) -> tuple[list[tuple[str, str, str | None]], list[Any], dict[str, Any] | None]:
    """Create (or reset) the demo accounts and the sample services' registrations, and
    make (or re-use) and register the demo PKI (None when it cannot be, said loudly)."""

    made = []
    services = []
    with app.app_context():
        accounts = Accounts.of().account_service(actor="demo")
        for username in DEMO_USERS:
            password = "-".join(secrets.token_hex(3) for _ in range(3))
            user = accounts.find_by_username(username)
            if user is None:
                user = accounts.register(username, password)
            else:
                accounts.set_password(user, password, event="password.reset")
            seed = None
            if username == "demo-mfa":
                totp = Accounts.of().totp_service()
                if user.has_totp:
                    totp.disable(user)
                enrollment = totp.begin_enrollment(user)
                # confirm with the previous step's code, so the current one stays usable
                previous = pyotp.TOTP(enrollment.secret).at(time.time() - 30)
                totp.confirm_enrollment(user, previous)
                seed = enrollment.secret
            made.append((username, password, seed))
        # a fictitious person in the local registry copy, for real-name level 3, and the
        # demo PKI's enterprises, whose legal representative that person is
        import_records(db(), Runtime.of().keys.cipher, "person", io.StringIO(DEMO_REGISTRY))
        import_records(
            db(), Runtime.of().keys.cipher, "organisation", io.StringIO(demo_organisations())
        )
        registry = OAuthRuntime.of().clients
        urls = {cid: f"http://{host}:{port + offset}" for cid, _, _, offset, _ in DEMO_SERVICES}
        for index, (client_id, name, colour, _, min_level) in enumerate(DEMO_SERVICES):
            base = urls[client_id]
            registry.delete(db(), client_id)
            _, secret = registry.create(
                db(),
                Registration(
                    client_id=client_id,
                    name=name,
                    first_party=True,
                    redirect_uris=[base + "/callback"],
                    post_logout_redirect_uris=[base + "/"],
                    backchannel_logout_uri=base + "/backchannel-logout",
                    scope="openid profile realname",
                    min_level=min_level,
                ),
            )
            other_id, other_name, *_ = DEMO_SERVICES[(index + 1) % len(DEMO_SERVICES)]
            services.append(
                RelyingParty(
                    title=name,
                    colour=colour,
                    client_id=client_id,
                    client_secret=secret or "",
                    base_url=base,
                    issuer=settings.issuer,
                    other_title=other_name,
                    other_url=urls[other_id] + "/login",
                )
            )
        db().commit()
        pki = _demo_pki(settings, pki_url)
    Runtime.of(app).database.dispose()
    return made, services, pki


def _demo_pki(settings: Settings, url: str) -> dict[str, Any] | None:
    """``idp pki demo``'s work, in the demo's app context."""
    try:
        report = run_pki_demo(
            Pki.of().service(actor="demo"),
            default_directory(settings.data_dir),
            url,
            clock=Runtime.of().clock,
            commit=db().commit,
        )
        db().commit()
    except DemoPkiError as exc:
        db().rollback()
        click.echo(f"NOTICE: no demo PKI, so no certificate sign-in to try: {exc}", err=True)
        return None
    return report


def _start_demo_ca_services(report: dict[str, Any], host: str) -> BaseProcess | None:
    """The demo CAs' CRLs and OCSP responders, in a daemon process; None (said) when
    their port is taken."""
    port = urlsplit(report["services_url"]).port
    assert port is not None  # the demo PKI's URL always names its port
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        click.echo(
            f"NOTICE: the demo CA services cannot listen on {host}:{port} ({exc.strerror}); "
            "CRL and OCSP checks of the demo certificates will fail",
            err=True,
        )
        return None
    context = multiprocessing.get_context("spawn")
    process = context.Process(
        target=serve_demo_ca_services,
        args=(Path(report["directory"]), host, port),
        daemon=True,
    )
    process.start()
    return process


def _start_sample_services(services: list[Any], host: str) -> None:

    context = multiprocessing.get_context("spawn")
    for service in services:
        port = urlsplit(service.base_url).port
        context.Process(target=serve_rp, args=(service, host, port), daemon=True).start()


def _start_province(city_app: Flask, settings: Settings, port: int) -> Province:
    """The provincial hall: its data (a person at level 5, the city as a client), the
    province as a client and an upstream of the city, and its process, running
    (``ProvinceError`` when it cannot be)."""
    issuer = demo_province.issuer_for(settings.issuer, port)
    env = demo_province.environment(settings, issuer)
    secret = demo_province.register_province_at_city(city_app, issuer)
    demo_province.write_config(env, settings.issuer, secret)
    try:
        province_settings = load_settings(env)
    except SettingsError as exc:
        fail(f"the province's settings: {exc}", EXIT_USAGE)
    initialise(province_settings)
    province_app = _demo_app(province_settings)
    password = demo_province.seed_person(province_app)
    city_secret = demo_province.register_city_at_province(province_app, settings.issuer)
    Runtime.of(province_app).database.dispose()
    log = province_settings.data_dir / "province.log"
    process = demo_province.start(env, port, log)
    try:
        demo_province.add_province_upstream(city_app, issuer, city_secret)
    except BaseException:
        demo_province.stop(process)
        raise
    return Province(
        issuer=issuer,
        data_dir=province_settings.data_dir,
        log=log,
        username=demo_province.USERNAME,
        password=password,
        process=process,
    )


def _exit_on_sigterm(signum: int, frame: object) -> None:  # noqa: ARG001 - a signal handler
    """Until granian takes the signals over: end through ``finally`` (which stops the
    province), not at once."""
    raise SystemExit(128 + signum)


@main.command()
@click.option("--host", default=None, help="Default: the issuer's host.")
@click.option(
    "--port", default=None, type=click.IntRange(1, 65535), help="Default: the issuer's port."
)
@click.option(
    "--pki-port",
    default=None,
    type=click.IntRange(1, 65535),
    help="Where the demo PKI's CRLs and OCSP are served. Default: the port + 10.",
)
@click.option(
    "--with-province",
    is_flag=True,
    help="Also run a second instance as the provincial hall, federated both ways.",
)
@click.option(
    "--province-port",
    default=None,
    type=click.IntRange(1, 65535),
    help="Where the province is served (with --with-province). Default: the port + 20.",
)
def demo(
    host: str | None,
    port: int | None,
    pki_port: int | None,
    with_province: bool,
    province_port: int | None,
) -> None:
    """Initialise the embedded mode, create demo accounts and a demo PKI, and serve."""

    settings = _settings()
    issuer = urlsplit(settings.issuer)
    host = host or issuer.hostname or "127.0.0.1"
    port = port or issuer.port or (443 if issuer.scheme == "https" else 80)
    province_port = province_port or port + demo_province.PORT_OFFSET
    if with_province:  # refused before anything is made
        try:
            demo_province.issuer_for(settings.issuer, province_port)
        except demo_province.ProvinceError as exc:
            fail(str(exc), EXIT_USAGE)
        leftover = demo_province.stop_leftover(demo_province.data_dir_of(settings))
        if leftover is not None:
            click.echo(f"stopped the province an earlier demo left running (pid {leftover})")
        try:
            demo_province.check_port(province_port)
        except demo_province.ProvinceError as exc:
            fail(str(exc))

    prepare_metrics_dir(settings)
    initialise(settings)
    pki_url = default_services_url(settings.issuer, pki_port or port + SERVICES_PORT_OFFSET)
    app = _demo_app(settings)
    accounts, services, pki = _demo_data(app, settings, host, port, pki_url)
    province = None
    if with_province:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            province = _start_province(app, settings, province_port)
        except demo_province.ProvinceError as exc:
            fail(str(exc))
    try:
        _serve_demo(settings, host, port, accounts, services, pki, province)
    finally:
        if province is not None:
            demo_province.stop(province.process)


def _serve_demo(
    settings: Settings,
    host: str,
    port: int,
    accounts: list[tuple[str, str, str | None]],
    services: list[Any],
    pki: dict[str, Any] | None,
    province: Province | None,
) -> None:
    _start_sample_services(services, host)
    served = pki is not None and _start_demo_ca_services(pki, host) is not None
    click.echo("")
    click.echo("=" * 72)
    click.echo(f"  Dongguan unified identity service (demo) at {settings.issuer}/")
    click.echo(f"  Sign in at {settings.issuer}/login with:")
    for username, password, seed in accounts:
        line = f"    username {username:<10} password {password}"
        if seed:
            line += f"   (TOTP seed {seed}; add it to an authenticator app)"
        click.echo(line)
    click.echo("  Sample services sign in through it (single sign-on, single logout):")
    for service in services:
        click.echo(f"    {service.base_url}/   {service.title}")
    click.echo(
        f"  Real-name level 3 at {settings.issuer}/account/realname: name {DEMO_PERSON[0]}, "
        f"number {DEMO_PERSON[1]} (a demo registry entry)."
    )
    first = demo_organisations().splitlines()[1].split(",")
    click.echo(
        f"  At level 3 that person can claim {first[1]} (code {first[0]}) at "
        f"{settings.issuer}/account/organisations and add agents on its page."
    )
    if province is not None:
        for line in demo_province.describe(province, settings.issuer):
            click.echo(line)
    click.echo("  Passwords are new each time the demo starts. Stop with Ctrl-C.")
    click.echo("=" * 72)
    if pki is not None:
        for line in describe_pki_demo(pki, issuer=settings.issuer, served=served):
            click.echo(line)
    click.echo("")
    sys.stdout.flush()
    preflight(settings)
    run(settings, host, port)


for _command in (*ACCOUNTS, *AUDIT, *OAUTH, *PKI, *FEDERATION):
    main.add_command(_command)

if __name__ == "__main__":  # `python -m idp.cli`: how the demo starts the province
    main()
