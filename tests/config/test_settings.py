from __future__ import annotations

from pathlib import Path

import pytest

from config import SettingsError, load_settings, redact_url


def test_defaults_are_the_embedded_mode(tmp_path: Path) -> None:
    settings = load_settings({"IDP_DATA_DIR": str(tmp_path)})
    assert settings.redis_url is None
    assert settings.effective_database_url == f"sqlite:///{tmp_path.resolve()}/idp.sqlite3"
    assert settings.uses_sqlite
    assert settings.default_locale == "zh_CN"
    assert settings.argon2_memory_kib >= 19 * 1024
    assert settings.argon2_time_cost >= 2


def test_environment_overrides_the_toml_file(tmp_path: Path) -> None:
    config = tmp_path / "idp.toml"
    config.write_text('issuer = "https://id.dg.gov.cn"\nworkers = 4\nthreads = 2\n')
    settings = load_settings({"IDP_CONFIG": str(config), "IDP_WORKERS": "8"})
    assert settings.issuer == "https://id.dg.gov.cn"
    assert settings.workers == 8
    assert settings.threads == 2
    assert settings.is_https


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"IDP_WORKERS": "0"}, "IDP_WORKERS"),
        ({"IDP_WORKERS": "many"}, "IDP_WORKERS"),
        ({"IDP_ISSUER": "ftp://example"}, "IDP_ISSUER"),
        ({"IDP_ISSUER": "https://id.example/?x=1"}, "IDP_ISSUER"),
        ({"IDP_DATABASE_URL": "mysql://root@localhost/db"}, "IDP_DATABASE_URL"),
        ({"IDP_REDIS_URL": "http://localhost:6379"}, "IDP_REDIS_URL"),
        ({"IDP_LOG_FORMAT": "xml"}, "IDP_LOG_FORMAT"),
        ({"IDP_ARGON2_MEMORY_KIB": "1024"}, "IDP_ARGON2_MEMORY_KIB"),
        (
            {"IDP_SESSION_IDLE_TIMEOUT": "90000", "IDP_SESSION_MAX_AGE": "3600"},
            "IDP_SESSION_IDLE_TIMEOUT",
        ),
    ],
)
def test_a_wrong_value_stops_with_a_message_naming_the_setting(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(env)


def test_unknown_variables_are_refused_but_test_variables_ignored() -> None:
    with pytest.raises(SettingsError, match="IDP_ISUER"):
        load_settings({"IDP_ISUER": "https://typo.example"})
    load_settings({"IDP_TEST_DATABASE_URL": "postgresql://x", "PATH": "/bin"})


def test_unknown_key_in_the_toml_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "idp.toml"
    config.write_text('isuer = "x"\n')
    with pytest.raises(SettingsError, match="isuer"):
        load_settings({"IDP_CONFIG": str(config)})


def test_unreadable_or_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings({"IDP_CONFIG": str(tmp_path / "missing.toml")})
    broken = tmp_path / "broken.toml"
    broken.write_text("workers = = 3")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings({"IDP_CONFIG": str(broken)})


def test_a_short_secret_is_refused_without_echoing_it() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"IDP_SECRET_KEY": "hunter2-short"})
    assert "IDP_SECRET_KEY" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_weak_hashing_needs_an_explicit_opt_in() -> None:
    settings = load_settings(
        {"IDP_ARGON2_MEMORY_KIB": "1024", "IDP_ALLOW_WEAK_PASSWORD_HASHING": "true"}
    )
    assert settings.argon2_memory_kib == 1024


def test_postgres_urls_use_psycopg_3() -> None:
    settings = load_settings({"IDP_DATABASE_URL": "postgresql://u:p@db/idp"})
    assert settings.effective_database_url == "postgresql+psycopg://u:p@db/idp"
    assert not settings.uses_sqlite


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("postgresql+psycopg://idp:s3cret@db:5432/idp") == (
        "postgresql+psycopg://idp:***@db:5432/idp"
    )
    assert redact_url("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"
