"""Statistics on scores: pure functions on numpy arrays, no database.

- :mod:`engine.stats.estimates`: bootstrap CIs (exact fast paths for rates and lattice scores),
  EM rates, panel scores, ratios, Mann–Whitney, effect sizes, p-value adjustment;
- :mod:`engine.stats.agreement`: Krippendorff's α at every level with bootstrap CIs (stratified,
  threaded), weighted Cohen's κ.

NaN always means *missing*, never a zero. Seeded results are the same to the last bit whatever
the number of threads.
"""
