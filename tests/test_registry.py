"""The method registry: its entries, what reads it (train, load, the lazy
exports, the command line, the experiment protocol), that each method does
what its entry declares, and that reading it imports nothing heavy."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import flexcmh_fast as fc
from flexcmh_fast import _registry
from flexcmh_fast._persist import read_state, save_state
from flexcmh_fast._registry import (
    ANY_PAIRS,
    COMPLETE_PAIRS,
    KNOWN_PAIRS,
    METHODS,
    PAIR_NEEDS,
    Method,
    estimator_class,
    get_method,
    method_names,
)
from flexcmh_fast.experiments import _cli
from flexcmh_fast.experiments._protocol import _training_set
from flexcmh_fast.scenarios import make_scenario

pytestmark = pytest.mark.filterwarnings("ignore::flexcmh_fast._base.ConvergenceWarning")

NAMES = method_names()
# Fast settings per method (training only has to succeed).
FAST = {"flexcmh": dict(n_clusters=3, max_iter=2), "csmh": dict(n_anchors=10, max_iter=2),
        "cca_itq": dict(max_iter=2), "cmfh": dict(max_iter=2), "scm": {}}


@pytest.fixture(scope="module")
def data():
    d = fc.datasets.make_multimodal(n_samples=60, n_classes=3, n_features=(6, 9),
                                    random_state=0)
    return list(d.modalities), np.asarray(d.labels)


def test_entries_are_well_formed():
    assert NAMES == ("flexcmh", "csmh", "cca_itq", "cmfh", "scm")
    kinds = [kind for m in METHODS for kind in m.kinds]
    assert len(set(kinds)) == len(kinds) and "HammingIndex" not in kinds
    assert len({m.class_name for m in METHODS}) == len(METHODS)
    for m in METHODS:
        assert m.pairs in PAIR_NEEDS and isinstance(m.labels, bool)
        module, _, attr = m.estimator.partition(":")
        assert module.startswith("flexcmh_fast.") and attr == m.class_name
    with pytest.raises(ValueError, match=r"'pairs' must be one of \['any', 'known', "
                                         r"'complete'\]. Got 'some' instead."):
        Method("x", "flexcmh_fast.x:X", ("X",), "some")


def test_get_method_names_the_valid_ones():
    assert get_method("scm").labels and get_method("csmh").pairs == COMPLETE_PAIRS
    with pytest.raises(ValueError, match=r"'method' must be one of \['cca_itq', 'cmfh', "
                                         r"'csmh', 'flexcmh', 'scm'\]. Got 'dcmh' instead."):
        get_method("dcmh")
    with pytest.raises(ValueError, match="'method' must be one of"):
        fc.train([np.zeros((3, 2))] * 2, method="dcmh")


@pytest.mark.parametrize("name", NAMES)
def test_every_reader_reaches_the_method(name, data, tmp_path):
    """train builds it, the package exports it, it saves under its first
    kind and load reads every kind of its entry back as the same class."""
    spec, cls = get_method(name), estimator_class(name)
    assert getattr(fc, spec.class_name) is cls and spec.class_name in fc.__all__
    Xs, lab = data
    model = fc.train(Xs, "all", method=name, labels=[lab, lab], n_bits=8, random_state=0,
                     **FAST[name])
    assert type(model) is cls
    model.save(tmp_path / "model.npz")
    stored, meta, arrays = read_state(tmp_path / "model.npz")
    assert stored == spec.kinds[0]
    for kind in spec.kinds:
        save_state(tmp_path / f"{kind}.npz", kind, meta, arrays)
        back = fc.load(tmp_path / f"{kind}.npz", kind=spec.kinds[0])
        assert type(back) is cls
        np.testing.assert_array_equal(back.encode(Xs[1], 1), model.encode(Xs[1], 1))


@pytest.mark.parametrize("name", NAMES)
def test_each_method_needs_what_its_entry_declares(name, data):
    spec = get_method(name)
    Xs, lab = data
    fast = dict(n_bits=8, random_state=0, **FAST[name])
    labels = [lab, lab]
    # labels
    if spec.labels:
        with pytest.raises(ValueError, match=rf"^'labels' must be one array per modality "
                                             rf"\(1-D class ids or 2-D 0/1 matrices\): "
                                             rf"{spec.class_name} needs 'labels'. "
                                             rf"Got None instead.$"):
            fc.train(Xs, "all", method=name, **fast)
    else:
        fc.train(Xs, "all", method=name, **fast)
    # pairs: none known; half of the objects known
    half = np.stack([np.arange(30), np.arange(30)], axis=1)
    if spec.pairs == ANY_PAIRS:
        fc.train(Xs, None, method=name, labels=labels, **fast)
    else:
        with pytest.raises(ValueError, match="pairs"):
            fc.train(Xs, None, method=name, labels=labels, **fast)
    if spec.pairs == COMPLETE_PAIRS:
        with pytest.raises(ValueError, match="complete one-to-one pairing"):
            fc.train(Xs, half, method=name, labels=labels, **fast)
    else:
        fc.train(Xs, half, method=name, labels=labels, **fast)


@pytest.mark.parametrize("scenario", ["paired", "weak", "unpaired"])
@pytest.mark.parametrize("name", NAMES)
def test_protocol_gives_each_method_the_data_its_entry_declares(name, scenario, data):
    spec = get_method(name)
    Xs, lab = data
    scen = make_scenario(Xs, lab, scenario, random_state=0)
    training = _training_set(scen, spec)
    if scenario == "unpaired" and spec.pairs != ANY_PAIRS:
        assert training is None
        return
    mods, pairs, labels, rows = training
    assert (labels is not None) == spec.labels
    if spec.pairs == COMPLETE_PAIRS and scenario == "weak":
        # the objects with a known pair, as one paired set
        assert pairs == "all" and mods[0].shape[0] == mods[1].shape[0] == len(scen.pairs)
        np.testing.assert_array_equal(mods[1].toarray(),  # the text modality is CSR
                                      scen.modalities[1][scen.pairs[:, 1]].toarray())
        np.testing.assert_array_equal(rows[0], scen.pairs[:, 0])
    else:
        assert mods is scen.modalities and pairs is scen.pairs and rows is None
    fc.train(mods, pairs, method=name, labels=labels, n_bits=8, random_state=0, **FAST[name])


def test_command_line_methods_are_the_registry(capsys):
    parser = _cli.build_parser()
    for name in NAMES + ("all",):
        args = parser.parse_args(["experiment", "--data", "x", "--method", name])
        assert args.method == [name]
    assert _cli._param(f"{NAMES[-1]}:reg=1") == (f"{NAMES[-1]}:reg", 1)
    with pytest.raises(SystemExit):
        parser.parse_args(["experiment", "--data", "x", "--method", "dcmh"])
    assert "invalid choice: 'dcmh'" in capsys.readouterr().err


def _fresh_python(code, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(fc.__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_reading_the_registry_imports_no_numba(tmp_path):
    """Building the CLI parser, loading a HammingIndex file and importing the
    package import no Numba (the registry's entries are strings)."""
    index_path = tmp_path / "index.npz"
    fc.HammingIndex(np.array([[1], [2]], np.uint8), n_bits=8).save(index_path)
    out = _fresh_python(f"""
        import sys
        import flexcmh_fast as fc
        print("numpy" in sys.modules)
        from flexcmh_fast.experiments._cli import build_parser
        build_parser()
        print("numba" in sys.modules)
        index = fc.load({str(index_path)!r})
        print(len(index), "numba" in sys.modules)
        fc.FlexCMH
        print("numba" in sys.modules)
    """, tmp_path)
    assert out == ["False", "False", "2", "False", "True"]


def test_registry_module_imports_nothing_at_module_level():
    import ast

    tree = ast.parse(Path(_registry.__file__).read_text())
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert [alias.name for node in imports for alias in node.names] == ["importlib"]
    assert KNOWN_PAIRS in PAIR_NEEDS
