"""Sphinx configuration for the skot documentation."""

import os
import sys
import warnings

import matplotlib

matplotlib.use("Agg")

sys.path.insert(0, os.path.abspath(".."))

import skot  # noqa: E402

project = "skot"
author = "skot developers"
copyright = "2026, skot developers"
release = skot.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "sphinxcontrib.bibtex",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "notes_*.md", "benchmarks/*.rst", "**.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"

# -- autodoc / autosummary / numpydoc ---------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# -- intersphinx (offline builds: no inventories are fetched) ----------------
intersphinx_mapping = {}

# -- bibliography ------------------------------------------------------------
bibtex_bibfiles = ["references.bib"]
bibtex_default_style = "unsrt"
bibtex_reference_style = "author_year"

# -- sphinx-gallery ----------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": "plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "plot_gallery": "True",
    "reset_modules": ("matplotlib", "seaborn"),
}

warnings.filterwarnings(
    "ignore",
    category=UserWarning,
    message="Matplotlib is currently using agg",
)

# -- HTML --------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skot {release}"
html_static_path = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}


# -- members inherited from scikit-learn -------------------------------------
# Methods defined by scikit-learn itself (get_params, set_params, score of
# ClassifierMixin, fit_transform, set_output, get_metadata_routing and the
# generated set_*_request methods) are documented by scikit-learn; their
# docstrings cross-reference scikit-learn's glossary, which does not exist here.
# The API page says so in prose.
def _skip_sklearn_members(app, what, name, obj, skip, options):
    if name.startswith("set_") and name.endswith("_request"):
        return True
    module = getattr(obj, "__module__", None) or ""
    if module.startswith("sklearn."):
        return True
    return None


def _check_benchmark_tables(app, config):
    """Every table in doc/benchmarks/ must be included by benchmarks.rst."""
    from pathlib import Path

    from sphinx.util import logging

    here = Path(app.srcdir)
    page = (here / "benchmarks.rst").read_text(encoding="utf-8")
    for table in sorted((here / "benchmarks").glob("*.rst")):
        if f"benchmarks/{table.name}" not in page:
            logging.getLogger(__name__).warning(
                "doc/benchmarks/%s is not included in doc/benchmarks.rst", table.name
            )


def setup(app):
    app.connect("autodoc-skip-member", _skip_sklearn_members)
    app.connect("config-inited", _check_benchmark_tables)
