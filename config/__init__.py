"""Typed settings: read once, from ``IDP_*`` environment variables and an optional TOML file."""

from config.settings import Settings, SettingsError, load_settings, redact_url

__all__ = ["Settings", "SettingsError", "load_settings", "redact_url"]
