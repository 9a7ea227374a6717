"""Every tunable of emtui in one object: :class:`Settings`.

A setting's value comes from, in this order of precedence:

1. its environment variable, ``EMTUI_<NAME>`` (``EMTUI_JOB_LEASE_S=300``);
2. its key in the config file, ``<name> = value`` at the top level of
   ``$EMTUI_CONFIG``, else ``$XDG_CONFIG_HOME/emtui/config.toml``
   (``~/.config/emtui/config.toml``); an absent file is no error unless ``$EMTUI_CONFIG``
   names it (``EMTUI_CONFIG=/dev/null``: no file);
3. its default, declared on the field below with its type, range and meaning.

The file is read bounded (``engine.common.untrusted``) and every value is checked: a wrong type, a value
out of range, an unknown key or a bad variable is one line naming the file and key (or the
variable) in :class:`SettingsError`. ``emtui settings`` prints each value and where it came from.

Usable from a notebook: ``load_settings()``. The database layer (``db/``) imports nothing from
here: the CLI passes it ``busy_timeout_s``; ``db/`` reads ``$EMTUI_BUSY_TIMEOUT_S`` itself only
when its caller passes nothing (a notebook's ``open_store``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_ENV = "EMTUI_CONFIG"
ENV_PREFIX = "EMTUI_"
CONFIG_MAX_BYTES = 1 << 20  # a config file is a few lines; anything bigger is not one
SOURCES = ("default", "file", "env")


class SettingsError(ValueError):
    """Bad settings: ``problems`` holds one line per bad value, naming the file and key or the variable."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _setting(default: Any, about: str, *, lo: float | None = None, hi: float | None = None,
             unit: str = "") -> Any:
    """A field of :class:`Settings`: its default, what it does, its range (numbers) and unit."""
    return field(default=default, metadata={"about": about, "lo": lo, "hi": hi, "unit": unit})


@dataclass(frozen=True)
class Settings:
    """The tunables. Construct with :func:`load_settings`; ``Settings()`` is every default."""

    # -- files
    db: str = _setting("emtui.db", "the database file when --db is not given (relative: to the current folder)")
    keymap: str = _setting("", "the keymap file (key bindings; see emtui keys)")
    # -- the database
    busy_timeout_s: float = _setting(30.0, "how long a write waits for another process's lock", lo=0, hi=3600,
                                     unit="s")
    # -- the job queue and its workers
    job_lease_s: float = _setting(120.0, "a running job's lease: a job whose worker fell silent this long is "
                                  "taken over", lo=0.2, hi=86400, unit="s")
    job_heartbeat_s: float = _setting(15.0, "how often a worker renews its running job's lease and its own "
                                      "heartbeat (at most half of job_lease_s)", lo=0.05, hi=3600, unit="s")
    job_max_attempts: int = _setting(3, "a job whose worker (or job process) died this many times fails", lo=1,
                                     hi=1000)
    job_cancel_grace_s: float = _setting(30.0, "time a cancelled running job has to stop by itself; then SIGTERM, "
                                         "as long again, then SIGKILL", lo=0, hi=86400, unit="s")
    job_progress_flush_s: float = _setting(0.5, "a running job writes its progress to the database at most this "
                                           "often", lo=0.01, hi=60, unit="s")
    worker_poll_s: float = _setting(2.0, "how often an idle worker looks at the queue", lo=0.01, hi=3600, unit="s")
    # -- the TUI
    tui_start_worker: bool = _setting(True, "the TUI starts a worker in the background (emtui worker --detach) when "
                                      "it queues work and no worker of the database is alive")
    tui_queue_poll_s: float = _setting(2.0, "how often the Eval queue and Train screens re-read the jobs and runs",
                                       lo=0.2, hi=3600, unit="s")
    tui_resamples: int = _setting(2000, "bootstrap resamples per CI on the Results screen (emtui summary: its "
                                  "--resamples)", lo=100, hi=100_000)
    tui_agreement_resamples: int = _setting(300, "bootstrap resamples per agreement CI on the Results screen",
                                            lo=100, hi=100_000)
    # -- human evaluation
    campaign_lease_s: float = _setting(600.0, "default lease of a new campaign: how long an idle annotator keeps "
                                       "an item (campaign create --lease-minutes)", lo=60, hi=7 * 86400, unit="s")
    annotation_idle_gap_s: float = _setting(120.0, "a pause between an annotator's actions longer than this is "
                                            "idle, not rating time", lo=1, hi=86400, unit="s")
    annotation_renew_s: float = _setting(30.0, "how often the rating screen renews the lease of the item on it "
                                         "(shorter than the shortest lease, 60 s)", lo=1, hi=55, unit="s")
    # -- emtui doctor
    doctor_timeout_s: float = _setting(120.0, "time each heavy check of emtui doctor (torch, bitsandbytes, AWS) "
                                       "may take", lo=5, hi=3600, unit="s")

    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False,
                                       metadata={"internal": True})
    config_file: str = field(default="", compare=False, metadata={"internal": True})

    def source(self, name: str) -> str:
        """Where ``name``'s value came from: ``default``, ``file`` or ``env``."""
        return self.sources.get(name, "default")

    def keymap_file(self) -> Path:
        return Path(self.keymap).expanduser() if self.keymap else default_keymap_path()


@dataclass(frozen=True)
class SettingInfo:
    """One setting as documentation shows it."""

    name: str
    type: type
    default: Any
    about: str
    lo: float | None
    hi: float | None
    unit: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    def range_text(self) -> str:
        if self.type is bool:
            return "true / false"
        if self.lo is None or self.hi is None:
            return ""
        return f"{_number(self.lo)}–{_number(self.hi)}{' ' + self.unit if self.unit else ''}"


def setting_infos() -> list[SettingInfo]:
    """Every setting, in declaration order."""
    hints = {"str": str, "int": int, "float": float, "bool": bool}
    return [SettingInfo(f.name, hints[str(f.type)], f.default, f.metadata["about"], f.metadata["lo"],
                        f.metadata["hi"], f.metadata["unit"])
            for f in dataclasses.fields(Settings) if not f.metadata.get("internal")]


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "emtui"


def config_path(environ: Mapping[str, str] | None = None) -> tuple[Path, bool]:
    """The config file, and whether ``$EMTUI_CONFIG`` named it (then it must exist)."""
    env = os.environ if environ is None else environ
    named = env.get(CONFIG_ENV)
    if named:
        return Path(named).expanduser(), True
    return config_dir(env) / "config.toml", False


def default_keymap_path(environ: Mapping[str, str] | None = None) -> Path:
    return config_dir(environ) / "keymap.toml"


def _read_config(path: Path, named: bool) -> dict[str, Any]:
    from engine.common.safe_load import LoadError
    from engine.common.untrusted import parse_toml, read_text

    if named and str(path) == os.devnull:  # EMTUI_CONFIG=/dev/null: no file at all (the test suite)
        return {}
    if not path.exists():
        if named:
            raise SettingsError([f"{CONFIG_ENV}: {path}: no such file"])
        return {}
    try:  # bounded like every file emtui reads: a pipe, a huge file or a 5,000-deep array is one line
        return parse_toml(read_text(path, limit=CONFIG_MAX_BYTES))
    except LoadError as exc:
        raise SettingsError([f"{path}: {exc}"]) from None


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _convert(info: SettingInfo, value: Any, *, from_text: bool) -> Any:
    """``value`` as the setting's type within its range; ValueError says what it must be."""
    if info.type is bool:
        word = value.strip().lower() if from_text else None
        if isinstance(value, bool):
            return value
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise ValueError("must be true or false" + (" (or yes/no, on/off, 1/0)" if from_text else ""))
    if info.type is str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("must be a file name (text)")
        if "\x00" in value:
            raise ValueError("must be a file name without NUL characters")
        return value
    want = "a whole number" if info.type is int else "a number"
    if info.lo is not None and info.hi is not None:
        want += f" from {_number(info.lo)} to {_number(info.hi)}"
    if info.unit:
        want += f" ({'seconds' if info.unit == 's' else info.unit})"
    if from_text:
        try:
            value = info.type(value.strip())
        except ValueError:
            raise ValueError(f"must be {want}") from None
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or (info.type is int
                                                                            and not isinstance(value, int)):
        raise ValueError(f"must be {want}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be {want}")
    if info.lo is not None and info.hi is not None and not info.lo <= value <= info.hi:
        raise ValueError(f"must be {want}")
    return info.type(value)


def _shown(value: Any) -> str:
    """A bad value as an error line quotes it: short, one line (control characters are escaped later)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load_settings(environ: Mapping[str, str] | None = None, *, path: Path | None = None) -> Settings:
    """The settings of this process: the environment over the config file over the defaults.
    ``environ`` defaults to ``os.environ``; ``path`` overrides the config file's place."""
    env = os.environ if environ is None else environ
    named = True
    if path is None:
        path, named = config_path(env)
    doc = _read_config(path, named)
    infos = {info.name: info for info in setting_infos()}
    problems: list[str] = []
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, raw in doc.items():
        info = infos.get(key)
        if info is None:
            problems.append(f"{path}: {key}: unknown setting (see 'emtui settings')")
            continue
        try:
            values[key] = _convert(info, raw, from_text=False)
            sources[key] = "file"
        except ValueError as exc:
            problems.append(f"{path}: {key} {exc}, not {_shown(raw)}")
    for info in infos.values():
        raw = env.get(info.env)
        if raw is None or raw == "":  # an empty variable is unset, as a shell's VAR= means
            continue
        try:
            values[info.name] = _convert(info, raw, from_text=True)
            sources[info.name] = "env"
        except ValueError as exc:
            problems.append(f"{info.env} {exc}, not {_shown(raw)}")
    if not values.get("keymap"):
        values["keymap"] = str(default_keymap_path(env))
    settings = Settings(**values, sources=sources, config_file=str(path))
    if not problems and settings.job_heartbeat_s * 2 > settings.job_lease_s:
        lease = f"{_where(settings, 'job_lease_s')} ({_number(settings.job_lease_s)} s)"
        beat = f"{_where(settings, 'job_heartbeat_s')} ({_number(settings.job_heartbeat_s)} s)"
        if settings.source("job_heartbeat_s") == "default":  # name first what the person set
            problems.append(f"{lease} must be at least twice {beat}, so a lease is renewed in time")
        else:
            problems.append(f"{beat} must be at most half of {lease}, so a lease is renewed in time")
    if problems:
        raise SettingsError(problems)
    return settings


def _where(settings: Settings, name: str) -> str:
    """How an error names a setting: its variable, its key in the file, or just its name."""
    source = settings.source(name)
    if source == "env":
        return ENV_PREFIX + name.upper()
    if source == "file":
        return f"{settings.config_file}: {name}"
    return name


def rows(settings: Settings) -> Iterator[dict[str, Any]]:
    """Every setting with its value and where it came from (``emtui settings``)."""
    for info in setting_infos():
        yield {"name": info.name, "value": getattr(settings, info.name), "source": settings.source(info.name),
               "env": info.env, "default": info.default, "type": info.type.__name__, "min": info.lo,
               "max": info.hi, "unit": info.unit, "about": info.about}


def markdown_table() -> str:
    """The README's table of every setting (``emtui settings --format markdown``)."""
    lines = ["| Setting (config key) | Environment variable | Default | Range | What it does |",
             "|---|---|---|---|---|"]
    for info in setting_infos():
        if info.name == "keymap":
            default = "`$XDG_CONFIG_HOME/emtui/keymap.toml`"
        elif info.type is str:
            default = f"`{info.default}`"
        elif info.type is bool:
            default = f"`{str(info.default).lower()}`"
        else:
            default = _number(info.default) + (f" {info.unit}" if info.unit else "")
        lines.append(f"| `{info.name}` | `{info.env}` | {default} | {info.range_text()} | {info.about} |")
    return "\n".join(lines)
