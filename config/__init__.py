"""Typed settings: read once, from ``IDP_*`` environment variables and an optional TOML file."""

from config.sections import LocalCaSettings, PeerSettings, UpstreamProviderSettings
from config.settings import Settings, SettingsError, load_settings, redact_url

__all__ = [
    "LocalCaSettings",
    "PeerSettings",
    "Settings",
    "SettingsError",
    "UpstreamProviderSettings",
    "load_settings",
    "redact_url",
]
