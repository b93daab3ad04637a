"""Experiment tooling, kept out of the library core: the paper's protocol
(splits, scenarios, MAP in every direction, several methods on the same
splits), reports and plots, the paper's published numbers, and the
``flexcmh-fast`` command line.  The library never imports this package.

Modules: ``_protocol`` (``run_experiment``, ``run_comparison``, tables,
plots, ``PAPER_WIKI``), ``_cli`` (``flexcmh-fast demo`` / ``experiment``).
"""
