"""Searching on manifolds: kNN graphs, diffusion (CG, RWR, regional, truncated), fast spectral ranking.

(talk Part II: searching on manifolds.) Kernels live in the modules of this folder (arrays in, arrays out); every
registered plugin of the chapter is in ``plugins.py``; the family base classes in ``pipeline.py``.
"""
