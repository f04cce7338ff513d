"""Certificate sign-in through the bridge CA (a later issue): trust store of local CAs,
cross-certificates, RFC 5280 path validation, CRL/OCSP, identity extraction."""
