"""``idp ids|registry|realname ...``: identifier checks, the local registry copy and
real-name levels from the command line."""

from __future__ import annotations

import csv
import sys
from typing import TextIO

import click

from accounts.adapters.registry import KINDS, RegistryImportError, import_records
from accounts.container import Accounts
from accounts.errors import AccountError
from accounts.identifiers import Expect, check
from accounts.people.cli import _find
from accounts.realname.models import Verification
from accounts.staff.services import staff_actor
from idp.core.cli_support import EXIT_REFUSED, echo_json, fail, with_app
from idp.core.runtime import Runtime, audit_log, db


@click.group("ids")
def ids() -> None:
    """Check identifiers: ID numbers, residence permits, USCCs, mobile numbers."""


@ids.command("check")
@click.argument("values", nargs=-1, required=True)
@click.option(
    "--expect",
    type=click.Choice(["person_id", "uscc", "mobile"]),
    default=None,
    help="Check every value as this kind instead of detecting it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per value.")
def check_ids(values: tuple[str, ...], expect: Expect | None, as_json: bool) -> None:
    """Check each VALUE and print the outcome, one line per value.

    Exit status: 0 if every value is valid, 1 if any is not (a well-formed USCC whose
    check character fails counts as not valid: confirm it against the legal-person
    registry).
    """
    results = [check(value, expect=expect) for value in values]
    for result in results:
        if as_json:
            echo_json(result)
            continue
        details = {k: v for k, v in result.items() if k not in {"value", "valid", "kind", "reason"}}
        outcome = "valid" if result["valid"] else f"invalid ({result['reason']})"
        words = " ".join(f"{k}={v}" for k, v in details.items() if v is not None)
        click.echo(f"{result['value']}\t{result['kind']}\t{outcome}\t{words}".rstrip())
    if not all(result["valid"] for result in results):
        sys.exit(EXIT_REFUSED)


@click.group("registry")
def registry_group() -> None:
    """The local copy of the population and legal-person registries."""


@registry_group.command("import")
@click.option("--kind", type=click.Choice(KINDS), required=True)
@click.argument("file", type=click.File("r", encoding="utf-8-sig"))
@with_app
def registry_import(kind: str, file: TextIO) -> None:
    """Replace the local registry's records of KIND with FILE (CSV with the header
    ``number,name``). Only keyed hashes are stored. All or nothing."""
    rt = Runtime.of()
    try:
        count = import_records(db(), rt.keys.cipher, kind, file)
    except (RegistryImportError, UnicodeDecodeError, csv.Error) as exc:
        fail(f"nothing imported: {exc}")
    audit_log("cli").record("registry.import", details={"kind": kind, "records": count})
    db().commit()
    click.echo(f"imported {count} {kind} records")


@click.group("realname")
def realname_group() -> None:
    """Real-name levels of accounts."""


@realname_group.command("status")
@click.argument("username")
@click.option("--json", "as_json", is_flag=True)
@with_app
def realname_status(username: str, as_json: bool) -> None:
    """An account's real-name level and verifications (document number masked)."""
    user = _find(username)
    status = Accounts.of().realname_service(actor="cli").status(user)
    answer = {
        "username": user.username,
        "level": status.level,
        "document_kind": status.document_kind,
        "document_number": status.masked_number,
        "verifications": [_verification_json(v) for v in status.verifications],
    }
    if as_json:
        echo_json(answer)
    else:
        click.echo(f"{user.username}\tlevel {status.level}\t{status.masked_number or '-'}")


@realname_group.command("lower")
@click.argument("username")
@click.option("--to", "to_level", type=click.IntRange(1, 4), required=True)
@click.option("--reason", required=True, help="Recorded with the change and shown to the user.")
@with_app
def realname_lower(username: str, to_level: int, reason: str) -> None:
    """Lower an account's real-name level to at most TO (the verifications above it end)."""
    user = _find(username)
    service = Accounts.of().realname_service(actor="cli")
    ended = service.end_verifications(user, above=to_level, reason=reason, actor="cli")
    click.echo(f"{user.username}: level {service.level(user)} ({ended} verifications ended)")


@realname_group.command("expire")
@click.option("--json", "as_json", is_flag=True)
@with_app
def realname_expire(as_json: bool) -> None:
    """Record the verifications whose time ran out as ended, with an audit event per
    account or organisation (run it daily)."""
    count = Accounts.of().realname_service(actor="cli").record_expiries()
    if as_json:
        echo_json({"expired": count})
    else:
        click.echo(f"{count} verifications expired")


def _verification_json(v: Verification) -> dict[str, object]:
    return {
        "level": v.level,
        "method": v.method.value,
        "verified_at": v.verified_at.isoformat(),
        "expires_at": v.expires_at.isoformat() if v.expires_at else None,
        "source": v.source,
        "ended_at": v.ended_at.isoformat() if v.ended_at else None,
        "end_reason": v.end_reason,
    }


@realname_group.command("counter-verify")
@click.argument("username")
@click.option("--name", required=True, help="The name on the document.")
@click.option("--number", required=True, help="The document number.")
@click.option(
    "--staff", "staff_username", required=True, help="The staff account that examined it."
)
@click.option("--reference", default=None, help="Ticket or serial number (optional).")
@click.option("--json", "as_json", is_flag=True)
@with_app
def realname_counter_verify(
    username: str,
    name: str,
    number: str,
    staff_username: str,
    reference: str | None,
    as_json: bool,
) -> None:
    """Record level 5: STAFF examined USERNAME's original identity document in person."""
    user = _find(username)
    staff = _find(staff_username)
    try:
        verification = (
            Accounts.of()
            .counter_service(actor=staff_actor(staff))
            .verify_at_counter(user, name, number, staff=staff, reference=reference)
        )
    except AccountError as exc:
        fail(str(exc))
    status = Accounts.of().realname_service(actor="cli").status(user)
    if as_json:
        echo_json(
            {
                "username": user.username,
                "level": status.level,
                "document_kind": status.document_kind,
                "document_number": status.masked_number,
                "source": verification.source,
                "actor": verification.actor,
                "expires_at": verification.expires_at.isoformat()
                if verification.expires_at
                else None,
            }
        )
    else:
        click.echo(f"{user.username}\tlevel {status.level}\t{status.masked_number or '-'}")


COMMANDS = (ids, registry_group, realname_group)
