"""asv benchmarks for CSMH: training and encoding time on synthetic data of
Wiki-like and MIRFlickr-like shapes, and tracked MAP on the real Wiki data
(skipped when ../shared/data/wiki is absent)."""
from pathlib import Path

import numpy as np
import scipy.sparse as sp

import flexcmh_fast as fc

WIKI = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "wiki"


def _synthetic(n, d_img, d_txt, n_classes, density, seed=0):
    """Class-structured dense 'image' and sparse non-negative 'text' features."""
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, n_classes, n)
    onehot = np.eye(n_classes)[lab]
    img = onehot @ rng.standard_normal((n_classes, d_img)) + rng.standard_normal((n, d_img))
    txt = sp.random(n, d_txt, density=density, format="csr", random_state=seed)
    txt = txt + sp.csr_matrix(onehot @ (rng.random((n_classes, d_txt)) < density))
    return [img, sp.csr_matrix(txt)], lab


class TrainSynthetic:
    """Training time, Wiki-sized (n=2000) and MIRFlickr-sized (n=20,000)."""

    params = ([2000, 20000], [16, 64])
    param_names = ["n_samples", "n_bits"]
    timeout = 600

    def setup(self, n, n_bits):
        self.Xs, self.lab = _synthetic(n, 128, 1000, 10, 0.01)

    def time_train(self, n, n_bits):
        fc.train(self.Xs, "all", n_bits=n_bits, method="csmh", labels=[self.lab, self.lab],
                 random_state=0, n_threads=2, n_anchors=1000, max_iter=10)

    def peakmem_train(self, n, n_bits):
        self.time_train(n, n_bits)


class Encode:
    """Out-of-sample encoding (kernel features in blocks -> projection -> sign)."""

    params = [0, 1]
    param_names = ["modality"]

    def setup(self, modality):
        Xs, lab = _synthetic(3000, 128, 1000, 10, 0.01)
        self.model = fc.train(Xs, "all", n_bits=64, method="csmh", labels=[lab, lab],
                              random_state=0, n_threads=2, n_anchors=1000, max_iter=3)
        self.X = _synthetic(50000, 128, 1000, 10, 0.01, seed=1)[0][modality]

    def time_encode_50k(self, modality):
        self.model.encode(self.X, modality)


class Wiki:
    """Real Wiki data, fixed 2173/693 split, square-rooted SIFT histograms,
    LDA text, all training objects as anchors (the documented setting)."""

    params = [16, 64]
    param_names = ["n_bits"]
    timeout = 600

    def setup(self, n_bits):
        if not (WIKI / "wikiData.mat").is_file():
            raise NotImplementedError(f"Wiki data not found at {WIKI}")
        data = fc.datasets.load_wiki(WIKI)
        tr, te = data.train_idx, data.test_idx
        img = np.sqrt(data.modalities[0])
        txt = data.modalities[1]
        self.train_X = [img[tr], txt[tr]]
        self.test_X = [img[te], txt[te]]
        self.L_tr, self.L_te = data.labels[tr], data.labels[te]
        self.n_anchors = len(tr)
        self.model = self._train(n_bits)

    def _train(self, n_bits):
        return fc.train(self.train_X, "all", n_bits=n_bits, method="csmh",
                        labels=[self.L_tr, self.L_tr], random_state=0, n_threads=2,
                        n_anchors=self.n_anchors)

    def time_train(self, n_bits):
        self._train(n_bits)

    def track_map_image_to_text(self, n_bits):
        return fc.metrics.evaluate_retrieval(self.model, self.test_X[0], 0, self.L_te,
                                             self.train_X[1], 1, self.L_tr)

    track_map_image_to_text.unit = "MAP"

    def track_map_text_to_image(self, n_bits):
        return fc.metrics.evaluate_retrieval(self.model, self.test_X[1], 1, self.L_te,
                                             self.train_X[0], 0, self.L_tr)

    track_map_text_to_image.unit = "MAP"
