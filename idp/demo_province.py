"""``idp demo --with-province``: a second instance of this service as the provincial
hall, federated with the demo (the city) both ways.

The province is the same service in its own process (``idp serve``) with its own
issuer, data directory (SQLite file, key files, secret) under ``<data_dir>/province``
and its own acr vocabulary. Its issuer is on the other loopback name than the city's
(``localhost`` for ``127.0.0.1`` and the reverse): a browser keeps cookies per host,
not per port, and the two instances' session cookies share a name.

Both ways, as issue 13 describes them:

- the city is a client of the province, and the province an upstream of the city
  (added like ``idp federation add-upstream``: the province must be running, its
  discovery is fetched now); the city counts the province's level 5 as 4;
- the province is a client of the city with a per-client level map (the city's levels
  in the province's vocabulary, decision 37), and the city an upstream of the province,
  in the province's settings file (its discovery is fetched when first used, so the
  city need not be up yet).

Each side registers, for the other, the single-logout addresses
``<issuer>/federation/<name>/logged-out`` and ``.../backchannel-logout``.

The functions take the apps ``idp.cli`` builds (``idp.app`` is imported only there).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlsplit, urlunsplit
from urllib.request import urlopen

from flask import Flask

from accounts.container import Accounts
from accounts.demo_people import DEMO_PERSON
from accounts.realname.services import DocumentClaim, VerificationMethod
from config import Settings
from config.fields import is_loopback_host
from config.sections import UpstreamProviderSettings
from federation.upstream.container import Upstreams
from federation.upstream.services import UpstreamError
from idp.core.runtime import Runtime, audit_log, db
from idp.oauth.clients import ClientError, Registration
from idp.oauth.server import OAuthRuntime

PORT_OFFSET = 20
# the names each side knows the other by: client id there, upstream name here
CITY = "city"
PROVINCE = "province"
# what each hall's sign-in page calls the other
CITY_NAME = "东莞市网上办事大厅（演示）"  # noqa: RUF001 - Chinese punctuation
PROVINCE_NAME = "广东省网上办事大厅（演示）"  # noqa: RUF001 - Chinese punctuation
USERNAME = "province-demo"
LEVEL = 5  # the province's demo person was seen at its counter
SCOPE = "openid profile realname"
IDENTITY_CLAIM = "verified_claims.claims.document_number"
LEVEL_CLAIM = "verified_claims.verification.assurance_level"
LINK_MIN_LEVEL = 3
# the province's own acr values (its vocabulary), so the city's level map shows
VOCABULARY = "urn:guangdong:idp:acr:"
PROVINCE_ACR = {
    "IDP_ACR_PASSWORD": VOCABULARY + "pwd",
    "IDP_ACR_MFA": VOCABULARY + "mfa",
    "IDP_ACR_LEVEL_PREFIX": VOCABULARY + "level",
}
# our level -> the province's value for it (the city's per-client map for the province)
LEVELS_FOR_PROVINCE = {level: f"{VOCABULARY}level{level}" for level in (2, 3, 4, 5)}
# each hall counts the other's level 5 (a counter or certificate it did not see) as 4
TRUSTED = {2: 2, 3: 3, 4: 4, 5: 4}
START_SECONDS = 60


class ProvinceError(Exception):
    """The province cannot be set up or started (the command prints the message)."""


@dataclass(frozen=True)
class Province:
    """The running province as the banner describes it."""

    issuer: str
    data_dir: Path
    log: Path
    username: str
    password: str
    process: subprocess.Popen[bytes]


def issuer_for(city_issuer: str, port: int) -> str:
    """The province's issuer: plain http on the other loopback name than the city's.
    ``ProvinceError`` when the city's issuer is plain http on another host (an upstream
    on plain http is accepted only on loopback, so the province could not add it)."""
    parts = urlsplit(city_issuer)
    host = parts.hostname or ""
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ProvinceError(
            f"--with-province needs the issuer on a loopback host (http://127.0.0.1:PORT or "
            f"http://localhost:PORT), not {city_issuer}"
        )
    other = "127.0.0.1" if host.lower() == "localhost" else "localhost"
    return urlunsplit(("http", f"{other}:{port}", "", "", ""))


def check_port(port: int) -> None:
    """``ProvinceError`` when the province could not listen on ``port``."""
    try:
        with socket.create_server(("127.0.0.1", port)):
            pass
    except OSError as exc:
        raise ProvinceError(
            f"the province cannot listen on 127.0.0.1:{port} ({exc.strerror}); "
            "choose another port with --province-port"
        ) from None


def data_dir_of(city: Settings) -> Path:
    """The province's data directory, inside the city's."""
    return (city.data_dir / PROVINCE).resolve()


def environment(city: Settings, issuer: str) -> dict[str, str]:
    """The province's ``IDP_*`` settings: its own issuer, data and vocabulary, the
    embedded mode, one worker (the in-process store serves one process)."""
    data_dir = data_dir_of(city)
    return {
        "IDP_ISSUER": issuer,
        "IDP_DATA_DIR": str(data_dir),
        "IDP_CONFIG": str(data_dir / "province.toml"),
        "IDP_WORKERS": "1",
        "IDP_LOG_LEVEL": "WARNING",
        **PROVINCE_ACR,
    }


def write_config(env: Mapping[str, str], city_issuer: str, secret: str) -> None:
    """The province's settings file: the city as an upstream (re-written each run, with
    the secret the city issued this run; 0600, beside the province's keys)."""
    level_map = [f"{value}={TRUSTED[level]}" for level, value in LEVELS_FOR_PROVINCE.items()]
    entry = UpstreamProviderSettings.model_validate(
        {
            "name": CITY,
            "display_name": CITY_NAME,
            "issuer": city_issuer,
            "client_id": PROVINCE,
            "client_secret": secret,
            "scopes": SCOPE,
            "identity_claim": IDENTITY_CLAIM,
            "identity_type": "resident_id",
            "level_claim": LEVEL_CLAIM,
            "level_map": level_map,
            "link_min_level": LINK_MIN_LEVEL,
        }
    )
    values: dict[str, object] = {
        "name": entry.name,
        "display_name": entry.display_name,
        "issuer": entry.issuer,
        "client_id": entry.client_id,
        "client_secret": secret,
        "scopes": " ".join(entry.scopes),
        "identity_claim": entry.identity_claim,
        "identity_type": entry.identity_type,
        "level_claim": entry.level_claim,
        "level_map": level_map,
        "link_min_level": entry.link_min_level,
    }
    # JSON strings and arrays of strings are TOML basic strings and arrays
    lines = ["# written by `idp demo --with-province` on each start", "[[upstream_providers]]"]
    lines += [f"{key} = {json.dumps(value, ensure_ascii=False)}" for key, value in values.items()]
    path = Path(env["IDP_CONFIG"])
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _register(app: Flask, registration: Registration) -> str:
    """(Re-)register a client of ``app``; its new secret."""
    with app.app_context():
        registry = OAuthRuntime.of().clients
        registry.delete(db(), registration.client_id)
        try:
            _, secret = registry.create(db(), registration)
        except ClientError as exc:
            raise ProvinceError(f"client {registration.client_id}: {exc}") from None
        audit_log("demo").record("client.create", subject=f"client:{registration.client_id}")
        db().commit()
    assert secret is not None  # a confidential client always gets one
    return secret


def _registration(client_id: str, name: str, issuer: str, upstream: str) -> Registration:
    """A client for the other hall at ``issuer``, which knows us as its upstream
    ``upstream``: its callback there, and its single-logout addresses."""
    base = f"{issuer.rstrip('/')}/federation/{upstream}"
    return Registration(
        client_id=client_id,
        name=name,
        scope=SCOPE,
        first_party=True,
        document_number_release="full",
        redirect_uris=[base + "/callback"],
        post_logout_redirect_uris=[base + "/logged-out"],
        backchannel_logout_uri=base + "/backchannel-logout",
    )


def register_province_at_city(city: Flask, province_issuer: str) -> str:
    """The province as a client of the city, with its level vocabulary; the secret."""
    registration = _registration(PROVINCE, "Provincial hall 省政务服务", province_issuer, CITY)
    return _register(city, replace(registration, level_map=LEVELS_FOR_PROVINCE))


def register_city_at_province(province: Flask, city_issuer: str) -> str:
    """The city as a client of the province; the secret."""
    return _register(province, _registration(CITY, "City hall 东莞分厅", city_issuer, PROVINCE))


def seed_person(province: Flask) -> str:
    """The province's demo person (the demo registry's person), at level 5 as if seen
    at the province's counter; a new password each run, which is returned."""
    password = "-".join(secrets.token_hex(3) for _ in range(3))
    name, number = DEMO_PERSON
    with province.app_context():
        accounts = Accounts.of().account_service(actor="demo")
        user = accounts.find_by_username(USERNAME)
        if user is None:
            user = accounts.register(USERNAME, password)
        else:
            accounts.set_password(user, password, event="password.reset")
        realname = Accounts.of().realname_service(actor="demo")
        if realname.level(user) < LEVEL:
            realname.record_verification(
                user,
                method=VerificationMethod.COUNTER,
                level=LEVEL,
                source="counter:demo",
                actor="demo",
                document=DocumentClaim.checked(name, number),
            )
        db().commit()
    Runtime.of(province).database.dispose()
    return password


def add_province_upstream(city: Flask, province_issuer: str, secret: str) -> None:
    """The province as an upstream of the city (replacing the last run's), its discovery
    fetched from the running province."""
    entry = UpstreamProviderSettings.model_validate(
        {
            "name": PROVINCE,
            "display_name": PROVINCE_NAME,
            "issuer": province_issuer,
            "client_id": CITY,
            "client_secret": secret,
            "scopes": SCOPE,
            "identity_claim": IDENTITY_CLAIM,
            "identity_type": "resident_id",
            "level_claim": LEVEL_CLAIM,
            "level_map": [f"{theirs}={ours}" for theirs, ours in TRUSTED.items()],
            "link_min_level": LINK_MIN_LEVEL,
        }
    )
    with city.app_context():
        registry = Upstreams.of().registry(actor="demo")
        try:
            if registry.get(PROVINCE) is not None:
                registry.remove(PROVINCE)
            registry.add(entry)
        except UpstreamError as exc:
            raise ProvinceError(exc.message) from None
        db().commit()
    Runtime.of(city).database.dispose()


def start(env: Mapping[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """``idp serve`` for the province, its output in ``log``; returns once it answers
    (``ProvinceError``, with the log's end, when it does not). In its own session:
    Ctrl-C at the terminal reaches the demo alone, which then stops the province with
    one SIGTERM (granian's worker, signalled by the terminal and by its parent both,
    can hang until it is killed)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    base.pop("PROMETHEUS_MULTIPROC_DIR", None)  # its own, made by `idp serve`
    command = [sys.executable, "-m", "idp.cli", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1"]
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - our own command, no shell
            command,
            env={**base, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid = pid_file(Path(env["IDP_DATA_DIR"]))
    pid.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pid.write_text(f"{process.pid}\n")
    try:
        _wait_until_up(process, f"http://127.0.0.1:{port}/healthz", log)
    except BaseException:  # also Ctrl-C meanwhile: never leave it running
        stop(process)
        raise
    return process


def _wait_until_up(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ProvinceError(f"the province stopped at start:\n{_tail(log)}")
        try:
            with urlopen(url, timeout=1):  # noqa: S310 - our own http://127.0.0.1 URL
                return
        except (URLError, OSError):
            time.sleep(0.2)
    raise ProvinceError(f"the province did not answer at {url}:\n{_tail(log)}")


def pid_file(data_dir: Path) -> Path:
    """Where the running province's process id is written (for whoever must stop it if
    the demo itself is killed)."""
    return data_dir / "run" / "province.pid"


def stop_leftover(data_dir: Path, timeout: float = 20) -> int | None:
    """Stop the province an earlier demo left running (that demo was killed, so it could
    not stop it): the process its pid file names, if that is still a province serving
    ``data_dir`` (its command line and environment say so; a reused pid is left
    alone). Its process group gets SIGTERM, then SIGKILL after ``timeout``. Returns
    the pid stopped, or None. Reads /proc: elsewhere nothing is stopped."""
    path = pid_file(data_dir)
    try:
        pid = int(path.read_text())
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (OSError, ValueError):
        path.unlink(missing_ok=True)
        return None
    serving = b"idp.cli" in command and b"serve" in command
    if not serving or f"IDP_DATA_DIR={data_dir}".encode() not in environ:
        path.unlink(missing_ok=True)
        return None
    try:
        os.killpg(pid, signal.SIGTERM)  # started in a session of its own: pgid = pid
    except ProcessLookupError:  # it ended meanwhile
        path.unlink(missing_ok=True)
        return None
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    path.unlink(missing_ok=True)
    return pid


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie's parent has not reaped it)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status.rsplit(")", 1)[-1].split()[0] != "Z"


def stop(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """End the province (granian shuts its worker down on SIGTERM)."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def describe(province: Province, city_issuer: str) -> list[str]:
    """The banner's lines on the province."""
    name, _ = DEMO_PERSON
    at, user = province.issuer, province.username
    credentials = f"    username {user:<10} password {province.password}"
    person = f"(real-name level {LEVEL}: {name}, the demo registry's person)"
    given = f"{TRUSTED[LEVEL]} (the province's {LEVEL}, by the city's level map)"
    return [
        f"  Provincial hall (own issuer, keys and data: {province.data_dir}) at {at}/",
        f"  Sign in at {at}/login with:",
        f"{credentials}   {person}",
        f'  Through the province: at {city_issuer}/login choose "Sign in with {PROVINCE}",',
        f"    sign in there as {user}: the city gives real-name level {given}.",
        f"    A city account at level 3 as {name} is linked; else you choose a new one.",
        f'  With the city at the province: at {at}/login choose "Sign in with {CITY}",',
        "    sign in with a city demo account: the province receives the city's level in",
        f"    its own vocabulary ({VOCABULARY}levelN) and counts 2-4 as such, 5 as 4.",
        f"  The province's log: {province.log}",
    ]
