"""Append-only security audit log, chained by keyed hashes so edits are detectable."""
