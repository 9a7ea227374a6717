"""The run layer's tunables: the part of the settings object (:mod:`engine.settings`: environment
over config file over defaults, each checked) that the queue, the worker and a job's process read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from engine.settings import SettingsError, load_settings

RunSettingsError = SettingsError  # a bad run-layer setting: one line naming the variable or file and key


@dataclass(frozen=True)
class RunSettings:
    job_lease_s: float = 120.0        # a running job whose worker renews nothing for this long is taken back
    job_heartbeat_s: float = 15.0     # how often a worker renews its job's lease and its own heartbeat
    worker_poll_s: float = 2.0        # how often an idle worker looks for a job
    job_max_attempts: int = 3         # attempts of a job whose worker (or process) dies, before it fails
    job_cancel_grace_s: float = 30.0  # a cancelled job's time to stop by itself; then SIGTERM, as long again, SIGKILL
    job_progress_flush_s: float = 0.5  # a job writes its progress at most this often


def run_settings(environ: Mapping[str, str] | None = None) -> RunSettings:
    """The run settings in force (:func:`engine.settings.load_settings`, which checks them all)."""
    settings = load_settings(environ)
    return RunSettings(**{f.name: getattr(settings, f.name) for f in fields(RunSettings)})
