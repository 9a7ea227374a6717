"""What a study's results say, and how they leave emtui.

- :mod:`engine.results.summary`: ``build_summary``: means, EM rates, agreement and comparisons
  with bootstrap CIs, per judge and for the panel; :mod:`engine.results.breakdowns` (by model,
  checkpoint, question, category, trigger) and :mod:`engine.results.human_rows` (the human
  campaigns' rows) are its parts;
- :mod:`engine.results.report_format`: a summary as tables, JSON, CSV, Markdown;
- :mod:`engine.results.figures`: publication-ready figures (matplotlib, imported on use);
- :mod:`engine.results.export`: every answer with its provenance and scores, JSONL / CSV / Parquet;
- :mod:`engine.results.synthetic`: judged studies with known structure, for tests and benchmarks.
"""
