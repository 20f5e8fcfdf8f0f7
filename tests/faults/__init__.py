"""Fault injection against the real service: `balances serve --workers 2` over a real PostgreSQL
of the suite's own, driven over loopback HTTP while backends are terminated, PostgreSQL is
restarted, the service is killed with SIGKILL and a balance's row is locked by a stuck
transaction. Run it alone with ``pytest -m faults``."""
