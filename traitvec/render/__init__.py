"""Presentation of results: PNG plots, Markdown summaries and self-contained HTML reports.

Renderers take plain data (the dictionaries written to ``results.json``, ``evaluation.json``,
``projections.json``) and return text or write files atomically; they compute no result and load
no model, so a report can be redrawn from saved outputs alone.
"""
