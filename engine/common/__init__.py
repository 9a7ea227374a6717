"""What every part of the engine uses and none of them owns: no science, no database.

- :mod:`engine.common.text`: untrusted text made safe to show (``strip_control``, ``one_line``);
- :mod:`engine.common.safe_load`: bounded JSON / YAML / TOML parsing (:class:`LoadError`);
  :mod:`engine.common.untrusted`: reading files and checking names and values from outside;
- :mod:`engine.common.hashing`: content hashes (canonical JSON, files, text);
- :mod:`engine.common.atomic`: writing a file whole or not at all;
- :mod:`engine.common.resources`: where the shipped ``data/`` is, installed or in a checkout;
- :mod:`engine.common.openai_http`: an OpenAI-compatible server's API (retries, bounded replies,
  one-line errors), for generation and judging; :mod:`engine.common.concurrent_calls`: many
  such requests at once, stoppable.
"""
