"""Chaos suite: real worker processes against the durable backends, faults injected from
outside, delivery counted from an independent ledger. ``python -m tests.chaos --help``
runs the long versions; the ``test_*.py`` files hold the short ones that CI runs."""
