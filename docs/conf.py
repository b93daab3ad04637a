"""Sphinx configuration of the flexcmh_fast documentation site.

Build from the repository root, with the package installed
(``pip install ".[docs]"``)::

    sphinx-build -W -b html docs docs/_build/html

autodoc and the example gallery import the *installed* package: a fresh
clone's source tree has no compiled extension, so nothing here puts the
repository root on ``sys.path`` (and ``sphinx-build``, unlike
``python -m sphinx``, does not put the working folder there either).  Only
``docs/_ext`` (this site's own extensions) is added.

No page needs the network, neither to build nor to read: there is no
intersphinx (CI builds offline, and inventories shipped in the repository
would go stale), so names of numpy, scipy, scikit-learn and Dask render as
code without a link, and MathJax is served from the site itself
(``sphinx-mathjax-offline``).
"""
import sys
from pathlib import Path

from pygments.lexers.special import TextLexer

import flexcmh_fast
from flexcmh_fast._ext import load_extension

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))  # this site's extensions (api_pages)

# Fail at once, with the loader's explanation, if Python found a source tree
# without the compiled extension instead of the installed package.
load_extension("_hamming")

project = "flexcmh_fast"
author = "flexcmh_fast developers"
copyright = "flexcmh_fast developers"
version = release = flexcmh_fast.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "sphinx-mathjax-offline",
    "api_pages",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_templates", "_ext"]
templates_path = ["_templates"]
# Every cross-reference to a public name must resolve (with -W a dangling one
# fails the build).  Private modules and classes are undocumented on purpose,
# and other projects' names have no inventory here (no intersphinx).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"flexcmh_fast(\.\w+)*\._\w+(\..*)?"),
    (r"py:.*", r"(numpy|scipy|sklearn|dask|distributed|ot)(\..*)?"),
]

# -- API reference ------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
autodoc_default_options = {"member-order": "groupwise"}
# Every class member is documented on the class's page; numpydoc's member
# tables link to those entries instead of one page per method.
numpydoc_show_class_members = True
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False  # no intersphinx: types stay plain text

# -- Markdown pages (the files in docs/ as they are on GitHub) ----------------
myst_heading_anchors = 4
myst_enable_extensions = ["dollarmath", "colon_fence"]

# -- Example gallery ----------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(DOCS.parent / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "backreferences_dir": "api/generated/backreferences",
    "doc_module": ("flexcmh_fast",),
    "reference_url": {"flexcmh_fast": None},
    "abort_on_example_error": True,
    "download_all_examples": False,
}

# -- HTML ---------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"flexcmh_fast {release}"
html_show_sourcelink = False
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "secondary_sidebar_items": ["page-toc"],
}
html_context = {"default_mode": "light"}


def setup(app):
    # The architecture page's diagram is a Mermaid block, which GitHub draws;
    # drawing it here needs mermaid.js from the network, so the site shows
    # its source as plain text.
    app.add_lexer("mermaid", TextLexer)
