"""The list sections: [[local_cas]], [[upstream_providers]], [[peers]] (decision 26)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from config import SettingsError, load_settings
from config.sections import IdentityRule, LevelMapping, PolicyMapping
from config.settings import build_settings

CONFIG = """
issuer = "https://id.dg.gov.cn"

[[local_cas]]
name = "gdca"
root = "/etc/idp/ca/gdca-root.pem"
intermediates = ["/etc/idp/ca/gdca-sub1.pem", "/etc/idp/ca/gdca-sub2.pem"]
policy_map = ["1.2.156.112562.2.1.1.1=2.16.156.339.1.1.1.2",
              {local = "1.2.156.112562.2.1.1.1", platform = "2.16.156.339.1.1.1.1"}]
identity_rules = ["person:ext:1.2.156.10260.4.1.1", "organisation:subject:organizationIdentifier"]
crl_urls = ["http://crl.gdca.com.cn/gdca.crl"]
ocsp_url = "http://ocsp.gdca.com.cn/"
revocation = "require"

[[local_cas]]
name = "szca"
root = "szca.der"
policy_map = ["1.2.156.1=2.16.156.339.1.1.1.1"]

[[upstream_providers]]
name = "province"
issuer = "https://id.gd.gov.cn/"
client_id = "dongguan"
client_secret = "upstream-s3cret"
scopes = "openid profile realname"
identity_claim = "id_number"
identity_type = "resident_id"
level_claim = "acr"
level_map = ["urn:gd:acr:level=3=3", {theirs = "4", ours = 4}]
link_min_level = 4

[[peers]]
name = "province"
issuer = "https://id.gd.gov.cn/"
set_push_url = "https://id.gd.gov.cn/events"
set_push_token = "push-s3cret"
scim_base_url = "https://id.gd.gov.cn/scim/v2/"
scim_token = "scim-s3cret"
"""
SECRETS = ("upstream-s3cret", "push-s3cret", "scim-s3cret")
CA = {"name": "gdca", "root": "root.pem", "policy_map": ["1.2.156.1=2.16.156.339.1"]}
UPSTREAM = {"name": "province", "issuer": "https://id.gd.gov.cn", "client_id": "dg"}
PEER = {"name": "province", "issuer": "https://id.gd.gov.cn"}


def from_file(tmp_path: Path, text: str, **environ: str) -> Any:
    config = tmp_path / "idp.toml"
    config.write_text(text, encoding="utf-8")
    return load_settings({"IDP_CONFIG": str(config), **environ})


def refusal(values: dict[str, Any]) -> str:
    with pytest.raises(SettingsError) as caught:
        build_settings(values)
    return str(caught.value)


def test_arrays_of_tables_become_typed_sections(tmp_path: Path) -> None:
    settings = from_file(tmp_path, CONFIG)
    gdca, szca = settings.local_cas
    assert gdca.name == "gdca"
    assert gdca.root == Path("/etc/idp/ca/gdca-root.pem")
    assert gdca.intermediates == (
        Path("/etc/idp/ca/gdca-sub1.pem"),
        Path("/etc/idp/ca/gdca-sub2.pem"),
    )
    # one local policy may map to several platform policies; both spellings mean the same
    assert gdca.policy_map == (
        PolicyMapping(local="1.2.156.112562.2.1.1.1", platform="2.16.156.339.1.1.1.2"),
        PolicyMapping(local="1.2.156.112562.2.1.1.1", platform="2.16.156.339.1.1.1.1"),
    )
    assert gdca.identity_rules == (
        IdentityRule(kind="person", source="ext:1.2.156.10260.4.1.1"),
        IdentityRule(kind="organisation", source="subject:organizationIdentifier"),
    )
    assert gdca.identity_rules[0].extension_oid == "1.2.156.10260.4.1.1"
    assert gdca.identity_rules[0].subject_attribute is None
    assert gdca.identity_rules[1].subject_attribute == "organizationIdentifier"
    assert gdca.crl_urls == ("http://crl.gdca.com.cn/gdca.crl",)
    assert gdca.ocsp_url == "http://ocsp.gdca.com.cn"
    assert gdca.revocation == "require"
    assert (szca.intermediates, szca.identity_rules, szca.crl_urls) == ((), (), ())
    assert (szca.ocsp_url, szca.revocation) == (None, "hard")

    (upstream,) = settings.upstream_providers
    # an issuer is compared character for character: kept as written, trailing slash too
    assert upstream.issuer == "https://id.gd.gov.cn/"
    assert isinstance(upstream.client_secret, SecretStr)
    assert upstream.client_secret.get_secret_value() == "upstream-s3cret"
    assert upstream.token_auth_method == "client_secret_basic"
    assert upstream.scopes == ("openid", "profile", "realname")
    assert (upstream.identity_claim, upstream.identity_type) == ("id_number", "resident_id")
    # THEIRS=OURS splits at the last "=" (an acr value may hold one)
    assert upstream.level_map == (
        LevelMapping(theirs="urn:gd:acr:level=3", ours=3),
        LevelMapping(theirs="4", ours=4),
    )
    assert upstream.link_min_level == 4

    (peer,) = settings.peers
    assert peer.set_push_url == "https://id.gd.gov.cn/events"
    assert peer.scim_base_url == "https://id.gd.gov.cn/scim/v2"
    assert peer.scim_token is not None
    assert peer.scim_token.get_secret_value() == "scim-s3cret"


def test_without_lists_the_sections_are_empty() -> None:
    settings = load_settings({})
    assert (settings.local_cas, settings.upstream_providers, settings.peers) == ((), (), ())


def test_sections_survive_a_validated_copy(tmp_path: Path) -> None:
    settings = from_file(tmp_path, CONFIG)
    assert build_settings(settings.model_dump()) == settings
    with pytest.raises(Exception, match="frozen"):
        settings.local_cas[0].name = "other"


@pytest.mark.parametrize(
    ("values", "named"),
    [
        (
            {"local_cas": [CA, {**CA, "name": "b", "ocsp_uri": "http://x"}]},
            "IDP_LOCAL_CAS (local_cas[1].ocsp_uri)",
        ),
        (
            {"upstream_providers": [{**UPSTREAM, "client_secret": "s", "scope": "openid"}]},
            "IDP_UPSTREAM_PROVIDERS (upstream_providers[0].scope)",
        ),
        (
            {"peers": [PEER, {**PEER, "name": "b", "scim_bearer": "scim-s3cret"}]},
            "IDP_PEERS (peers[1].scim_bearer)",
        ),
    ],
)
def test_an_unknown_key_in_a_section_is_refused_by_name(values: dict[str, Any], named: str) -> None:
    message = refusal(values)
    assert f"{named}: unknown key" in message
    assert "scim-s3cret" not in message  # a misspelt secret key is not echoed either


def test_an_unknown_key_in_a_file_section_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"local_cas\[0\]\.crl_url\b.*unknown key"):
        from_file(
            tmp_path,
            '[[local_cas]]\nname = "a"\nroot = "r.pem"\n'
            'policy_map = ["1.2.3=2.16.156.1"]\ncrl_url = "http://crl.example"\n',
        )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"local_cas": [CA, {**CA, "root": "other.pem"}]}, "local_cas[1].name"),
        (
            {"local_cas": [CA, {**CA, "name": "b"}, {**CA, "root": "other.pem"}]},
            "local_cas[2].name): 'gdca' is already used by local_cas[0]",
        ),
        (
            {
                "upstream_providers": [
                    {**UPSTREAM, "client_secret": "s"},
                    {**UPSTREAM, "client_secret": "s", "issuer": "https://other.example"},
                ]
            },
            "upstream_providers[1].name",
        ),
        (
            {
                "upstream_providers": [
                    {**UPSTREAM, "client_secret": "s"},
                    {**UPSTREAM, "client_secret": "s", "name": "other"},
                ]
            },
            "upstream_providers[1].issuer",
        ),
        ({"peers": [PEER, {**PEER, "issuer": "https://other.example"}]}, "peers[1].name"),
        ({"peers": [PEER, {**PEER, "name": "other"}]}, "peers[1].issuer"),
    ],
)
def test_a_name_or_issuer_used_twice_is_refused(values: dict[str, Any], message: str) -> None:
    assert message in refusal(values)


def test_one_name_may_serve_in_different_lists() -> None:
    settings = build_settings(
        {"upstream_providers": [{**UPSTREAM, "client_secret": "s"}], "peers": [PEER]}
    )
    assert settings.upstream_providers[0].name == settings.peers[0].name


@pytest.mark.parametrize(
    ("values", "named", "shown"),
    [
        (
            {"local_cas": [CA, {**CA, "name": "b", "ocsp_url": "ftp://ocsp.example"}]},
            "IDP_LOCAL_CAS (local_cas[1].ocsp_url): must be an http(s) URL",
            "ftp://ocsp.example",
        ),
        (
            {"local_cas": [{**CA, "crl_urls": ["http://crl.example/a.crl", "crl.example"]}]},
            "(local_cas[0].crl_urls[1]): must be an http(s) URL",
            "crl.example",
        ),
        (
            {"peers": [{**PEER, "scim_base_url": "https://u:pa55@id.example", "scim_token": "t"}]},
            "(peers[0].scim_base_url): must not carry credentials",
            "https://***@id.example",
        ),
        (
            {"upstream_providers": [{**UPSTREAM, "issuer": "http://id.gd.gov.cn"}]},
            "(upstream_providers[0].issuer): must be https (plain http only on a loopback",
            "http://id.gd.gov.cn",
        ),
        (
            {"upstream_providers": [{**UPSTREAM, "issuer": "https://id.example?x=1"}]},
            "(upstream_providers[0].issuer): must not have a query",
            "https://id.example?x=1",
        ),
        (
            {"peers": [PEER, {**PEER, "name": "b", "issuer": "id.example"}]},
            "(peers[1].issuer): must be an https URL",
            "id.example",
        ),
    ],
)
def test_a_bad_url_is_refused_naming_its_place(
    values: dict[str, Any], named: str, shown: str
) -> None:
    message = refusal(values)
    assert named in message
    assert f"(got '{shown}')" in message
    assert "pa55" not in message


def test_plain_http_issuers_only_on_loopback() -> None:
    for issuer in ("http://127.0.0.1:9000", "http://[::1]:9000/province", "http://localhost"):
        settings = build_settings(
            {"upstream_providers": [{**UPSTREAM, "issuer": issuer, "client_secret": "s"}]}
        )
        assert settings.upstream_providers[0].issuer == issuer


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({**CA, "policy_map": []}, "(local_cas[0].policy_map): must not be empty"),
        ({**CA, "policy_map": ["1.2.3"]}, "(local_cas[0].policy_map[0]): must be LOCAL_OID="),
        (
            {**CA, "policy_map": ["1.2.3=2.16.156.1", "1.2.3=x.1"]},
            "(local_cas[0].policy_map[1].platform): must be an object identifier",
        ),
        (
            {**CA, "policy_map": ["1.2.3=2.16.156.1", "1.2.3=2.16.156.1"]},
            "(local_cas[0].policy_map): mapping ('1.2.3', '2.16.156.1') is given twice",
        ),
        ({**CA, "policy_map": ["1.50.3=2.16.156.1"]}, "second arc is above 39"),
        (
            {**CA, "identity_rules": ["person:subject:CN", "person:subject:O"]},
            "(local_cas[0].identity_rules[1].source): must be ext:OID",
        ),
        (
            {**CA, "identity_rules": ["company:subject:CN"]},
            "(local_cas[0].identity_rules[0].kind): Input should be 'person' or 'organisation'",
        ),
        ({**CA, "identity_rules": ["person"]}, "(local_cas[0].identity_rules[0]): must be KIND"),
        ({**CA, "revocation": "maybe"}, "(local_cas[0].revocation): Input should be 'off'"),
        ({**CA, "name": "GD CA"}, "(local_cas[0].name): must be 1-63 lower-case letters"),
        ({"name": "gdca"}, "(local_cas[0].root): required"),
        ({**CA, "intermediates": ["sub.pem", " "]}, "(local_cas[0].intermediates[1]): must be"),
    ],
)
def test_a_local_ca_is_checked(entry: dict[str, Any], message: str) -> None:
    assert message in refusal({"local_cas": [entry]})


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (UPSTREAM, "(upstream_providers[0].client_secret): required with client_secret_basic"),
        (
            {**UPSTREAM, "client_secret": "s", "scopes": ["profile"]},
            "(upstream_providers[0].scopes): must include openid",
        ),
        (
            {**UPSTREAM, "client_secret": "s", "scopes": "openid openid"},
            "(upstream_providers[0].scopes): scope 'openid' is given twice",
        ),
        (
            {**UPSTREAM, "client_secret": "s", "level_map": ["a=1", "a=2"]},
            "(upstream_providers[0].level_map): level 'a' is given twice",
        ),
        (
            {**UPSTREAM, "client_secret": "s", "level_map": ["a=6"]},
            "(upstream_providers[0].level_map[0].ours): Input should be less than or equal to 5",
        ),
        (
            {**UPSTREAM, "client_id": "dong guan", "client_secret": "s"},
            "(upstream_providers[0].client_id): must be 1-255 printable ASCII characters",
        ),
        (
            {**UPSTREAM, "client_secret": "s", "scopes": ["openid", 'say"hello"']},
            "(upstream_providers[0].scopes[1]): must be a scope",
        ),
        (
            {**UPSTREAM, "client_secret": "s", "identity_type": "uscc"},
            "(upstream_providers[0].identity_type): needs identity_claim",
        ),
    ],
)
def test_an_upstream_provider_is_checked(entry: dict[str, Any], message: str) -> None:
    assert message in refusal({"upstream_providers": [entry]})


def test_private_key_jwt_needs_no_client_secret() -> None:
    settings = build_settings(
        {"upstream_providers": [{**UPSTREAM, "token_auth_method": "private_key_jwt"}]}
    )
    assert settings.upstream_providers[0].client_secret is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({**PEER, "set_push_token": "t"}, "(peers[0].set_push_token): needs set_push_url"),
        (
            {**PEER, "scim_base_url": "https://id.example/scim/v2"},
            "(peers[0].scim_token): set together with scim_base_url",
        ),
        ({**PEER, "scim_token": "t"}, "(peers[0].scim_token): set together with scim_base_url"),
    ],
)
def test_a_peer_is_checked(entry: dict[str, Any], message: str) -> None:
    assert message in refusal({"peers": [entry]})


def test_a_list_section_must_be_an_array_of_tables(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"\(local_cas\): must be a list of tables: "):
        from_file(tmp_path, '[local_cas]\nname = "a"\n')
    assert "(peers[0]): must be a table" in refusal({"peers": ["province"]})


# -- without a file: one JSON array per list, replacing the file's list


def test_a_json_variable_replaces_the_files_list(tmp_path: Path) -> None:
    peers = json.dumps([PEER, {"name": "shenzhen", "issuer": "https://id.sz.gov.cn"}])
    settings = from_file(tmp_path, CONFIG, IDP_PEERS=peers)
    assert [peer.name for peer in settings.peers] == ["province", "shenzhen"]
    assert settings.peers[0].scim_base_url is None  # not merged with the file's entry
    assert [ca.name for ca in settings.local_cas] == ["gdca", "szca"]  # the file's lists stay
    assert from_file(tmp_path, CONFIG, IDP_LOCAL_CAS="[]").local_cas == ()


def test_lists_from_the_environment_alone() -> None:
    settings = load_settings(
        {
            "IDP_LOCAL_CAS": json.dumps([CA]),
            "IDP_UPSTREAM_PROVIDERS": json.dumps([{**UPSTREAM, "client_secret": "s"}]),
            "IDP_PEERS": json.dumps([PEER]),
        }
    )
    assert settings.local_cas[0].policy_map == (
        PolicyMapping(local="1.2.156.1", platform="2.16.156.339.1"),
    )
    assert settings.upstream_providers[0].client_id == "dg"
    assert settings.peers[0].issuer == "https://id.gd.gov.cn"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "IDP_LOCAL_CAS (local_cas): not valid JSON"),
        ('[{"name": "upstream-s3cret"', "IDP_LOCAL_CAS (local_cas): not valid JSON"),
        ('{"name": "gdca"}', "IDP_LOCAL_CAS (local_cas): must be a JSON array of objects"),
        (
            json.dumps([CA, {**CA, "name": "b", "ocsp_url": "ftp://x"}]),
            "IDP_LOCAL_CAS (local_cas[1].ocsp_url): must be an http(s) URL",
        ),
    ],
)
def test_a_bad_json_variable_is_refused_by_name(raw: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"IDP_LOCAL_CAS": raw})
    assert message in str(caught.value)
    assert "upstream-s3cret" not in str(caught.value)


# -- secrets never show


def test_secrets_in_sections_are_redacted_wherever_settings_are_shown(tmp_path: Path) -> None:
    settings = from_file(tmp_path, CONFIG, IDP_DATABASE_URL="postgresql://idp:db-s3cret@db/idp")
    redacted = settings.redacted()
    shown = [repr(settings), str(settings), settings.model_dump_json(), json.dumps(redacted)]
    for text in shown:
        for secret in SECRETS:
            assert secret not in text
    assert "db-s3cret" not in json.dumps(redacted)
    assert redacted["database_url"] == "postgresql+psycopg://idp:***@db/idp"
    assert redacted["upstream_providers"][0]["client_secret"] == "**********"
    assert redacted["peers"][0]["scim_token"] == "**********"
    assert redacted["peers"][0]["set_push_token"] == "**********"
    assert redacted["secret_key"] is None
    assert redacted["local_cas"][0]["crl_urls"] == ["http://crl.gdca.com.cn/gdca.crl"]


@pytest.mark.parametrize(
    "entry",
    [
        # an error elsewhere in the entry: the entry (with its secret) is not echoed
        {"name": "province", "issuer": "https://id.gd.gov.cn", "client_secret": "upstream-s3cret"},
        {**UPSTREAM, "client_secret": "upstream-s3cret", "token_auth_method": "basic"},
        {**UPSTREAM, "client_secret": ["upstream-s3cret"]},
        {**UPSTREAM, "client_secret": {"value": "upstream-s3cret"}},
    ],
)
def test_errors_in_a_section_never_echo_a_secret(entry: dict[str, Any]) -> None:
    message = refusal({"upstream_providers": [entry]})
    assert "upstream_providers[0]" in message
    assert "upstream-s3cret" not in message
