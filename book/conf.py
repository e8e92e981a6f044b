# Sphinx configuration of the course book; gensar_lib.book stages its sources (make book).
from gensar_lib.book import DOCUMENTS

project = "GenSAR teaching suite"
html_title = "GenSAR teaching suite"
extensions = ["myst_nb"]
root_doc = "index"
# the staged folder also holds the repository files that pages link to (downloads), which are no pages
include_patterns = ["*.md", *DOCUMENTS, "notebooks/*.ipynb"]

nb_execution_mode = "off"  # the pages show the notebooks as `make run` executed them
nb_merge_streams = True  # the lines a cell printed between two progress bars (dropped) make one output
myst_heading_anchors = 6  # `page#heading` links (the exercises list) ...
myst_heading_slug_func = "github"  # ... with the slugs that gensar_lib.book.exercises computes

html_theme = "sphinx_book_theme"
html_theme_options = {"home_page_in_toc": True, "show_navbar_depth": 1, "footer_content_items": []}
html_show_sourcelink = False
html_show_sphinx = False
