"""Spatial matching: geometry of local frames, RANSAC, fast spatial matching, Hough pyramid matching, deep spatial matching.

(talk Part I: spatial matching.) Kernels live in the modules of this folder (arrays in, arrays out); every
registered plugin of the chapter is in ``plugins.py``; the family base classes in ``pipeline.py``.
"""
