"""Baselines of search: exact kNN, scores to rankings, query expansion, a hand-crafted global descriptor.

(talk: the baselines every chapter compares with.) Kernels live in the modules of this folder (arrays in, arrays out); every
registered plugin of the chapter is in ``plugins.py``; the family base classes in ``pipeline.py``.
"""
