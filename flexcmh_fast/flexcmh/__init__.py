"""FlexCMH (Yu, Liu, Wang, Domeniconi, Zhang): cross-modal hashing from
weakly-paired data.

Modules: ``_estimator`` (the :class:`FlexCMH` estimator and its parameter
table), ``_algorithm`` (Algorithm 1, once for every backend), ``_loop``
(the outer loop's state, convergence test and re-ranking schedule),
``_partition`` (the per-row state and the steps run on each partition),
``_start`` (k-means seeded SemiNMF), ``_matching`` (Eq. 1 cluster matching
from per-cluster summaries), ``_codes`` (ITQ and k-means code functions),
``_encoder`` (out-of-sample encoders), ``_kernels`` (Numba kernels),
``_tuning`` (every tuning constant).
"""
from ._estimator import FlexCMH

__all__ = ["FlexCMH"]
