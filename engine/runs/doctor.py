"""What this machine can do, for the work emtui runs: :func:`report` (``emtui doctor``).

Python and platform, CPUs and memory, torch with CUDA and each GPU's memory, whether bitsandbytes'
4-bit (NF4) layers actually work here, whether AWS credentials are found (their source, never their
values) and the region, and free disk next to the database.

torch and bitsandbytes are imported only in child processes (:data:`TORCH_PROBE`, :data:`BNB_PROBE`),
each with a timeout: a missing, broken or crashing CUDA install (an import that segfaults, a driver
that hangs) is reported, never fatal, and this process stays free of them — so the same report runs
as a job in a worker (``emtui doctor --worker``) whose environment may differ from the TUI's.
Nothing is written anywhere: the database is looked at, not opened.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = 1  # the report's shape; bumped when a key changes meaning or goes
MARK = "@@emtui-doctor@@"  # the line of a probe's output that carries its answer
DEFAULT_TIMEOUT_S = 120.0

TORCH_PROBE = f"""
import json, os, sys
def answer(d): print({MARK!r} + json.dumps(d), flush=True)
try:
    import torch
except Exception as exc:
    answer({{"ok": False, "problem": "cannot import torch: " + type(exc).__name__ + ": " + str(exc)}})
    sys.exit(0)
out = {{"ok": True, "version": str(torch.__version__), "cuda_build": torch.version.cuda, "cuda_available": False,
       "cudnn": None, "mps_available": False, "gpus": [], "problem": None}}
try:
    mps = getattr(torch.backends, "mps", None)
    out["mps_available"] = bool(mps is not None and mps.is_available())
    out["cuda_available"] = bool(torch.cuda.is_available())
    if out["cuda_available"]:
        out["cudnn"] = torch.backends.cudnn.version()
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            free, total = torch.cuda.mem_get_info(i)
            out["gpus"].append({{"index": i, "name": str(p.name), "capability": f"{{p.major}}.{{p.minor}}",
                                "total_bytes": int(total), "free_bytes": int(free)}})
except Exception as exc:
    out["problem"] = "CUDA: " + type(exc).__name__ + ": " + str(exc)
answer(out)
"""

# NF4-quantise a small Linear whose float twin gives the expected output, run a forward on the
# device training would use, and compare: quantised weights and a close output mean 4-bit works.
BNB_PROBE = f"""
import json, math, sys
def answer(d): print({MARK!r} + json.dumps(d), flush=True)
try:
    import torch
except Exception as exc:
    answer({{"ok": None, "installed": None, "problem": "not checked: torch cannot be imported"}})
    sys.exit(0)
try:
    import bitsandbytes as bnb
except Exception as exc:
    answer({{"ok": False, "installed": False, "problem": "cannot import bitsandbytes: " + type(exc).__name__ + ": "
            + str(exc)}})
    sys.exit(0)
device = "cuda" if torch.cuda.is_available() else "cpu"
out = {{"ok": False, "installed": True, "version": str(getattr(bnb, "__version__", "?")), "device": device,
       "relative_error": None, "problem": None}}
try:
    torch.manual_seed(0)
    ref = torch.nn.Linear(64, 32)
    q = bnb.nn.Linear4bit(64, 32, bias=True, compute_dtype=torch.float32, quant_type="nf4")
    q.weight = bnb.nn.Params4bit(ref.weight.data.clone(), requires_grad=False, quant_type="nf4")
    q.bias = torch.nn.Parameter(ref.bias.data.clone(), requires_grad=False)
    ref, q = ref.to(device), q.to(device)
    x = torch.randn(8, 64, device=device)
    with torch.no_grad():
        want, got = ref(x).float(), q(x).float()
    packed = q.weight.dtype == torch.uint8 and bool(getattr(q.weight, "bnb_quantized", True))
    err = float((got - want).norm() / want.norm())
    out["relative_error"] = err if math.isfinite(err) else None
    if not packed:
        out["problem"] = "the weights were not quantised to 4 bits"
    elif not math.isfinite(err) or err > 0.3:
        out["problem"] = f"the 4-bit output is off by {{err:.0%}} of the float output"
    else:
        out["ok"] = True
except Exception as exc:
    out["problem"] = type(exc).__name__ + ": " + str(exc)
answer(out)
"""

AWS_SOURCES = {  # botocore's credential provider names, as a person says them
    "env": "environment variables", "shared-credentials-file": "shared credentials file (~/.aws/credentials)",
    "config-file": "AWS config file (~/.aws/config)", "iam-role": "instance role (EC2 metadata)",
    "container-role": "container role (ECS/EKS)", "assume-role": "assumed role (profile)",
    "assume-role-with-web-identity": "web identity (EKS/OIDC)", "sso": "AWS SSO", "custom-process":
    "credential_process", "boto2-config": "boto2 config file",
}


class DoctorError(ValueError):
    """Bad input to the check (the database's folder does not exist); one line."""


def report(db_path: str | os.PathLike[str], *, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    """The machine as emtui sees it, as JSON-able data (see README, "emtui doctor"). Missing pieces
    are reported in the data, not raised; only a database path whose folder does not exist raises
    :class:`DoctorError`. ``timeout_s`` bounds each heavy check (they run at the same time)."""
    started = time.monotonic()
    db = Path(db_path).expanduser().absolute()
    folder = db.parent
    if not folder.is_dir():
        raise DoctorError(f"{db}: the database's folder does not exist")
    probes = {name: _start(code) for name, code in (("torch", TORCH_PROBE), ("bitsandbytes", BNB_PROBE))}
    aws = _in_thread(aws_check, timeout_s, {"credentials": False, "source": None, "profile": None, "region": None,
                                            "problem": f"no answer within {timeout_s:g} s"})
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "platform": {"system": platform.system(), "release": platform.release(), "machine": platform.machine()},
        "cpus": cpus(),
        "memory": memory(),
        "database": database(db),
        "disk": disk(folder),
    }
    deadline = started + timeout_s  # the checks run at the same time: one deadline for them all
    torch_info = _finish(probes["torch"], deadline, "torch")
    out["gpus"] = torch_info.pop("gpus", None) or []
    out["torch"] = {"ok": False, "version": None, "cuda_build": None, "cuda_available": False, "cudnn": None,
                    "mps_available": False, "problem": None, **torch_info,
                    "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    out["bitsandbytes"] = {"ok": None, "installed": None, "version": None, "device": None, "relative_error": None,
                           "problem": None, **_finish(probes["bitsandbytes"], deadline, "the 4-bit check")}
    out["bitsandbytes"]["summary"] = bnb_summary(out["bitsandbytes"])
    out["aws"] = aws()
    out["seconds"] = round(time.monotonic() - started, 2)
    return out


def cpus() -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"count": os.cpu_count(), "usable": usable}


def memory() -> dict[str, int | None]:
    """Total and available memory in bytes (Linux: /proc/meminfo; elsewhere what sysconf knows)."""
    total = available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            info = {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in f if ":" in line)}
        total, available = info.get("MemTotal"), info.get("MemAvailable")
    except (OSError, ValueError):
        try:
            page = os.sysconf("SC_PAGE_SIZE")
            total = os.sysconf("SC_PHYS_PAGES") * page
        except (ValueError, OSError, AttributeError):
            pass
    return {"total_bytes": total, "available_bytes": available}


def database(db: Path) -> dict[str, Any]:
    try:
        size: int | None = db.stat().st_size if db.is_file() else None
    except OSError:
        size = None
    return {"path": str(db), "exists": db.exists(), "size_bytes": size}


def disk(folder: Path) -> dict[str, Any]:
    """Free and total bytes of the file system holding ``folder`` (the database's)."""
    usage = shutil.disk_usage(folder)
    return {"path": str(folder), "free_bytes": int(usage.free), "total_bytes": int(usage.total)}


def aws_check() -> dict[str, Any]:
    """AWS credentials through the standard chain (as boto3 finds them): present or not, and from
    where — never their values; the region and profile. May ask the instance metadata service."""
    out: dict[str, Any] = {"credentials": False, "source": None, "profile": None, "region": None, "problem": None}
    try:
        import boto3
    except Exception as exc:
        out["problem"] = f"boto3 cannot be imported ({type(exc).__name__})"
        out["region"] = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        return out
    try:
        session = boto3.Session()
        out["profile"] = session.profile_name
        out["region"] = session.region_name
        creds = session.get_credentials()
    except Exception as exc:  # a broken profile or config file: say which kind of problem, not its text
        out["problem"] = f"{type(exc).__name__}: {_no_secrets(str(exc))}"
        return out
    if creds is not None:
        out["credentials"] = True
        out["source"] = str(getattr(creds, "method", None) or "unknown")
    if out["region"] is None and os.environ.get("AWS_REGION"):  # other SDKs read it; boto3 does not
        out["problem"] = "AWS_REGION is set, but boto3 reads AWS_DEFAULT_REGION (or region in ~/.aws/config)"
    return out


def _no_secrets(text: str) -> str:
    """An AWS error message with any credential value this process knows written as ***."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        value = os.environ.get(name)
        if value:
            text = text.replace(value, "***")
    return text


def bnb_summary(b: dict[str, Any]) -> str:
    """One sentence on what bitsandbytes' 4-bit does here."""
    if b.get("ok") is None:
        return b.get("problem") or "not checked"
    if not b.get("installed"):
        return b.get("problem") or "bitsandbytes is not installed: QLoRA (4-bit) training cannot run here"
    if b.get("device") == "cuda":
        return ("NF4 quantise and forward work on the GPU: QLoRA (4-bit) training can run here" if b["ok"]
                else f"4-bit does not work on the GPU here: {b.get('problem')}")
    if b["ok"]:
        return ("NF4 quantise and forward work on the CPU (slow reference kernels: checks and tiny models; "
                "no GPU here for QLoRA training)")
    return f"4-bit does not work on the CPU here (no GPU either): {b.get('problem')}"


# -- child processes and threads with a timeout -------------------------------------------------------


def _start(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)


def _finish(proc: subprocess.Popen[str], deadline: float, what: str) -> dict[str, Any]:
    """A probe's answer by ``deadline`` (``time.monotonic``); its crash, hang or silence as ``{"problem": ...}``."""
    try:
        stdout, stderr = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill(proc)
        return {"problem": f"{what} gave no answer in time (killed; the doctor_timeout_s setting says how long)"}
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARK):
            try:
                answer = json.loads(line[len(MARK):])
            except ValueError:
                break
            return answer if isinstance(answer, dict) else {"problem": f"{what} answered {answer!r}"}
    rc = proc.returncode
    if rc is not None and rc < 0:
        try:
            died = signal.Signals(-rc).name
        except ValueError:
            died = f"signal {-rc}"
        how = f"crashed ({died})"
    else:
        how = f"ended with status {rc} and no answer"
    last = next((ln.strip() for ln in reversed(stderr.splitlines()) if ln.strip()), "")
    return {"problem": f"{what} {how}" + (f": {last[:300]}" if last else "")}


def _kill(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the probe's own session: whatever it started goes too
    except (ProcessLookupError, PermissionError, AttributeError):
        proc.kill()
    proc.communicate()


def _in_thread(fn: Callable[[], dict[str, Any]], timeout_s: float,
               on_timeout: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """Start ``fn`` in a daemon thread; the returned call waits for it at most ``timeout_s``."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except Exception as exc:  # a check's own failure is part of the report
            box["value"] = {**on_timeout, "problem": f"{type(exc).__name__}: {_no_secrets(str(exc))}"}

    thread = threading.Thread(target=run, name="emtui-doctor", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s

    def result() -> dict[str, Any]:
        thread.join(max(0.0, deadline - time.monotonic()))
        return box.get("value", on_timeout)

    return result
