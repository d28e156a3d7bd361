"""The tuner and the on-disk cache: keys, atomic publish, concurrency, corruption, read-only, export/import."""

import json
import logging
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest
import torch

from nvfp4_triton import autotune, ring, wgmma
from nvfp4_triton.autotune import Tuner, candidate_configs, m_bucket, shared_memory_estimate
from nvfp4_triton.cache import keys, store as store_mod
from nvfp4_triton.cache.archive import ImportRefused, export_archive, import_archive
from nvfp4_triton.cache.manage import clear, info, list_entries
from nvfp4_triton.cache.store import TuningStore
from nvfp4_triton.tiling import GemvConfig, RingConfig, TileConfig, WgmmaConfig, describe

from .subproc import python_env

KEY = (0, torch.bfloat16, 4096, 3072, 3072, True)


class FakeBench:
    """Stands in for GPU timing: a deterministic time per config, and a count of calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, cfg: TileConfig) -> float:
        self.calls.append(cfg)
        return 1.0 + cfg.block_m / 1000 + cfg.block_n / 7000 + cfg.num_stages / 100


@pytest.fixture
def gpu_like(monkeypatch):
    """Let the tuner measure on a CPU-only machine: a fixed device shared-memory size."""
    monkeypatch.setenv("NVFP4_TRITON_AUTOTUNE", "1")
    monkeypatch.setattr(autotune, "device_shared_memory", lambda index: 228 * 1024)


@pytest.fixture(autouse=True)
def fresh_warnings():
    store_mod._warned.clear()


def test_m_bucket_rule():
    assert m_bucket(4096) == m_bucket(4100) == m_bucket(4608) == m_bucket(3072) == 4096
    assert m_bucket(2800) == 2048  # the boundary is 2**11.5 = 2896
    assert [m_bucket(m) for m in (1, 2, 4, 8, 16)] == [1, 2, 4, 8, 16]
    assert m_bucket(16) != m_bucket(4096)


def test_candidates_are_pruned_by_shape_and_shared_memory():
    roomy = candidate_configs(4096, 3072, 3072, 228 * 1024)
    tight = candidate_configs(4096, 3072, 3072, 99 * 1024)  # Ada / consumer parts
    assert 0 < len(tight) < len(roomy)
    assert all(shared_memory_estimate(c) <= 99 * 1024 for c in tight)
    narrow = candidate_configs(1, 24, 48, 228 * 1024)
    tiles = [c for c in narrow if isinstance(c, TileConfig)]
    assert tiles and all(c.block_n <= 32 and c.block_k <= 64 and c.block_m == 16 for c in tiles)
    gemv = [c for c in narrow if isinstance(c, GemvConfig)]
    assert gemv and all(c.block_k <= 64 and c.block_m <= 2 for c in gemv)  # GEMV only for a few rows
    assert not any(isinstance(c, GemvConfig) for c in candidate_configs(16, 3072, 3072, 228 * 1024))


def test_first_use_measures_then_later_processes_read(gpu_like, private_cache):
    bench = FakeBench()
    tuner = Tuner("w4a16_gemm", TuningStore(private_cache))
    cfg = tuner.resolve(KEY, bench, heuristic_only=False)
    expected = min(candidate_configs(4096, 3072, 3072, 228 * 1024), key=FakeBench())
    assert cfg == expected and tuner.stats.tuned == 1
    n_candidates = len(candidate_configs(4096, 3072, 3072, 228 * 1024))
    assert len(bench.calls) == 2 * n_candidates  # a compiling pass, then the timed pass
    assert bench.calls[:n_candidates] == bench.calls[n_candidates:]
    assert tuner.lookup(KEY) == cfg

    again = FakeBench()
    other = Tuner("w4a16_gemm", TuningStore(private_cache))  # a new process: empty memo
    assert other.resolve(KEY, again, heuristic_only=False) == cfg
    assert again.calls == [] and other.stats.loaded == 1 and other.stats.tuned == 0


def test_a_candidate_that_fails_to_launch_is_skipped(gpu_like, private_cache, caplog):
    candidates = candidate_configs(4096, 3072, 3072, 228 * 1024)
    fastest = min(candidates, key=FakeBench())
    calls = []

    def bench(cfg):
        calls.append(cfg)
        if cfg == fastest:
            raise RuntimeError("out of shared memory")
        return FakeBench()(cfg)

    caplog.set_level(logging.WARNING, "nvfp4_triton")
    cfg = Tuner("k", TuningStore(private_cache)).resolve(KEY, bench, heuristic_only=False)
    assert cfg != fastest and cfg in candidates
    assert calls.count(fastest) == 1  # never timed after failing
    assert any("skipping config" in r.getMessage() for r in caplog.records)


def test_a_candidate_whose_output_disagrees_is_never_chosen(gpu_like, private_cache, caplog):
    candidates = candidate_configs(4096, 3072, 3072, 228 * 1024)
    fastest = min(candidates, key=FakeBench())
    seen = []

    def bench(cfg):  # the fastest config's output turns wrong on its second (timed) run
        seen.append(cfg)
        if cfg == fastest and seen.count(cfg) == 2:
            raise autotune.CandidateMismatch("relative L2 difference 1.4 from the default config exceeds 0.01")
        return FakeBench()(cfg)

    caplog.set_level(logging.WARNING, "nvfp4_triton")
    cfg = Tuner("k", TuningStore(private_cache)).resolve(KEY, bench, heuristic_only=False)
    assert cfg != fastest and cfg in candidates
    assert any("CandidateMismatch" in r.getMessage() for r in caplog.records)


def test_agreement_check_catches_garbage_not_rounding():
    torch.manual_seed(0)
    ref = torch.randn(64, 48)
    ref[0, 0] = float("nan")  # where the reference is not finite, nothing is compared
    autotune.check_agreement(ref + 1e-3 * torch.randn(64, 48), ref, 1e-2)
    autotune.check_agreement(ref * (1 + 3.4e-2 * torch.randn(64, 48)), ref, 0.1)  # FP8-like rounding
    with pytest.raises(autotune.CandidateMismatch, match="exceeds 0.01"):
        autotune.check_agreement(torch.zeros(64, 48), ref, 1e-2)
    broken = ref.clone()
    broken[5, 5] = float("inf")
    with pytest.raises(autotune.CandidateMismatch):
        autotune.check_agreement(broken, ref, 1e-2)


def test_the_ring_kernel_is_timed_only_where_it_can_run(monkeypatch):
    """Offered for M buckets up to 16, N a multiple of 64, K of 256 and bf16 x, where the device and
    Triton allow (faked here); split only where every slice keeps two 256-wide trips."""
    assert not any(isinstance(c, RingConfig) for c in candidate_configs(4, 3072, 3072, 228 * 1024))  # no GPU
    monkeypatch.setattr(ring, "device_problem", lambda device: "")
    rings = [c for c in candidate_configs(4, 3072, 3072, 228 * 1024) if isinstance(c, RingConfig)]
    assert rings and {c.split_k for c in rings} == {1, 2, 4}  # 12 trips: 8 slices would leave 1-2 trips each
    assert max(c.split_k for c in candidate_configs(8, 3072, 12288, 228 * 1024) if isinstance(c, RingConfig)) == 8
    assert any(isinstance(c, RingConfig) for c in candidate_configs(16, 3072, 3072, 228 * 1024))
    for bucket, n, k, dtype in [(32, 3072, 3072, torch.bfloat16), (4, 3000, 3072, torch.bfloat16),
                                (4, 3072, 3000, torch.bfloat16), (4, 3072, 3072, torch.float16)]:
        assert not any(isinstance(c, RingConfig) for c in candidate_configs(bucket, n, k, 228 * 1024, dtype))


def test_the_wgmma_kernel_is_timed_only_where_it_can_run(monkeypatch):
    """Offered at M buckets 64-1024, for N a multiple of 64, K of 64 and bf16 x, where the device (Hopper)
    and Triton allow (faked here)."""
    assert not any(isinstance(c, WgmmaConfig) for c in candidate_configs(512, 3072, 3072, 228 * 1024))  # no GPU
    monkeypatch.setattr(wgmma, "device_problem", lambda device: "")
    assert {describe(c) for c in candidate_configs(512, 3072, 3072, 228 * 1024) if isinstance(c, WgmmaConfig)} \
        == {"wgmma 256 s4", "wgmma 256 s5"}
    assert any(isinstance(c, WgmmaConfig) for c in candidate_configs(64, 3072, 4160, 228 * 1024))
    for bucket, n, k, dtype in [(32, 3072, 3072, torch.bfloat16), (2048, 3072, 3072, torch.bfloat16),
                                (512, 3000, 3072, torch.bfloat16),
                                (512, 3072, 3000, torch.bfloat16), (512, 3072, 3072, torch.float16)]:
        assert not any(isinstance(c, WgmmaConfig) for c in candidate_configs(bucket, n, k, 228 * 1024, dtype))


def test_wgmma_configs_round_trip_through_the_cache(gpu_like, private_cache):
    chosen = WgmmaConfig(128, 3)

    def bench(cfg):
        return 0.5 if cfg == chosen else FakeBench()(cfg)

    assert Tuner("k", TuningStore(private_cache)).resolve(KEY, bench, heuristic_only=False, extra=lambda: (chosen,)) \
        == chosen
    assert Tuner("k", TuningStore(private_cache)).resolve(KEY, FakeBench(), heuristic_only=False) == chosen
    assert "wgmma 128 s3" in list_entries(private_cache)[0].config
    with pytest.raises(ValueError, match="num_stages"):
        WgmmaConfig(128, 1)
    with pytest.raises(ValueError, match="at most 5 at block_m = 256"):  # 6 slots would take 252 KB
        WgmmaConfig(256, 6)
    with pytest.raises(ValueError, match="block_m"):
        WgmmaConfig(64)


def test_ring_configs_round_trip_through_the_cache(gpu_like, private_cache):
    chosen = RingConfig(64, 4, 3, split_k=2)

    def bench(cfg):
        return 0.5 if cfg == chosen else FakeBench()(cfg)

    assert Tuner("k", TuningStore(private_cache)).resolve(KEY, bench, heuristic_only=False, extra=lambda: (chosen,)) \
        == chosen
    assert Tuner("k", TuningStore(private_cache)).resolve(KEY, FakeBench(), heuristic_only=False) == chosen
    assert "ring 64 w4 s3 split2" in list_entries(private_cache)[0].config
    with pytest.raises(ValueError, match="num_stages"):
        RingConfig(64, 4, 1)
    with pytest.raises(ValueError, match="block_n"):
        RingConfig(32, 4)
    with pytest.raises(ValueError, match="split_k"):
        RingConfig(64, 4, 2, split_k=0)
    assert describe(RingConfig(64, 4, 2, split_k=3)) == "ring 64 w4 s2 split3"  # slices of unequal trips run


def test_other_strategies_compete_and_round_trip_through_the_cache(gpu_like, private_cache):
    from nvfp4_triton.tiling import TwoPassConfig

    two_pass = TwoPassConfig(64, 128, 4)
    asked = []

    def extra():
        asked.append(True)
        return (two_pass,)

    def bench(cfg):
        return 0.5 if cfg == two_pass else FakeBench()(cfg)

    assert Tuner("k", TuningStore(private_cache)).resolve(KEY, bench, heuristic_only=False, extra=extra) == two_pass
    again = Tuner("k", TuningStore(private_cache))
    assert again.resolve(KEY, FakeBench(), heuristic_only=False, extra=extra) == two_pass
    assert asked == [True]  # only measuring asks for (and may allocate) other strategies
    assert "two-pass" in list_entries(private_cache)[0].config


def test_autotune_off_uses_the_heuristic_and_writes_nothing(private_cache, monkeypatch):
    monkeypatch.setenv("NVFP4_TRITON_AUTOTUNE", "0")
    bench = FakeBench()
    tuner = Tuner("w4a16_gemm", TuningStore(private_cache))
    cfg = tuner.resolve(KEY, bench, heuristic_only=False)
    assert cfg == autotune.default_config(4096, 3072, 3072) and bench.calls == []
    assert not (private_cache / "tuning").exists()


@pytest.mark.parametrize("field", ["nvfp4_triton", "kernel_source", "triton", "torch", "cuda", "gpu", "capability",
                                   "schema"])
def test_any_key_field_change_misses(gpu_like, private_cache, monkeypatch, field):
    Tuner("k", TuningStore(private_cache)).resolve(KEY, FakeBench(), heuristic_only=False)
    changed = dict(keys.environment(0)) | {field: "something else"}
    monkeypatch.setattr(autotune, "environment", lambda index: changed)
    bench = FakeBench()
    tuner = Tuner("k", TuningStore(private_cache))
    tuner.resolve(KEY, bench, heuristic_only=False)
    assert bench.calls and tuner.stats.tuned == 1


def test_kernel_source_hash_follows_the_kernel_files(tmp_path, monkeypatch):
    for p in keys.KERNELS_DIR.glob("*.py"):
        (tmp_path / p.name).write_bytes(p.read_bytes())
    monkeypatch.setattr(keys, "KERNELS_DIR", tmp_path)
    keys.kernel_source_hash.cache_clear()
    before = keys.kernel_source_hash()
    with (tmp_path / "_w4a16_gemm.py").open("a") as f:
        f.write("\n# edited\n")
    keys.kernel_source_hash.cache_clear()
    assert keys.kernel_source_hash() != before
    keys.kernel_source_hash.cache_clear()


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"env": {}, "name": "x", "config": {}}',
                                     b'{"truncated": ', b"\x00\xff" * 10, "bad config"])
def test_corrupt_truncated_or_foreign_entries_warn_once_and_retune(gpu_like, private_cache, caplog, content):
    store = TuningStore(private_cache)
    good = Tuner("k", store).resolve(KEY, FakeBench(), heuristic_only=False)
    (entry,) = [p for p, _ in store.entries()]
    if content == "bad config":  # well-formed JSON of our own environment, impossible tile sizes
        record = json.loads(entry.read_text()) | {"config": {"block_m": 8, "block_n": 3, "block_k": 16}}
        content = json.dumps(record).encode()
    entry.write_bytes(content)
    caplog.set_level(logging.WARNING, "nvfp4_triton")
    for _ in range(2):
        bench = FakeBench()
        assert Tuner("k", store).resolve(KEY, bench, heuristic_only=False) == good
    warnings = [r for r in caplog.records if "corrupt or foreign" in r.getMessage() or "invalid config" in r.getMessage()]
    assert len(warnings) == 1
    assert json.loads(entry.read_text())["config"]  # re-tuned entry replaced the bad one


def test_unwritable_cache_degrades_to_memory(gpu_like, tmp_path, caplog, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    caplog.set_level(logging.WARNING, "nvfp4_triton")
    tuner = Tuner("k", TuningStore(blocker / "cache"))  # cannot be created
    cfg = tuner.resolve(KEY, FakeBench(), heuristic_only=False)
    assert tuner.lookup(KEY) == cfg
    assert any("tuned configs stay in memory" in r.getMessage() for r in caplog.records)

    def refuse(path, data):
        raise PermissionError(13, "Read-only file system", str(path))

    monkeypatch.setattr(store_mod, "write_atomic", refuse)
    store_mod._warned.clear()
    assert not TuningStore(tmp_path / "ro").save(keys.environment(0), "x", {"config": {}})
    tuner = Tuner("k", TuningStore(tmp_path / "ro"))
    assert tuner.resolve(KEY, FakeBench(), heuristic_only=False) == cfg


def test_refuses_a_foreign_non_empty_folder(gpu_like, tmp_path, caplog):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("precious")
    caplog.set_level(logging.WARNING, "nvfp4_triton")
    Tuner("k", TuningStore(home)).resolve(KEY, FakeBench(), heuristic_only=False)
    assert sorted(p.name for p in home.iterdir()) == ["thesis.tex"]
    assert any("not an nvfp4_triton cache" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="not an nvfp4_triton cache"):
        clear(home)
    assert (home / "thesis.tex").read_text() == "precious"


def _python(code: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=python_env(), **kw)


def test_writer_killed_mid_publish_leaves_the_old_entry(private_cache):
    env = keys.environment(0)
    store = TuningStore(private_cache)
    store.save(env, "entry", {"env": env, "name": "entry", "config": {"old": True}})
    writer = _python(f"""
        import os, time
        from nvfp4_triton.cache import keys, store
        def stuck(src, dst):
            print("written", flush=True)
            time.sleep(600)
        os.replace = stuck
        s = store.TuningStore({str(private_cache)!r})
        env = keys.environment(0)
        s.save(env, "entry", {{"env": env, "name": "entry", "config": {{"new": True}}, "pad": "x" * 100000}})
    """, stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "written"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert store.load(env, "entry")["config"] == {"old": True}
    leftovers = list((private_cache / "tuning").glob("*/.entry.json.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 100000
    old = time.time() - 2 * 3600
    os.utime(leftovers[0], (old, old))
    clear(private_cache, older_than_days=30)
    assert not leftovers[0].exists() and store.load(env, "entry") is not None


def test_a_new_root_being_tagged_by_another_process_is_not_foreign(tmp_path):
    # Processes starting together on a fresh root: one of them has written its tag to a temp file
    # and not yet renamed it. The others must not take the folder for someone else's.
    root = tmp_path / "fresh"
    root.mkdir()
    (root / f".{store_mod.TAG_NAME}.x1y2.tmp").write_text("half")
    store_mod.ensure_root(root)
    assert store_mod.is_cache_root(root)
    (root / "notes.txt").write_text("someone else's")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("someone else's")
    with pytest.raises(OSError, match="not an nvfp4_triton cache"):
        store_mod.ensure_root(other)


def test_concurrent_processes_tune_each_key_once_and_lose_nothing(private_cache, tmp_path):
    log = tmp_path / "bench.log"
    script = f"""
        import sys, time, torch
        from nvfp4_triton import autotune
        from nvfp4_triton.autotune import Tuner
        from nvfp4_triton.cache.store import TuningStore
        autotune.device_shared_memory = lambda index: 228 * 1024
        rank = int(sys.argv[1])
        def bench(cfg):
            with open({str(log)!r}, "a") as f:
                f.write(f"{{key[3]}}\\n")
            time.sleep(0.01)
            return cfg.block_n / 1000
        tuner = Tuner("w4a16_gemm", TuningStore({str(private_cache)!r}))
        for n in (1024, 2048, 4096, 8192, 100 + rank):  # four shared keys, one of its own
            key = (0, torch.bfloat16, 4096, n, 3072, True)
            tuner.resolve(key, bench, heuristic_only=False)
        print(tuner.stats.tuned, tuner.stats.loaded)
    """
    env = python_env(NVFP4_TRITON_AUTOTUNE="1")
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), str(r)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(12)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    tuned_total = sum(int(o[0].split()[0]) for o in outs)
    assert tuned_total == 4 + 12  # every shared key measured by exactly one process
    per_key = {}
    for line in log.read_text().split():
        per_key[int(line)] = per_key.get(int(line), 0) + 1
    n_candidates = len(candidate_configs(4096, 1024, 3072, 228 * 1024))
    assert per_key[1024] == 2 * n_candidates  # one process's two passes, not 12 processes
    entries = [r for _, r in TuningStore(private_cache).entries()]
    assert len(entries) == 16 and all(r is not None for r in entries)
    assert not list(private_cache.rglob("*.tmp"))


def _populate(root: Path, n_entries: int = 3) -> list[str]:
    env = keys.environment(0)
    store = TuningStore(root)
    names = []
    for i in range(n_entries):
        name = f"w4a16_gemm-n{1024 * (i + 1)}-k3072-m4096-bfloat16-bias"
        cfg = {"block_m": 128, "block_n": 128, "block_k": 64, "group_m": 8, "num_warps": 4, "num_stages": 4}
        store.save(env, name, {"env": env, "name": name, "kernel": "w4a16_gemm", "config": cfg, "tuned_ms": 0.1,
                               "key": {"n": 1024 * (i + 1), "k": 3072, "m_bucket": 4096, "dtype": "bfloat16",
                                       "bias": True}})
        names.append(name)
    binary = root / "triton" / "ABCDEF" / "w4a16_gemm_kernel.cubin"
    binary.parent.mkdir(parents=True)
    binary.write_bytes(b"\x7fELF fake binary")
    return names


def test_export_import_round_trip(tmp_path):
    names = _populate(tmp_path / "a")
    manifest = export_archive(tmp_path / "a", tmp_path / "out" / "cache.tar.gz")
    assert manifest["entries"] == 3
    counts = import_archive(tmp_path / "b", tmp_path / "out" / "cache.tar.gz")
    assert counts == {"entries": 3, "binaries": 1, "rekeyed": 0}
    env = keys.environment(0)
    for name in names:
        assert TuningStore(tmp_path / "b").load(env, name) == TuningStore(tmp_path / "a").load(env, name)
    assert (tmp_path / "b" / "triton" / "ABCDEF" / "w4a16_gemm_kernel.cubin").read_bytes() == b"\x7fELF fake binary"


def _rewrite_archive(src: Path, dest: Path, edit) -> None:
    with tarfile.open(src) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    with tarfile.open(dest, "w:gz") as out:
        for member, data in edit(members):
            import io
            member.size = len(data)
            out.addfile(member, io.BytesIO(data))


def _as_foreign(members):
    for member, data in members:
        if member.name == "manifest.json" or member.name.startswith("tuning/"):
            text = data.decode().replace(json.dumps(keys.environment(0)["gpu"]), '"NVIDIA H100 80GB HBM3"')
            data = text.replace(keys.digest(keys.environment(0)), "0123456789abcdef").encode()
            member.name = member.name.replace(keys.digest(keys.environment(0)), "0123456789abcdef")
        yield member, data


def test_import_refuses_foreign_environments_unless_forced(tmp_path):
    _populate(tmp_path / "a")
    export_archive(tmp_path / "a", tmp_path / "mine.tar.gz")
    _rewrite_archive(tmp_path / "mine.tar.gz", tmp_path / "foreign.tar.gz", _as_foreign)
    with pytest.raises(ImportRefused, match="gpu: 'NVIDIA H100 80GB HBM3' here"):
        import_archive(tmp_path / "b", tmp_path / "foreign.tar.gz")
    assert not (tmp_path / "b").exists()  # nothing written before the checks passed
    counts = import_archive(tmp_path / "b", tmp_path / "foreign.tar.gz", force=True)
    assert counts["rekeyed"] == 3
    loaded = [r for _, r in TuningStore(tmp_path / "b").entries()]
    assert all(r["env"] == keys.environment(0) and r["imported_from"] == "0123456789abcdef" for r in loaded)


def test_import_refuses_path_traversal(tmp_path):
    _populate(tmp_path / "a")
    export_archive(tmp_path / "a", tmp_path / "ok.tar.gz")

    def evil(members):
        for member, data in members:
            if member.name.startswith("triton/"):
                member.name = "triton/../../escaped"
            yield member, data

    _rewrite_archive(tmp_path / "ok.tar.gz", tmp_path / "evil.tar.gz", evil)
    with pytest.raises(ImportRefused, match="outside the cache"):
        import_archive(tmp_path / "b", tmp_path / "evil.tar.gz")
    assert not (tmp_path / "escaped").exists()


def test_clear_older_than_keeps_recent_entries(tmp_path):
    root = tmp_path / "c"
    names = _populate(root)
    env = keys.environment(0)
    old = time.time() - 10 * 86400
    os.utime(TuningStore(root).path(env, names[0]), (old, old))
    assert clear(root, older_than_days=5) == 1
    assert [r.shape for r in list_entries(root)] and len(list_entries(root)) == 2
    assert info(root)["entries"] == 2
    clear(root)
    assert info(root)["entries"] == 0 and root.exists() and (root / "CACHEDIR.TAG").exists()


def _cli(*args, root=None):
    cmd = [sys.executable, "-m", "nvfp4_triton.cache", *(["--root", str(root)] if root else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=python_env(), timeout=120)


def test_cli_commands_and_exit_codes(tmp_path):
    root = tmp_path / "cache"
    _populate(root)
    out = _cli("info", root=root)
    assert out.returncode == 0 and "3 tuned configs, 3 for this machine" in out.stdout
    assert json.loads(_cli("info", "--json", root=root).stdout)["entries"] == 3
    listing = _cli("list", root=root)
    assert listing.returncode == 0 and listing.stdout.count("w4a16_gemm") == 3 and "128x128x64" in listing.stdout
    assert _cli("export", str(tmp_path / "c.tar.gz"), root=root).returncode == 0
    imported = _cli("import", str(tmp_path / "c.tar.gz"), root=tmp_path / "other")
    assert imported.returncode == 0 and "imported 3 tuned entries" in imported.stdout
    bad = _cli("import", str(tmp_path / "nope.tar.gz"), root=root)
    assert bad.returncode == 1 and "not a readable" in bad.stderr
    refused = _cli("clear", root=tmp_path)  # tmp_path holds other things: not ours
    assert refused.returncode == 1 and "nothing deleted" in refused.stderr and root.exists()
    assert _cli("clear", "--older-than", "-1", root=root).returncode == 2
    cleared = _cli("clear", root=root)
    assert cleared.returncode == 0 and "removed 4 files" in cleared.stdout
    assert _cli("frobnicate").returncode == 2


def _prewarm(*args):
    return subprocess.run([sys.executable, "-m", "nvfp4_triton.prewarm", *args], capture_output=True, text=True,
                          env=python_env(), timeout=300)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
def test_prewarm_without_gpu_prints_the_plan_and_says_so():
    out = _prewarm()
    assert out.returncode == 0
    assert "plan from flux1-dev: 11 distinct GEMMs" in out.stdout
    assert "no CUDA GPU found: nothing was tuned or compiled" in out.stdout
    strict = _prewarm("--require-gpu")
    assert strict.returncode == 1 and "no CUDA GPU" in strict.stderr


def test_prewarm_cli_arguments(tmp_path):
    dry = _prewarm("--dry-run", "--recipe", "mixed", "--resolution", "512x512", "--batch", "1", "2")
    assert dry.returncode == 0 and "dry run" in dry.stdout and "512x512, batch 2" in dry.stdout
    assert _prewarm("--resolution", "big").returncode == 2
    missing = _prewarm("--checkpoint", str(tmp_path))
    assert missing.returncode == 1 and "neither config.json" in missing.stderr
    modes = _prewarm("--dry-run", "--activation", "fp8", "--resident", "fp8")
    assert modes.returncode == 0 and "dry run" in modes.stdout
    clash = _prewarm("--dry-run", "--activation", "nvfp4", "--resident", "fp8")
    assert clash.returncode == 2 and "cannot be combined" in clash.stderr
    assert _prewarm("--activation", "int8").returncode == 2
