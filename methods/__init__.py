"""Method plugins, one folder ("room") per chapter of the talk.

- ``search/``: Baselines of search: exact kNN, scores to rankings, query expansion, a hand-crafted global descriptor.
- ``local/``: Local features and visual vocabularies: SIFT/RootSIFT, k-means/AKM/RAKM/AGM, the inverted file, BoW, Hamming embedding, VLAD, SMK/ASMK.
- ``spatial/``: Spatial matching: geometry of local frames, RANSAC, fast spatial matching, Hough pyramid matching, deep spatial matching.
- ``compact/``: Compact codes for nearest-neighbour search: PQ, IVFADC, LOPQ.
- ``cnn/``: CNN global descriptors: backbones, pooling (MAC, SPoC, GeM, R-MAC, CroW), regional vectors, whitening.
- ``manifolds/``: Searching on manifolds: kNN graphs, diffusion (CG, RWR, regional, truncated), fast spectral ranking.
- ``learning/``: Learning with little supervision: label propagation (DLP), mining on manifolds, few-shot (dense classification, implanting).
- ``attacks/``: Adversarial examples on the real MNIST models: FGSM, PGD, C&W, DDN, BP (walking on the edge).

Each room: kernel modules (plain functions and data-structure classes, arrays in, arrays out:
no registry, no run context), ``pipeline.py`` (family base classes, where a family exists) and
``plugins.py`` (every ``@register`` class of the chapter). The registry imports only
``<room>/plugins.py``; heavy libraries load inside functions.
"""
