"""emtui's science: study files, data, training, generation, judging, statistics.

Never imports textual or emtui; usable from a notebook. Heavy libraries (torch,
transformers, peft, trl) are imported inside the functions that need them.

The packages, in the order work flows through them:

- :mod:`engine.study`: the pre-registered study file, eval sets, rubrics, the EM rule;
- :mod:`engine.importers`: other projects' result files as studies;
- :mod:`engine.training` (issue 12), :mod:`engine.generation` (issue 13),
  :mod:`engine.judging` (issue 14): the three engines, each a job kind of the run layer;
  :mod:`engine.models`: the models they load;
- :mod:`engine.runs`: the run layer — the job queue, workers, one progress protocol, the
  machine check (``doctor``);
- :mod:`engine.annotation`: human evaluation — scales, campaigns, rating sessions, agreement;
- :mod:`engine.stats`: bootstrap CIs, tests, Krippendorff's α, κ (pure numpy);
- :mod:`engine.results`: the summary, its formats, figures, the export;
- :mod:`engine.common`: what all of them use (untrusted text and files, hashing, atomic writes,
  the shipped data); :mod:`engine.settings`: the one settings object.
"""
