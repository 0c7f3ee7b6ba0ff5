"""The method plugins of methods/discovery/: `fs-saliency`, `fs-egm`, `os-saliency`, `os-egm` (talk Part II: object discovery).

Global descriptors pooled by saliency-weighted GeM (:func:`.saliency.weighted_gem`) under:

- ``fs-saliency``: the feature saliency (FS) map itself (CroW channel-sparsity weights);
- ``fs-egm``: the EGM mixture fitted to the FS map (the talk's FS.EGM);
- ``os-saliency``: the object saliency (OS) map itself (region-graph centrality over the database,
  regressed to every patch);
- ``os-egm``: the EGM mixture fitted to the OS map (the talk's OS.EGM).

EGM has no plugin of its own: it turns a saliency map into regions and needs one (it is the
kernel :func:`.egm.egm_fit`, used by ``fs-egm`` and ``os-egm``).
"""
from __future__ import annotations

from visrep.registry import register

from .pipeline import (
    EGM_PARAMS,
    GRAPH_PARAMS,
    POOL_PARAMS,
    DatasetSaliencyPooling,
    SaliencyPooling,
)
from .saliency import feature_saliency

_SIMEONI = ("Siméoni, Iscen, Tolias, Avrithis & Chum, Unsupervised object discovery for instance recognition, "
            "WACV 2018; Graph-based particular object discovery, MVA 2019")
_CROW = "Kalantidis, Mellina & Osindero, Cross-dimensional weighting for aggregated deep convolutional features, ECCVW 2016"
_AGM = "Avrithis & Kalantidis, Approximate Gaussian mixtures for large scale vocabularies, ECCV 2012"


@register
class FSSaliency(SaliencyPooling):
    name = "fs-saliency"
    summary = "GeM weighted by the feature saliency (FS) map: conv channels summed with sparsity-sensitive weights"
    cite = f"{_CROW}; {_SIMEONI}"
    params = POOL_PARAMS

    def saliency(self, x):
        return feature_saliency(x)


@register
class FSEGM(FSSaliency):
    name = "fs-egm"
    summary = "FS.EGM: GeM weighted by expanding Gaussian mixtures (EGM) fitted to the FS map"
    cite = f"{_SIMEONI}; {_AGM}"
    params = POOL_PARAMS + EGM_PARAMS
    use_egm = True


@register
class OSSaliency(DatasetSaliencyPooling):
    name = "os-saliency"
    summary = "GeM weighted by object saliency (OS): region-graph centrality over the database, regressed to patches"
    cite = _SIMEONI
    params = POOL_PARAMS + GRAPH_PARAMS

    def saliency(self, x):
        raise NotImplementedError("OS maps come from the database graph: see DatasetSaliencyPooling.run")


@register
class OSEGM(OSSaliency):
    name = "os-egm"
    summary = "OS.EGM: GeM weighted by expanding Gaussian mixtures (EGM) fitted to the OS map"
    cite = f"{_SIMEONI}; {_AGM}"
    params = POOL_PARAMS + GRAPH_PARAMS + EGM_PARAMS
    use_egm = True
