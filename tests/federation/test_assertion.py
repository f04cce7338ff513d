"""What an upstream's claims count as here: the level through the level map (an acr
URI split at the last ``=``; the ID token's ``acr`` by default), the identity number by
the identifier rules, dotted claim paths; never a level without a valid number."""

from __future__ import annotations

from typing import Any

from config.sections import UpstreamProviderSettings
from federation.upstream.client import UpstreamIdentity
from federation.upstream.services import from_settings, read_assertion

PERSON = "11010519491231002X"


def config(**changes: Any) -> Any:
    entry = {
        "name": "province",
        "issuer": "https://id.gd.gov.cn",
        "client_id": "city",
        "client_secret": "s",
        "identity_claim": "id_number",
        "identity_type": "resident_id",
        "level_map": ["urn:gd:acr:level=3=3", "urn:gd:acr:level=4=4"],
        **changes,
    }
    return from_settings(UpstreamProviderSettings.model_validate(entry))


def identity(**claims: Any) -> UpstreamIdentity:
    return UpstreamIdentity(issuer="https://id.gd.gov.cn", subject="s1", claims=claims)


def test_the_acr_maps_by_default_and_an_acr_uri_splits_at_the_last_equals() -> None:
    read = read_assertion(
        config(), identity(acr="urn:gd:acr:level=4", id_number=PERSON, name="王小丽")
    )
    assert (read.level, read.number, read.kind, read.name) == (4, PERSON, "resident_id", "王小丽")


def test_an_unlisted_level_or_a_bad_number_counts_as_level_1() -> None:
    assert read_assertion(config(), identity(acr="urn:gd:acr:level=5", id_number=PERSON)).level == 1
    bad = read_assertion(
        config(), identity(acr="urn:gd:acr:level=4", id_number="110105194912310021")
    )
    assert (bad.level, bad.number) == (1, None)
    assert read_assertion(config(), identity(acr="urn:gd:acr:level=4")).level == 1
    assert (
        read_assertion(config(), identity(acr=["urn:gd:acr:level=4"], id_number=PERSON)).level == 1
    )


def test_claims_may_be_dotted_paths_with_the_name_beside_the_number() -> None:
    nested = config(
        identity_claim="verified_claims.claims.document_number",
        level_claim="verified_claims.verification.assurance_level",
        level_map=["5=4"],
    )
    claims = {
        "verified_claims": {
            "verification": {"assurance_level": "5"},
            "claims": {"document_number": PERSON, "name": "王小丽"},
        },
        "name": "someone else",
    }
    read = read_assertion(nested, identity(**claims))
    assert (read.level, read.number, read.name) == (4, PERSON, "王小丽")
    assert read.document is not None
    assert read.document.confirmed
