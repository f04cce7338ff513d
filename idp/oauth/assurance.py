"""Real-name levels in the protocol (design.md section 5).

Two separate things reach a relying party:

* ``acr``: what this sign-in satisfied. The values are configurable URIs: two for the
  authentication strength, ``acr_password`` and ``acr_mfa``, and one per real-name
  level, ``acr_level_prefix`` + 2..5, satisfied when the account has at least that
  level. ``AcrPolicy`` maps the sign-in's ``amr`` set (RFC 8176) to the strength by
  ``STRENGTH_TABLE``, the first row that matches wins:

  ====================================  ================  ==========================
  ``amr`` contains                      strength          the sign-ins that give it
  ====================================  ================  ==========================
  ``mfa``                               ``acr_mfa``       two distinct factors; a
                                                          certificate on a key with
                                                          its PIN; an upstream
                                                          provider that said ``mfa``
  ``fed``                               ``acr_password``  an upstream provider that
                                                          did not say ``mfa``
  ``otp``                               ``acr_mfa``       password + one-time code
  ``hwk`` or ``sc``                     ``acr_mfa``       a certificate on a
                                                          hardware key / smart card
  anything else (``pwd``, nothing)      ``acr_password``  a password
  ====================================  ================  ==========================

  A client asks with ``acr_values`` (in order of preference) or an essential ``acr``
  claim; the ID token carries the first requested value that was satisfied, otherwise
  the strength, never a level the account does not have.
* ``verified_claims`` (OpenID Connect for Identity Assurance 1.0), released with the
  scope ``realname``: the trust framework, the level as ``assurance_level``, when and
  how it was verified (evidence), and the verified name, birth date and document number
  (masked unless the client is registered for the full number).

``LevelDemand`` is what an authorization request asks of the account's level; the
authorization endpoint turns an unmet demand into a step-up page, or an error for
``prompt=none``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from accounts.container import Accounts
from accounts.identifiers import check, mask
from accounts.people.models import User
from accounts.realname.models import Verification, VerificationMethod
from accounts.realname.services import Assurance
from idp.core.runtime import Runtime
from idp.oauth.acr import LEVELS, STRENGTH_TABLE, AcrPolicy, ClientLevels, Strength, strength_of
from idp.oauth.clients import ClientInfo

# what the evidence of each method looks like (IDA predefined values: "data" is a check
# against an authoritative record, "bvr" a remote biometric comparison, "vpip" and "pvp"
# an examination of the physical document and of the person, in person)
_CHECKS: dict[VerificationMethod, list[str]] = {
    VerificationMethod.REGISTRY: ["data"],
    VerificationMethod.FACE: ["data", "bvr"],
    VerificationMethod.COUNTER: ["vpip", "pvp"],
}
_DOCUMENT_TYPES = {
    "resident_id": "idcard",
    "hong_kong_residence_permit": "residence_permit",
    "macau_residence_permit": "residence_permit",
    "taiwan_residence_permit": "residence_permit",
    "foreign_permanent_residence_id": "permanent_residence_permit",
    "foreign_permanent_residence_id_2004": "permanent_residence_permit",
}
VERIFIED_CLAIM_NAMES = ("name", "birthdate", "document_type", "document_number")


@dataclass(frozen=True)
class LevelDemand:
    """The level an authorization request needs the account to reach (0: none), and
    whether the client cannot do without it (its registered minimum, or an essential
    acr claim) or merely prefers it (``acr_values``)."""

    level: int
    required: bool

    @classmethod
    def of(
        cls,
        policy: AcrPolicy,
        *,
        client_min_level: int,
        essential: Sequence[str] | None,
        preferred: Sequence[str],
        amr: Sequence[str],
        level: int,
    ) -> LevelDemand:
        requested = list(essential or preferred)
        asked = 0
        if requested and not any(policy.satisfied(v, amr, level) for v in requested):
            levels = [n for n in map(policy.level_of, requested) if n is not None]
            asked = min(levels, default=0)  # the easiest value that would do
        minimum = client_min_level if client_min_level > 1 else 0
        return cls(
            level=max(asked, minimum),
            required=minimum > level or (bool(essential) and asked > 0),
        )

    def unmet(self, level: int) -> bool:
        return self.level > level


def verified_claims(
    assurance: Assurance | None,
    *,
    trust_framework: str,
    full_number: bool,
    requested: Any = None,
    assurance_level: Callable[[int], str] = str,
) -> dict[str, Any] | None:
    """The ``verified_claims`` object for an account, or None when nothing is verified.
    ``requested`` is the client's ``claims`` request for it, if any: when it names the
    claims it wants, only those are released. ``assurance_level`` names a level (the
    client's vocabulary: ``ClientLevels.assurance_level``; by default the number)."""
    if assurance is None:
        return None
    verification = assurance.verification
    when = _timestamp(verification)
    result: dict[str, Any] = {
        "trust_framework": trust_framework,
        "assurance_level": assurance_level(assurance.level),
        "time": when,
    }
    evidence = _evidence(verification, assurance.document_kind, when)
    if evidence:
        result["evidence"] = evidence
    parsed = check(assurance.number)
    claims: dict[str, Any] = {
        "name": assurance.name,
        "document_type": _DOCUMENT_TYPES.get(assurance.document_kind, assurance.document_kind),
        "document_number": assurance.number if full_number else mask(assurance.number),
    }
    if parsed.get("birth_date"):
        claims["birthdate"] = parsed["birth_date"]
    wanted = _requested_claim_names(requested)
    if wanted is not None:
        claims = {name: value for name, value in claims.items() if name in wanted}
        if not claims:
            return None
    return {"verification": result, "claims": claims}


def _timestamp(verification: Verification) -> str:
    return verification.verified_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _evidence(verification: Verification, document_kind: str, when: str) -> list[dict[str, Any]]:
    method = verification.method
    checks = [{"check_method": m} for m in _CHECKS.get(method, [])]
    if verification.evidence_ref and checks:
        checks[0]["txn"] = verification.evidence_ref
    if method in (VerificationMethod.REGISTRY, VerificationMethod.FACE):
        return [
            {
                "type": "electronic_record",
                "check_details": checks,
                "time": when,
                "record": {"type": "population_register"},
            }
        ]
    if method is VerificationMethod.COUNTER:
        return [
            {
                "type": "document",
                "check_details": checks,
                "time": when,
                "document_details": {"type": _DOCUMENT_TYPES.get(document_kind, document_kind)},
            }
        ]
    if method is VerificationMethod.CERTIFICATE:
        return [{"type": "electronic_signature", "time": when}]
    return []  # level 2: self-declared, only the phone was checked


def _requested_claim_names(requested: Any) -> set[str] | None:
    """The claim names a ``verified_claims`` request lists (None: no selection)."""
    if not isinstance(requested, dict):
        return None
    claims = requested.get("claims")
    if not isinstance(claims, dict) or not claims:
        return None
    return {str(name) for name in claims}


def user_claims(
    user: User, client: ClientInfo, claims_request: dict[str, Any] | None, member: str
) -> Callable[[set[str]], dict[str, Any]]:
    """The source of a user's claims for ``idp.oauth.claims.release``: the standard
    claims, and ``verified_claims`` (decrypted) only when it is to be released."""

    def available(names: set[str]) -> dict[str, Any]:
        known = Accounts.of().account_service().standard_claims(user)
        if "verified_claims" in names:
            settings = Runtime.of().settings
            spec = ((claims_request or {}).get(member) or {}).get("verified_claims")
            released = verified_claims(
                Accounts.of().realname_service().assurance(user),
                trust_framework=settings.ida_trust_framework,
                full_number=client.document_number_release == "full",
                requested=spec,
                assurance_level=ClientLevels.of(
                    AcrPolicy.from_settings(settings), client
                ).assurance_level,
            )
            if released is not None:
                known["verified_claims"] = released
        return known

    return available


__all__ = [  # the acr policy lives in idp.oauth.acr (Flask-free, for the token service)
    "LEVELS",
    "STRENGTH_TABLE",
    "VERIFIED_CLAIM_NAMES",
    "AcrPolicy",
    "ClientLevels",
    "LevelDemand",
    "Strength",
    "strength_of",
    "user_claims",
    "verified_claims",
]
