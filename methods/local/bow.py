"""Bag of visual words with tf-idf on an inverted file, multiple assignment and burstiness handling.

- Sivic & Zisserman, Video Google: a text retrieval approach to object matching in videos,
  ICCV 2003: an image is the vector of its visual-word counts tf_w weighted by
  idf_w = log(N / n_w) (N database images, n_w of them containing word w), L2-normalized;
  images are ranked by the inner product of these vectors, computed on an inverted file.
- Multiple assignment (Jégou, Douze & Schmid, Improving bag-of-features for large scale image
  search, IJCV 2010, Sec. 4.2): each *query* descriptor votes for its ``ma`` nearest words.
- Burstiness (Jégou, Douze & Schmid, On the burstiness of visual elements, CVPR 2009): repeated
  words inside one image dominate the tf-idf inner product; with ``burst`` the term frequencies
  are square-rooted (power law tf^0.5, the normalization of Sec. 4 of that paper applied to word
  counts) before idf weighting, on both sides.

The database side is a (k, n_db) CSR matrix (row w = posting list of word w with weights): a
query touches only the rows of its own words (``M[words].T @ q``).
"""
from __future__ import annotations

import numpy as np


def bow_vectors(words: np.ndarray, image: np.ndarray, n_images: int, k: int, idf: np.ndarray | None,
                burst: bool):
    """Sparse (n_images, k) tf-idf matrix, rows L2-normalized (empty rows stay zero).

    words, image: (N,) int arrays of entries (a descriptor assigned to several words gives
    several entries). idf: (k,) or None (no idf). burst: tf -> sqrt(tf).
    """
    import scipy.sparse as sp

    tf = sp.csr_matrix((np.ones(len(words), np.float64), (image, words)), shape=(n_images, k))
    tf.sum_duplicates()
    if burst:
        tf.data = np.sqrt(tf.data)
    if idf is not None:
        tf = tf @ sp.diags(idf)
        tf = sp.csr_matrix(tf)
    norms = np.sqrt(np.asarray(tf.multiply(tf).sum(1)).ravel())
    inv = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-300), 0.0)
    return sp.csr_matrix(sp.diags(inv) @ tf)


