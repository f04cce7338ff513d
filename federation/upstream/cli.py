"""``idp federation ...``: upstream OpenID providers and their links to accounts.

Exit codes: 0 success, 1 refused (the reason on stderr, or ``{"error": ...}`` with
``--json``), 2 usage. With ``--json`` a command prints JSON only; no command prints a
client secret.
"""

from __future__ import annotations

from typing import Any, NoReturn

import click
from pydantic import ValidationError

from accounts.container import Accounts
from config.sections import UpstreamProviderSettings
from federation.upstream.client import PRIVATE_KEY_JWT, UpstreamConfig
from federation.upstream.container import Upstreams
from federation.upstream.services import UpstreamError
from idp.core.cli_support import EXIT_USAGE, echo_json, fail, with_app
from idp.core.runtime import db


def _refuse(message: str, *, as_json: bool) -> NoReturn:
    if as_json:
        echo_json({"error": message})
        raise SystemExit(1)
    fail(message)


def upstream_json(config: UpstreamConfig) -> dict[str, Any]:
    return {
        "name": config.name,
        "display_name": config.display_name,
        "issuer": config.issuer,
        "client_id": config.client_id,
        "token_auth_method": config.token_auth_method,
        "scopes": list(config.scopes),
        "identity_claim": config.identity_claim,
        "identity_type": config.identity_type,
        "level_claim": config.level_claim,
        "level_map": [{"theirs": theirs, "ours": ours} for theirs, ours in config.level_map],
        "link_min_level": config.link_min_level,
        "redirect_uri": Upstreams.of().redirect_uri(config.name),
        # the city's keys, for the upstream to check its client assertions
        "jwks_uri": (
            Upstreams.of().jwks_uri() if config.token_auth_method == PRIVATE_KEY_JWT else None
        ),
        "post_logout_redirect_uri": Upstreams.of().logged_out_uri(config.name),
        "backchannel_logout_uri": Upstreams.of().backchannel_logout_uri(config.name),
        "source": config.source,
    }


def _invalid(exc: ValidationError) -> str:
    """The first problem, named by its field; values are never echoed (secrets)."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "upstream"
    return f"{where.replace('_', '-')}: {error['msg']}"


@click.group("federation")
def federation_group() -> None:
    """Upstream identity platforms users may sign in with, and their links."""


@federation_group.command("add-upstream")
@click.option("--name", required=True, help="Lower case; appears in /federation/NAME/login.")
@click.option("--display-name", default=None, help="What people see it called (default: the name).")
@click.option("--issuer", required=True, help="Exactly as its discovery document says.")
@click.option("--client-id", required=True)
@click.option("--client-secret", default=None, help="Not with private_key_jwt.")
@click.option(
    "--token-auth-method",
    default="client_secret_basic",
    show_default=True,
    type=click.Choice(["client_secret_basic", "client_secret_post", "private_key_jwt"]),
)
@click.option("--scope", default="openid", show_default=True, help="Space-separated.")
@click.option("--identity-claim", default=None, help="A claim name or a dotted path.")
@click.option(
    "--identity-type",
    default=None,
    type=click.Choice(["resident_id", "permit", "foreigner_id", "uscc"]),
)
@click.option("--level-claim", default=None, help="Default: the ID token's acr.")
@click.option(
    "--level-map",
    "level_map",
    multiple=True,
    help="THEIRS=OURS (split at the last =), once per pair.",
)
@click.option("--link-min-level", default=3, show_default=True, type=click.IntRange(1, 5))
@click.option("--json", "as_json", is_flag=True)
@with_app
def add_upstream(
    name: str,
    display_name: str | None,
    issuer: str,
    client_id: str,
    client_secret: str | None,
    token_auth_method: str,
    scope: str,
    identity_claim: str | None,
    identity_type: str | None,
    level_claim: str | None,
    level_map: tuple[str, ...],
    link_min_level: int,
    as_json: bool,
) -> None:
    """Add an upstream OpenID provider (its discovery is fetched and checked now)."""
    try:
        entry = UpstreamProviderSettings.model_validate(
            {
                "name": name,
                "display_name": display_name,
                "issuer": issuer,
                "client_id": client_id,
                "client_secret": client_secret,
                "token_auth_method": token_auth_method,
                "scopes": scope,
                "identity_claim": identity_claim,
                "identity_type": identity_type,
                "level_claim": level_claim,
                "level_map": list(level_map),
                "link_min_level": link_min_level,
            }
        )
    except ValidationError as exc:
        if as_json:
            echo_json({"error": _invalid(exc)})
            raise SystemExit(EXIT_USAGE) from None
        fail(_invalid(exc), EXIT_USAGE)
    registry = Upstreams.of().registry(actor="cli")
    try:
        registry.add(entry)
    except UpstreamError as exc:
        _refuse(exc.message, as_json=as_json)
    config = registry.get(entry.name)
    assert config is not None
    if as_json:
        echo_json(upstream_json(config))
    else:
        click.echo(f"added upstream {config.name}")
        click.echo(f"register this redirect URI there: {Upstreams.of().redirect_uri(config.name)}")
        if config.token_auth_method == PRIVATE_KEY_JWT:
            click.echo(f"and this JWKS URI (private_key_jwt): {Upstreams.of().jwks_uri()}")


@federation_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_app
def list_upstreams(as_json: bool) -> None:
    """The upstreams (the settings file's and the added ones)."""
    upstreams = Upstreams.of().registry().all()
    if as_json:
        echo_json([upstream_json(config) for config in upstreams])
        return
    for config in upstreams:
        click.echo(f"{config.name}\t{config.issuer}\t{config.source}")


@federation_group.command("remove")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@with_app
def remove_upstream(name: str, as_json: bool) -> None:
    """Remove an added upstream (its links stay until the upstream is added again)."""
    try:
        Upstreams.of().registry(actor="cli").remove(name)
    except UpstreamError as exc:
        _refuse(exc.message, as_json=as_json)
    if as_json:
        echo_json({"removed": name})
    else:
        click.echo(f"removed upstream {name}")


@federation_group.command("links")
@click.option("--username", default=None, help="Only this account's links.")
@click.option("--json", "as_json", is_flag=True)
@with_app
def links(username: str | None, as_json: bool) -> None:
    """Upstream subjects linked to accounts."""
    accounts = Accounts.of().account_service()
    user = None
    if username is not None:
        user = accounts.find_by_username(username)
        if user is None:
            _refuse(f"no user named {username!r}", as_json=as_json)
    rows = []
    for link in Upstreams.of().links().links(user):
        owner = user or accounts.get(link.user_id)
        rows.append(
            {
                "upstream": link.upstream,
                "upstream_subject": link.subject,
                "username": owner.username if owner is not None else None,
                "created_at": link.created_at.isoformat(),
            }
        )
    db().commit()
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['upstream']}\t{row['upstream_subject']}\t{row['username']}")


COMMANDS = (federation_group,)
