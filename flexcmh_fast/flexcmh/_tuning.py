"""Every tuning constant of the FlexCMH trainer, in one place.

None of these is a user setting: they bound costs (sample sizes, sweeps)
or were chosen once on validation splits of the Wiki training part
(``docs/flexcmh.md``).  Changing one changes results.
"""
# Clusters per modality when n_clusters=None (the paper's value for Wiki),
# capped to the smallest modality on one machine.
DEFAULT_CLUSTERS = 10
# Coordinate-descent sweeps of the H step per outer iteration.
H_SWEEPS = 1
# Passes of the H step over the modalities per outer iteration (H_0, H_1,
# H_0, H_1, ... with Z and Γ fixed): the pair term couples the modalities'
# indicators, so a pass over one modality starts from its partners'
# indicators of the previous pass.  With two, Γ can be re-ranked in every
# iteration without losing validation MAP, in fewer iterations than
# re-ranking only once the codes have settled (docs/flexcmh.md,
# "Convergence").
H_PASSES = 2
# NNLS that encodes new samples (encoder="nnls"): sweeps, tolerance, rows per batch.
ENCODE_SWEEPS = 300
ENCODE_TOL = 1e-7
ENCODE_BATCH = 65536
# SemiNMF warm-up iterations after k-means (Eq. 3 only, no coupling).
INIT_ITERS = 5
# NNLS sweeps (Eq. 3, the centroids fixed) that re-derive the indicators of a
# partition rebuilt after a lost worker (docs/scaling_out.md, "Fault
# tolerance").
RESTORE_SWEEPS = 10
# k-means of the start runs on at most this many rows per modality.
KMEANS_SAMPLE = 10_000
# k-means++ seedings of the start (the run with the smallest inertia wins).
KMEANS_INITS = 3
# ITQ / k-means iterations of the code step inside the loop (warm-started)
# and for the final code function.
CODE_ITERS_LOOP = 1
CODE_ITERS_FINAL = 50
# Ridge of the Z step, relative to the mean diagonal of H^T H.
Z_RIDGE = 1e-2
# Aligned rows the in-loop code step is fitted on (at most).
CODE_SAMPLE = 20_000
# Per-cluster cost improvement a re-matching needs to replace the current one.
REMATCH_MARGIN = 0.01
# Below this many indicator entries (sum of n_m times k) one thread is used:
# waking worker threads would cost more than the kernels themselves
# (docs/flexcmh.md, "Training speed").
PARALLEL_MIN_SIZE = 200_000
# Kernel encoder (encoder="kernel"): RBF width = this factor times the mean
# sample-to-anchor distance, ridge relative to the mean diagonal of the
# kernel Gram matrix, at most this many training rows for the regression,
# rows per kernel block (the unit of work spread over the threads: small
# enough that the regression rows make several blocks per thread).  Factor
# and ridge chosen on Wiki validation data.
ENC_SIGMA_FACTOR = 0.5
ENC_RIDGE = 1e-3
ENC_FIT_SAMPLE = 20_000
ENC_BLOCK = 2048
# Rows that set the RBF width of the kernel encoder (at most).
ENC_WIDTH_SAMPLE = 1000
# Convergence: besides the relative change of the continuous terms of Eq. 6
# (``tol``), at most this fraction of the training codes' bits may change
# in the last iteration.  Not 0: the in-loop code is warm-started ITQ with
# one rotation step an iteration, so bits near the boundary keep flipping
# after the indicators have settled (docs/flexcmh.md, "Convergence").
CODE_CHANGE_TOL = 0.01
# match_score="gw": rows per modality sub-sampled for the Gromov–Wasserstein
# alignment (its cost is O(GW_SAMPLE^3) per iteration, independent of n),
# entropic regularisation (on mean-normalised distances) and iterations.
GW_SAMPLE = 800
GW_EPS = 2e-2
GW_ITERS = 100
# Dense products of the data with at most this many columns (X Z, X^T H)
# run in the streaming Numba kernels, wider ones in BLAS, and a block of
# square roots of Hellinger rows for BLAS takes at most this many bytes
# (docs/flexcmh.md, "Training speed").
STREAM_MAX_COLUMNS = 16
ROOT_BLOCK_BYTES = 1 << 22
# Rows of float32 indicators cast to float64 at a time for H^T H.
GRAM_BLOCK_ROWS = 8192
