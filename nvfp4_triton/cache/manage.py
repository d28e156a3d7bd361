"""Inspect and prune the cache: what ``info``, ``list`` and ``clear`` of the CLI report and do."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .compiled import triton_dir
from .keys import digest, environment
from ..tiling import config_from_dict, describe
from .store import TuningStore, age_days, is_cache_root

STALE_TEMP_S = 3600.0


@dataclass
class EntryRow:
    kernel: str
    shape: str
    config: str
    tuned_ms: float | None
    last_used: str
    env: str
    current: bool
    path: Path


def folder_size(path: Path) -> tuple[int, int]:
    """(bytes, files) under ``path``."""
    total = files = 0
    for p in path.rglob("*") if path.is_dir() else ():
        if p.is_file():
            total += p.stat().st_size
            files += 1
    return total, files


def info(root: Path) -> dict:
    """Root, size, entry counts, and this machine's environment key."""
    env = environment()
    store = TuningStore(root)
    entries = list(store.entries())
    size, files = folder_size(root)
    return {
        "root": str(root),
        "exists": root.is_dir(),
        "size_bytes": size,
        "files": files,
        "entries": len(entries),
        "entries_for_this_machine": sum(1 for p, _ in entries if p.parent.name == digest(env)),
        "corrupt_entries": sum(1 for _, r in entries if r is None),
        "triton_binaries_bytes": folder_size(triton_dir(root))[0],
        "environment": env,
        "environment_digest": digest(env),
    }


def list_entries(root: Path) -> list[EntryRow]:
    """One row per tuned-config entry, newest use first."""
    mine = digest(environment())
    rows = []
    for path, record in TuningStore(root).entries():
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))
        if record is None:
            rows.append(EntryRow("?", "corrupt entry", "-", None, used, path.parent.name, False, path))
            continue
        key, cfg = record.get("key", {}), record.get("config", {})
        shape = f"N={key.get('n')} K={key.get('k')} M~{key.get('m_bucket')} {key.get('dtype')}" + \
            (" +bias" if key.get("bias") else "")
        try:
            config = describe(config_from_dict(cfg))
        except (TypeError, ValueError):
            config = "invalid"
        rows.append(EntryRow(record.get("kernel", "?"), shape, config, record.get("tuned_ms"), used,
                             path.parent.name, path.parent.name == mine, path))
    rows.sort(key=lambda r: r.path.stat().st_mtime, reverse=True)
    return rows


def clear(root: Path, older_than_days: float | None = None) -> int:
    """Delete tuned entries (unused for ``older_than_days``, or all) and compiled kernels; return files removed.

    Refuses a folder without the cache's tag file: it never deletes anything it did not write.
    Run it while no job is using the cache: a kernel deleted under a running job is recompiled.
    """
    if not root.exists():
        return 0
    if not is_cache_root(root):
        raise ValueError(f"{root} is not an nvfp4_triton cache (no CACHEDIR.TAG of ours); nothing deleted")
    removed = 0
    tuning = root / "tuning"
    for path in sorted(tuning.glob("*/*")) if tuning.is_dir() else ():
        stale_temp = path.name.endswith(".tmp") and age_days(path) * 86400 > STALE_TEMP_S
        if path.is_file() and path.name != "env.json" and (
            stale_temp or older_than_days is None or age_days(path) >= older_than_days
        ):
            path.unlink()
            removed += 1
    for env_dir in tuning.glob("*") if tuning.is_dir() else ():
        if env_dir.is_dir() and [p.name for p in env_dir.iterdir()] in ([], ["env.json"]):
            shutil.rmtree(env_dir)
    binaries = triton_dir(root)
    for group in binaries.iterdir() if binaries.is_dir() else ():
        if group.is_dir() and (older_than_days is None or age_days(group) >= older_than_days):
            removed += sum(1 for p in group.rglob("*") if p.is_file())
            shutil.rmtree(group)
    return removed
