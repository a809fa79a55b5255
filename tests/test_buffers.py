"""Tests for bandexa_gym.buffers: memory ring buffer and crash-safe disk buffer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bandexa_gym.buffers import (
    DiskReplayBuffer,
    MemoryReplayBuffer,
    ReplayBuffer,
    ReplayBufferCorruptError,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def _stream(start: int, n: int, x_shape: tuple[int, ...] = (3,)) -> tuple[torch.Tensor, ...]:
    """Deterministic transitions: x filled with i, a = (i, -i), r = i."""
    i = torch.arange(start, start + n, dtype=torch.float32)
    X = i.view(-1, *([1] * len(x_shape))).expand(n, *x_shape).clone()
    return X, torch.stack([i, -i], 1), i


def _all(buf: ReplayBuffer, chunk: int = 4, **kw: object) -> tuple[torch.Tensor, ...]:
    chunks = list(buf.iter_chunks(chunk, **kw))
    return tuple(torch.cat([c[k] for c in chunks]) for k in range(len(chunks[0])))


def _make(kind: str, tmp_path: Path, capacity: int | None = 1000, **kw: object) -> ReplayBuffer:
    """A memory buffer, or a disk buffer with small shards (``kw`` goes to the disk one)."""
    if kind == "memory":
        return MemoryReplayBuffer(capacity or 1000)
    kw.setdefault("memory_map", kind == "disk")  # "disk_loaded": whole shards in RAM
    return DiskReplayBuffer(tmp_path / "buf", capacity=capacity, shard_size=5, **kw)


@pytest.fixture(params=["memory", "disk", "disk_loaded"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


# ---- crash safety -------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    import torch
    from bandexa_gym.buffers import DiskReplayBuffer

    buf = DiskReplayBuffer(sys.argv[1], shard_size=50, flush_every=7)
    i, reported = len(buf), -1
    while True:
        buf.add(torch.full((512,), float(i)), torch.tensor([i, -i]), float(i))
        i += 1
        if buf.persisted_len != reported:
            reported = buf.persisted_len
            print(reported, flush=True)
    """
)


def _run_and_kill(root: Path, reports_wanted: int) -> int:
    """Start the appending child, SIGKILL it mid-stream; return its last reported count."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    last, seen = -1, 0
    try:
        deadline = time.monotonic() + 60
        while seen < reports_wanted and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"child exited early: {proc.stderr.read()}")
            last, seen = int(line), seen + 1
        assert seen == reports_wanted, "child too slow"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return last


def test_disk_buffer_survives_sigkill(tmp_path: Path) -> None:
    root = tmp_path / "crash"
    reported = 0
    for round_ in range(2):  # the second child resumes the directory the first one left
        reported = _run_and_kill(root, reports_wanted=5 + 10 * round_)
        with DiskReplayBuffer(root) as buf:
            n = len(buf)
            assert n >= reported > 0
            X, A, R, steps = _all(buf, chunk=64, with_steps=True)  # every shard loads
            expected = torch.arange(n, dtype=torch.float32)
            assert torch.equal(R, expected)  # an exact prefix of the stream
            assert torch.equal(steps, torch.arange(n)) and buf.total_added == n
            assert torch.equal(X, expected[:, None].expand(n, 512))
            assert torch.equal(A, torch.stack([expected, -expected], 1))
        assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]


def test_reopen_cleans_crash_leftovers(tmp_path: Path) -> None:
    root = tmp_path / "buf"
    with DiskReplayBuffer(root, shard_size=4) as buf:
        buf.add_batch(*_stream(0, 10))
    (root / ".shard-000000099.safetensors.tmp").write_bytes(b"partial")
    (root / ".index.json.tmp").write_bytes(b"{")
    (root / "shard-000000050.safetensors").write_bytes(b"renamed but never indexed")
    (root / "notes.txt").write_text("user file")
    with DiskReplayBuffer(root) as buf:
        assert len(buf) == 10
        names = sorted(p.name for p in root.iterdir())
        assert "notes.txt" in names
        assert not any(n.endswith(".tmp") or n.startswith("shard-00000005") for n in names)


# ---- shared behaviour ---------------------------------------------------------------------


def test_add_sample_iterate(kind: str, tmp_path: Path) -> None:
    with _make(kind, tmp_path) as buf:
        assert len(buf) == 0 and buf.x_shape is None
        X, A, R = _stream(0, 12)
        buf.add(X[0], A[0], R[0].item())
        buf.add_batch(X[1:], A[1:], R[1:])
        assert len(buf) == 12 and buf.x_shape == (3,) and buf.action_dim == 2
        for got, want in zip(_all(buf, chunk=5), (X, A, R), strict=True):
            assert torch.equal(got, want)
        Xs, As, Rs = buf.sample(64, generator=torch.Generator().manual_seed(0))
        assert Xs.shape == (64, 3) and As.shape == (64, 2) and Rs.shape == (64,)
        assert Xs.device.type == "cpu" and As.dtype == torch.float32
        assert torch.equal(Xs[:, 0], Rs) and torch.equal(As[:, 0], Rs)  # rows stay aligned
        Xs.add_(100.0)  # returned tensors are copies, never views of the storage
        assert torch.equal(_all(buf)[0], X)


def test_x_keeps_dtype(kind: str, tmp_path: Path) -> None:
    with _make(kind, tmp_path) as buf:
        buf.add(torch.ones(1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]), 1)
        X, A, R = buf.sample(2)
        assert X.dtype == torch.uint8 and A.dtype == torch.float32 and R.dtype == torch.float32


def test_bad_inputs_store_nothing(kind: str, tmp_path: Path) -> None:
    with _make(kind, tmp_path) as buf:
        buf.add_batch(*_stream(0, 3))
        X, A, R = _stream(3, 2)
        with pytest.raises(ValueError, match=r"expected shape \(3,\).*got \(4,\)"):
            buf.add_batch(torch.zeros(2, 4), A, R)
        with pytest.raises(ValueError, match="expected action_dim 2"):
            buf.add_batch(X, torch.zeros(2, 3), R)
        with pytest.raises(ValueError, match="finite"):
            buf.add_batch(X, A, torch.tensor([1.0, float("nan")]))
        with pytest.raises(ValueError, match="finite"):
            buf.add(X[0], A[0], float("inf"))
        with pytest.raises(ValueError, match=r"R: expected shape \(2,\)"):
            buf.add_batch(X, A, R[:1])
        with pytest.raises(TypeError, match="x must be real"):
            buf.add(torch.zeros(3, dtype=torch.complex64), A[0], 0.0)
        assert len(buf) == 3
        assert torch.equal(_all(buf)[2], torch.arange(3.0))
        with pytest.raises(ValueError, match="empty"):
            _make("memory", tmp_path).sample(1)


def test_capacity(kind: str, tmp_path: Path) -> None:
    with _make(kind, tmp_path, capacity=8) as buf:
        for start in range(0, 23, 3):
            buf.add_batch(*_stream(start, 3))
            assert len(buf) == min(start + 3, 8)
        assert torch.equal(_all(buf)[2], torch.arange(16.0, 24.0))  # oldest -> newest
        buf.add_batch(*_stream(24, 20))  # a batch larger than the capacity
        assert torch.equal(_all(buf)[2], torch.arange(36.0, 44.0))
        assert set(buf.sample(200)[2].tolist()) <= set(range(36, 44))
    if kind != "memory":  # fully dropped shards are deleted, the rest survives reopening
        files = list((tmp_path / "buf").glob("shard-*"))
        assert len(files) <= 8 // 5 + 2
        with DiskReplayBuffer(tmp_path / "buf", capacity=8) as buf:
            assert torch.equal(_all(buf)[2], torch.arange(36.0, 44.0))
            buf.add(*(t[0] for t in _stream(44, 1)))
            assert torch.equal(_all(buf)[2], torch.arange(37.0, 45.0))


def test_shuffled_iteration_covers_everything_once(kind: str, tmp_path: Path) -> None:
    with _make(kind, tmp_path, capacity=37, cache_shards=2) as buf:
        buf.add_batch(*_stream(0, 50))  # wraps / drops: 37 left, some of them pending
        X, A, R = _all(buf, chunk=6, shuffle=True, generator=torch.Generator().manual_seed(3))
        assert sorted(R.tolist()) == list(range(13, 50))
        assert torch.equal(X[:, 0], R) and torch.equal(A[:, 1], -R)
        assert not torch.equal(R, torch.arange(13.0, 50.0))  # actually shuffled


def test_memory_and_disk_agree(tmp_path: Path) -> None:
    mem = MemoryReplayBuffer(30)
    with DiskReplayBuffer(tmp_path / "buf", capacity=30, shard_size=7, cache_shards=1) as disk:
        for start, n in [(0, 4), (4, 13), (17, 1), (18, 25)]:
            for buf in (mem, disk):
                buf.add_batch(*_stream(start, n, x_shape=(2, 2)))
        for a, b in zip(_all(mem, chunk=9), _all(disk, chunk=9), strict=True):
            assert torch.equal(a, b)
        for seed in range(3):
            got_m = mem.sample(50, generator=torch.Generator().manual_seed(seed))
            got_d = disk.sample(50, generator=torch.Generator().manual_seed(seed))
            for a, b in zip(got_m, got_d, strict=True):
                assert torch.equal(a, b)
        shuffled = _all(disk, chunk=9, shuffle=True)[2]
        assert sorted(shuffled.tolist()) == sorted(_all(mem, shuffle=True)[2].tolist())


def test_transform_pads_old_transitions(kind: str, tmp_path: Path) -> None:
    def pad(X: torch.Tensor, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat([X, torch.zeros(len(X), 2)], 1), torch.cat([A, torch.zeros(len(A), 1)], 1)

    with _make(kind, tmp_path, capacity=9) as buf:
        buf.add_batch(*_stream(0, 12))
        buf.transform(pad, chunk_size=4)
        assert buf.x_shape == (5,) and buf.action_dim == 3
        X, A, R = _all(buf)
        assert torch.equal(R, torch.arange(3.0, 12.0))
        assert torch.equal(X[:, 3:], torch.zeros(9, 2)) and torch.equal(X[:, 0], R)
        assert torch.equal(A[:, 2], torch.zeros(9))
        with pytest.raises(ValueError, match="expected shape"):
            buf.add_batch(*_stream(12, 1))
        buf.add(torch.ones(5), torch.ones(3), 1.0)
        assert len(buf) == 9

        def broken(X: torch.Tensor, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            buf.transform(broken)
        assert buf.x_shape == (5,) and len(buf) == 9
    if kind != "memory":
        with DiskReplayBuffer(tmp_path / "buf") as buf:
            assert buf.x_shape == (5,) and buf.action_dim == 3 and len(buf) == 9


def test_modifying_during_iteration_raises(kind: str, tmp_path: Path) -> None:
    with _make(kind, tmp_path) as buf:
        buf.add_batch(*_stream(0, 10))
        it = buf.iter_chunks(3)
        next(it)
        buf.add_batch(*_stream(10, 1))
        with pytest.raises(RuntimeError, match="modified"):
            next(it)


# ---- disk specifics -----------------------------------------------------------------------


def test_disk_reopen_resumes(tmp_path: Path) -> None:
    root = tmp_path / "buf"
    with DiskReplayBuffer(root, shard_size=4) as buf:
        buf.add_batch(*_stream(0, 10))  # two full shards + 2 pending, flushed by close
    assert sorted(p.name for p in root.glob("shard-*")) == [
        f"shard-{i:09d}.safetensors" for i in range(3)
    ]
    with DiskReplayBuffer(root, shard_size=4) as buf:
        assert len(buf) == 10 and buf.x_shape == (3,) and buf.action_dim == 2
        assert buf.persisted_len == 10
        buf.add_batch(*_stream(10, 5))
        assert buf.persisted_len == 14  # a full shard was written, 1 pending
    assert (root / "shard-000000004.safetensors").exists()  # numbering continues
    with DiskReplayBuffer(root) as buf:
        assert torch.equal(_all(buf)[2], torch.arange(15.0))


def test_disk_flush_every_and_pending_sampling(tmp_path: Path) -> None:
    with DiskReplayBuffer(tmp_path / "buf", shard_size=100, flush_every=3) as buf:
        buf.add_batch(*_stream(0, 2))
        assert buf.persisted_len == 0 and buf.num_shards == 0
        assert set(buf.sample(20)[2].tolist()) == {0.0, 1.0}  # pending rows are sampled
        buf.add(*(t[0] for t in _stream(2, 1)))
        assert buf.persisted_len == 3 and buf.num_shards == 1


def test_disk_missing_or_corrupt_shard_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "buf"
    with DiskReplayBuffer(root, shard_size=4) as buf:
        buf.add_batch(*_stream(0, 12))
    victim = root / "shard-000000001.safetensors"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 7])  # truncated
    with pytest.raises(ReplayBufferCorruptError, match="shard-000000001.safetensors"):
        DiskReplayBuffer(root)
    victim.unlink()
    with pytest.raises(ReplayBufferCorruptError, match="shard-000000001.safetensors.*missing"):
        DiskReplayBuffer(root)


@pytest.mark.parametrize("memory_map", [True, False])
def test_disk_sample_loads_each_shard_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory_map: bool
) -> None:
    with DiskReplayBuffer(
        tmp_path / "buf", shard_size=10, cache_shards=0, memory_map=memory_map
    ) as buf:
        buf.add_batch(*_stream(0, 40))
        loads: list[str] = []
        original = DiskReplayBuffer._load_shard

        def counting(self: DiskReplayBuffer, shard: object) -> object:
            loads.append(shard.file)  # type: ignore[attr-defined]
            return original(self, shard)  # type: ignore[arg-type]

        monkeypatch.setattr(DiskReplayBuffer, "_load_shard", counting)
        X, _, R = buf.sample(500, generator=torch.Generator().manual_seed(0))
        assert len(loads) == len(set(loads)) == 4
        assert torch.equal(X[:, 0], R)


def test_disk_directory_is_single_writer(tmp_path: Path) -> None:
    with DiskReplayBuffer(tmp_path / "buf"):
        with pytest.raises(RuntimeError, match="already open"):
            DiskReplayBuffer(tmp_path / "buf")
    DiskReplayBuffer(tmp_path / "buf").close()  # released on close


# ---- argument and value types (issue 15, item 10) -----------------------------------------


@pytest.mark.parametrize("capacity", [True, False, 2.0, "10", 10.5, None])
def test_memory_capacity_must_be_an_int(capacity: object) -> None:
    error = ValueError if capacity is None else TypeError
    with pytest.raises(error, match="capacity"):
        MemoryReplayBuffer(capacity)  # type: ignore[arg-type]


def test_counts_accept_integer_types_and_reject_out_of_range(tmp_path: Path) -> None:
    assert MemoryReplayBuffer(np.int64(3)).capacity == 3
    with pytest.raises(ValueError, match=r"capacity must be an int >= 1, got 0"):
        MemoryReplayBuffer(0)
    with pytest.raises(ValueError, match="shard_size must be an int >= 1"):
        DiskReplayBuffer(tmp_path / "buf", shard_size=0)
    with DiskReplayBuffer(tmp_path / "buf", shard_size=np.int32(4), capacity=np.int64(9)) as buf:
        assert buf.shard_size == 4 and buf.capacity == 9 and type(buf.capacity) is int


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"capacity": True}, "capacity"),
        ({"capacity": 100.0}, "capacity"),
        ({"shard_size": 2.0}, "shard_size"),
        ({"shard_size": True}, "shard_size"),
        ({"cache_shards": "4"}, "cache_shards"),
        ({"flush_every": False}, "flush_every"),
        ({"memory_map": "no"}, "memory_map"),
        ({"memory_map": 0}, "memory_map"),
    ],
)
def test_disk_numeric_arguments_reject_wrong_types(
    tmp_path: Path, kwargs: dict[str, object], name: str
) -> None:
    with pytest.raises(TypeError, match=name):
        DiskReplayBuffer(tmp_path / "buf", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "buf").exists()  # checked before anything is created


@pytest.mark.parametrize(
    ("reward", "match"),
    [
        ("0.5", r"^r must be a real tensor, array or number, got str"),
        (b"1", r"^r must be a real tensor"),
        (True, r"^r: rewards must be real numbers, got bool"),
        (np.bool_(False), r"^r: rewards must be real numbers, got bool"),
        (torch.tensor(True), r"^r: rewards must be real numbers, got bool"),
        (0.5 + 1j, r"^r must be real, got complex"),
        (np.complex128(1.0), r"^r must be real, got complex"),
        (None, r"^r must be a real tensor"),
    ],
)
def test_add_rejects_non_numeric_rewards(
    kind: str, tmp_path: Path, reward: object, match: str
) -> None:
    with _make(kind, tmp_path) as buf:
        buf.add_batch(*_stream(0, 3))
        X, A, _ = _stream(3, 1)
        with pytest.raises(TypeError, match=match):
            buf.add(X[0], A[0], reward)
        assert len(buf) == 3 and buf.total_added == 3
        assert torch.equal(_all(buf)[2], torch.arange(3.0))


@pytest.mark.parametrize(
    ("R", "match"),
    [
        (["0.5", "1.0"], r"^R must be a real tensor"),
        (torch.tensor([True, False]), r"^R: rewards must be real numbers, got bool"),
        (np.array([True, False]), r"^R: rewards must be real numbers, got bool"),
        (torch.tensor([1.0, 2.0], dtype=torch.complex64), r"^R must be real, got complex"),
    ],
)
def test_add_batch_rejects_non_numeric_rewards(
    kind: str, tmp_path: Path, R: object, match: str
) -> None:
    with _make(kind, tmp_path) as buf:
        buf.add_batch(*_stream(0, 3))
        X, A, _ = _stream(3, 2)
        with pytest.raises(TypeError, match=match):
            buf.add_batch(X, A, R)
        assert len(buf) == 3 and torch.equal(_all(buf)[2], torch.arange(3.0))


def test_complex_contexts_and_actions_are_rejected(kind: str, tmp_path: Path) -> None:
    with _make(kind, tmp_path) as buf:
        X, A, R = _stream(0, 2)
        with pytest.raises(TypeError, match=r"^x must be real, got complex"):
            buf.add(X[0] + 1j, A[0], 1.0)  # on an empty buffer: no complex schema either
        assert buf.x_shape is None and len(buf) == 0
        buf.add_batch(X, A, R)
        with pytest.raises(TypeError, match=r"^X must be real"):
            buf.add_batch(X.to(torch.complex64), A, R)
        with pytest.raises(TypeError, match=r"^a must be real"):
            buf.add(X[0], np.array([1 + 2j, 0]), 1.0)
        with pytest.raises(TypeError, match=r"^A must be real"):
            buf.add_batch(X, A.to(torch.complex128), R)
        with pytest.raises(TypeError, match=r"^transform output X must be real"):
            buf.transform(lambda X, A: (X + 0j, A))
        assert len(buf) == 2 and buf.x_dtype == torch.float32
        assert torch.equal(_all(buf)[0], X)


def test_values_too_large_for_storage_are_rejected_truthfully(kind: str, tmp_path: Path) -> None:
    with _make(kind, tmp_path) as buf:
        X, A, R = _stream(0, 2)
        buf.add_batch(X, A, R)
        with pytest.raises(ValueError, match=r"^r: reward 1e\+200 is too large .*float32"):
            buf.add(X[0], A[0], 1e200)
        with pytest.raises(ValueError, match=r"^R: reward -1e\+39 is too large"):
            buf.add_batch(X, A, torch.tensor([0.0, -1e39], dtype=torch.float64))
        with pytest.raises(ValueError, match=r"^X: values too large for torch.float32"):
            buf.add_batch(X.double() * 1e300, A, R)
        with pytest.raises(ValueError, match=r"^a: values too large"):
            buf.add(X[0], torch.tensor([1e300, 0.0], dtype=torch.float64), 0.0)
        buf.add(X[0].double(), A[0].double(), np.float64(2.5))  # in range: cast as before
        buf.add(X[0], A[0], 3)  # integer rewards are fine
        assert torch.equal(_all(buf)[2], torch.tensor([0.0, 1.0, 2.5, 3.0]))


def test_read_arguments_are_checked_when_called(kind: str, tmp_path: Path) -> None:
    with _make(kind, tmp_path) as buf:
        buf.add_batch(*_stream(0, 5))
        for bad in (True, 2.0, "3"):
            with pytest.raises(TypeError, match="batch_size"):
                buf.sample(bad)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="chunk_size"):
                buf.iter_chunks(bad)  # type: ignore[arg-type]  # raised on the call itself
            with pytest.raises(TypeError, match="chunk_size"):
                buf.transform(lambda X, A: (X, A), chunk_size=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="chunk_size must be an int >= 1"):
            buf.iter_chunks(0)
        with pytest.raises(TypeError, match="shuffle"):
            buf.iter_chunks(2, shuffle="yes")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="with_steps"):
            buf.sample(2, with_steps=1)  # type: ignore[call-overload]
        assert buf.sample(np.int64(2))[0].shape == (2, 3)


# ---- steps: insertion sequence numbers (issue 13, item 2) ---------------------------------


def test_steps_count_every_insert_over_the_lifetime(kind: str, tmp_path: Path) -> None:
    with _make(kind, tmp_path, capacity=8) as buf:
        assert buf.total_added == 0 and buf.last_step is None
        buf.add(*(t[0] for t in _stream(0, 1)))
        assert buf.total_added == 1 and buf.last_step == 0
        for start in range(1, 23, 3):  # wraps around / trims the oldest shards
            buf.add_batch(*_stream(start, 3))
        buf.add_batch(*_stream(25, 20))  # a batch larger than the capacity
        assert buf.total_added == 45 and buf.last_step == 44 and len(buf) == 8
        # _stream gives transition i the reward i, and it was the i-th one added.
        X, A, R, steps = _all(buf, chunk=3, with_steps=True)
        assert steps.dtype == torch.int64 and torch.equal(steps, torch.arange(37, 45))
        assert torch.equal(R, steps.float())
        _, _, R_shuf, steps_shuf = _all(
            buf, chunk=3, shuffle=True, generator=torch.Generator().manual_seed(0), with_steps=True
        )
        assert torch.equal(R_shuf, steps_shuf.float()) and not torch.equal(steps_shuf, steps)


def test_sample_with_steps_keeps_the_random_stream(kind: str, tmp_path: Path) -> None:
    with _make(kind, tmp_path, capacity=30) as buf:
        buf.add_batch(*_stream(0, 47))
        plain = buf.sample(64, torch.Generator().manual_seed(5))
        X, A, R, steps = buf.sample(64, torch.Generator().manual_seed(5), with_steps=True)
        for a, b in zip(plain, (X, A, R), strict=True):
            assert torch.equal(a, b)
        idx = torch.randint(30, (64,), generator=torch.Generator().manual_seed(5))
        assert torch.equal(R, (17 + idx).float())  # the same stream as before steps existed
        assert torch.equal(steps, 17 + idx)


def test_steps_survive_transform_reopen_and_trimming(tmp_path: Path) -> None:
    root = tmp_path / "buf"
    with DiskReplayBuffer(root, capacity=10, shard_size=4) as buf:
        buf.add_batch(*_stream(0, 13))
        buf.transform(lambda X, A: (X * 2, A), chunk_size=3)  # pending rows remain pending
        assert torch.equal(_all(buf, with_steps=True)[3], torch.arange(3, 13))
    with DiskReplayBuffer(root, capacity=6, shard_size=4) as buf:  # trims 4 on reopen
        assert buf.total_added == 13
        X, _, R, steps = _all(buf, with_steps=True)
        assert torch.equal(steps, torch.arange(7, 13)) and torch.equal(X[:, 0], 2 * R)
        buf.add_batch(*_stream(13, 3))
        assert buf.total_added == 16
    with DiskReplayBuffer(root) as buf:
        _, _, R, steps = _all(buf, with_steps=True)
        assert torch.equal(steps, torch.arange(10, 16)) and torch.equal(R, steps.float())


def test_unflushed_steps_are_given_again_after_a_crash(tmp_path: Path) -> None:
    root = tmp_path / "buf"
    buf = DiskReplayBuffer(root, shard_size=4)
    buf.add_batch(*_stream(0, 6))  # one shard of 4 committed, 2 pending
    assert buf.total_added == 6
    buf._release_lock()  # simulate a crash: the pending rows are never written
    with DiskReplayBuffer(root) as again:
        assert again.total_added == 4 and again.last_step == 3
        again.add(*(t[0] for t in _stream(4, 1)))
        assert torch.equal(_all(again, with_steps=True)[3], torch.arange(5))


# ---- recency-weighted sampling -------------------------------------------------------------


def test_recency_sampling_follows_the_half_life(tmp_path: Path) -> None:
    buf = MemoryReplayBuffer(60)
    buf.add_batch(*_stream(0, 100))  # steps 40..99
    n, half_life = 60, 7.5
    _, _, R, steps = buf.sample(
        400_000, torch.Generator().manual_seed(0), recency=half_life, with_steps=True
    )
    assert torch.equal(R, steps.float()) and steps.min() >= 40 and steps.max() <= 99
    age = 99 - steps
    freq = torch.bincount(age, minlength=n).double() / age.numel()
    weights = 2.0 ** (-torch.arange(n, dtype=torch.float64) / half_life)
    expected = weights / weights.sum()
    assert (freq - expected).abs().max() < 0.004
    assert freq[0] / freq[15] == pytest.approx(4.0, rel=0.05)  # two half-lives


def test_recency_sampling_edge_cases_and_agreement(tmp_path: Path) -> None:
    mem = MemoryReplayBuffer(40)
    with DiskReplayBuffer(tmp_path / "buf", capacity=40, shard_size=7, cache_shards=1) as disk:
        for b in (mem, disk):
            b.add_batch(*_stream(0, 55))
        for half_life in (0.01, 3, 1e9):
            got_m = mem.sample(300, torch.Generator().manual_seed(1), recency=half_life)
            got_d = disk.sample(300, torch.Generator().manual_seed(1), recency=half_life)
            for a, b in zip(got_m, got_d, strict=True):
                assert torch.equal(a, b)
        newest = mem.sample(50, torch.Generator().manual_seed(0), recency=1e-3)[2]
        assert torch.equal(newest, torch.full((50,), 54.0))  # a tiny half-life: the newest
        flat = mem.sample(100_000, torch.Generator().manual_seed(0), recency=1e12)[2]
        assert flat.min() == 15 and flat.max() == 54  # a huge one: uniform
        assert flat.mean().item() == pytest.approx(34.5, abs=0.1)
    one = MemoryReplayBuffer(5)
    one.add(*(t[0] for t in _stream(7, 1)))
    assert torch.equal(one.sample(3, recency=2.0, with_steps=True)[3], torch.zeros(3).long())


@pytest.mark.parametrize(
    ("recency", "error"),
    [
        (0, ValueError),
        (-2.0, ValueError),
        (float("inf"), ValueError),
        (float("nan"), ValueError),
        (True, TypeError),
        ("5", TypeError),
        (torch.tensor(5.0), TypeError),
    ],
)
def test_recency_must_be_a_positive_half_life(recency: object, error: type) -> None:
    buf = MemoryReplayBuffer(4)
    buf.add_batch(*_stream(0, 4))
    with pytest.raises(error, match="recency must be"):
        buf.sample(2, recency=recency)  # type: ignore[arg-type]
