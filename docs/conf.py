"""Sphinx settings of the course website. Built by ``docs/build_site.py`` (``make site``), not by hand:
it executes the lessons and writes the generated pages next to a copy of this folder."""

project = "ftlab"
author = "the ftlab course"
copyright = "the ftlab course"

root_doc = "docs/index"  # the source folder has the repository's layout: docs/, lessons/, deploy/
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.autosummary"]
exclude_patterns = ["**.ipynb_checkpoints"]

# Notebooks arrive executed (docs/build_site.py runs and caches them): myst-nb only renders.
nb_execution_mode = "off"
nb_ipywidgets_js = {}  # widgets are shown as their default state; no widget JavaScript from a CDN
nb_merge_streams = True
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

# The reference: docs/build_site.py writes a page per module, naming the public names defined there.
autosummary_generate = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
add_module_names = False

html_theme = "sphinx_book_theme"
html_title = "ftlab: fine-tuning pretrained networks"
html_static_path = ["_static"]
html_css_files = ["ftlab.css"]
html_last_updated_fmt = None
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
}
if tags.has("fast"):  # noqa: F821 -- Sphinx's tags (``-t fast``, set by ``make site FAST=1``)
    html_theme_options["announcement"] = (
        "A quick build: the lessons' numbers on these pages come from the fast settings (FTLAB_FAST=1: "
        "fewer images, fewer epochs), not the ones the prose discusses. <code>make site</code> builds them in full."
    )
