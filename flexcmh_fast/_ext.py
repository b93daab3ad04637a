"""Importing the compiled extensions with an error that says what to do."""
import importlib
import os


def load_extension(name):
    """``flexcmh_fast.<name>`` (a compiled extension), or an ``ImportError``
    that explains the usual cause: Python found the source tree (e.g. a
    shell in the repository root) instead of the installed package."""
    try:
        return importlib.import_module(f"flexcmh_fast.{name}")
    except ImportError as exc:
        here = os.path.dirname(os.path.abspath(__file__))
        raise ImportError(
            f"flexcmh_fast's compiled extension {name!r} is not built in {here}. If this is "
            "the source tree (Python imports the folder you run from before the installed "
            "package), run from another folder, or build the extension in place with "
            "'pip install -e .' (or 'python setup.py build_ext --inplace')."
        ) from exc
