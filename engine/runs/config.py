"""The run layer's tunables, one object.

Each is read from its environment variable (``EMTUI_JOB_LEASE_S`` ...), else its default. The
names are those of the settings object (engine/settings.py, built in parallel): when it lands,
:func:`run_settings` reads them from there instead (config file, then environment).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any


class RunSettingsError(ValueError):
    """A run-layer setting with a bad value (one line, naming the variable)."""


@dataclass(frozen=True)
class RunSettings:
    job_lease_s: float = 120.0        # a running job whose worker renews nothing for this long is taken back
    job_heartbeat_s: float = 15.0     # how often a worker renews its job's lease and its own heartbeat
    worker_poll_s: float = 2.0        # how often an idle worker looks for a job
    job_max_attempts: int = 3         # attempts of a job whose worker (or process) dies, before it fails
    job_cancel_grace_s: float = 30.0  # a cancelled job's time to stop by itself; then SIGTERM, as long again, SIGKILL
    job_progress_flush_s: float = 0.5  # a job writes its progress at most this often

    def check(self) -> RunSettings:
        if not self.job_heartbeat_s * 2 <= self.job_lease_s:
            raise RunSettingsError(f"EMTUI_JOB_HEARTBEAT_S ({self.job_heartbeat_s:g}) must be at most half of "
                                   f"EMTUI_JOB_LEASE_S ({self.job_lease_s:g}), so a lease is renewed in time")
        return self


_RANGES = {
    "job_lease_s": (0.2, 86_400.0), "job_heartbeat_s": (0.05, 3_600.0), "worker_poll_s": (0.01, 3_600.0),
    "job_max_attempts": (1, 1_000), "job_cancel_grace_s": (0.0, 86_400.0), "job_progress_flush_s": (0.01, 60.0),
}


def env_name(field: str) -> str:
    return f"EMTUI_{field.upper()}"


def run_settings(environ: dict[str, str] | None = None) -> RunSettings:
    """The settings in force: each from its environment variable, else its default."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(RunSettings):
        raw = env.get(env_name(f.name))
        if raw is None or raw.strip() == "":
            continue
        convert = int if f.type in (int, "int") else float
        lo, hi = _RANGES[f.name]
        try:
            value = convert(raw)
        except ValueError:
            raise RunSettingsError(f"{env_name(f.name)} must be a number from {lo:g} to {hi:g}, not {raw!r}") from None
        if not lo <= value <= hi:
            raise RunSettingsError(f"{env_name(f.name)} must be from {lo:g} to {hi:g}, not {raw}")
        values[f.name] = value
    return RunSettings(**values).check()
