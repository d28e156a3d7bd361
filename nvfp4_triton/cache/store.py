"""The on-disk kernel cache: its root, tuned-config entries, and the home of Triton's binaries.

Layout under the root::

    CACHEDIR.TAG                    marks the folder as ours (and as a cache for backup tools)
    tuning/<env digest>/env.json    the environment key of the entries beside it
    tuning/<env digest>/<key>.json  one tuned config; its mtime is its last use
    triton/                         Triton's compile cache for nvfp4_triton's kernels
    locks/                          filelock files

Every write goes to a temporary file in the target folder and is renamed into place, so a
reader sees the old entry or the new one, never a part. Problems (unwritable folder, corrupt
entry, lock timeout) are logged once and degrade to in-memory tuning; they never raise into
a forward pass.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import filelock
import platformdirs

from .keys import digest

log = logging.getLogger("nvfp4_triton")

CACHE_DIR_ENV = "NVFP4_TRITON_CACHE_DIR"
TAG_NAME = "CACHEDIR.TAG"
TAG_TEXT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file marks the nvfp4_triton kernel cache (tuned configs and compiled kernels).\n"
    "# See https://bford.info/cachedir/ ; `python -m nvfp4_triton.cache clear` empties it.\n"
)
LOCK_TIMEOUT_S = 900.0
_warned: set[str] = set()


def warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def cache_root() -> Path:
    """``$NVFP4_TRITON_CACHE_DIR`` if set, else the platform's user cache dir for "nvfp4_triton"."""
    return Path(os.environ.get(CACHE_DIR_ENV) or platformdirs.user_cache_dir("nvfp4_triton")).expanduser()


def write_atomic(path: Path, data: bytes) -> None:
    """Publish ``data`` at ``path`` whole or not at all (temp file in the same folder, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def is_cache_root(root: Path) -> bool:
    """True when ``root`` carries our tag file: only then do clear and import touch it."""
    try:
        return "nvfp4_triton" in (root / TAG_NAME).read_text()
    except OSError:
        return False


def ensure_root(root: Path) -> None:
    """Create the root and its tag; raise OSError if that is impossible."""
    root.mkdir(parents=True, exist_ok=True)
    if not is_cache_root(root):
        if any(p for p in root.iterdir() if p.name not in ("tuning", "triton", "locks") and not _is_tag_in_flight(p)):
            raise OSError(f"{root} is not empty and not an nvfp4_triton cache; refusing to use it")
        write_atomic(root / TAG_NAME, TAG_TEXT.encode())


def _is_tag_in_flight(path: Path) -> bool:
    """Another process's tag, written but not yet renamed into place (processes starting together on a new root)."""
    return path.name.startswith(f".{TAG_NAME}.") and path.name.endswith(".tmp")


class TuningStore:
    """Tuned configs on disk, one JSON file per (environment, key)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root()

    def env_dir(self, env: dict) -> Path:
        return self.root / "tuning" / digest(env)

    def path(self, env: dict, name: str) -> Path:
        return self.env_dir(env) / f"{name}.json"

    def load(self, env: dict, name: str) -> dict | None:
        """The entry for ``name`` under ``env``, or None if absent, unreadable, corrupt or foreign."""
        path = self.path(env, name)
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            warn_once(f"nvfp4_triton cache: cannot read {path} ({err}); tuning again")
            return None
        try:
            record = json.loads(text)
            if record["env"] != env or record["name"] != name or not isinstance(record["config"], dict):
                raise ValueError("entry belongs to another environment or key")
        except (ValueError, KeyError, TypeError) as err:
            warn_once(f"nvfp4_triton cache: ignoring corrupt or foreign entry {path} ({err}); tuning again")
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # last use, for `clear --older-than`
        return record

    def save(self, env: dict, name: str, record: dict) -> bool:
        """Publish an entry atomically; False (after one warning) when the cache cannot be written."""
        try:
            ensure_root(self.root)
            env_file = self.env_dir(env) / "env.json"
            if not env_file.exists():
                write_atomic(env_file, json.dumps(env, indent=1, sort_keys=True).encode())
            write_atomic(self.path(env, name), json.dumps(record, indent=1, sort_keys=True).encode())
            return True
        except OSError as err:
            warn_once(f"nvfp4_triton cache: cannot write under {self.root} ({err}); "
                      "tuned configs stay in memory for this process")
            return False

    @contextlib.contextmanager
    def lock(self, env: dict, name: str) -> Iterator[None]:
        """Hold the inter-process lock of one key (tuning is serialized per key); degrade to no lock."""
        try:
            ensure_root(self.root)
            (self.root / "locks").mkdir(exist_ok=True)
            lock = filelock.FileLock(str(self.root / "locks" / f"{digest(env)}-{name}.lock"), timeout=LOCK_TIMEOUT_S)
            lock.acquire()
        except (OSError, filelock.Timeout) as err:
            warn_once(f"nvfp4_triton cache: no lock under {self.root} ({err}); tuning without one")
            yield
            return
        try:
            yield
        finally:
            lock.release()

    def entries(self) -> Iterator[tuple[Path, dict | None]]:
        """Every entry file on disk with its parsed record (None where unreadable)."""
        tuning = self.root / "tuning"
        if not tuning.is_dir():
            return
        for path in sorted(tuning.glob("*/*.json")):
            if path.name == "env.json":
                continue
            try:
                yield path, json.loads(path.read_text())
            except (OSError, ValueError):
                yield path, None


def age_days(path: Path, now: float | None = None) -> float:
    return ((now or time.time()) - path.stat().st_mtime) / 86400.0
