"""The population and legal-person registries, as the verification services see them.

``Registry`` is the interface: does this document number belong to this name? The
answer is a match, a mismatch (the number exists under another name) or not found;
``RegistryUnavailable`` when the registry cannot answer (down, slow, refusing us).

``LocalRegistry`` answers from ``registry_records``, a local copy loaded with
``idp registry import`` for the embedded mode and the tests. It holds keyed hashes of
the numbers and names only, so a copy of the database does not leak the registry.
``HttpRegistry`` asks the registry service over HTTP (``accounts.remote``; the wire
contract is in docs/architecture.md).
"""

from __future__ import annotations

import csv
import enum
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from accounts.identifiers import Expect, check
from accounts.realname.models import RegistryRecord
from config import redact_url
from idp.core.keys import DataCipher
from idp.core.remote import MalformedAnswer, RemoteUnavailable, SignedClient, optional_text

NUMBER_INDEX = "document-number"
NAME_INDEX = "registry-name"
KINDS = ("person", "organisation")


class Answer(enum.StrEnum):
    MATCH = "match"
    MISMATCH = "mismatch"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class RegistryResult:
    answer: Answer
    # the registry's reference for this query (kept as evidence), if it gives one
    reference: str | None = None
    # an organisation's legal representative as the registry names them: the keyed
    # hash (``NUMBER_INDEX``) of their document number, compared with the one an
    # account's confirmed identity holds; None when the registry names nobody
    representative_index: str | None = None


class RegistryUnavailable(Exception):
    """The registry could not answer; the reason is for operators (no personal data)."""


class Registry(Protocol):
    source: str

    def match(self, kind: str, number: str, name: str) -> RegistryResult:
        """``kind`` "person" (an ID number) or "organisation" (a USCC); ``number`` as
        normalised by ``accounts.identifiers``; ``name`` as the user typed it."""
        ...


def normalise_name(name: str) -> str:
    """Names compare after NFKC, without spaces or middle dots' variants."""
    folded = unicodedata.normalize("NFKC", name)
    return "".join(ch for ch in folded if not ch.isspace()).replace("•", "·")


class LocalRegistry:
    source = "registry:local"

    def __init__(self, session: Session, cipher: DataCipher) -> None:
        self._session = session
        self._cipher = cipher

    def match(self, kind: str, number: str, name: str) -> RegistryResult:
        found = self._session.execute(
            select(RegistryRecord.name_index, RegistryRecord.representative_index).where(
                RegistryRecord.kind == kind,
                RegistryRecord.number_index
                == self._cipher.blind_index(number, purpose=NUMBER_INDEX),
            )
        ).first()
        if found is None:
            return RegistryResult(Answer.NOT_FOUND)
        given = self._cipher.blind_index(normalise_name(name), purpose=NAME_INDEX)
        if given != found.name_index:
            return RegistryResult(Answer.MISMATCH)
        return RegistryResult(Answer.MATCH, representative_index=found.representative_index)


class HttpRegistry:
    """The registry service: ``POST <registry_url>/v1/match`` with
    ``{"kind", "number", "name"}``, answered by ``{"answer": "match" | "mismatch" |
    "not_found", "reference": str | null}`` and, for an organisation that matched,
    ``"representative": str | null`` (the legal representative's document number,
    kept only as its keyed hash). Anything else is ``RegistryUnavailable``."""

    def __init__(self, client: SignedClient, cipher: DataCipher | None = None) -> None:
        self._client = client
        self._cipher = cipher
        self.source = ("registry:" + redact_url(client.service.url))[:200]  # Verification.source

    def match(self, kind: str, number: str, name: str) -> RegistryResult:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        payload = {"kind": kind, "number": number, "name": name}
        try:
            return self._client.post_json("/v1/match", payload, self._result)
        except RemoteUnavailable as exc:
            raise RegistryUnavailable(str(exc)) from None

    def _result(self, answer: Any) -> RegistryResult:
        result = _registry_result(answer)
        representative = optional_text(answer, "representative")
        if representative is None or result.answer is not Answer.MATCH or self._cipher is None:
            return result
        checked = check(representative, expect="person_id")
        if not checked["valid"]:
            raise MalformedAnswer("representative")
        index = self._cipher.blind_index(str(checked["normalized"]), purpose=NUMBER_INDEX)
        return RegistryResult(result.answer, result.reference, index)


def _registry_result(answer: Any) -> RegistryResult:
    if not isinstance(answer, dict):
        raise MalformedAnswer("not an object")
    value = answer.get("answer")
    if not isinstance(value, str) or value not in set(Answer):
        raise MalformedAnswer("answer")
    return RegistryResult(Answer(value), optional_text(answer, "reference"))


class RegistryImportError(ValueError):
    """A line of the import file is unusable; nothing was imported."""


def import_records(session: Session, cipher: DataCipher, kind: str, rows: Iterable[str]) -> int:
    """Replace the local registry's records of ``kind`` with those of a CSV file with a
    header ``number,name`` (organisations: optionally ``representative``, the legal
    representative's document number). All or nothing: the first bad line stops the
    import."""
    if kind not in KINDS:
        raise RegistryImportError(f"kind must be one of {', '.join(KINDS)}")
    reader = csv.DictReader(rows)
    if reader.fieldnames is None or {"number", "name"} - set(reader.fieldnames):
        raise RegistryImportError("the file needs a header line with the columns number,name")
    expect: Expect = "person_id" if kind == "person" else "uscc"
    records: dict[str, tuple[str, str | None]] = {}
    for line, row in enumerate(reader, start=2):
        result = check(row.get("number") or "", expect=expect)
        name = normalise_name(row.get("name") or "")
        if not result["valid"] and result["reason"] != "check_failed_confirm_with_registry":
            raise RegistryImportError(f"line {line}: the number is not valid ({result['reason']})")
        if not name:
            raise RegistryImportError(f"line {line}: the name is empty")
        number = str(result.get("normalized") or "")
        if not number:
            raise RegistryImportError(f"line {line}: the number is not valid")
        representative = _representative(kind, row.get("representative") or "", line)
        records[cipher.blind_index(number, purpose=NUMBER_INDEX)] = (
            cipher.blind_index(name, purpose=NAME_INDEX),
            None
            if representative is None
            else cipher.blind_index(representative, purpose=NUMBER_INDEX),
        )
    session.execute(delete(RegistryRecord).where(RegistryRecord.kind == kind))
    session.add_all(
        RegistryRecord(
            kind=kind,
            number_index=number_index,
            name_index=name_index,
            representative_index=representative_index,
        )
        for number_index, (name_index, representative_index) in records.items()
    )
    session.commit()
    return len(records)


def _representative(kind: str, value: str, line: int) -> str | None:
    """An organisation's legal representative's document number, normalised."""
    if not value.strip():
        return None
    if kind != "organisation":
        raise RegistryImportError(f"line {line}: only an organisation has a representative")
    checked = check(value, expect="person_id")
    if not checked["valid"]:
        raise RegistryImportError(
            f"line {line}: the representative's number is not valid ({checked['reason']})"
        )
    return str(checked["normalized"])
