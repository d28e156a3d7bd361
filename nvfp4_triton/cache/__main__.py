"""``python -m nvfp4_triton.cache``: look after the kernel cache (tuned configs + compiled kernels).

    info                      root, size, entries, this machine's environment key
    list                      one line per tuned entry
    clear [--older-than DAYS] delete entries not used for DAYS days (default: all)
    export FILE               write one portable .tar.gz of the cache
    import FILE [--force]     add an exported archive; refuses another GPU/versions unless --force

The root is $NVFP4_TRITON_CACHE_DIR, else the platform's user cache folder; --root overrides both.
Exit status: 0 on success, 1 when the command failed, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .archive import ImportRefused, export_archive, import_archive
from .manage import clear, info, list_entries
from .store import cache_root


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nvfp4_triton.cache", description="Manage the nvfp4_triton "
                                     "kernel cache (tuned configs and compiled kernels).")
    parser.add_argument("--root", type=Path, help="cache folder (default: $NVFP4_TRITON_CACHE_DIR or the user cache)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="root, size, entry count, this machine's key")
    p_info.add_argument("--json", action="store_true", help="print JSON")
    sub.add_parser("list", help="tuned entries")
    p_clear = sub.add_parser("clear", help="delete entries (all, or those unused for DAYS)")
    p_clear.add_argument("--older-than", type=float, metavar="DAYS")
    p_export = sub.add_parser("export", help="write a portable archive")
    p_export.add_argument("file", type=Path)
    p_import = sub.add_parser("import", help="add an exported archive")
    p_import.add_argument("file", type=Path)
    p_import.add_argument("--force", action="store_true", help="import entries tuned in another environment")
    args = parser.parse_args(argv)
    root = (args.root or cache_root()).expanduser()

    try:
        if args.command == "info":
            report = info(root)
            if args.json:
                print(json.dumps(report, indent=1))
                return 0
            print(f"root:        {report['root']}{'' if report['exists'] else ' (not created yet)'}")
            print(f"size:        {_mib(report['size_bytes'])} in {report['files']} files "
                  f"({_mib(report['triton_binaries_bytes'])} compiled kernels)")
            print(f"entries:     {report['entries']} tuned configs, {report['entries_for_this_machine']} for this "
                  f"machine, {report['corrupt_entries']} corrupt")
            env = report["environment"]
            print(f"this key:    {report['environment_digest']}  " + " ".join(f"{k}={v}" for k, v in env.items()))
        elif args.command == "list":
            rows = list_entries(root)
            if not rows:
                print(f"no tuned entries under {root}")
                return 0
            print(f"{'kernel':12} {'shape':36} {'config':24} {'tuned ms':>9}  {'last used':16}  key")
            for r in rows:
                ms = f"{r.tuned_ms:.4f}" if isinstance(r.tuned_ms, (int, float)) else "-"
                mark = "" if r.current else " (other environment)"
                print(f"{r.kernel:12} {r.shape:36} {r.config:24} {ms:>9}  {r.last_used:16}  {r.env}{mark}")
        elif args.command == "clear":
            if args.older_than is not None and args.older_than < 0:
                parser.error("--older-than must be >= 0 days")
            removed = clear(root, args.older_than)
            scope = f" unused for {args.older_than:g} days" if args.older_than is not None else ""
            print(f"removed {removed} files{scope} from {root}")
        elif args.command == "export":
            manifest = export_archive(root, args.file)
            print(f"wrote {args.file}: {manifest['entries']} tuned entries from "
                  f"{len(manifest['environments'])} environment(s), plus compiled kernels")
        elif args.command == "import":
            counts = import_archive(root, args.file, force=args.force)
            print(f"imported {counts['entries']} tuned entries ({counts['rekeyed']} re-keyed to this machine) "
                  f"and {counts['binaries']} compiled-kernel files into {root}")
    except ImportRefused as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
