"""A synthetic multi-modal generator: the built-in default dataset."""
import numpy as np
import scipy.sparse as sp

from .._preprocess import Preprocessor
from .._validation import (
    _describe,
    check_bool,
    check_float,
    check_int,
    check_option,
    check_random_state,
)
from ._container import MultiModalDataset


def make_multimodal(n_samples=2000, n_classes=10, n_features=(64, 300),
                    kinds=("dense", "sparse"), multilabel=False, *, latent_dim=16,
                    noise=1.0, doc_length=40, extra_label_prob=0.15, random_state=None):
    """Synthetic paired multi-modal data from shared latent classes.

    Every object draws a class (with ``multilabel``, a primary class plus
    each other class with probability ``extra_label_prob``) and a latent
    vector ``z`` = mean of its classes' centres (unit-variance Gaussian
    centres in ``latent_dim`` dimensions) + ``noise`` * standard Gaussian
    noise.  Each modality then renders ``z`` in its own way:

    * ``"dense"``: ``z @ W_m + 0.1 * noise`` with a random Gaussian
      ``W_m`` (``latent_dim x d_m``) - Gaussian-like image features.
    * ``"sparse"``: a bag of words.  Each class owns a topic (a Dirichlet
      distribution concentrated on a few words); a document of Poisson
      (``doc_length``) words mixes its classes' topics with weights
      ``softmax(z @ V)`` and a background distribution; features are
      ``log(1 + counts)`` with rows L2-normalised, as a non-negative CSR
      matrix (~``doc_length / d_m`` dense).

    Parameters
    ----------
    n_samples : int >= 2
    n_classes : int >= 2
    n_features : sequence of int
        Dimension of every modality (its length is the number of modalities).
    kinds : sequence of {"dense", "sparse"}
        One per modality.
    multilabel : bool, default=False
        2-D 0/1 labels with possibly several classes per object.
    latent_dim : int >= 1
    noise : float >= 0
        Latent noise; larger means harder retrieval.
    doc_length : int >= 1
        Mean number of words per sparse document.
    extra_label_prob : float in [0, 1]
        Multi-label only: probability of each extra class.
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    MultiModalDataset
        No fixed split (``train_idx = test_idx = None``); names
        ``["dense0", "sparse1", ...]``.
    """
    n_samples = check_int(n_samples, "n_samples", 2)
    n_classes = check_int(n_classes, "n_classes", 2)
    latent_dim = check_int(latent_dim, "latent_dim", 1)
    noise = check_float(noise, "noise", 0.0)
    doc_length = check_int(doc_length, "doc_length", 1)
    extra_label_prob = check_float(extra_label_prob, "extra_label_prob", 0.0, 1.0)
    multilabel = check_bool(multilabel, "multilabel")
    if isinstance(n_features, (str, bytes)) or not hasattr(n_features, "__len__"):
        raise TypeError(f"'n_features' must be a sequence of ints. Got {_describe(n_features)}.")
    n_features = [check_int(d, f"n_features[{m}]", 1) for m, d in enumerate(n_features)]
    if len(n_features) < 2:
        raise ValueError(f"'n_features' must list at least 2 modalities. Got {n_features}.")
    if isinstance(kinds, str) or len(kinds) != len(n_features):
        raise ValueError(
            f"'kinds' must have one entry per modality ({len(n_features)}). Got {kinds!r} instead."
        )
    kinds = [check_option(k, f"kinds[{m}]", ("dense", "sparse")) for m, k in enumerate(kinds)]
    rng = check_random_state(random_state)

    primary = rng.integers(0, n_classes, n_samples)
    member = np.zeros((n_samples, n_classes), dtype=np.uint8)
    member[np.arange(n_samples), primary] = 1
    if multilabel:
        member |= (rng.random((n_samples, n_classes)) < extra_label_prob).astype(np.uint8)
    centres = rng.standard_normal((n_classes, latent_dim))
    weights = member / member.sum(axis=1, keepdims=True)
    z = weights @ centres + noise * rng.standard_normal((n_samples, latent_dim))

    modalities, names = [], []
    for m, (d, kind) in enumerate(zip(n_features, kinds)):
        if kind == "dense":
            W = rng.standard_normal((latent_dim, d)) / np.sqrt(latent_dim)
            X = z @ W + 0.1 * rng.standard_normal((n_samples, d))
            modalities.append(np.ascontiguousarray(X))
        else:
            modalities.append(bag_of_words(rng, z, member, d, doc_length))
        names.append(f"{kind}{m}")
    labels = member if multilabel else primary.astype(np.int64)
    return MultiModalDataset(modalities, labels, None, None, names)


def bag_of_words(rng, z, member, n_words, doc_length):
    """The ``"sparse"`` modality of :func:`make_multimodal`: documents drawn
    from the objects' class topics, ``log(1 + counts)``, rows L2-normalised."""
    n_samples, n_classes = member.shape
    # Topics concentrated on a few words each, plus a flat background.
    topics = rng.dirichlet(np.full(n_words, 0.05), size=n_classes)
    background = rng.dirichlet(np.full(n_words, 1.0))
    V = rng.standard_normal((z.shape[1], n_classes))
    logits = z @ V
    logits = np.where(member > 0, logits, -np.inf)
    mix = np.exp(logits - logits.max(axis=1, keepdims=True))
    mix /= mix.sum(axis=1, keepdims=True)
    probs = 0.8 * (mix @ topics) + 0.2 * background
    lengths = np.maximum(1, rng.poisson(doc_length, n_samples))
    rows, cols, vals = [], [], []
    for i in range(n_samples):
        counts = rng.multinomial(lengths[i], probs[i] / probs[i].sum())
        nz = np.flatnonzero(counts)
        rows.append(np.full(nz.size, i))
        cols.append(nz)
        vals.append(np.log1p(counts[nz]))
    X = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n_samples, n_words))
    X = Preprocessor("l2").transform(X)
    X.sort_indices()
    return X
