"""The experiment with several methods on the same splits: run_comparison,
its tables and plot, and the CLI's ``--method a b c`` / ``METHOD:KEY=VALUE``."""

import csv

import numpy as np
import pytest

import flexcmh_fast as fc
import flexcmh_fast.experiments as experiments
from flexcmh_fast.experiments import _cli

BASELINES = ["cca_itq", "cmfh", "scm"]


@pytest.fixture(scope="module")
def data():
    d = fc.datasets.make_multimodal(n_samples=400, n_features=(20, 60), random_state=1)
    d.names = ["image", "text"]
    return d


@pytest.fixture(scope="module")
def comparison(data):
    return experiments.run_comparison(
        data, BASELINES, scenarios=["paired", "weak", "unpaired"], bits=[8, 16], repeats=2,
        seed=5, n_threads=1, progress=False, method_params={"cmfh": {"max_iter": 20}})


def test_comparison_runs_every_method_on_the_same_splits(data, comparison):
    assert comparison["methods"] == BASELINES
    runs = {m: comparison["results"][m]["runs"] for m in BASELINES}
    # a method run alone with the same seed gives the same numbers: same splits and scenarios
    alone = experiments.run_experiment(data, method="scm", scenarios=["paired", "weak", "unpaired"],
                                       bits=[8, 16], repeats=2, seed=5, n_threads=1,
                                       progress=False)
    assert [r["map"] for r in alone["runs"]] == pytest.approx(
        [r["map"] for r in runs["scm"]], nan_ok=True)
    for m in BASELINES:
        paired = [r for r in runs[m] if r["scenario"] == "paired"]
        assert all(r["map"] > 0.3 for r in paired)        # 10 classes: chance ~ 0.1
        unpaired = [r for r in runs[m] if r["scenario"] == "unpaired"]
        assert all(np.isnan(r["map"]) and r["note"] == f"{m} needs known pairs"
                   for r in unpaired)
    assert comparison["results"]["cmfh"]["config"]["params"] == {"max_iter": 20}
    assert comparison["results"]["scm"]["config"]["params"] == {}


def test_comparison_tables(comparison):
    text = experiments.format_comparison(comparison)
    assert "[paired] completely paired" in text and "[unpaired]" in text
    assert "n/a: cmfh needs known pairs" in text
    row = next(line for line in text.splitlines() if line.startswith("cca_itq I->T"))
    assert row.count("±") == 2 and "/" in row.split()[-1]      # 2 bits, then train seconds
    md = experiments.format_comparison_markdown(comparison)
    paired = md.split("(paired)")[1].split("(weak)")[0]
    for d_name in ("I->T", "T->I"):
        for col in range(2):
            cells = [line.split(" | ")[2 + col] for line in paired.splitlines()
                     if f"| {d_name} |" in line]
            assert sum(c.startswith("**") for c in cells) == 1    # the best is bold
            means = [float(c.strip("*").split(" ± ")[0]) for c in cells]
            assert cells[int(np.argmax(means))].startswith("**")


def test_comparison_unknown_method_params(data):
    with pytest.raises(ValueError, match=r"method\(s\) \['csmh'\] that are not run"):
        experiments.run_comparison(data, ["cmfh"], method_params={"csmh": {"alpha": 1.0}})


def test_cli_several_methods(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = _cli.main(["experiment", "--data", "synthetic", "--method", "cca_itq", "scm",
                      "--scenario", "paired", "unpaired", "--bits", "8", "--repeats", "2",
                      "--n-threads", "1", "--quiet", "--out", str(out), "--seed", "2",
                      "--param", "scm:reg=0.01"] + (["--no-plots"] if not _has_mpl() else []))
    assert code == 0
    text = capsys.readouterr().out
    assert "[paired]" in text and "cca_itq I->T" in text and "scm     T->I" in text
    assert "n/a: scm needs known pairs" in text
    assert (out / "comparison.md").exists() and (out / "comparison.txt").exists()
    for m in ("cca_itq", "scm"):
        rows = list(csv.DictReader(open(out / m / "runs.csv")))
        assert {r["method"] for r in rows} == {m} and len(rows) == 2 * 2 * 2
    if _has_mpl():
        assert (out / "map_vs_bits_methods.png").exists()


@pytest.mark.parametrize("argv, message", [
    (["--method", "cmfh", "--param", "scm:reg=1"], "['scm'] that are not run"),
    (["--method", "cmfh", "scm", "--param", "colour=1"], "colour"),
    (["--method", "cca_itq", "--param", "cca_itq:reg=0"], "'reg' must be a finite float"),
])
def test_cli_bad_method_params(argv, message, capsys):
    code = _cli.main(["experiment", "--data", "synthetic", "--scenario", "paired", "--bits", "8",
                      "--repeats", "1", "--quiet", "--n-threads", "1"] + argv)
    assert code == 2
    assert message in capsys.readouterr().err


def test_param_with_method_prefix():
    assert _cli._param("cmfh:mu=10") == ("cmfh:mu", 10)
    assert _cli._param("cca_itq:eigen-power=1.5") == ("cca_itq:eigen_power", 1.5)
    with pytest.raises(Exception, match="unknown method 'dcmh'"):
        _cli._param("dcmh:x=1")


def test_cli_bad_method_name_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        _cli.main(["experiment", "--data", "synthetic", "--method", "cmfh", "dcmh"])
    assert exc.value.code == 2


def _has_mpl():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_markdown_flexcmh_differences():
    def result(method, base):
        summary = [{"scenario": "paired", "bits": b, "direction": d, "map_mean": base + 0.01 * i,
                    "map_std": 0.001, "n_repeats": 3, "train_seconds_mean": 1.0}
                   for i, b in enumerate((16, 32)) for d in ("I->T", "T->I")]
        cfg = {"bits": [16, 32], "directions": ["I->T", "T->I"], "scenarios": ["paired"],
               "paper": True}
        return {"config": cfg, "summary": summary, "runs": []}
    cmp = {"methods": ["flexcmh", "cmfh", "scm"],
           "results": {"flexcmh": result("flexcmh", 0.25), "cmfh": result("cmfh", 0.2),
                       "scm": result("scm", 0.3)}}
    md = experiments.format_comparison_markdown(cmp)
    assert "| cmfh | I->T | +0.0500 | +0.0500 |" in md
    assert "| scm | T->I | -0.0500 | -0.0500 |" in md
    assert "**0.3000 ± 0.0010**" in md and "(0.2846)" in md     # best bold; paper beside FlexCMH


def test_markdown_unpaired_cells(comparison):
    md = experiments.format_comparison_markdown(comparison)
    unpaired = md.split("(unpaired)")[1]
    assert "**" not in unpaired and "| n/a | n/a | -/- |" in unpaired
    assert "FlexCMH minus" not in md        # FlexCMH not among the methods



@pytest.mark.parametrize("kwargs, message", [
    ({"split": "fixd"}, r"^'split' must be one of \['fixed', 'random'\]. Got 'fixd' instead.$"),
    ({"method": "dcmh"}, r"^'method' must be one of \['cca_itq', 'cmfh', 'csmh', 'flexcmh', "
                         r"'scm'\]. Got 'dcmh' instead.$"),
    ({"database": "both"}, r"^'database' must be one of \['encoded', 'learned'\]"),
    ({"split": "fixed"}, "split='fixed' needs a dataset with a fixed train/test split"),
])
def test_experiment_settings_refused_before_any_training(data, kwargs, message, monkeypatch):
    """A misspelt split or method is an error naming the argument, not a
    silent run of random splits (or a failure after the first cells)."""
    from flexcmh_fast.experiments import _protocol

    def no_training(*args, **kw):
        raise AssertionError("a cell ran")

    monkeypatch.setattr(_protocol, "_run_cell", no_training)
    with pytest.raises(ValueError, match=message):
        experiments.run_experiment(data, scenarios=["paired"], bits=[8], repeats=1,
                                   progress=False, **kwargs)


def test_experiments_public_names_resolve():
    for name in experiments.__all__:
        assert getattr(experiments, name) is not None
    assert experiments.paper_value("paired", "I->T", 16) == experiments.PAPER_WIKI[
        "paired"]["I->T"][0]
