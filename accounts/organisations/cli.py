"""``idp orgs ...``: organisations and their real-name level."""

from __future__ import annotations

from typing import Any

import click

from accounts.container import Accounts
from accounts.errors import AccountError
from accounts.organisations.models import Authorisation, AuthorisationStatus, Organisation
from accounts.organisations.services import OrganisationStatus
from accounts.realname.cli import _verification_json
from idp.core.cli_support import echo_json, fail, with_app


@click.group("orgs")
def orgs_group() -> None:
    """Organisations (legal persons) and their real-name level."""


@orgs_group.command("verify")
@click.option("--uscc", required=True, help="The unified social credit code.")
@click.option("--name", required=True, help="The registered name.")
@click.option("--json", "as_json", is_flag=True)
@with_app
def orgs_verify(uscc: str, name: str, as_json: bool) -> None:
    """Match an organisation against the legal-person registry (level 3); creates it
    when new."""
    service = Accounts.of().organisation_service(actor="cli")
    try:
        service.verify_with_registry(name, uscc, actor="cli")
    except AccountError as exc:
        fail(str(exc))
    organisation = service.find(uscc)
    assert organisation is not None  # just recorded
    _echo_org(service.status(organisation), as_json=as_json)


@orgs_group.command("status")
@click.argument("code")
@click.option("--json", "as_json", is_flag=True)
@with_app
def orgs_status(code: str, as_json: bool) -> None:
    """An organisation's level and verifications (code masked)."""
    service = Accounts.of().organisation_service(actor="cli")
    organisation = service.find(code)
    if organisation is None:
        fail("no organisation with this code")
    _echo_org(service.status(organisation), as_json=as_json)


@orgs_group.command("show")
@click.argument("code")
@click.option("--json", "as_json", is_flag=True)
@with_app
def orgs_show(code: str, as_json: bool) -> None:
    """An organisation's profile: name, code (masked), kind, level, members."""
    organisation = _find(code)
    members = Accounts.of().authorisation_service(actor="cli").members(organisation)
    profile = _profile(organisation)
    profile["members"] = {
        "live": sum(1 for row in members if _is_live(row)),
        "pending": sum(1 for row in members if row.status is AuthorisationStatus.PENDING),
        "total": len(members),
    }
    if as_json:
        echo_json(profile)
        return
    click.echo(
        f"{profile['uscc']}\t{profile['kind']}\tlevel {profile['level']}\t{profile['name']}"
        f"\t{profile['members']['live']} live authorisations"
    )


@orgs_group.command("list")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@with_app
def orgs_list(limit: int, as_json: bool) -> None:
    """Every organisation the platform knows (codes masked), oldest first."""
    organisations = Accounts.of().organisation_service(actor="cli").all(limit=limit)
    profiles = [_profile(organisation) for organisation in organisations]
    if as_json:
        echo_json(profiles)
        return
    for p in profiles:
        click.echo(f"{p['id']}\t{p['uscc']}\t{p['kind']}\tlevel {p['level']}\t{p['name']}")


@orgs_group.command("members")
@click.argument("code")
@click.option("--json", "as_json", is_flag=True)
@with_app
def orgs_members(code: str, as_json: bool) -> None:
    """An organisation's authorisations, live or not, newest first: role, status, scope,
    dates and the account (an invitation by document number names none)."""
    organisation = _find(code)
    accounts = Accounts.of().account_service(actor="cli")
    rows: list[dict[str, Any]] = []
    for row in Accounts.of().authorisation_service(actor="cli").members(organisation):
        holder = accounts.get(row.user_id) if row.user_id is not None else None
        rows.append(
            {
                "id": row.public_id,
                "username": holder.username if holder is not None else None,
                "role": row.role.value,
                "status": row.status.value,
                "live": _is_live(row),
                "all_services": row.all_services,
                "clients": list(row.clients),
                "scopes": list(row.scopes),
                "starts_at": row.starts_at.isoformat(),
                "ends_at": row.ends_at.isoformat() if row.ends_at else None,
                "confirmed_at": row.confirmed_at.isoformat() if row.confirmed_at else None,
                "ended_at": row.ended_at.isoformat() if row.ended_at else None,
                "end_reason": row.end_reason,
            }
        )
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        scope = "all" if r["all_services"] else ",".join(r["clients"])
        click.echo(
            f"{r['id']}\t{r['role']}\t{r['status']}\t{r['username'] or '-'}\t{scope}"
            f"\t{r['starts_at']}\t{r['ends_at'] or '-'}"
        )


def _find(code: str) -> Organisation:
    """The organisation with this code; exit 1 (code invalid or unknown) otherwise."""
    service = Accounts.of().organisation_service(actor="cli")
    if service.uscc_index(code) is None:
        fail("not a unified social credit code")
    organisation = service.find(code)
    if organisation is None:
        fail("no organisation with this code")
    return organisation


def _is_live(row: Authorisation) -> bool:
    return Accounts.of().authorisation_service(actor="cli").is_live(row)


def _profile(organisation: Organisation) -> dict[str, Any]:
    status = Accounts.of().organisation_service(actor="cli").status(organisation)
    return {
        "id": status.public_id,
        "uscc": status.masked_uscc,
        "name": status.name,
        "kind": organisation.kind.value,
        "level": status.level,
    }


def _echo_org(status: OrganisationStatus, *, as_json: bool) -> None:
    if not as_json:
        click.echo(f"{status.masked_uscc}\tlevel {status.level}\t{status.name}")
        return
    echo_json(
        {
            "id": status.public_id,
            "uscc": status.masked_uscc,
            "name": status.name,
            "level": status.level,
            "verifications": [_verification_json(v) for v in status.verifications],
        }
    )


COMMANDS = (orgs_group,)
