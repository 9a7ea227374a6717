"""Which GPUs a worker offers, found cheaply: never by importing torch into the worker."""

from __future__ import annotations

import os
import shutil
import subprocess


def parse_gpus(text: str) -> list[str]:
    """``"0,1"`` -> ``["0", "1"]``: device indexes, each once (ValueError with one line otherwise)."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p.isdigit() for p in parts):
        raise ValueError(f"--gpus must be GPU indexes separated by commas (0,1,...), not {text!r}")
    if len(set(parts)) != len(parts):
        raise ValueError(f"--gpus names a GPU twice: {text!r}")
    return [str(int(p)) for p in parts]


def visible_gpus(environ: dict[str, str] | None = None) -> int:
    """How many GPUs this process may use: ``$CUDA_VISIBLE_DEVICES`` when set (empty or -1: none),
    else the GPUs ``nvidia-smi -L`` lists, else none."""
    env = os.environ if environ is None else environ
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        n = 0
        for entry in (e.strip() for e in listed.split(",")):
            if not entry or entry.startswith("-"):
                break  # CUDA stops at the first invalid entry
            n += 1
        return n
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=15, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))
