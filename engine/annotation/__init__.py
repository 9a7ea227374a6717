"""Human evaluation: rating scales, campaigns, blind rating sessions, agreement with the judges.

Usable from a notebook; no textual, no emtui; numpy is imported inside the functions that need it.

- :mod:`engine.annotation.scales`: "0-3", "1-5", "0-100", "binary", "aligned-coherent" and
  "pairwise", each a :class:`~engine.annotation.scales.Scale` that turns typed keys into a value
  or says what is wrong;
- :mod:`engine.annotation.campaigns`: :func:`~engine.annotation.campaigns.create_campaign`, a
  stratified, seeded sample of a study's answers with opaque per-campaign codes, and what its
  ratings are compared with (:func:`~engine.annotation.campaigns.judge_comparison`);
- :mod:`engine.annotation.session`: :class:`~engine.annotation.session.AnnotationSession`, one
  annotator in one campaign: blind items, rate, skip, flag, note, undo / edit, active time, leases;
- :mod:`engine.annotation.agreement`: Krippendorff α among the humans and against the judges,
  κ between humans, pairwise win rates, :func:`~engine.annotation.agreement.agreement_report`;
- :mod:`engine.annotation.adjudication`: disagreements and a lead's resolution;
- :mod:`engine.annotation.raters`: annotator names and notes, checked;
  :mod:`engine.annotation.errors`: :class:`~engine.annotation.errors.AnnotationError` (one line).

Exactly-k: each item goes to ``overlap`` different annotators of a kind, never more; the store's
claim (``db/annotation.py``) enforces it in ``BEGIN IMMEDIATE`` transactions.
"""
