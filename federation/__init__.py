"""Account mutual recognition with the provincial hall (a later issue): upstream OIDC
login, account and level mapping, SCIM provisioning."""
