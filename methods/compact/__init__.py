"""Compact codes for nearest-neighbour search: PQ, IVFADC, LOPQ.

(talk Part I: beyond vocabularies (product quantization).) Kernels live in the modules of this folder (arrays in, arrays out); every
registered plugin of the chapter is in ``plugins.py``.
"""
