"""What a study is: its pre-registered design and what it is evaluated with.

- :mod:`engine.study.study_file`: the study file (``load_study``, ``register_study``): every key
  checked, named with its line (:mod:`engine.study.toml_lines`), the study hashed with every file
  it names;
- :mod:`engine.study.eval_sets`: evaluation questions from emtui TOML, the field's YAML and JSON;
- :mod:`engine.study.rubrics`: judge prompts as content-hashed rubrics;
- :mod:`engine.study.em_rule`: a study's EM rule (which answers count as misaligned), set, checked
  and described.
"""
