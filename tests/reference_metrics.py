"""Plain, slow, obviously-correct retrieval metrics used to test
flexcmh_fast.metrics.  Everything goes through explicit sorting / loops."""
import itertools

import numpy as np


def hamming(query_codes, db_codes, n_bits):
    q = np.unpackbits(query_codes, axis=1, count=n_bits).astype(np.int64)
    d = np.unpackbits(db_codes, axis=1, count=n_bits).astype(np.int64)
    return (q[:, None, :] != d[None, :, :]).sum(axis=2)


def relevance(query_labels, db_labels):
    ql, dl = np.asarray(query_labels), np.asarray(db_labels)
    if ql.ndim == 1:
        return ql[:, None] == dl[None, :]
    return (ql.astype(np.int64) @ dl.astype(np.int64).T) > 0


def ap_of_ranking(rel_sorted, top_k=None):
    """AP of a ranked 0/1 relevance list: mean precision at each relevant hit."""
    rel_sorted = np.asarray(rel_sorted, dtype=bool)
    if rel_sorted.sum() == 0:
        return np.nan
    if top_k is not None:
        rel_sorted = rel_sorted[:top_k]
    hits = np.flatnonzero(rel_sorted)
    if hits.size == 0:
        return 0.0
    return float(np.mean([(np.sum(rel_sorted[:h + 1])) / (h + 1) for h in hits]))


def ap_stable(query_codes, db_codes, query_labels, db_labels, n_bits, top_k=None):
    """Stable tie-break: sort by (distance, database index)."""
    dist = hamming(query_codes, db_codes, n_bits)
    rel = relevance(query_labels, db_labels)
    out = np.empty(dist.shape[0])
    for i in range(dist.shape[0]):
        order = np.argsort(dist[i], kind="stable")  # ties by database index
        out[i] = ap_of_ranking(rel[i, order], top_k)
    return out


def ap_stable_index_order(query_codes, db_codes, query_labels, db_labels, n_bits, top_k=None):
    """The same AP, with the precisions summed in database-index order (the
    order the engine adds them), so the result is bit-identical."""
    dist = hamming(query_codes, db_codes, n_bits)
    rel = relevance(query_labels, db_labels)
    n_db = dist.shape[1]
    k = n_db if top_k is None else top_k
    out = np.empty(dist.shape[0])
    for i in range(dist.shape[0]):
        if not rel[i].any():
            out[i] = np.nan
            continue
        order = np.argsort(dist[i], kind="stable")
        rank = np.empty(n_db, dtype=np.int64)
        rank[order] = np.arange(1, n_db + 1)
        rel_rank = np.empty(n_db, dtype=np.int64)
        rel_rank[order] = np.cumsum(rel[i, order])
        total, count = 0.0, 0
        for j in range(n_db):
            if rel[i, j] and rank[j] <= k:
                total += float(rel_rank[j]) / float(rank[j])
                count += 1
        out[i] = total / count if count else 0.0
    return out


def ap_aware(query_codes, db_codes, query_labels, db_labels, n_bits, top_k=None):
    """Tie-aware AP, position by position: in a tie group of n items with r
    relevant at ranks a+1..a+n after Rb relevant items, E[rel(i) prec(i)] =
    (r/n) (Rb + 1 + (i-a-1)(r-1)/(n-1)) / i.  With top_k: expected sum over
    ranks <= top_k divided by the expected number of relevant items there."""
    dist = hamming(query_codes, db_codes, n_bits)
    rel = relevance(query_labels, db_labels)
    n_db = dist.shape[1]
    k_max = n_db if top_k is None else min(top_k, n_db)
    out = np.empty(dist.shape[0])
    for i in range(dist.shape[0]):
        if rel[i].sum() == 0:
            out[i] = np.nan
            continue
        num = den = 0.0
        a = 0
        rb = 0
        for d in np.unique(dist[i]):
            members = dist[i] == d
            n = int(members.sum())
            r = int(rel[i, members].sum())
            for pos in range(a + 1, a + n + 1):
                if pos > k_max:
                    break
                c = (r - 1) / (n - 1) if n > 1 else 0.0
                num += (r / n) * (rb + 1 + (pos - a - 1) * c) / pos
                den += r / n
            a += n
            rb += r
        out[i] = num / den if den > 0 else 0.0
    return out


def ap_aware_bruteforce(query_codes, db_codes, query_labels, db_labels, n_bits):
    """Tie-aware AP by enumerating every order of the (tiny) database that is
    sorted by distance and averaging the AP of each."""
    dist = hamming(query_codes, db_codes, n_bits)
    rel = relevance(query_labels, db_labels)
    out = np.empty(dist.shape[0])
    for i in range(dist.shape[0]):
        aps = [ap_of_ranking(rel[i, list(p)])
               for p in itertools.permutations(range(dist.shape[1]))
               if np.all(np.diff(dist[i, list(p)]) >= 0)]
        out[i] = np.mean(aps)
    return out


def precision_at_k_stable(query_codes, db_codes, query_labels, db_labels, n_bits, ks):
    dist = hamming(query_codes, db_codes, n_bits)
    rel = relevance(query_labels, db_labels)
    rows = []
    for i in range(dist.shape[0]):
        if rel[i].sum() == 0:
            continue
        order = np.argsort(dist[i], kind="stable")
        rows.append([rel[i, order[:k]].mean() for k in ks])
    return np.mean(rows, axis=0)


def precision_at_k_aware(query_codes, db_codes, query_labels, db_labels, n_bits, ks):
    """Expected precision@k: the tie group cut at k contributes its relevant
    fraction times the number of its ranks inside the top k."""
    dist = hamming(query_codes, db_codes, n_bits)
    rel = relevance(query_labels, db_labels)
    rows = []
    for i in range(dist.shape[0]):
        if rel[i].sum() == 0:
            continue
        row = []
        for k in ks:
            expected = 0.0
            a = 0
            for d in np.unique(dist[i]):
                members = dist[i] == d
                n = int(members.sum())
                inside = max(0, min(k, a + n) - a)
                expected += inside * rel[i, members].sum() / n
                a += n
            row.append(expected / k)
        rows.append(row)
    return np.mean(rows, axis=0)


def pr_curve(query_codes, db_codes, query_labels, db_labels, n_bits, average="macro"):
    dist = hamming(query_codes, db_codes, n_bits)
    rel = relevance(query_labels, db_labels)
    keep = rel.sum(axis=1) > 0
    dist, rel = dist[keep], rel[keep]
    prec, rec = [], []
    for r in range(n_bits + 1):
        ball = dist <= r
        hit = (ball & rel).sum(axis=1)
        size = ball.sum(axis=1)
        if average == "macro":
            prec.append(np.mean([h / s if s else 0.0 for h, s in zip(hit, size)]))
            rec.append(np.mean(hit / rel.sum(axis=1)))
        else:
            prec.append(hit.sum() / size.sum() if size.sum() else 0.0)
            rec.append(hit.sum() / rel.sum())
    return np.array(prec), np.array(rec)
