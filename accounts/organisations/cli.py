"""``idp orgs ...``: organisations and their real-name level."""

from __future__ import annotations

import click

from accounts.container import Accounts
from accounts.errors import AccountError
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
