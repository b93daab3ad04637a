"""Experiment tooling, kept out of the library core: the paper's protocol
(splits, scenarios, MAP in every direction, several methods on the same
splits), tables, result files and plots, the paper's published numbers, and
the ``flexcmh-fast`` command line.  The library never imports this package.

Modules: ``_protocol`` (``run_experiment``, ``run_comparison``,
``summarize``: the protocol and what each method trains on), ``_pool`` (the
cells in worker processes), ``_paper`` (``PAPER_WIKI``, ``paper_value``),
``_tables`` (text and Markdown tables), ``_plots`` (PNG plots), ``_report``
(``write_results``, ``write_comparison``), ``_cli`` (``flexcmh-fast demo`` /
``experiment``).
"""
from ._paper import PAPER_BITS, PAPER_WIKI, SCENARIO_TITLES, paper_value
from ._protocol import direction_name, run_comparison, run_experiment, summarize
from ._report import write_comparison, write_results
from ._tables import format_comparison, format_comparison_markdown, format_markdown, format_table

__all__ = ["PAPER_BITS", "PAPER_WIKI", "SCENARIO_TITLES", "direction_name",
           "format_comparison", "format_comparison_markdown", "format_markdown",
           "format_table", "paper_value", "run_comparison", "run_experiment", "summarize",
           "write_comparison", "write_results"]
