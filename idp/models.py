"""Every package's models, imported so that the one metadata is complete (migrations,
``alembic check``, the data-key rotation's list of encrypted columns)."""

from __future__ import annotations

import accounts.credentials.models
import accounts.organisations.models
import accounts.people.models
import accounts.realname.models
import accounts.records.models
import federation.scim.models
import federation.upstream.models
import idp.core.audit.models
import idp.oauth.models
import pki.models
from idp.core.schema import metadata

MODEL_MODULES = (
    accounts.people.models,
    accounts.credentials.models,
    accounts.realname.models,
    accounts.organisations.models,
    accounts.records.models,
    idp.core.audit.models,
    idp.oauth.models,
    pki.models,
    federation.scim.models,
    federation.upstream.models,
)

__all__ = ["MODEL_MODULES", "metadata"]
