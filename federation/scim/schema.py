"""The SCIM resource models (``scim2-models``): the core User with the city's
extension, and the discovery documents (RFC 7643 5-7, RFC 7644 4)."""

from __future__ import annotations

from typing import Annotated, Any

from scim2_models import (
    URN,
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    ETag,
    Extension,
    Filter,
    Mutability,
    Patch,
    ResourceType,
    Returned,
    SchemaExtension,
    ServiceProviderConfig,
    Sort,
    User,
)

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CITY_USER = "urn:gov:cn:dongguan:scim:schemas:extension:city:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
MEDIA_TYPE = "application/scim+json"
MAX_RESULTS = 200  # one page at most (ServiceProviderConfig filter.maxResults)


class CityUser(Extension):
    """The city's extension: what the city knows of the person, read-only."""

    __schema__ = URN(CITY_USER)

    real_name_level: Annotated[int | None, Mutability.read_only, Returned.default] = None
    """The real-name level (Guangdong 可信等级, 1-5) the account holds now."""


ScimUser = User[CityUser]


def service_provider_config(base: str) -> dict[str, Any]:
    config = ServiceProviderConfig(
        documentation_uri=None,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=True),
        sort=Sort(supported=True),
        etag=ETag(supported=True),
        authentication_schemes=[
            AuthenticationScheme(
                type="oauthbearertoken",
                name="OAuth Bearer Token",
                description=(
                    "An access token from this provider's token endpoint (client "
                    "credentials grant) with the scope scim."
                ),
                spec_uri="https://www.rfc-editor.org/rfc/rfc6750",
                primary=True,
            )
        ],
    )
    document = config.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    document["meta"] = {
        "resourceType": "ServiceProviderConfig",
        "location": f"{base}/ServiceProviderConfig",
    }
    return document


def resource_types(base: str) -> list[dict[str, Any]]:
    user = ResourceType(
        id="User",
        name="User",
        description="A person's account",
        endpoint="/Users",
        schema_=URN(CORE_USER),
        schema_extensions=[SchemaExtension(schema_=URN(CITY_USER), required=False)],
    )
    document = user.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    document["meta"] = {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/User"}
    return [document]


def schemas(base: str) -> list[dict[str, Any]]:
    documents = []
    for model in (User, CityUser):
        document = model.to_schema().model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
        document["meta"] = {
            "resourceType": "Schema",
            "location": f"{base}/Schemas/{document['id']}",
        }
        documents.append(document)
    return documents
