"""Local features and visual vocabularies: SIFT/RootSIFT, k-means/AKM/RAKM/AGM, the inverted file, BoW, Hamming embedding, VLAD, SMK/ASMK.

(talk Part I: visual vocabularies, beyond vocabularies.) Kernels live in the modules of this folder (arrays in, arrays out); every
registered plugin of the chapter is in ``plugins.py``; the family base classes in ``pipeline.py``.
"""
