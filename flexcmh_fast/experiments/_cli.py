"""Command line: ``python -m flexcmh_fast {demo,experiment}`` (also installed
as ``flexcmh-fast``).  See docs/evaluation.md."""
import argparse
import os
import sys
import time

from .._registry import method_names
from ..scenarios import SCENARIOS
from ._protocol import run_comparison, run_experiment
from ._report import write_comparison, write_results
from ._tables import format_comparison, format_table

# From the method registry, whose entries import nothing: building the
# parser does not import the trainers.
METHODS = method_names()

PROG = "flexcmh-fast"


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return value


def _bits(text):
    value = _positive_int(text)
    if value > 4096:
        raise argparse.ArgumentTypeError(f"code length must be in [1, 4096], got {text!r}")
    return value


def _threads(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1 or -1, got {text!r}") from None
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1 or -1 (all cores), got {text!r}")
    return value


def _param(text):
    """``key=value`` (or ``method:key=value``, for one method only) with value
    parsed as int, float, bool, None or str; returns ``(key, value)`` with
    the key ``"method:key"`` when a method is named."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    method, _, key = key.strip().rpartition(":")
    key = key.strip().replace("-", "_")
    if not key.isidentifier():
        raise argparse.ArgumentTypeError(f"invalid parameter name in {text!r}")
    if method:
        if method not in METHODS:
            raise argparse.ArgumentTypeError(
                f"unknown method {method!r} in {text!r}; expected one of {', '.join(METHODS)}")
        key = f"{method}:{key}"
    low = raw.strip().lower()
    if low in ("true", "false"):
        return key, low == "true"
    if low == "none":
        return key, None
    for conv in (int, float):
        try:
            return key, conv(raw)
        except ValueError:
            pass
    return key, raw


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Cross-modal hashing from weakly-paired data (FlexCMH, CSMH; "
                    "baselines CCA-ITQ, CMFH, SCM): "
                    "demo and the paper's experiment protocol.")
    sub = parser.add_subparsers(dest="command", metavar="{demo,experiment}")
    sub.required = True

    def common(p):
        p.add_argument("--method", nargs="+", choices=METHODS + ("all",), default=["flexcmh"],
                       help="hashing method(s), or 'all'; several methods run on the same "
                            "splits and print one comparison table per scenario "
                            "(default: flexcmh)")
        p.add_argument("--seed", type=int, default=0, help="base random seed (default: 0)")
        p.add_argument("--n-threads", type=_threads, default=None,
                       help="threads for training and evaluation (default: all cores)")
        p.add_argument("--jobs", type=_positive_int, default=1,
                       help="cells trained at once in worker processes, each with "
                            "n_threads / jobs threads (default: 1)")
        p.add_argument("--param", type=_param, action="append", default=[],
                       metavar="[METHOD:]KEY=VALUE",
                       help="method parameter, e.g. --param max_iter=100, or for one of "
                            "several methods --param cmfh:mu=10 (repeatable)")
        p.add_argument("--out", default=None, metavar="DIR",
                       help="write CSV/JSON results and PNG plots into DIR")
        p.add_argument("--database", choices=("encoded", "learned"), default="encoded",
                       help="database codes: the training rows encoded by the hash "
                            "functions (default) or the models' learned training codes")
        p.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--verbose", action="store_true",
                       help="also show the trainer's per-iteration progress")

    demo = sub.add_parser(
        "demo", help="train on built-in synthetic data and print a small MAP table (< 1 min)",
        description="Train on built-in synthetic image/text data (dense + sparse "
                    "bag-of-words, 10 classes) in three scenarios and print MAP.")
    demo.add_argument("--n-samples", type=_positive_int, default=1000,
                      help="synthetic objects (default: 1000)")
    demo.add_argument("--bits", type=_bits, nargs="+", default=[16, 32],
                      help="code lengths (default: 16 32)")
    common(demo)

    exp = sub.add_parser(
        "experiment", help="run the paper's protocol on a dataset",
        description="Random 70/30 splits x repetitions; per split the training scenarios; "
                    "per scenario one model per code length; MAP in both directions.")
    exp.add_argument("--data", required=True, metavar="PATH",
                     help="wiki folder or wikiData.mat, another .mat (I_*/T_*/L_* or "
                          "XAll/YAll/LAll layout), or 'synthetic'")
    exp.add_argument("--scenario", nargs="+", default=["all"],
                     choices=list(SCENARIOS) + ["all"],
                     help="training scenario(s) (default: all)")
    exp.add_argument("--bits", type=_bits, nargs="+", default=[16, 32, 64, 128],
                     help="code lengths (default: 16 32 64 128)")
    exp.add_argument("--repeats", type=_positive_int, default=10,
                     help="random splits (default: 10)")
    exp.add_argument("--split", choices=("random", "fixed"), default="random",
                     help="random 70/30 split per repetition, or the file's fixed split")
    exp.add_argument("--test-size", type=float, default=0.3,
                     help="test fraction of the random split (default: 0.3)")
    exp.add_argument("--preprocess", nargs="+", default=["none"], metavar="KIND",
                     choices=("none", "l2", "hellinger"),
                     help="row normalisation per modality, one KIND for all or one per "
                          "modality: none, l2, hellinger (sqrt then L2) (default: none)")
    exp.add_argument("--text", choices=("lda", "tfidf"), default="lda",
                     help="Wiki text modality: LDA topics or sparse TF-IDF (default: lda)")
    common(exp)
    return parser


def load_data(path, text="lda", seed=0):
    """Dataset for ``--data``; returns ``(dataset, is_wiki)``."""
    from .. import datasets
    if path == "synthetic":
        data = datasets.make_multimodal(random_state=seed)
        data.names = ["image", "text"]  # dense "image" and bag-of-words "text"
        return data, False
    if not os.path.exists(path):
        raise FileNotFoundError(f"--data: no such file or directory: {path!r}")
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "wikiData.mat")):
            return datasets.load_wiki(path, text=text), True
        raise FileNotFoundError(
            f"--data: the folder {path!r} has no wikiData.mat; give a .mat file instead.")
    if os.path.basename(path).lower().startswith("wikidata"):
        return datasets.load_wiki(path, text=text), True
    return datasets.load_mat(path), False


def _report(result, args, paper, started):
    out = sys.stdout
    print(format_table(result, paper=paper), file=out)
    excluded = sum(r["n_excluded"] for r in result["runs"])
    if excluded:
        print(f"({excluded} query evaluation(s) had no relevant item and were excluded.)",
              file=out)
    if args.out:
        written = write_results(result, args.out, plots=not args.no_plots)
        print(f"wrote {len(written)} files to {args.out}: "
              + ", ".join(os.path.basename(p) for p in written), file=out)
    print(f"total {time.perf_counter() - started:.1f} s", file=out)


def _report_comparison(comparison, args, paper, started):
    print(format_comparison(comparison, paper=paper))
    if args.out:
        written = write_comparison(comparison, args.out, plots=not args.no_plots)
        print(f"wrote {len(written)} files to {args.out}")
    print(f"total {time.perf_counter() - started:.1f} s")


def _run(data, args, params, method_params, started, paper=False, **kwargs):
    """One method: its table as before; several: the comparison tables."""
    methods = list(METHODS) if "all" in args.method else list(dict.fromkeys(args.method))
    common = dict(n_threads=args.n_threads, progress=not args.quiet, verbose=args.verbose,
                  jobs=args.jobs, database=args.database, seed=args.seed, **kwargs)
    if len(methods) == 1:
        unknown = sorted(set(method_params) - set(methods))
        if unknown:
            raise ValueError(f"Parameters given for method(s) {unknown} that are not run; "
                             f"methods run: {methods}.")
        merged = dict(params, **method_params.get(methods[0], {}))
        result = run_experiment(data, method=methods[0], params=merged, paper=paper, **common)
        _report(result, args, paper, started)
    else:
        comparison = run_comparison(data, methods, params=params, method_params=method_params,
                                    paper=paper, **common)
        _report_comparison(comparison, args, paper, started)
    return 0


def main(argv=None):
    """Entry point; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # The output folder is checked before any training, not after it.
    out = getattr(args, "out", None)
    if out and os.path.exists(out) and not os.path.isdir(out):
        parser.error(f"--out must be a folder (created if missing); {out!r} is a file")
    params, method_params = {}, {}
    for key, value in args.param:
        method, _, name = key.rpartition(":")
        (method_params.setdefault(method, {}) if method else params)[name] = value
    started = time.perf_counter()
    try:
        from .. import datasets
        if args.command == "demo":
            # Moderate latent noise: classes are recoverable but not trivial.
            data = datasets.make_multimodal(n_samples=args.n_samples, noise=0.5,
                                            random_state=args.seed)
            data.names = ["image", "text"]
            if "flexcmh" not in args.method and "all" not in args.method:
                method_params.pop("flexcmh", None)
            print(f"demo: synthetic data {data}", flush=True)
            return _run(data, args, params, method_params, started,
                        scenarios=("paired", "weak", "unpaired"), bits=args.bits, repeats=1)
        if not 0.0 < args.test_size < 1.0:
            parser.error(f"--test-size must be in (0, 1), got {args.test_size}")
        scenarios = (list(SCENARIOS) if "all" in args.scenario
                     else list(dict.fromkeys(args.scenario)))
        data, is_wiki = load_data(args.data, text=args.text, seed=args.seed)
        kinds = args.preprocess
        if len(kinds) == 1:
            kinds = kinds * data.n_modalities
        if len(kinds) != data.n_modalities:
            parser.error(f"--preprocess takes 1 or {data.n_modalities} values "
                         f"(one per modality), got {len(kinds)}")
        data.modalities = [datasets.normalize_rows(X, kind)
                           for X, kind in zip(data.modalities, kinds)]
        print(f"data: {data}; preprocessing {' / '.join(kinds)}", flush=True)
        return _run(data, args, params, method_params, started, paper=is_wiki,
                    scenarios=scenarios, bits=args.bits, repeats=args.repeats,
                    split=args.split, test_size=args.test_size)
    except (FileNotFoundError, ValueError, TypeError, ImportError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
