"""Re-encrypting personal data under a new data key, and removing keys nothing uses.

Every encrypted column follows one convention: its name ends in ``_encrypted`` and its
values are ``DataCipher`` ciphertexts bound to the context ``"<table>.<column>"``. The
columns are therefore found from the metadata, and a column added later is rotated
without changes here (``tests/core/test_data_key_rotation.py`` checks the convention).

``DataKeyRotation.reencrypt`` walks each column in primary-key order, in batches, and
rewrites every value not yet under the active key, committing per batch. A value is
replaced only if it is still the one read (compare and set), so a value the service
changed meanwhile is left alone (it was written under the active key, or the next run
finds it). An interrupted run leaves every value readable, under the old key or the
new one (old keys stay until ``prune``); running again finishes the work. Values that
cannot be decrypted are counted and reported, never overwritten.

Blind indexes (``*_index``) are keyed from the root secret, not from a data key: a data
key rotation leaves them as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Column, CursorResult, MetaData, Table, func, select, update
from sqlalchemy.orm import Session

from idp.core.keys import DataCipher, DecryptionFailed

SUFFIX = "_encrypted"


class KeysInUse(Exception):
    """``prune`` refused: some values are still encrypted under an old key."""

    def __init__(self, in_use: dict[str, int]) -> None:
        self.in_use = in_use
        listed = ", ".join(f"{kid} ({count} values)" for kid, count in sorted(in_use.items()))
        super().__init__(
            f"old data keys are still in use: {listed}; run `idp keys rotate-data --resume`"
        )


@dataclass(frozen=True)
class EncryptedColumn:
    table: Table
    column: Column[str]

    @property
    def context(self) -> str:
        return f"{self.table.name}.{self.column.name}"

    @property
    def key(self) -> Column[object]:
        (primary,) = self.table.primary_key.columns
        return primary


def encrypted_columns(metadata: MetaData) -> list[EncryptedColumn]:
    """Every ``*_encrypted`` column of the schema, in a stable order."""
    found = []
    for table in metadata.sorted_tables:
        for column in table.columns:
            if column.name.endswith(SUFFIX):
                if len(table.primary_key.columns) != 1:
                    raise ValueError(f"{table.name}: re-encryption needs a one-column key")
                found.append(EncryptedColumn(table, column))
    return found


@dataclass
class RotationReport:
    key_id: str
    # per "<table>.<column>": values rewritten under the active key
    rewritten: dict[str, int] = field(default_factory=dict)
    # values that could not be decrypted (altered, or their key is gone), by column
    unreadable: dict[str, list[object]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.rewritten.values())


class DataKeyRotation:
    def __init__(
        self, session: Session, cipher: DataCipher, columns: Iterable[EncryptedColumn]
    ) -> None:
        self._session = session
        self._cipher = cipher
        self._columns = list(columns)

    def usage(self) -> dict[str, int]:
        """How many values each key id encrypts, over every column (``"?"``: values
        under a key that is not loaded)."""
        counts: dict[str, int] = {}
        for target in self._columns:
            total = self._count(target.column.is_not(None), target)
            known = 0
            for kid in self._cipher.key_ids:
                found = self._count(target.column.startswith(f"{kid}.", autoescape=True), target)
                if found:
                    counts[kid] = counts.get(kid, 0) + found
                    known += found
            if total > known:
                counts["?"] = counts.get("?", 0) + total - known
        return counts

    def reencrypt(self, *, batch_size: int = 500) -> RotationReport:
        """Rewrite every value not under the active key, ``batch_size`` rows per
        transaction. Safe to interrupt and to run again."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        kid = self._cipher.active_kid
        report = RotationReport(key_id=kid)
        for target in self._columns:
            report.rewritten[target.context] = self._reencrypt_column(
                target, kid, batch_size, report
            )
        return report

    def prune(self, data_dir: Path) -> list[str]:
        """Delete the key files of old keys once no value uses them; refuses (nothing
        deleted) while any does. The active key always stays."""
        usage = self.usage()
        old = [kid for kid in self._cipher.key_ids if kid != self._cipher.active_kid]
        in_use = {kid: usage[kid] for kid in old if usage.get(kid)}
        if usage.get("?"):
            in_use["?"] = usage["?"]
        if in_use:
            raise KeysInUse(in_use)
        removed = []
        for kid in old:
            path = data_dir / f"{kid}.key"
            if path.exists():
                path.unlink()
                removed.append(kid)
        return removed

    # -- helpers -----------------------------------------------------------------------

    def _count(self, condition: object, target: EncryptedColumn) -> int:
        query = select(func.count()).select_from(target.table).where(condition)  # type: ignore[arg-type]
        return int(self._session.scalar(query) or 0)

    def _reencrypt_column(
        self, target: EncryptedColumn, kid: str, batch_size: int, report: RotationReport
    ) -> int:
        rewritten = 0
        last: object = None
        pending = target.column.is_not(None) & ~target.column.startswith(f"{kid}.", autoescape=True)
        while True:
            query = select(target.key, target.column).where(pending)
            if last is not None:
                query = query.where(target.key > last)
            rows = self._session.execute(query.order_by(target.key).limit(batch_size)).all()
            if not rows:
                return rewritten
            for row_id, value in rows:
                try:
                    plain = self._cipher.decrypt(value, context=target.context)
                except DecryptionFailed:
                    report.unreadable.setdefault(target.context, []).append(row_id)
                    continue
                fresh = self._cipher.encrypt(plain, context=target.context)
                changed = self._session.execute(
                    update(target.table)
                    .where(target.key == row_id, target.column == value)
                    .values({target.column.name: fresh})
                )
                assert isinstance(changed, CursorResult)
                rewritten += changed.rowcount
            self._session.commit()
            last = rows[-1][0]
