"""Sample relying parties for ``idp demo`` (development only)."""
