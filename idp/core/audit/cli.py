"""``idp audit ...``: check the audit chain, read recent events."""

from __future__ import annotations

import click

from idp.core.cli_support import echo_json, fail, with_app
from idp.core.runtime import audit_log


@click.group("audit")
def audit() -> None:
    """The security audit log."""


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True)
@with_app
def verify(as_json: bool) -> None:
    """Recompute the hash chain; exit 1 if any event was edited, inserted or deleted."""
    report = audit_log("cli").verify()
    if as_json:
        echo_json({"ok": report.ok, "checked": report.checked, "problems": report.problems})
    elif report.ok:
        click.echo(f"ok: {report.checked} events, chain intact")
    if not report.ok:
        if not as_json:
            for problem in report.problems:
                click.echo(f"problem: {problem}", err=True)
        fail(f"the audit chain is broken ({len(report.problems)} problems)")


@audit.command("tail")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10000))
@with_app
def tail(limit: int) -> None:
    """Print the newest events as JSON lines."""
    for event in reversed(audit_log("cli").recent(limit=limit)):
        echo_json(
            {
                "seq": event.seq,
                "time": event.created_at.isoformat(),
                "event": event.event,
                "outcome": event.outcome,
                "actor": event.actor,
                "subject": event.subject,
                "client_ip": event.client_ip,
                "request_id": event.request_id,
                "details": event.details,
            }
        )


COMMANDS = (audit,)
