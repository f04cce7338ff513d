"""SCIM 2.0 provisioning (RFC 7643/7644) at ``/scim/v2/``: ``schema`` (the resource
models from ``scim2-models`` with the city's extension, and the discovery documents),
``filters`` (filters from ``scim2-filter-parser`` as SQL), ``models`` (what SCIM adds to
an account), ``services`` (``ProvisioningService``: one client's accounts), ``views``
(the HTTP layer: bearer tokens with the scope ``scim``, SCIM errors)."""
