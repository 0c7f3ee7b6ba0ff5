"""asv benchmark suites of visrep (see asv.conf.json; `visrep bench` runs them).

One suite per chapter room of ``methods/`` (``bench_<room>.py``: search, local, manifolds, spatial,
learning, attacks), plus ``bench_protocols.py`` and ``bench_core.py`` (result records).
Fixed seeds, data built in setup().
"""
