"""``idp clients ...``, ``idp keys ...`` and ``idp events ...``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click

from idp.core.cli_support import echo_json, fail, with_app
from idp.core.keys_cli import prune_data, rotate_data
from idp.core.runtime import audit_log, db
from idp.oauth import security_events
from idp.oauth.clients import (
    DEFAULT_SCOPE,
    DOCUMENT_NUMBER_RELEASES,
    GRANT_TYPES,
    ClientError,
    Registration,
)
from idp.oauth.server import OAuthRuntime


def parse_level_map(pairs: Sequence[str]) -> dict[int, str]:
    """``--level-map OURS=THEIRS`` values: split at the first ``=`` (OURS is a level,
    THEIRS may be an acr URI holding ``=``); the registry checks the rest."""
    result: dict[int, str] = {}
    for pair in pairs:
        ours, sep, theirs = pair.partition("=")
        if not sep or not ours.strip().isdigit() or not theirs:
            raise click.BadParameter(
                f"{pair!r}: give OURS=THEIRS, OURS a level 1-5", param_hint="--level-map"
            )
        level = int(ours.strip())
        if level in result:
            raise click.BadParameter(f"level {level} is given twice", param_hint="--level-map")
        result[level] = theirs
    return result


@click.group("clients")
def clients() -> None:
    """Register and remove relying parties (OAuth clients)."""


@clients.command("create")
@click.option("--client-id", required=True)
@click.option("--name", default=None, help="Shown to users on the consent page.")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    help="Exact redirect URI (repeat for several).",
)
@click.option("--post-logout-redirect-uri", "post_logout_redirect_uris", multiple=True)
@click.option("--backchannel-logout-uri", default=None)
@click.option(
    "--grant-type",
    "grant_types",
    multiple=True,
    type=click.Choice(GRANT_TYPES),
    help="Default: authorization_code and refresh_token.",
)
@click.option(
    "--scope", default=DEFAULT_SCOPE, show_default=True, help="Scopes the client may ask for."
)
@click.option("--public", is_flag=True, help="No secret (a browser or mobile app; PKCE).")
@click.option("--first-party", is_flag=True, help="Run by the city: no consent page.")
@click.option(
    "--token-endpoint-auth-method",
    default=None,
    type=click.Choice(["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]),
)
@click.option("--jwks-uri", default=None, help="For private_key_jwt.")
@click.option(
    "--jwks",
    "jwks_file",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A JSON file with the client's public keys (private_key_jwt).",
)
@click.option(
    "--id-token-alg", default="ES256", show_default=True, type=click.Choice(["ES256", "RS256"])
)
@click.option(
    "--subject-type", default="public", show_default=True, type=click.Choice(["public", "pairwise"])
)
@click.option("--sector", default=None, help="Pairwise sector (one per department).")
@click.option(
    "--min-level",
    default=1,
    show_default=True,
    type=click.IntRange(1, 5),
    help="Lowest real-name level of the client's users (below it: step-up).",
)
@click.option(
    "--document-number",
    "document_number_release",
    default="masked",
    show_default=True,
    type=click.Choice(DOCUMENT_NUMBER_RELEASES),
    help="How the realname scope releases the identity document number.",
)
@click.option(
    "--require-org",
    is_flag=True,
    help="The client serves organisations only: users must act for one (never a "
    "personal-only token).",
)
@click.option(
    "--exchange-audience",
    "exchange_audiences",
    multiple=True,
    help="A client this one may exchange received tokens for (RFC 8693; repeat for several).",
)
@click.option(
    "--level-map",
    "level_map",
    multiple=True,
    metavar="OURS=THEIRS",
    help="The client's own acr value for one of our real-name levels (1-5), e.g. "
    "4=urn:example:loa:substantial; repeat per level. Its acr and verified_claims use "
    "it; its acr_values are read through it.",
)
@click.option("--json", "as_json", is_flag=True)
@with_app
def create(
    client_id: str,
    name: str | None,
    redirect_uris: tuple[str, ...],
    post_logout_redirect_uris: tuple[str, ...],
    backchannel_logout_uri: str | None,
    grant_types: tuple[str, ...],
    scope: str,
    public: bool,
    first_party: bool,
    token_endpoint_auth_method: str | None,
    jwks_uri: str | None,
    jwks_file: Path | None,
    id_token_alg: str,
    subject_type: str,
    sector: str | None,
    min_level: int,
    document_number_release: str,
    require_org: bool,
    exchange_audiences: tuple[str, ...],
    level_map: tuple[str, ...],
    as_json: bool,
) -> None:
    """Register a client; prints it, and its secret once."""
    jwks = None
    if jwks_file is not None:
        try:
            jwks = json.loads(jwks_file.read_text())
        except (OSError, ValueError) as exc:
            fail(f"cannot read the JWKS file: {exc}")
    registration = Registration(
        client_id=client_id,
        name=name,
        redirect_uris=redirect_uris,
        post_logout_redirect_uris=post_logout_redirect_uris,
        backchannel_logout_uri=backchannel_logout_uri,
        grant_types=grant_types or ("authorization_code", "refresh_token"),
        scope=scope,
        public=public,
        first_party=first_party,
        token_endpoint_auth_method=token_endpoint_auth_method,
        jwks_uri=jwks_uri,
        jwks=jwks,
        id_token_signed_response_alg=id_token_alg,
        subject_type=subject_type,
        sector_identifier=sector,
        min_level=min_level,
        document_number_release=document_number_release,
        require_org=require_org,
        exchange_audiences=exchange_audiences,
        level_map=parse_level_map(level_map),
    )
    try:
        client, secret = OAuthRuntime.of().clients.create(db(), registration)
    except ClientError as exc:
        fail(str(exc))
    audit_log("cli").record("client.create", subject=f"client:{client.client_id}")
    db().commit()
    output = client.public_json()
    if secret:
        output["client_secret"] = secret
    if as_json:
        echo_json(output)
        return
    click.echo(f"created client {client.client_id}")
    if secret:
        click.echo(f"client secret (shown once): {secret}")


@clients.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_app
def list_clients(as_json: bool) -> None:
    """List registered clients (never their secrets)."""
    found = [client.public_json() for client in OAuthRuntime.of().clients.all(db())]
    if as_json:
        echo_json(found)
        return
    for entry in found:
        click.echo(
            f"{entry['client_id']}\t{entry['token_endpoint_auth_method']}\t"
            f"{' '.join(entry['redirect_uris'])}"
        )


@clients.command("update")
@click.argument("client_id")
@click.option("--min-level", default=None, type=click.IntRange(1, 5))
@click.option(
    "--document-number",
    "document_number_release",
    default=None,
    type=click.Choice(DOCUMENT_NUMBER_RELEASES),
)
@click.option("--scope", default=None, help="Replaces the scopes the client may ask for.")
@click.option(
    "--require-org/--no-require-org",
    default=None,
    help="Whether users must act for an organisation (never a personal-only token).",
)
@click.option(
    "--exchange-audience",
    "exchange_audiences",
    multiple=True,
    help="Replaces the clients this one may exchange tokens for (repeat for several).",
)
@click.option("--no-exchange-audiences", is_flag=True, help="The client may exchange no token.")
@click.option(
    "--level-map",
    "level_map",
    multiple=True,
    metavar="OURS=THEIRS",
    help="The client's own acr value for one of our real-name levels (1-5), e.g. "
    "4=urn:example:loa:substantial; repeat per level; replaces the whole map.",
)
@click.option("--no-level-map", is_flag=True, help="The client uses our acr values again.")
@click.option("--json", "as_json", is_flag=True)
@with_app
def update(
    client_id: str,
    min_level: int | None,
    document_number_release: str | None,
    scope: str | None,
    require_org: bool | None,
    exchange_audiences: tuple[str, ...],
    no_exchange_audiences: bool,
    level_map: tuple[str, ...],
    no_level_map: bool,
    as_json: bool,
) -> None:
    """Change a client's minimum real-name level, document-number release, scopes,
    whether it requires an organisation context, or its exchange audiences."""
    changes: dict[str, object] = {
        name: value
        for name, value in (
            ("min_level", min_level),
            ("document_number_release", document_number_release),
            ("scope", scope),
            ("require_org", require_org),
        )
        if value is not None
    }
    if exchange_audiences and no_exchange_audiences:
        fail("give --exchange-audience or --no-exchange-audiences, not both")
    audiences = () if no_exchange_audiences else exchange_audiences or None
    if audiences is not None:
        changes["exchange_audiences"] = list(audiences)
    if level_map and no_level_map:
        fail("give --level-map or --no-level-map, not both")
    levels = {} if no_level_map else parse_level_map(level_map) if level_map else None
    if levels is not None:
        changes["level_map"] = levels
    if not changes:
        fail(
            "nothing to change (give --min-level, --document-number, --scope or "
            "--require-org/--no-require-org or --exchange-audience or --level-map)"
        )
    try:
        client = OAuthRuntime.of().clients.update(
            db(),
            client_id,
            min_level=min_level,
            document_number_release=document_number_release,
            scope=scope,
            require_org=require_org,
            exchange_audiences=audiences,
            level_map=levels,
        )
    except ClientError as exc:
        fail(str(exc))
    audit_log("cli").record(
        "client.update", subject=f"client:{client_id}", details={"changed": sorted(changes)}
    )
    db().commit()
    if as_json:
        echo_json(client.public_json())
    else:
        click.echo(f"updated client {client_id}: {', '.join(sorted(changes))}")


@clients.command("show")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
@with_app
def show(client_id: str, as_json: bool) -> None:
    """Show one client's registration (never its secret)."""
    client = OAuthRuntime.of().clients.find(db(), client_id)
    if client is None:
        fail(f"no client {client_id!r}")
    entry = client.public_json()
    if as_json:
        echo_json(entry)
        return
    for name, value in entry.items():
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else value
        click.echo(f"{name}: {shown}")


@clients.command("delete")
@click.argument("client_id")
@with_app
def delete(client_id: str) -> None:
    """Remove a client and everything issued to it."""
    if not OAuthRuntime.of().clients.delete(db(), client_id):
        fail(f"no client {client_id!r}")
    audit_log("cli").record("client.delete", subject=f"client:{client_id}")
    db().commit()
    click.echo(f"deleted client {client_id}")


@clients.command("rotate-secret")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
@with_app
def rotate_secret(client_id: str, as_json: bool) -> None:
    """Give a client a new secret (the old one stops working)."""
    try:
        secret = OAuthRuntime.of().clients.rotate_secret(db(), client_id)
    except ClientError as exc:
        fail(str(exc))
    audit_log("cli").record("client.rotate_secret", subject=f"client:{client_id}")
    db().commit()
    if as_json:
        echo_json({"client_id": client_id, "client_secret": secret})
    else:
        click.echo(f"client secret (shown once): {secret}")


@click.group("keys", commands=[rotate_data, prune_data])
def keys() -> None:
    """Token-signing keys and data-encryption keys (rotate-data, prune-data)."""


@keys.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_app
def list_keys(as_json: bool) -> None:
    """List the signing keys and their state."""
    found = OAuthRuntime.of().keys.describe()
    if as_json:
        echo_json(found)
        return
    for entry in found:
        marker = "\tsigning" if entry["signing"] else ""
        click.echo(f"{entry['kid']}\t{entry['alg']}\t{entry['status']}{marker}")


@keys.command("rotate")
@click.option("--json", "as_json", is_flag=True)
@with_app
def rotate(as_json: bool) -> None:
    """Add a new active key per algorithm; the previous ones retire (still published)."""
    created = OAuthRuntime.of().keys.rotate(db())
    audit_log("cli").record("keys.rotate", details={"created": created})
    db().commit()
    if as_json:
        echo_json({"created": created})
    else:
        for kid in created:
            click.echo(f"new signing key {kid}")


@keys.command("prune")
@click.option("--json", "as_json", is_flag=True)
@with_app
def prune(as_json: bool) -> None:
    """Remove retired keys once every token they signed has expired."""
    removed = OAuthRuntime.of().keys.prune(db())
    if removed:
        audit_log("cli").record("keys.prune", details={"removed": removed})
        db().commit()
    if as_json:
        echo_json({"removed": removed})
    else:
        click.echo(f"removed {len(removed)} retired key(s)")


@click.group("events")
def events() -> None:
    """Security Event Tokens exchanged with the peers (RFC 8417 / 8935)."""


@events.command("sent")
@click.option("--failed", is_flag=True, help="Only those recorded as failed.")
@click.option("--json", "as_json", is_flag=True)
@with_app
def events_sent(failed: bool, as_json: bool) -> None:
    """The SETs owed to or pushed to the peers, and how their delivery went."""
    rows = [security_events.as_json(row) for row in security_events.sent(db(), failed_only=failed)]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        state = "delivered" if row["delivered_at"] else "failed" if row["failed_at"] else "owed"
        error = row["last_error"] or ""
        click.echo(f"{row['id']}\t{row['peer']}\t{row['event']}\t{state}\t{error}")


@events.command("received")
@click.option("--json", "as_json", is_flag=True)
@with_app
def events_received(as_json: bool) -> None:
    """The SETs the peers pushed here, and what was done about each."""
    rows = [security_events.as_json(row) for row in security_events.received(db())]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['id']}\t{row['peer']}\t{row['event']}\t{row['outcome']}")


COMMANDS = (clients, keys, events)
