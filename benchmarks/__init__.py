"""asv benchmark suites of visrep (see asv.conf.json; `visrep bench` runs them).

bench_core.py: protocol-independent core kernels (exact search, query expansion, record writing).
Other suites (protocols, Part I, Part II) live beside it. Fixed seeds, data built in setup().
"""
