"""The method plugins of methods/beyond/ (talk Part IV): `active-learning`, `gcn-noisy`, `nsod`, `aml`."""
from __future__ import annotations

from visrep.api import Method
from visrep.params import Param
from visrep.registry import register

from .active_learning import CITE as _AL_CITE
from .active_learning import CITE_CORESET as _AL_CITE_CORESET
from .pipeline import (
    ACTIVE_LEARNING_PARAMS,
    AML_PAPER,
    AML_PARAMS,
    NSOD_CITE,
    NSOD_PARAMS,
    ActiveLearningMethod,
    AMLMethod,
    NSODDetector,
)

# ---------------------------------------------------------------- deep active learning


@register
class ActiveLearning(ActiveLearningMethod):
    name = "active-learning"
    summary = ("deep active learning: cycles of training (optionally with label-propagation pseudo-labels on the "
               "unlabelled pool) and acquisition (random / entropy / core-set / jLP); scores the test split at the end")
    cite = _AL_CITE + "; " + _AL_CITE_CORESET + " (core-set)"
    params = ACTIVE_LEARNING_PARAMS

# ---------------------------------------------------------------- few clean and many noisy labels

_GCN_CITE = ("Iscen, Tolias, Avrithis, Chum & Schmid, Graph convolutional networks for learning with few clean and "
             "many noisy labels, ECCV 2020 (arXiv:1910.00324); GCN: Kipf & Welling, ICLR 2017")


@register
class GCNNoisy(Method):
    """Few clean + many noisy labels: per-class GCN relevance of the noisy examples, weighted classifier.

    ``weighting`` = ``gcn`` (the paper), ``clean-only`` or ``uniform`` (its two baselines, rows of the
    paper's own tables: the same features and classifier, with the noisy examples dropped or given weight
    1), so the three differ in the weights alone and claims compare them item by item.
    """

    name = "gcn-noisy"
    task = "classification"
    summary = ("learning from few clean and many noisy labels: a GCN per class scores how clean each noisy example "
               "is; the classifier is trained on clean + relevance-weighted noisy examples")
    cite = _GCN_CITE
    params = (
        Param("weighting", str, "gcn", "weights of the noisy training examples: 'gcn' (GCN relevance, the "
                  "paper), 'clean-only' (0: few-shot baseline), 'uniform' (1: no cleaning)",
                  choices=("gcn", "clean-only", "uniform")),
        Param("classifier", str, "prototype", "end classifier: 'prototype' (weighted class means, cosine scores; "
                  "the released code) or 'cosine' (cosine classifier, weighted cross-entropy)",
                  choices=("prototype", "cosine")),
        Param("k", int, 50, "neighbours of the per-class reciprocal kNN graph (released code: 50)", low=1),
        Param("gcn_lambda", float, None, "weight of the noisy (negative) term of the loss; None = the released "
                  "code's value for the clean shots per class (1: 0.01, 2: 0.05, 5: 0.5, 10: 1, 20: 5)", low=0.0),
        Param("hidden", int, 16, "GCN hidden units (released code: 16)", low=1),
        Param("dropout", float, 0.5, "dropout on the GCN hidden layer (released code: 0.5)", low=0.0, high=0.99),
        Param("lr", float, 0.1, "Adam learning rate of the GCN, x 0.1 every 30 iterations (released code)",
                  low=0.0, open_low=True),
        Param("iters", int, 100, "GCN training iterations, full batch (released code: 100)", low=1),
        Param("weight_decay", float, 5e-4, "Adam weight decay of the GCN (released code: 5e-4)", low=0.0),
        Param("normalization", str, "row", "adjacency normalisation: 'row' D^-1 (A + I) (released code, pygcn) "
                  "or 'sym' D^-1/2 (A + I) D^-1/2 (Kipf & Welling Eq. 2)", choices=("row", "sym")),
        Param("cosine_epochs", int, 100, "classifier = cosine: full-batch Adam epochs (ours)", low=1),
        Param("cosine_scale", float, 10.0, "classifier = cosine: logit scale (ours)", low=0.0, open_low=True),
    )

    def run(self, data, ctx) -> dict:
        import numpy as np

        from visrep.errors import UserError

        from .gcn import (
            gcn_relevance,
            l2_rows,
            paper_lambda,
            pixel_features,
            relevance_auc,
            train_weighted_cosine_classifier,
            weighted_prototypes,
        )
        c = self.cfg
        train = getattr(data, "train", None)
        if train is None or train.x is None or data.x is None:
            raise UserError(f"method '{self.name}' needs a training split with clean and noisy items and test "
                            f"items with images or vectors (dataset '{data.name}' has none; try "
                            f"fashion-mnist-noisy)")
        clean = train.extra.get("clean")
        if clean is None:
            clean = np.zeros(len(train), bool)
            if train.labelled_idx is not None:
                clean[np.asarray(train.labelled_idx)] = True
        clean = np.asarray(clean, dtype=bool)
        if not clean.any():
            raise UserError(f"method '{self.name}': the training split of '{data.name}' marks no clean item")

        def feats(x):
            return l2_rows(x) if np.asarray(x).ndim == 2 else pixel_features(x)

        with ctx.phase("features"):
            V, Vt = feats(train.x), feats(data.x)
        C = data.n_classes
        labels = np.asarray(train.labels)
        k_shot = int(np.median(np.bincount(labels[clean], minlength=C)))
        lam = c["gcn_lambda"] if c["gcn_lambda"] is not None else paper_lambda(k_shot)
        stats = {"n_clean": int(clean.sum()), "n_noisy": int((~clean).sum()), "k_shot": k_shot}
        if c["weighting"] == "clean-only":
            w = clean.astype(np.float64)
        elif c["weighting"] == "uniform":
            w = np.ones(len(labels))
        else:
            with ctx.phase("gcn"):
                w = gcn_relevance(V, labels, clean, C, k=c["k"], lam=lam, normalization=c["normalization"],
                                  seed=ctx.seed, hidden=c["hidden"], dropout=c["dropout"], lr=c["lr"],
                                  iters=c["iters"], weight_decay=c["weight_decay"])
            stats["gcn_lambda"] = lam
        truth = train.extra.get("true_labels")
        if truth is not None and (~clean).any():   # diagnostics from hidden labels (never used to train)
            right = np.asarray(truth)[~clean] == labels[~clean]
            stats["noise_rate"] = float(1 - right.mean())
            if c["weighting"] == "gcn":
                r = w[~clean]
                stats.update(relevance_auc=relevance_auc(r, right),
                             mean_relevance_correct=float(r[right].mean()) if right.any() else None,
                             mean_relevance_wrong=float(r[~right].mean()) if (~right).any() else None)
        with ctx.phase("classifier"):
            keep = w > 0
            if c["classifier"] == "prototype":
                P = weighted_prototypes(V[keep], labels[keep], w[keep], C)
            else:
                P = train_weighted_cosine_classifier(V[keep], labels[keep], w[keep], C, scale=c["cosine_scale"],
                                                     epochs=c["cosine_epochs"])
            scores = Vt @ P.T
        return {"scores": scores.astype(np.float32), "stats": stats}


# ---------------------------------------------------------------- nano-supervised object detection


@register
class NSOD(NSODDetector):
    name = "nsod"
    summary = ("nano-supervised detection: WSDDN on few weakly-labeled images; a teacher bootstrapped by region "
               "similarity pseudo-labels many unlabeled images; a WSDDN student is retrained on both")
    cite = NSOD_CITE
    params = NSOD_PARAMS

    def run(self, data, ctx) -> dict:
        import numpy as np

        from .nsod import (
            bootstrap_set,
            detections,
            l2n,
            region_similarity,
            select_pseudo_labels,
            softmax_classifier,
            softmax_probs,
            wsddn_region_scores,
            wsddn_train,
        )
        c = self.cfg
        with ctx.phase("features"):
            boxes, F, Ft = self.region_features(data, ctx)
        lab, unl, test = (np.asarray(a, np.int64) for a in (data.labeled_idx, data.unlabeled_idx, data.test_idx))
        Y = np.asarray(data.labels, bool)
        C = data.n_classes
        train_kw = {"epochs": c["epochs"], "lr": c["lr"], "weight_decay": c["weight_decay"], "seed": ctx.seed,
                    "refine": c["refine"], "boxes": boxes}
        stats = {"n_labeled": len(lab), "n_unlabeled": len(unl), "n_proposals": len(boxes)}
        with ctx.phase("weak"):                       # the weakly-supervised detector of the labeled images
            det = wsddn_train(F[lab], Y[lab], **train_kw)
        if c["use_unlabeled"] and len(unl):
            with ctx.phase("teacher"):
                sim = region_similarity(Ft[unl], Ft[lab], Y[lab])     # (U, C)
                bi, bc = bootstrap_set(sim, c["k_boot"])
                G = l2n(F.max(1))                                   # image descriptors: max over regions
                first = Y[lab].argmax(1)
                W, b = softmax_classifier(np.concatenate([G[lab], G[unl[bi]]]), np.concatenate([first, bc]), C,
                                          epochs=c["teacher_epochs"], seed=ctx.seed)
                pi, pc = select_pseudo_labels(softmax_probs(G[unl], W, b), c["tau"])
            with ctx.phase("student"):
                T = np.zeros((len(pi), C), bool)
                T[np.arange(len(pi)), pc] = True
                det = wsddn_train(np.concatenate([F[lab], F[unl[pi]]]), np.concatenate([Y[lab], T]), **train_kw)
            # diagnostics from the hidden labels (never used): an image with no known object has no right label
            stats.update(n_bootstrap=len(bi), bootstrap_accuracy=float(np.mean(Y[unl[bi], bc])) if len(bi) else None,
                         n_pseudo=len(pi), pseudo_label_accuracy=float(np.mean(Y[unl[pi], pc])) if len(pi) else None)
        with ctx.phase("detect"):
            xs = wsddn_region_scores(det, F[test])
            out = [detections(boxes, xs[i], c["keep"], c["nms"]) for i in range(len(test))]
        return {"boxes": [o[0] for o in out], "scores": [o[1] for o in out], "classes": [o[2] for o in out],
                "stats": stats}


# ---------------------------------------------------------------- asymmetric metric learning


@register
class AML(AMLMethod):
    name = "aml"
    summary = ("asymmetric metric learning: a student trained in the teacher's space (student anchor, teacher "
               "positives/negatives); asymmetric testing = student queries vs teacher database")
    cite = AML_PAPER
    params = AML_PARAMS
