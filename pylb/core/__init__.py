"""The sans-IO core of pylb: models, balancers, the pool, routing and HTTP policy.

Nothing under ``pylb.core`` imports trio, socket, ssl, docker or time; a test
(``tests/core/test_purity.py``) enforces it, so the core stays testable with
plain tables and hypothesis.
"""
