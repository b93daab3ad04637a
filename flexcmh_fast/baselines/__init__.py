"""Peer baselines run on the same splits, API and evaluation as FlexCMH and
CSMH: :class:`CCAITQ` (Gong et al., TPAMI 2013), :class:`CMFH` (Ding,
Guo, Zhou, CVPR 2014) and sequential :class:`SCM` (Zhang, Li, AAAI 2014).

Each is a :class:`~flexcmh_fast._base.HashingEstimator` (``fit``,
``encode``, ``save``, ``get_params`` / ``set_params``), also reached
through :func:`flexcmh_fast.train` (``method="cca_itq"``, ``"cmfh"``,
``"scm"``).  See ``docs/baselines.md``.
"""
from ._cca_itq import CCAITQ
from ._cmfh import CMFH
from ._scm import SCM

__all__ = ["CCAITQ", "CMFH", "SCM"]
