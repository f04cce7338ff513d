"""WSGI entry point for gunicorn and other servers: ``gunicorn wsgi:app``."""

from idp.app import create_app

app = create_app()
