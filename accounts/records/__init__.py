"""Service records (办事信息, issue 14): what service systems push about the
applications of a person or an organisation (``models``, ``services``), the JSON API
for them at ``/api/v1/records`` with its OpenAPI document (``api``, ``schemas``,
``openapi``) and the holder's page (``views``).

``Records`` (``container``) is handed the provider's access-token check and subject
directory by ``idp.oauth`` (this package sits below the protocol layer).
"""

from __future__ import annotations

from flask import Flask

from accounts.records import api, views
from accounts.records.container import BearerCheck, Records
from accounts.records.services import SubjectDirectory
from idp.core.runtime import Runtime


def init_app(
    app: Flask, core: Runtime, *, bearer: BearerCheck, subjects: SubjectDirectory
) -> Records:
    records = Records(core, bearer, subjects)
    records.install(app)
    api.init_app(app)
    views.init_app(app)
    return records
