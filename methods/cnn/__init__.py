"""CNN global descriptors: backbones, pooling (MAC, SPoC, GeM, R-MAC, CroW), regional vectors, whitening.

(talk Part II: CNN representations.) Kernels live in the modules of this folder (arrays in, arrays out); every
registered plugin of the chapter is in ``plugins.py``; the family base classes in ``pipeline.py``.
"""
