"""Family base classes and shared parameters of methods/beyond/ (talk Part IV): active learning, NSOD, AML
(`gcn-noisy` needs no family)."""
from __future__ import annotations

from visrep.api import Method
from visrep.methods.learning.pipeline import ARCH_PARAM, NORM_PARAM, PROPAGATION_PARAMS
from visrep.params import Param

# ---------------------------------------------------------------- deep active learning


#: Siméoni et al. ICPR 2020: defaults from the paper / the authors' code (main_al.py, cli.py)
ACTIVE_LEARNING_PARAMS = (
    Param("strategy", str, "random", "acquisition function: 'random', 'entropy' (max prediction entropy), "
             "'coreset' (greedy k-center, Sener & Savarese 2018), 'jlp' (the paper's label-propagation acquisition)",
             choices=("random", "entropy", "coreset", "jlp")),
    Param("semi_supervised", bool, True, "use the unlabelled pool at model training: label-propagation "
             "pseudo-labels (Iscen et al. CVPR 2019) at every cycle (the paper's SEMI); False = labelled set only"),
    Param("budget", int, 100, "b: labels acquired per cycle (authors' code: 100); the initial labelled set is "
             "the dataset's balanced subset (dataset parameter labelled=N; the paper starts with b)", low=1),
    Param("cycles", int, 10, "training cycles (authors' code: 10); labels at the end = initial + (cycles - 1) b",
             low=1),
    Param("epochs", int, 200, "supervised epochs on the labelled set at every cycle (authors' code: 200)", low=0),
    Param("lp_epochs", int, 200, "semi-supervised epochs at every cycle, label propagation before each, after "
             "the supervised epochs as in Iscen et al.'s Alg. 1 (the authors' AL code propagates in all of its 200 "
             "epochs, from the pre-trained initialisation); used when semi_supervised", low=1),
    ARCH_PARAM,
    NORM_PARAM,
    Param("width", int, 16, "channels of the first conv block of the proxy network (x2 per block, at most x4)",
             low=1),
    Param("blocks", int, 3, "conv blocks of the proxy network", low=1, high=6),
    Param("lr", float, 0.05, "SGD learning rate (Nesterov momentum 0.9, cosine-annealed)", low=0, open_low=True),
    Param("weight_decay", float, 2e-4, "weight decay (authors' code: 2e-4)", low=0),
    Param("batch", int, 128, "minibatch size (authors' code with label propagation: 128)", low=2),
    Param("labelled_per_batch", int, 50, "labelled items per semi-supervised minibatch (authors' code: 50)",
             low=1),
    Param("max_shift", int, 0, "random translation of training images by up to this many pixels", low=0),
    *PROPAGATION_PARAMS,
    Param("ceal", bool, False, "CEAL (Wang et al. 2017; the paper's other semi-supervised baseline): confident "
             "predictions of the unlabelled pool join the next cycle's supervised training as pseudo-labels; needs "
             "semi_supervised = false (the authors' code forbids both)"),
    Param("ceal_threshold", float, 0.1, "CEAL: normalized-entropy threshold, decreased by 0.00033 per cycle "
             "(authors' code)", low=0, high=1),
    Param("curve", bool, False, "also score the test split after every cycle (stats 'accuracy_per_cycle'; "
             "a diagnostic: one more forward pass over the test split per cycle)"),
)


class ActiveLearningMethod(Method):
    """Active-learning cycles (Siméoni et al. ICPR 2020; kernels in :mod:`.active_learning`).

    Every cycle re-initialises the network (same seed), trains it (:func:`.active_learning.train_cycle`)
    and, except after the last, acquires ``budget`` items of the pool by ``strategy``. Outputs
    ``scores`` (n_test, c) float32 logits of the last cycle's network and ``stats`` (labels per
    cycle, acquired classes, pseudo-label accuracy from the hidden pool labels as a diagnostic).
    """

    task = "classification"
    params = ACTIVE_LEARNING_PARAMS

    def run(self, data, ctx) -> dict:
        import numpy as np

        from visrep.errors import UserError
        from visrep.params import check_at_most

        from ..learning.convnets import embed, images_to_tensor, seed_torch
        from ..learning.label_propagation import dlp_graph
        from ..learning.pipeline import _net, _scores, _train_split
        from .active_learning import (
            acquire_entropy,
            acquire_jlp,
            acquire_random,
            ceal_pseudo_labels,
            k_center_greedy,
            train_cycle,
        )

        c = self.cfg
        if c["ceal"] and c["semi_supervised"]:
            raise UserError(f"method '{self.name}': ceal = true needs semi_supervised = false (CEAL and label "
                            f"propagation are alternatives, as in the authors' code)")
        train = _train_split(data)
        C = data.n_classes
        x = images_to_tensor(train.x)
        n = len(x)
        li = np.asarray(train.labelled_idx, dtype=np.int64)
        check_at_most(len(li) + (c["cycles"] - 1) * c["budget"], n, "budget",
                      f"method '{self.name}'", f"{data.name} has {n} training items in the pool")
        rng = ctx.rng(1)
        test_labels = np.asarray(data.labels)
        stats = {"n_labelled_per_cycle": [], "pseudo_label_accuracy_per_cycle": [], "acquired_class_counts": []}
        if c["curve"]:
            stats["accuracy_per_cycle"] = []
        model = None
        ceal_idx, ceal_y = np.zeros(0, np.int64), np.zeros(0, np.int64)
        for cycle in ctx.progress(range(c["cycles"]), desc="active-learning cycles", total=c["cycles"], unit="cycle"):
            seed_torch(ctx.seed)                              # the same initialization at every cycle and strategy
            model = _net(train, c, C, ctx.torch_device())
            with ctx.phase("train"):
                out = train_cycle(model, x, np.concatenate([li, ceal_idx]),
                                  np.concatenate([train.labels[li], ceal_y]), C, epochs=c["epochs"],
                                  lp_epochs=c["lp_epochs"] if c["semi_supervised"] else 0, lr=c["lr"],
                                  weight_decay=c["weight_decay"], batch=c["batch"],
                                  labelled_per_batch=c["labelled_per_batch"], max_shift=c["max_shift"], k=c["k"],
                                  gamma=c["gamma"], alpha=c["alpha"], cg_iters=c["cg_iters"],
                                  seed=ctx.seed + 1000 * cycle)
            stats["n_labelled_per_cycle"].append(len(li))
            yp = out.get("pseudo_labels")
            unl = np.setdiff1d(np.arange(n), li)
            # diagnostics from hidden labels (never used to train or to acquire)
            stats["pseudo_label_accuracy_per_cycle"].append(
                float(np.mean(yp[unl] == train.labels[unl])) if yp is not None and len(unl) else None)
            if c["curve"]:
                with ctx.phase("predict"):
                    stats["accuracy_per_cycle"].append(float(np.mean(_scores(model, data).argmax(1) == test_labels)))
            if cycle == c["cycles"] - 1:
                break
            with ctx.phase("acquire"):
                b, s = c["budget"], c["strategy"]
                if s != "random" or c["ceal"]:
                    import torch
                    v = embed(model.embed, x)
                    with torch.no_grad():
                        p = torch.softmax(model.classify(torch.from_numpy(v)), 1).numpy()
                if s == "random":
                    new = acquire_random(unl, b, rng)
                else:
                    if s == "entropy":
                        new = acquire_entropy(p, unl, b)
                    elif s == "coreset":
                        new = k_center_greedy(v, li, unl, b)
                    else:
                        vn = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
                        new = acquire_jlp(dlp_graph(vn, min(c["k"], n - 1), c["gamma"]), li, unl, b, c["alpha"],
                                          maxiter=c["cg_iters"])
            stats["acquired_class_counts"].append(np.bincount(train.labels[new], minlength=C).tolist())
            li = np.concatenate([li, new])
            if c["ceal"]:                    # pseudo-labels for the next cycle only (re-drawn after every acquisition)
                ceal_idx, ceal_y = ceal_pseudo_labels(p, np.setdiff1d(unl, new), c["ceal_threshold"], 0.00033, cycle)
                stats.setdefault("ceal_pseudo_labels_per_cycle", []).append(len(ceal_idx))
        with ctx.phase("predict"):
            scores = _scores(model, data)
        stats["n_labelled"] = len(li)
        stats["labelled_idx"] = li.tolist()
        return {"scores": scores, "stats": stats}


# ---------------------------------------------------------------- nano-supervised object detection

NSOD_CITE = ("Yang, Shi, Xu, Ferrari & Avrithis, Training object detectors from few weakly-labeled and many unlabeled "
             "images, Pattern Recognition 2021 (arXiv:1912.00384); detector: WSDDN (Bilen & Vedaldi, CVPR 2016)")

#: parameters of nano-supervised detection; "(ours)" marks a value the abstract does not give
NSOD_PARAMS = (
    Param("use_unlabeled", bool, True, "train the student on labeled + pseudo-labeled unlabeled images (NSOD); "
               "False = the weakly-supervised detector of the few labeled images only (the claim's baseline)"),
    Param("arch", str, "efficientnet_lite0", "frozen backbone whose last conv map is ROI-pooled"),
    Param("weights", str, None, "local weights file; None = the packaged ImageNet EfficientNet-Lite0"),
    Param("input_scale", float, 1.25, "images are resized by this factor before the backbone (a 256 px image "
               "gives a 10 x 10 map at stride 32) (ours)", low=0.25, high=4.0),
    Param("stride", float, 1 / 3, "sliding-window step as a fraction of the window's side (ours)",
               low=0.05, high=1.0),
    Param("pca_dim", int, 128, "region features are PCA-reduced (fitted on the labeled images' regions) and "
               "L2-normalized (ours)", low=2),
    Param("epochs", int, 300, "full-batch Adam steps of each WSDDN training (ours)", low=1),
    Param("lr", float, 0.01, "Adam learning rate of WSDDN (ours)", low=0.0, open_low=True),
    Param("weight_decay", float, 5e-4, "L2 weight decay of WSDDN (5e-4, as WSDDN)", low=0.0),
    Param("refine", int, 0, "OICR instance-classifier refinement streams trained with WSDDN (Tang et al., CVPR "
               "2017; PCL uses 3 with proposal clusters); 0 = WSDDN alone (the proxy's setting: 3 streams ran ~4.5x "
               "slower and did not raise the CorLoc of WSDDN trained on true labels)", low=0),
    Param("k_boot", int, 3, "unlabeled images per class bootstrapping the teacher, by region similarity (ours)",
               low=0),
    Param("tau", float, 0.5, "a teacher prediction with probability >= tau becomes a pseudo-label; other "
               "unlabeled images are left out (ours)", low=0.0, high=1.0),
    Param("teacher_epochs", int, 200, "full-batch Adam steps of the teacher classifier (ours)", low=1),
    Param("keep", int, 3, "boxes kept per class and test image after NMS", low=1),
    Param("nms", float, 0.3, "test-time NMS IoU threshold (0.3, as WSDDN / PCL)", low=0.0, high=1.0),
)


class NSODDetector(Method):
    """Weakly-supervised detection over sliding-window proposals on frozen backbone features (task
    ``detection``); ``region_features`` gives every image's proposals' features, cached."""

    task = "detection"

    def region_features(self, data, ctx):
        """(boxes (R, 4) float32 proposals shared by all images (square images of one size), feats (n, R, d)
        float32 PCA-reduced, L2-normalized ROI features of every image of `data`, feats (n, S, d) of a coarser
        window set (3 scales, step 1/2) for the teacher's region similarity). The backbone maps are
        cached (float16) and shared by runs that differ in anything else."""
        import numpy as np

        from .nsod import (
            box_cell_weights,
            l2n,
            pca_fit,
            roi_features,
            sliding_window_proposals,
        )
        cfg = self.cfg
        n = data.n_images
        shapes = {data.image(i).shape[:2] for i in (0, n - 1)}
        if len(shapes) != 1:
            from visrep.errors import UserError
            raise UserError(f"method '{self.name}' expects images of one size, {data.name} has {sorted(shapes)}")
        (H, W), = shapes
        what = {"arch": cfg["arch"], "weights": cfg["weights"], "input_scale": cfg["input_scale"]}

        def compute():
            from visrep.methods.cnn.backbones import load_backbone
            net = load_backbone(cfg["arch"], cfg["weights"])
            maps = [net.features(net.preprocess(data.image(i), imsize=None, scale=cfg["input_scale"]))[0].numpy()
                    for i in ctx.progress(range(n), desc="nsod backbone maps", total=n, unit="img")]
            return np.stack(maps).astype(np.float16)

        maps = ctx.cached("nsod_maps", what, [NSODDetector], compute, data=data)
        boxes = sliding_window_proposals(W, H, stride=cfg["stride"])
        # symmetric padding: map cell j is centred on pixel j * stride, so it spans [j - 1/2, j + 1/2] cells
        A = box_cell_weights(boxes, W, H, maps.shape[3], maps.shape[2], offset=0.5)
        X = np.sqrt(np.maximum(maps.astype(np.float32), 0))          # (n, C, h, w), power-normalized
        lab = np.asarray(data.labeled_idx)
        mean, P = pca_fit(roi_features(X[lab], A).reshape(-1, X.shape[1]), cfg["pca_dim"])
        # pooling is linear: pooling the projected map = projecting the pooled features (rows of A sum to 1)
        Xp = np.einsum("nchw,cd->ndhw", X - mean[None, :, None, None], P, optimize=True)
        coarse = sliding_window_proposals(W, H, scales=(0.27, 0.35, 0.45), stride=0.5)
        At = box_cell_weights(coarse, W, H, maps.shape[3], maps.shape[2], offset=0.5)
        return boxes, l2n(roi_features(Xp, A)), l2n(roi_features(Xp, At))

# ---------------------------------------------------------------- asymmetric metric learning
AML_PAPER = "Budnik & Avrithis, Asymmetric metric learning for knowledge transfer, CVPR 2021 (arXiv 2006.16331)"


AML_PARAMS = (
    Param("teacher", str, "gem", "the fixed teacher that embeds the database: a descriptor spec 'NAME:key=value;...' "
          "(e.g. 'gem:backbone=resnet101;weights=FILE'); its vectors are cached and shared with that descriptor's runs"),
    Param("student", str, "mobilenet_v2", "student network: a torchvision model name (built with weights=None: "
          "random init, nothing downloaded; MobileNetV2 as the authors' example student, efficientnet_b3 as the "
          "slide's) or 'tiny' (four conv-BN-ReLU layers); GeM pooling and a linear layer to the teacher's dimension"),
    Param("student_weights", str, None, "local state dict of the student network (ImageNet initialization as in "
          "the paper); None = random initialization (trained from scratch)"),
    Param("student_imsize", int, 362, "student image side at training (square) and longer side at testing; "
          "362 as cnnimageretrieval's training image size", low=16),
    Param("loss", str, "contrastive", "'contrastive': the asymmetric contrastive loss (student anchor, teacher "
          "positives and negatives); 'contrastive+': Contr+, the anchor's own teacher vector also a positive; "
          "'regression': ||f(x) - g(x)||^2 (paper Sec. 3)", choices=("contrastive", "contrastive+", "regression")),
    Param("margin", float, 0.7, "contrastive margin m (0.7, cnnimageretrieval's default)", low=0.0),
    Param("k_pos", int, 1, "positives per anchor (1 per tuple, as cnnimageretrieval): the anchor's nearest "
          "teacher neighbours (no labels are used: teacher pseudo-positives)", low=0),
    Param("n_neg", int, 5, "hard negatives per anchor (5, cnnimageretrieval's neg-num), mined in teacher space", low=0),
    Param("neg_after", int, 10, "negatives are mined among teacher neighbours ranked after this many (this suite's "
          "rule without labels, so that pseudo-positives are not pushed away)", low=0),
    Param("epochs", int, 30, "training epochs over the training images", low=1),
    Param("batch", int, 16, "anchors per step", low=2),
    Param("lr", float, 1e-3, "Adam learning rate (from scratch; the paper fine-tunes ImageNet students at 1e-6)",
          low=0.0, open_low=True),
    Param("augment", bool, True, "random resized crops (area >= 0.5) and flips of the training images"),
    Param("testing", str, "asymmetric", "'asymmetric': student queries against the teacher's database vectors; "
          "'symmetric': student queries against the student's database vectors", choices=("asymmetric", "symmetric")),
)


class AMLMethod(Method):
    """Asymmetric metric learning (Budnik & Avrithis, CVPR 2021), task ``retrieval``.

    Not a descriptor: asymmetric testing ranks vectors of two networks (student queries, teacher
    database), which no single (n, d) descriptor output expresses. The teacher embeds the database
    (cached descriptor features); the student is trained on the *database* images (never on the
    queries) with teacher tuples and embeds the queries (and, for symmetric testing, the database);
    the trained student's vectors are cached without ``testing`` in the key, so asymmetric and
    symmetric runs share one training.
    """

    task = "retrieval"

    def student_vectors(self, data, ctx, T):
        """{'db': (n_db, d), 'query': (n_q, d) student vectors, 'loss': (epochs,)}, trained and cached."""
        import hashlib

        import numpy as np

        from .aml import embed_student, square_uint8, teacher_tuples, train_student
        cfg = self.cfg
        what = {k: v for k, v in cfg.items() if k != "testing"}
        what["seed"] = ctx.seed
        what["teacher_vectors"] = hashlib.sha256(np.ascontiguousarray(T, np.float32).tobytes()).hexdigest()[:16]

        def compute():
            import torch
            pos, neg = teacher_tuples(T, cfg["k_pos"], cfg["n_neg"], cfg["neg_after"],
                                      self_positive=cfg["loss"] == "contrastive+")
            s = cfg["student_imsize"]
            X = torch.stack([square_uint8(data.db_image(i), s) for i in range(data.n_db)])
            model, hist = train_student(X, T, pos, neg, arch=cfg["student"], weights=cfg["student_weights"],
                                        loss=cfg["loss"], margin=cfg["margin"], epochs=cfg["epochs"],
                                        batch=cfg["batch"], lr=cfg["lr"], augment=cfg["augment"], seed=ctx.seed,
                                        progress=lambda it: ctx.progress(it, desc="aml student", unit="epoch"))
            db = embed_student(model, (data.db_image(i) for i in range(data.n_db)), s)
            q = embed_student(model, (data.query_image(j) for j in range(data.n_queries)), s)
            return {"db": db, "query": q, "loss": hist}

        return ctx.cached("aml_student", what, [AMLMethod, train_student], compute, data=data)

    def run(self, data, ctx) -> dict:
        import numpy as np
        from visrep.methods.search.ranking import ranks_from_scores

        from visrep.errors import UserError
        from visrep.features import retrieval_features

        from .aml import asymmetric_scores
        if not data.has_images:
            raise UserError(f"method '{self.name}' trains a student on images, but {data.name} was loaded without them")
        with ctx.phase("teacher"):
            T, _ = retrieval_features(data, ctx, self.cfg["teacher"])
        with ctx.phase("student"):
            st = self.student_vectors(data, ctx, np.asarray(T, np.float32))
        with ctx.phase("online"):
            db = T if self.cfg["testing"] == "asymmetric" else st["db"]
            ranks = ranks_from_scores(asymmetric_scores(st["query"], db))
        loss = np.asarray(st["loss"])
        return {"ranks": ranks, "timings": {"query": ctx.timings["online"] / max(data.n_queries, 1)},
                "stats": {"train_loss_first": float(loss[0]), "train_loss_last": float(loss[-1]),
                          "n_train": int(data.n_db), "dim": int(T.shape[1])}}
