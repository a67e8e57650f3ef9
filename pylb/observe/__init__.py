"""Seeing what the balancer does: the access log, statistics, the stats port, metrics.

Owns nothing itself; its modules: ``accesslog`` (the line formats and the
batched writer), ``stats`` (counting records; the statistics every view
shows), ``events`` (the last discovery and health events), ``hub`` (the
observer the data plane calls, and the batches after it), ``metrics``
(Prometheus), ``page`` and ``server`` (the stats port). Must not know: the
exchange machine's insides or the drivers: it sees records and state only,
outside the proxy loop (``tests/test_layers.py``).
"""
