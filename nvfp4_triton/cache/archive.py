"""Ship a tuned cache to other machines: one ``.tar.gz`` with the tuned configs and compiled kernels.

A team tunes once (``prewarm``), exports, and imports the archive on every identical GPU or
bakes it into a container image. Import checks each entry's environment key against this
machine's and refuses a mismatch (other GPU, Triton, torch, CUDA, kernel source or package
version) unless forced; forced entries are re-keyed to this machine.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from .compiled import triton_dir
from .keys import digest, environment
from .store import TuningStore, ensure_root, write_atomic

FORMAT = "nvfp4_triton-cache"
FORMAT_VERSION = 1


class ImportRefused(ValueError):
    """The archive was made for another environment (or is not one of ours)."""


def export_archive(root: Path, dest: Path) -> dict:
    """Write every tuned entry and compiled kernel under ``root`` to ``dest``; return the manifest."""
    store = TuningStore(root)
    entries = [(p, r) for p, r in store.entries() if r is not None]
    envs = {p.parent.name: r["env"] for p, r in entries}
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environments": envs,
        "entries": len(entries),
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            data = json.dumps(manifest, indent=1).encode()
            member = tarfile.TarInfo("manifest.json")
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
            for path, _ in entries:
                tar.add(path, arcname=f"tuning/{path.parent.name}/{path.name}")
            binaries = triton_dir(root)
            for path in sorted(binaries.rglob("*")) if binaries.is_dir() else ():
                if path.is_file() and not path.name.endswith(".tmp") and ".tmp.pid_" not in path.name:
                    tar.add(path, arcname=f"triton/{path.relative_to(binaries).as_posix()}")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return manifest


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] not in ("tuning", "triton"):
        raise ImportRefused(f"archive member {name!r} points outside the cache; refusing the archive")
    return path


def import_archive(root: Path, src: Path, force: bool = False) -> dict:
    """Add an exported archive's entries and kernels to ``root``; return counts.

    Raises ImportRefused if an entry's environment differs from this machine's and ``force`` is
    False. Nothing is written before every check has passed.
    """
    here = environment()
    here_digest = digest(here)
    try:
        tar = tarfile.open(src, "r:gz")
    except (OSError, tarfile.TarError) as err:
        raise ImportRefused(f"{src} is not a readable nvfp4_triton cache archive ({err})") from err
    with tar:
        try:
            manifest = json.load(tar.extractfile("manifest.json"))
        except (KeyError, ValueError, AttributeError) as err:
            raise ImportRefused(f"{src} has no valid manifest.json; not an nvfp4_triton cache archive") from err
        if manifest.get("format") != FORMAT:
            raise ImportRefused(f"{src} is not an nvfp4_triton cache archive (format {manifest.get('format')!r})")
        foreign = {d: env for d, env in manifest.get("environments", {}).items() if d != here_digest}
        if foreign and not force:
            lines = []
            for env in foreign.values():
                diff = ", ".join(f"{k}: {env.get(k)!r} here {v!r}" for k, v in here.items() if env.get(k) != v)
                lines.append(f"  - {diff}")
            raise ImportRefused(
                f"{src} was tuned in another environment:\n" + "\n".join(lines)
                + "\nIts configs may be slow or fail to compile here. Re-run with --force to import them anyway."
            )
        members = [(m, _safe_name(m.name)) for m in tar.getmembers() if m.name != "manifest.json"]
        files = []
        for member, path in members:
            if not member.isfile():
                continue
            data = tar.extractfile(member).read()
            if path.parts[0] == "tuning":
                try:
                    data = json.loads(data)
                    str(data["name"]), dict(data["config"])
                except (ValueError, KeyError, TypeError) as err:
                    raise ImportRefused(f"{src}: entry {member.name} is corrupt ({err}); nothing imported") from err
            files.append((path, data))

    ensure_root(root)
    store = TuningStore(root)
    counts = {"entries": 0, "binaries": 0, "rekeyed": 0}
    for path, data in files:
        if path.parts[0] == "tuning":
            record = data
            if path.parts[1] != here_digest:
                record["env"] = here
                record["imported_from"] = path.parts[1]
                counts["rekeyed"] += 1
            if not store.save(here, record["name"], record):
                raise OSError(f"cannot write tuned configs under {root}")
            counts["entries"] += 1
        else:
            target = triton_dir(root).joinpath(*path.parts[1:])
            if not target.exists():
                write_atomic(target, data)
                counts["binaries"] += 1
    return counts
