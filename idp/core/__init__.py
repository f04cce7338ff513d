"""Infrastructure every domain package uses: database, short-lived store, keys, audit, web."""
