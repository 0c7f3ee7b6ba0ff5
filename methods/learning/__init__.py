"""Learning with little supervision: label propagation (DLP), mining on manifolds, few-shot (dense classification, implanting).

(talk Part III.) Kernels live in the modules of this folder (arrays in, arrays out); every
registered plugin of the chapter is in ``plugins.py``; the family base classes in ``pipeline.py``.
"""
