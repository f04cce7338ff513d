"""The security audit log: a hash-chained table of events (``services``), ``idp audit``."""
