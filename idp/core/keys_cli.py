"""``idp keys rotate-data`` and ``idp keys prune-data``: the data-encryption keys.

They join the ``idp keys`` group (token-signing keys, ``idp.oauth.cli``) in
``idp.cli``. The operator's procedure is in README.md ("Running in production").
"""

from __future__ import annotations

import click

from idp.core.cli_support import echo_json, fail, with_app
from idp.core.data_keys import DataKeyRotation, KeysInUse, encrypted_columns
from idp.core.keys import DATA_KEYS_DIR, add_data_key
from idp.core.runtime import Runtime, audit_log, db
from idp.core.schema import metadata


def _rotation() -> DataKeyRotation:
    # every model module is imported once the app is built (idp.models)
    return DataKeyRotation(db(), Runtime.of().keys.cipher, encrypted_columns(metadata))


@click.command("rotate-data")
@click.option(
    "--resume",
    is_flag=True,
    help="No new key: re-encrypt what is not yet under the current key "
    "(after an interrupted run, or after --key-only).",
)
@click.option(
    "--key-only",
    is_flag=True,
    help="Create the new key and stop (copy it to every node, then run --resume).",
)
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=500, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@with_app
def rotate_data(resume: bool, key_only: bool, batch_size: int, as_json: bool) -> None:
    """Make a new data-encryption key current and re-encrypt every encrypted column
    with it, in batches (committed one by one; safe to interrupt and run again with
    --resume). Old keys stay until `idp keys prune-data`. Blind indexes do not change."""
    if resume and key_only:
        raise click.UsageError("--resume and --key-only exclude each other")
    rt = Runtime.of()
    cipher = rt.keys.cipher
    created = None
    if not resume:
        path = add_data_key(rt.settings.keys_dir / DATA_KEYS_DIR)
        created = path.stem
        cipher.reload()
        if cipher.active_kid != created:
            fail(f"the new key {created} is not the newest; check the keys directory")
        audit_log("cli").record("keys.data.create", details={"kid": created})
        db().commit()
    if key_only:
        _echo({"created": created, "key_id": cipher.active_kid}, as_json)
        return
    report = _rotation().reencrypt(batch_size=batch_size)
    unreadable = {context: len(ids) for context, ids in report.unreadable.items()}
    audit_log("cli").record(
        "keys.data.reencrypt",
        "failure" if unreadable else "success",
        details={"kid": report.key_id, "rewritten": report.total, "unreadable": unreadable},
    )
    db().commit()
    answer: dict[str, object] = {
        "created": created,
        "key_id": report.key_id,
        "rewritten": report.rewritten,
        "unreadable": report.unreadable,
    }
    if unreadable:
        if as_json:
            echo_json(answer)
        fail(
            "some values could not be decrypted and were left as they are: "
            + ", ".join(f"{context} rows {ids}" for context, ids in report.unreadable.items())
        )
    _echo(answer, as_json)


@click.command("prune-data")
@click.option("--json", "as_json", is_flag=True)
@with_app
def prune_data(as_json: bool) -> None:
    """Delete the files of old data keys that no stored value uses any more; refuses
    (deleting nothing) while any value is still under an old key."""
    rt = Runtime.of()
    try:
        removed = _rotation().prune(rt.settings.keys_dir / DATA_KEYS_DIR)
    except KeysInUse as exc:
        fail(str(exc))
    if removed:
        audit_log("cli").record("keys.data.prune", details={"removed": removed})
        db().commit()
    if as_json:
        echo_json({"removed": removed, "key_id": rt.keys.cipher.active_kid})
    else:
        click.echo(
            f"removed {len(removed)} old data key(s); current key {rt.keys.cipher.active_kid}"
        )


def _echo(answer: dict[str, object], as_json: bool) -> None:
    if as_json:
        echo_json(answer)
        return
    if answer.get("created"):
        click.echo(f"new data key {answer['created']}")
    rewritten = answer.get("rewritten")
    if isinstance(rewritten, dict):
        for context, count in rewritten.items():
            click.echo(f"{context}\t{count} re-encrypted")
    click.echo(f"current data key {answer['key_id']}")
