"""The closed set of tasks, and the one rule that decides which plugins run together.

A task names a data contract. Every plugin declares one in ``task``; registration
(:meth:`visrep.registry.Registry.add`) rejects any task not in :data:`TASKS`.

==================  ============================================  ==========================================
task                a dataset of this task gives                  a method of this task outputs
==================  ============================================  ==========================================
``retrieval``       :class:`visrep.data.RetrievalData`: names,    ``ranks`` (n_db, n_q) int, 0-based, best
                    ground truth, images and/or global features   first (optional ``scores``)
``descriptor``      images                                        (n, d) float32 vectors; also ranks, so it
                                                                  is scored as ``retrieval`` (output_tasks)
``vocabulary``      no dataset of its own: the protocol reads     ``centroids`` (k, d), ``k``, ``distortion``,
                    retrieval datasets (their local features)     ``word_counts``, ``timings["vocabulary"]``,
                    or the method a ``train`` descriptor file     ``history``; optional ``held_out`` (n, d)
``quantization``    no dataset of its own: the protocol reads     ``ranks`` (R_max, n_q) + ``codes`` or
                    retrieval datasets with db/query features     ``bytes_per_vector`` (+ ``reconstruction``)
``classification``  ``LabelledData``: images and labels           ``scores`` (n, n_classes) and/or
                                                                  ``predictions`` (n,)
``metric-learning`` ``LabelledData`` whose test classes are       ``embeddings`` (n, d) of the test items
                    unseen in training
``few-shot``        ``LabelledData`` with base classes and        ``predictions`` (E, N*Q) or ``scores``
                    seeded N-way K-shot episodes                  (E, N*Q, N)
``adversarial``     images in [0, 1] with labels, to attack       ``adversarial`` images + ``adv_predictions``
``clustering``      no dataset of its own: the protocol reads     ``labels`` (n_db,) int: the cluster of each
                    retrieval datasets (scene = ground truth)     database image
``detection``       images with per-image boxes and classes,      per test image: ``boxes`` (m, 4) float
                    image-level labels, and a split into few      (x0, y0, x1, y1) pixels, ``scores`` (m,),
                    weakly-labeled, many unlabeled, test images   ``classes`` (m,) int (lists over test images)
``suggestion``      no dataset of its own: the protocol reads     leave-one-out over the database images:
                    retrieval datasets whose database images      ``locations`` (n_db, 2) (lat, lon) degrees,
                    carry geo-tags and tags (``extra["meta"]``)   NaN = no estimate, and/or ``tags`` (n_db
                                                                  ranked lists of suggested tags)
==================  ============================================  ==========================================

The rule (:func:`fits`): a **protocol** scores one method output contract (its ``task``) and
reads datasets of the tasks in ``data_tasks`` (default: its own task). A **method** produces
the outputs of its ``task`` and, optionally, of the extra tasks in ``output_tasks`` (its
outputs satisfy those contracts too: a descriptor method also ranks, so it is scored as
``retrieval``; PQ ranks *and* encodes, so it is scored as ``quantization`` as well). A triple
(method, dataset, protocol) fits when the protocol's task is one the method outputs and the
dataset's task is one the protocol reads.
"""
from __future__ import annotations

RETRIEVAL = "retrieval"
DESCRIPTOR = "descriptor"
VOCABULARY = "vocabulary"
QUANTIZATION = "quantization"
CLASSIFICATION = "classification"
METRIC_LEARNING = "metric-learning"
FEW_SHOT = "few-shot"
ADVERSARIAL = "adversarial"
CLUSTERING = "clustering"
DETECTION = "detection"
SUGGESTION = "suggestion"

#: task -> (what a dataset of that task gives, what a method of that task outputs)
TASKS: dict[str, tuple[str, str]] = {
    RETRIEVAL: ("RetrievalData: image names, per-query ground truth, images and/or global features",
                "ranks (n_db, n_q) int, 0-based, best first"),
    DESCRIPTOR: ("images", "(n, d) float32 vectors; ranks too, so scored as retrieval (output_tasks)"),
    VOCABULARY: ("none of its own: retrieval datasets (local features) or the method's `train` file",
                 "centroids (k, d), k, distortion, word_counts, timings['vocabulary'], history, held_out"),
    QUANTIZATION: ("none of its own: retrieval datasets with db/query feature vectors",
                   "ranks (R_max, n_q) + codes or bytes_per_vector (+ reconstruction (n_db, d))"),
    CLASSIFICATION: ("LabelledData: images and labels", "scores (n, n_classes) and/or predictions (n,)"),
    METRIC_LEARNING: ("LabelledData whose test classes are unseen in training", "embeddings (n, d) of test items"),
    FEW_SHOT: ("LabelledData with base classes and seeded N-way K-shot episodes",
               "predictions (E, N*Q) or scores (E, N*Q, N)"),
    ADVERSARIAL: ("images in [0, 1] with labels, to attack", "adversarial images + adv_predictions"),
    CLUSTERING: ("none of its own: retrieval datasets, whose ground truth gives the scene of each database image",
                 "labels (n_db,) int: the cluster of each database image"),
    DETECTION: (("images with boxes + classes per image and image-level labels, split into few weakly-labeled, "
                 "many unlabeled and test images"),
                "per test image: boxes (m, 4) (x0, y0, x1, y1), scores (m,), classes (m,) int"),
    SUGGESTION: ("none of its own: retrieval datasets whose database images carry geo-tags and tags (extra['meta'])",
                 ("leave-one-out per database image: locations (n_db, 2) lat/lon degrees (NaN = none) and/or "
                  "tags (n_db ranked lists)")),
}


def check_task(task, where: str, attribute: str = "task") -> None:
    """Raise TypeError unless `task` is one of :data:`TASKS`."""
    if task not in TASKS:
        raise TypeError(f"{where}: unknown {attribute} {task!r}; known tasks: {', '.join(TASKS)} "
                        f"(visrep/tasks.py)")


def method_tasks(method_cls) -> tuple[str, ...]:
    """The output contracts a method satisfies: its task, then its extra ``output_tasks``."""
    return (method_cls.task, *tuple(getattr(method_cls, "output_tasks", ()) or ()))


def protocol_data_tasks(protocol_cls) -> tuple[str, ...]:
    """The dataset tasks a protocol reads: ``data_tasks``, default its own task."""
    return tuple(getattr(protocol_cls, "data_tasks", ()) or ()) or (protocol_cls.task,)


def fits(method_cls, dataset_cls, protocol_cls) -> str | None:
    """None when the triple runs together, else the reason it does not (one sentence)."""
    if protocol_cls.task not in method_tasks(method_cls):
        return (f"method '{method_cls.name}' outputs {' / '.join(method_tasks(method_cls))}, but protocol "
                f"'{protocol_cls.name}' scores {protocol_cls.task}")
    if dataset_cls.task not in protocol_data_tasks(protocol_cls):
        return (f"dataset '{dataset_cls.name}' is a {dataset_cls.task} dataset, but protocol "
                f"'{protocol_cls.name}' reads {' / '.join(protocol_data_tasks(protocol_cls))} datasets")
    return None
