"""CSMH (Li et al., TKDE 2025): supervised cross-modal hashing by
kernelisation, MMD alignment of a common subspace, label-similarity
embedding and discrete code updates.

Modules: ``_estimator`` (the :class:`CSMH` estimator and its parameter
table), ``_solver`` (the objective and its alternating minimisation).
"""
from ._estimator import CSMH

__all__ = ["CSMH"]
