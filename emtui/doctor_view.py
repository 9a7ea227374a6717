"""`emtui doctor`'s report as a person reads it: a label, then what was found, wrapped to a width
(the command's table, and the Eval queue's view of a machine check job)."""

from __future__ import annotations

import textwrap
from typing import Any

GIB = 1 << 30


def _gib(n: Any) -> str:
    """Bytes as a person reads them: GiB, or MiB / KiB / B for small sizes."""
    if not isinstance(n, (int, float)):
        return "?"
    for unit, size in (("GiB", GIB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{int(n)} B"


def doctor_table(r: dict[str, Any], width: int = 80) -> list[str]:
    """The report as lines of at most ``width`` columns: a label, then what it found."""
    from engine.common.text import flat
    from engine.runs.doctor import AWS_SOURCES

    py, plat, cpu, mem = r["python"], r["platform"], r["cpus"], r["memory"]
    torch, bnb, aws, disk, db = r["torch"], r["bitsandbytes"], r["aws"], r["disk"], r["database"]
    if torch.get("ok"):
        cuda = ("CUDA " + str(torch.get("cuda_build")) + (f", cuDNN {torch['cudnn']}" if torch.get("cudnn") else "")
                if torch.get("cuda_available") else
                "CUDA not available" + ("" if torch.get("cuda_build") else " (a CPU build of torch)"))
        torch_line = f"{torch['version']} · {cuda}" + (" · MPS available" if torch.get("mps_available") else "")
        if torch.get("problem"):
            torch_line += f" · {torch['problem']}"
    else:
        torch_line = f"not usable: {torch.get('problem')}"
    if torch.get("cuda_visible_devices") is not None:
        torch_line += f" · CUDA_VISIBLE_DEVICES={torch['cuda_visible_devices']}"
    gpus = [f"{g['index']}: {g['name']} (sm {g['capability']}), {_gib(g['free_bytes'])} free of "
            f"{_gib(g['total_bytes'])}" for g in r.get("gpus") or []]
    usable = f" ({cpu['usable']} usable)" if cpu.get("usable") not in (None, cpu.get("count")) else ""
    memory = f"{_gib(mem['total_bytes'])}" + (f" ({_gib(mem['available_bytes'])} available)"
                                               if mem.get("available_bytes") is not None else "")
    found = (f"credentials from {AWS_SOURCES.get(aws['source'], aws['source'])}" if aws.get("credentials")
             else "no credentials found")
    if aws.get("region"):
        found += f" · region {aws['region']}"
    if aws.get("problem"):
        found += f" · {aws['problem']}"
    elif not aws.get("region"):
        found += " · no region (AWS_DEFAULT_REGION or ~/.aws/config)"
    bnb_line = (f"{bnb['version']} · " if bnb.get("version") else "") + str(bnb.get("summary"))
    db_line = str(db["path"]) + (f" ({_gib(db['size_bytes'])})" if db.get("size_bytes") is not None
                                 else "" if db.get("exists") else " (not created yet)")
    items = [
        ("Host", f"{r['host']} · pid {r['pid']} · {r['checked_at']} · took {r['seconds']:g} s"),
        ("Python", f"{py['version']} ({py['implementation']}) {py['executable']}"),
        ("Platform", f"{plat['system']} {plat['release']} {plat['machine']}"),
        ("CPUs", f"{cpu['count']}{usable}"),
        ("Memory", memory),
        ("torch", torch_line),
        *[("GPU" if i == 0 else "", g) for i, g in enumerate(gpus or ["none"])],
        ("4-bit", bnb_line),
        ("AWS", found),
        ("Database", db_line),
        ("Disk", f"{_gib(disk['free_bytes'])} free of {_gib(disk['total_bytes'])} at {disk['path']}"),
    ]
    label = 10
    lines = []
    for name, text in items:
        wrapped = textwrap.wrap(flat(text), width=width - label, break_on_hyphens=False) or [""]
        lines.append(f"{name:<{label}}{wrapped[0]}")
        lines += [" " * label + more for more in wrapped[1:]]
    return lines
