"""The command line: argument errors, table layout, output files, and small
end-to-end runs of ``demo`` and ``experiment``."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

import flexcmh_fast
import flexcmh_fast.experiments as experiments
from flexcmh_fast.experiments import _cli


@pytest.fixture(scope="module")
def small_mat(tmp_path_factory):
    """A small XAll/YAll/LAll file with learnable, non-negative features."""
    rng = np.random.default_rng(0)
    n, y = 160, rng.integers(0, 4, 160)
    centres = rng.random((4, 8)) * 3
    X = np.abs(centres[y] + 0.3 * rng.standard_normal((n, 8)))
    Y = np.abs(centres[y] @ rng.random((8, 12)) + 0.3 * rng.standard_normal((n, 12)))
    path = tmp_path_factory.mktemp("data") / "small.mat"
    scipy.io.savemat(path, {"XAll": X, "YAll": Y, "LAll": np.eye(4)[y]})
    return path


def fake_result(paper=True, repeats=2):
    runs = []
    for scenario in ("paired", "unpaired"):
        for b in (16, 32):
            for rep in range(repeats):
                for d in ("I->T", "T->I"):
                    runs.append({"method": "flexcmh", "scenario": scenario, "bits": b,
                                 "repeat": rep, "direction": d, "map": 0.2 + 0.01 * rep,
                                 "map_aware": 0.19, "precision_at_radius": 0.3,
                                 "n_excluded": 0, "train_seconds": 1.0, "n_iter": 3,
                                 "note": ""})
    cfg = {"method": "flexcmh", "scenarios": ["paired", "unpaired"], "bits": [16, 32],
           "repeats": repeats, "split": "random", "directions": ["I->T", "T->I"],
           "paper": paper, "seconds": 1.0, "n_samples": 100}
    curves = {(s, b, d): {"precision": [1.0, 0.5, 0.3], "recall": [0.0, 0.5, 1.0]}
              for s in cfg["scenarios"] for b in cfg["bits"] for d in cfg["directions"]}
    return {"config": cfg, "runs": runs, "summary": experiments.summarize(runs),
            "pr_curves": curves, "objectives": {("paired", 16): [3.0, 2.0, 1.5]}}


def test_table_layout_with_paper_numbers():
    table = experiments.format_table(fake_result(), paper=True)
    lines = table.splitlines()
    assert "paper FlexCMH" in lines[0]
    assert "16 bits" in lines[2] and "32 bits" in lines[2]
    row = next(line for line in lines if line.startswith("paired     I->T"))
    assert "0.2050±0.0050 | 0.2846" in row and "| 0.2889" in row
    row = next(line for line in lines if line.startswith("unpaired   T->I"))
    assert "| 0.2437" in row and "| 0.2459" in row
    plain = experiments.format_table(fake_result(paper=False, repeats=1), paper=False)
    assert "paper" not in plain and "0.2000" in plain and "±" not in plain.splitlines()[-1]


def test_paper_values():
    assert experiments.paper_value("weak2b", "T->I", 128) == 0.2542
    assert experiments.paper_value("weak", "I->T", 24) is None
    assert experiments.paper_value("paired", "X->Y", 16) is None


def test_write_results(tmp_path):
    pytest.importorskip("matplotlib")
    written = experiments.write_results(fake_result(), tmp_path / "out")
    names = sorted(Path(p).name for p in written)
    assert names == ["map_vs_bits.png", "objective.png", "pr_curves.png", "results.json",
                     "runs.csv", "summary.csv", "summary.md"]
    for p in written:
        assert Path(p).stat().st_size > 0
    with open(tmp_path / "out" / "runs.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 16 and rows[0]["scenario"] == "paired"
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {"config", "summary", "runs", "pr_curves", "objectives"} <= set(payload)
    assert payload["summary"][0]["paper"] == 0.2846
    assert (tmp_path / "out" / "map_vs_bits.png").read_bytes()[:4] == b"\x89PNG"
    only_data = experiments.write_results(fake_result(), tmp_path / "out2", plots=False)
    assert len(only_data) == 4


def test_markdown_table_marks_cells_below_the_paper():
    result = fake_result()
    for row in result["summary"]:          # one cell above the paper, the rest below
        if (row["scenario"], row["bits"], row["direction"]) == ("paired", 16, "I->T"):
            row["map_mean"] = 0.30
    lines = experiments.format_markdown(result).splitlines()
    assert lines[0] == "| scenario | task | 16 bits | 32 bits |"
    paired_it = next(line for line in lines if line.startswith("| paired | I->T"))
    cells = paired_it.rstrip(" |").split(" | ")
    assert cells[2] == "0.3000 ± 0.0050 (0.2846)"            # above the paper: no mark
    assert cells[3].endswith("(0.2889) **▼**")               # 0.205 < 0.2889
    plain = experiments.format_markdown(fake_result(paper=False))
    assert "▼" not in plain and "(0." not in plain


@pytest.mark.parametrize("argv", [
    [],
    ["train"],
    ["experiment"],  # --data is required
    ["experiment", "--data", "x", "--bits", "0"],
    ["experiment", "--data", "x", "--bits", "abc"],
    ["experiment", "--data", "x", "--scenario", "semi"],
    ["experiment", "--data", "x", "--repeats", "0"],
    ["experiment", "--data", "x", "--method", "dcmh"],
    ["experiment", "--data", "x", "--param", "max_iter"],
    ["demo", "--n-threads", "0"],
])
def test_bad_options_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        _cli.main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_bad_path_clear_error(tmp_path, capsys):
    assert _cli.main(["experiment", "--data", str(tmp_path / "nope.mat")]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "nope.mat" in err
    assert _cli.main(["experiment", "--data", str(tmp_path)]) == 2
    assert "wikiData.mat" in capsys.readouterr().err
    (tmp_path / "bad.mat").write_bytes(b"garbage" * 50)
    assert _cli.main(["experiment", "--data", str(tmp_path / "bad.mat")]) == 2
    assert "Could not read" in capsys.readouterr().err


def test_bad_method_param_clear_error(small_mat, capsys):
    code = _cli.main(["experiment", "--data", str(small_mat), "--scenario", "paired",
                      "--bits", "8", "--repeats", "1", "--param", "colour=3", "--quiet"])
    assert code == 2
    assert "colour" in capsys.readouterr().err


def test_param_parsing():
    assert _cli._param("max_iter=5") == ("max_iter", 5)
    assert _cli._param("tol=1e-3") == ("tol", 1e-3)
    assert _cli._param("joint=false") == ("joint", False)
    assert _cli._param("code-scheme=itq") == ("code_scheme", "itq")
    assert _cli._param("sigma=none") == ("sigma", None)


def test_experiment_end_to_end(small_mat, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "res"
    code = _cli.main(["experiment", "--data", str(small_mat), "--scenario", "paired", "weak2b",
                      "--bits", "8", "16", "--repeats", "2", "--param", "max_iter=4",
                      "--n-threads", "2", "--out", str(out), "--quiet", "--seed", "3"])
    assert code == 0
    text = capsys.readouterr().out
    assert "weak2b" in text and "16 bits" in text and "paper" not in text
    summary = list(csv.DictReader(open(out / "summary.csv")))
    assert len(summary) == 2 * 2 * 2
    for row in summary:
        assert 0.0 < float(row["map_mean"]) <= 1.0 and row["n_repeats"] == "2"
    payload = json.loads((out / "results.json").read_text())
    assert payload["config"]["repeats"] == 2 and payload["objectives"]
    assert (out / "pr_curves.png").exists()
    # Same seed, same numbers.
    again = experiments.run_experiment(
        _cli.load_data(str(small_mat))[0], scenarios=["paired", "weak2b"], bits=[8, 16],
        repeats=2, seed=3, n_threads=2, params={"max_iter": 4}, progress=False)
    by_key = {(r["scenario"], r["bits"], r["direction"]): r for r in again["summary"]}
    for row in summary:
        assert float(row["map_mean"]) == pytest.approx(
            by_key[(row["scenario"], int(row["bits"]), row["direction"])]["map_mean"])


def test_experiment_csmh_skips_unpaired(small_mat, capsys):
    code = _cli.main(["experiment", "--data", str(small_mat), "--scenario", "weak", "unpaired",
                      "--bits", "8", "--repeats", "1", "--method", "csmh",
                      "--param", "n_anchors=20", "--param", "max_iter=2", "--quiet",
                      "--n-threads", "1"])
    assert code == 0
    text = capsys.readouterr().out
    assert "n/a" in text and "csmh needs known pairs" in text
    row = next(line for line in text.splitlines() if line.startswith("weak "))
    assert "n/a" not in row
    # Without n_anchors the default (1000) is capped at the known pairs (56).
    code = _cli.main(["experiment", "--data", str(small_mat), "--scenario", "weak",
                      "--bits", "8", "--repeats", "1", "--method", "csmh",
                      "--param", "max_iter=2", "--quiet", "--n-threads", "1"])
    assert code == 0


def test_demo_small(capsys):
    code = _cli.main(["demo", "--n-samples", "150", "--bits", "8", "--param", "max_iter=3",
                      "--quiet", "--n-threads", "1"])
    assert code == 0
    text = capsys.readouterr().out
    for word in ("paired", "weak", "unpaired", "I->T", "T->I", "8 bits"):
        assert word in text


def test_module_entry_point_help(tmp_path):
    # The child imports the same flexcmh_fast as this process (installed
    # package or source tree), not whatever the working directory holds.
    env = dict(os.environ, PYTHONPATH=str(Path(flexcmh_fast.__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, "-m", "flexcmh_fast", "--help"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "experiment" in proc.stdout and "demo" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "flexcmh_fast", "experiment", "--help"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert "--scenario" in proc.stdout and "--repeats" in proc.stdout


def test_jobs_give_identical_results(small_mat):
    data = _cli.load_data(str(small_mat))[0]
    kwargs = dict(scenarios=["weak"], bits=[8, 16], repeats=1, seed=1, n_threads=2,
                  params={"max_iter": 3}, progress=False)
    one = experiments.run_experiment(data, jobs=1, **kwargs)
    two = experiments.run_experiment(data, jobs=2, **kwargs)
    assert [r["map"] for r in one["runs"]] == [r["map"] for r in two["runs"]]
    assert two["config"]["jobs"] == 2


@pytest.mark.wiki
def test_experiment_on_wiki_shows_paper_numbers(wiki_dir, capsys):
    code = _cli.main(["experiment", "--data", str(wiki_dir), "--scenario", "paired",
                      "--bits", "16", "--repeats", "1", "--param", "max_iter=3",
                      "--quiet", "--n-threads", "2", "--no-plots"])
    assert code == 0
    text = capsys.readouterr().out
    assert "2866 objects" in text and "| 0.2846" in text and "| 0.2812" in text


def test_out_that_is_a_file_fails_before_training(tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    with pytest.raises(SystemExit) as exc:
        _cli.main(["demo", "--n-samples", "100", "--out", str(target)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--out must be a folder" in err and "demo: synthetic data" not in err
    assert target.read_text() == "keep me"
