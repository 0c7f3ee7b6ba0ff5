"""Adversarial examples on the real MNIST models: FGSM, PGD, C&W, DDN, BP (walking on the edge).

(talk Part IV.) Kernels live in the modules of this folder (arrays in, arrays out); every
registered plugin of the chapter is in ``plugins.py``; the family base classes in ``pipeline.py``.
"""
