"""The estimators' scikit-learn conventions: parameters stored unchanged,
validated in fit, get/set_params, clone, repr, not-fitted errors, and the
same fit through ``train`` and through ``fit``."""
import numpy as np
import pytest

import flexcmh_fast as fc
from flexcmh_fast._params import COMMON

sklearn_base = pytest.importorskip("sklearn.base")


@pytest.fixture(scope="module")
def data():
    d = fc.datasets.make_multimodal(n_samples=240, n_classes=4, n_features=(16, 40),
                                    random_state=0)
    return list(d.modalities), np.asarray(d.labels)


ESTIMATORS = [fc.FlexCMH, fc.CSMH, fc.CCAITQ, fc.CMFH, fc.SCM]
# train's method name of each estimator
METHOD = {fc.FlexCMH: "flexcmh", fc.CSMH: "csmh", fc.CCAITQ: "cca_itq", fc.CMFH: "cmfh",
          fc.SCM: "scm"}
# SCM learns exactly n_bits bits in closed form: max_iter and tol must stay None.
ITERATIVE = [cls for cls in ESTIMATORS if cls is not fc.SCM]


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_init_stores_settings_unchanged_and_table_matches_signature(cls):
    import inspect

    names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    assert set(names) == set(cls._parameters)
    assert set(COMMON) <= set(names)
    for name in names:
        assert inspect.signature(cls.__init__).parameters[name].default == \
            cls._parameters[name].default
    # Nothing is validated before fit, and nothing is changed.
    weird = object()
    est = cls(n_bits=weird, max_iter="x")
    assert est.n_bits is weird and est.max_iter == "x"


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_get_set_params_clone_and_repr(cls):
    est = cls(n_bits=16, random_state=0)
    assert est.get_params()["n_bits"] == 16
    assert repr(est) == f"{cls.__name__}(n_bits=16, random_state=0)"
    assert repr(cls()) == f"{cls.__name__}()"
    twin = sklearn_base.clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    assert est.set_params(n_bits=24) is est and est.n_bits == 24
    with pytest.raises(ValueError, match=rf"Unknown parameter\(s\) \['nope'\] for {cls.__name__}"):
        est.set_params(nope=1)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_not_fitted(cls, data):
    Xs, _ = data
    with pytest.raises(fc.NotFittedError, match="not fitted yet"):
        cls().encode(Xs[0], 0)
    with pytest.raises(fc.NotFittedError):
        cls().save("x.npz")


@pytest.mark.parametrize("method,cls,kw", [
    ("flexcmh", fc.FlexCMH, dict(pairs=np.stack([np.arange(120)] * 2, 1))),
    ("csmh", fc.CSMH, dict(pairs="all", labels=True)),
    ("cca_itq", fc.CCAITQ, dict(pairs=np.stack([np.arange(200)] * 2, 1))),
    ("cmfh", fc.CMFH, dict(pairs="all")),
    ("scm", fc.SCM, dict(pairs="all", labels=True)),
])
def test_fit_equals_train_and_set_params_refit(method, cls, kw, data):
    Xs, lab = data
    labels = [lab, lab] if kw.get("labels") else None
    settings = dict(n_bits=16, random_state=0, max_iter=None if cls is fc.SCM else 5)
    a = cls(**settings).fit(Xs, kw["pairs"], labels)
    b = fc.train(Xs, kw["pairs"], method=method, labels=labels, **settings)
    assert type(b) is cls and b.get_params() == a.get_params()
    np.testing.assert_array_equal(a.codes_, b.codes_)
    for m, X in enumerate(Xs):
        np.testing.assert_array_equal(a.encode(X, m), b.encode(X, m))
        np.testing.assert_array_equal(a.transform(X, m), a.encode(X, m))
    # set_params then fit uses the new settings.
    a.set_params(n_bits=24).fit(Xs, kw["pairs"], labels)
    assert a.n_bits_ == 24 and a.encode(Xs[0], 0).shape == (Xs[0].shape[0], 3)
    # A clone of a fitted estimator is unfitted, with the same settings.
    c = sklearn_base.clone(a)
    assert not hasattr(c, "n_features_") and c.get_params() == a.get_params()


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_common_settings_validated_with_the_same_messages(cls, data):
    Xs, lab = data
    loop = [] if cls is fc.SCM else [
        ({"max_iter": -1}, ValueError, r"'max_iter' must be an int >= 0. Got -1"),
        ({"tol": -1.0}, ValueError, "'tol' must be a finite float"),
    ]
    for kw, exc, match in loop + [
        ({"n_bits": 0}, ValueError, r"'n_bits' must be an int in \[1, 4096\]. Got 0"),
        ({"n_threads": 0}, ValueError, "'n_threads' must be None, -1 or an int >= 1"),
        ({"random_state": "a"}, TypeError, "'random_state' must be None"),
        ({"verbose": 1}, TypeError, "'verbose' must be a bool"),
        ({"callback": 3}, TypeError, "'callback' must be callable or None"),
    ]:
        with pytest.raises(exc, match=match):
            cls(**kw).fit(Xs, "all", [lab, lab])
        with pytest.raises(exc, match=match):
            fc.train(Xs, "all", method=METHOD[cls], labels=[lab, lab], **kw)


@pytest.mark.parametrize("cls", ITERATIVE)
def test_max_iter_zero_and_one_based_callback(cls, data):
    Xs, lab = data
    seen = []
    est = cls(n_bits=8, random_state=0, max_iter=3, tol=0.0,
              callback=lambda it, state: seen.append((it, sorted(state))))
    est.fit(Xs, "all", [lab, lab])
    assert [it for it, _ in seen] == list(range(1, est.n_iter_ + 1))
    assert all({"objective", "terms"} <= set(keys) for _, keys in seen)
    assert all(len(v) == est.n_iter_ for v in est.history_.values())
    assert "objective" in est.history_
    zero = cls(n_bits=8, random_state=0, max_iter=0).fit(Xs, "all", [lab, lab])
    assert zero.n_iter_ == 0 and all(len(v) == 0 for v in zero.history_.values())
    assert zero.encode(Xs[1], 1).shape == (Xs[1].shape[0], 1)


def test_format_1_model_files_still_load(tmp_path, data):
    """A model file of format 1 (kind "FlexCMHModel", settings in a params
    dict, three history columns) loads as the estimator."""
    from flexcmh_fast._persist import read_state, save_state

    Xs, _ = data
    model = fc.FlexCMH(n_bits=16, n_clusters=4, random_state=0, max_iter=4,
                       preprocess="none").fit(Xs, None)
    model.save(tmp_path / "v2.npz")
    kind, meta, arrays = read_state(tmp_path / "v2.npz")
    old_meta = {"n_bits": 16, "n_features": meta["n_features"], "n_iter": meta["n_iter"],
                "params": {k: meta["params"][k] for k in (
                    "n_clusters", "n_neighbors", "lam", "max_iter", "tol", "code_scheme",
                    "joint", "matching", "encoder", "n_anchors", "match_score")},
                "pair_keys": meta["pair_keys"], "sigmas": meta["sigmas"]}
    arrays["history"] = arrays["history"][:, 1:4]   # Lc, Ls, λLq
    save_state(tmp_path / "v1.npz", "FlexCMHModel", old_meta, arrays)
    old = fc.load(tmp_path / "v1.npz")
    assert isinstance(old, fc.FlexCMH) and old.n_clusters == 4 and old.n_bits == 16
    for term in ("objective", "inter_modal", "reconstruction", "quantization"):
        np.testing.assert_allclose(old.history_[term], model.history_[term])
    for m, X in enumerate(Xs):
        np.testing.assert_array_equal(old.encode(X, m), model.encode(X, m))


def test_scm_callback_per_bit_and_unused_loop_settings(data):
    """SCM calls back once per bit (from 1) and rejects max_iter / tol,
    which it has no use for, instead of ignoring them."""
    Xs, lab = data
    seen = []
    est = fc.SCM(n_bits=7, callback=lambda it, state: seen.append((it, sorted(state))))
    est.fit(Xs, "all", [lab, lab])
    assert seen == [(it, ["objective", "terms"]) for it in range(1, 8)]
    assert est.n_iter_ == 7 and all(len(v) == 7 for v in est.history_.values())
    for kw in ({"max_iter": 0}, {"tol": 0.0}):
        with pytest.raises(ValueError, match=f"'{next(iter(kw))}' must be None for SCM"):
            fc.SCM(**kw).fit(Xs, "all", [lab, lab])
