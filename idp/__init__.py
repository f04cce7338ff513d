"""The OpenID Connect provider and the application shell (factory, CLI, core services)."""
