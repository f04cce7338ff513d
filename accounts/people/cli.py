"""``idp users ...``: accounts from the command line."""

from __future__ import annotations

from typing import Any

import click

from accounts.container import Accounts
from accounts.errors import AccountError
from accounts.people.models import User, UserStatus
from accounts.staff.services import DEFAULT_ROLES
from idp.core.cli_support import echo_json, fail, with_app


def _user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.public_id,
        "username": user.username,
        "status": user.status.value,
        "totp": user.has_totp,
        "phone": user.phone_encrypted is not None,
        "created_at": user.created_at.isoformat(),
    }


@click.group("users")
def users() -> None:
    """Create and list accounts."""


@users.command("create")
@click.option("--username", required=True)
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Prompted for (hidden) when omitted.",
)
@click.option("--phone", default=None, help="Mainland mobile number (optional).")
@click.option("--json", "as_json", is_flag=True, help="Print the account as JSON.")
@with_app
def create(username: str, password: str, phone: str | None, as_json: bool) -> None:
    """Create an account."""
    try:
        user = Accounts.of().account_service(actor="cli").register(username, password, phone=phone)
    except AccountError as exc:
        fail(str(exc))
    if as_json:
        echo_json(_user_json(user))
    else:
        click.echo(f"created {user.username} ({user.public_id})")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@with_app
def list_users(as_json: bool) -> None:
    """List accounts."""
    found = [_user_json(user) for user in Accounts.of().account_service().list()]
    if as_json:
        echo_json(found)
        return
    for entry in found:
        click.echo(f"{entry['username']}\t{entry['id']}\t{entry['status']}")


@users.command("disable")
@click.argument("username")
@with_app
def disable(username: str) -> None:
    """Disable an account: it cannot sign in; its sessions end and its tokens are revoked."""
    _set_status(username, UserStatus.DISABLED)


@users.command("enable")
@click.argument("username")
@with_app
def enable(username: str) -> None:
    """Allow a disabled account to sign in again."""
    _set_status(username, UserStatus.ACTIVE)


@users.command("purge-deleted")
@click.option("--json", "as_json", is_flag=True, help='Print {"purged": N}.')
@with_app
def purge_deleted(as_json: bool) -> None:
    """Erase the accounts whose deletion grace period is over (the audit log is kept)."""
    purged = Accounts.of().account_service(actor="cli").purge_deleted()
    if as_json:
        echo_json({"purged": purged})
    else:
        click.echo(f"purged {purged} account(s)")


def _set_status(username: str, status: UserStatus) -> None:
    accounts = Accounts.of().account_service(actor="cli")
    user = accounts.find_by_username(username)
    if user is None:
        fail(f"no account {username!r}")
    accounts.set_status(user, status)
    click.echo(f"{'enabled' if status is UserStatus.ACTIVE else 'disabled'} {user.username}")


def _find(username: str) -> User:
    user = Accounts.of().account_service(actor="cli").find_by_username(username)
    if user is None:
        fail(f"no account {username!r}")
    return user


@users.command("staff")
@click.argument("username")
@click.option("--department", default=None, help="The department the account works for.")
@click.option(
    "--role", "roles", multiple=True, metavar="ROLE",
    help=(
        "counter_verifier (the default), level_administrator, client_administrator, "
        "statistics_viewer."
    ),
)  # fmt: skip
@click.option("--revoke", is_flag=True, help="End the account's staff role.")
@with_app
def users_staff(
    username: str, department: str | None, roles: tuple[str, ...], revoke: bool
) -> None:
    """Make an account government staff of a department with roles (counter_verifier
    unless --role says otherwise), or end that with --revoke. Staff functions also need
    the staff member's own level 4 and a second factor. Audited."""
    if revoke == (department is not None):
        raise click.UsageError("give either --department NAME or --revoke")
    user = _find(username)
    try:
        if revoke:
            previous = Accounts.of().staff_service(actor="cli").revoke(user, actor="cli")
            click.echo(f"{user.username} is no longer staff of {previous}")
        else:
            stored = (
                Accounts.of()
                .staff_service(actor="cli")
                .appoint(user, department or "", actor="cli", roles=roles or DEFAULT_ROLES)
            )
            click.echo(f"{user.username} is staff of {stored} ({', '.join(user.staff_roles)})")
    except AccountError as exc:
        fail(str(exc))


COMMANDS = (users,)
