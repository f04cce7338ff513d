"""Interoperability tests: independent, certified client libraries against a real server."""
