"""The write path: every change to balances runs through a per-process batcher.

It knows no domain. A domain hands it a ``Command`` (the rows to lock, and a pure ``apply``)
and registers its ``Table``s; the batcher owns the lock order, the transaction, the writes,
the idempotency step and the answers.
"""
