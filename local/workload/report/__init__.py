"""One report of a run (model.py), rendered as terminal tables, a JSON file and a self-contained HTML page."""
