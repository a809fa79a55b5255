"""Parquet logs of bandit rounds: round trips, batches across parts, crash safety, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")  # the [logs] extra; CI installs it with [dev]

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from bandexa_gym.logs import (  # noqa: E402
    FORMAT_VERSION,
    LogFormatError,
    LogReader,
    LogWriter,
    read_log,
)

REPO = Path(__file__).resolve().parents[1]
K, D_A = 4, 3


def _round(t: int, context_shape: tuple[int, ...]) -> dict:
    rng = np.random.default_rng(t)
    return {
        "context": rng.random(context_shape).astype(np.float32),
        "candidates": rng.random((K, D_A)).astype(np.float32),
        "action_mask": (np.arange(K) != t % K).astype(np.int8),
        "action": (t + 1) % K,
        "propensity": 1.0 / (K - 1),
        "reward": float(t) / 10,
        "expected_rewards": rng.random(K),
    }


@pytest.mark.parametrize("context_shape", [(5,), (1, 6, 6)], ids=["vector", "image"])
def test_round_trip(tmp_path: Path, context_shape: tuple[int, ...]) -> None:
    rounds = [_round(t, context_shape) for t in range(23)]
    with LogWriter(tmp_path / "log", flush_every=10, metadata={"env_id": "E", "seed": 3}) as log:
        for t, r in enumerate(rounds):
            log.append(**r, round=t, decision_id=f"d{t}", agent="uniform")
    assert log.rows_written == 23 and len(log.parts_written) == 3  # 10 + 10 + 3

    back = read_log(tmp_path / "log")
    assert len(back) == 23
    assert back.context.shape == (23, *context_shape) and back.context.dtype == np.float32
    np.testing.assert_array_equal(back.context, np.stack([r["context"] for r in rounds]))
    np.testing.assert_array_equal(back.candidates, np.stack([r["candidates"] for r in rounds]))
    np.testing.assert_array_equal(back.action_mask, np.stack([r["action_mask"] for r in rounds]))
    np.testing.assert_array_equal(back.action, [r["action"] for r in rounds])
    np.testing.assert_array_equal(back.propensity, [r["propensity"] for r in rounds])
    np.testing.assert_array_equal(back.reward, [r["reward"] for r in rounds])
    np.testing.assert_array_equal(
        back.expected_rewards, np.stack([r["expected_rewards"] for r in rounds])
    )
    np.testing.assert_array_equal(back.extra["round"], np.arange(23))
    assert back.extra["decision_id"].tolist() == [f"d{t}" for t in range(23)]
    assert set(back.extra["agent"]) == {"uniform"}
    obs = back.observation(3)  # what an agent's action_distribution(obs) takes
    assert set(obs) == {"context", "candidates", "action_mask"}
    np.testing.assert_array_equal(obs["context"], rounds[3]["context"])
    np.testing.assert_array_equal(obs["action_mask"], rounds[3]["action_mask"])
    assert sum(1 for _ in back.observations()) == 23

    reader = LogReader(tmp_path / "log")
    assert reader.metadata == {"env_id": "E", "seed": 3}
    # stored as Arrow fixed-shape tensors, never as opaque bytes
    part = pq.read_schema(reader.parts[0])
    assert part.field("context").type.extension_name == "arrow.fixed_shape_tensor"
    assert list(part.field("context").type.shape) == list(context_shape)
    assert part.metadata[b"bandexa.log.version"] == str(FORMAT_VERSION).encode()
    sub = reader.read_all(columns=["action", "reward"])
    assert sub.context is None and sub.action.tolist() == back.action.tolist()
    with pytest.raises(ValueError, match=r"observation: columns \['context', 'candidates'"):
        sub.observation(0)


def test_append_batch_and_no_expected_rewards(tmp_path: Path) -> None:
    b = 6
    with LogWriter(tmp_path, flush_every=100) as log:
        log.append_batch(
            context=np.arange(b * 2, dtype=np.float64).reshape(b, 2),
            candidates=np.zeros((b, K, D_A)),
            action_mask=np.ones((b, K)),
            action=np.arange(b) % K,
            propensity=np.full(b, 0.25),
            reward=np.ones(b),
            env_index=np.arange(b),
        )
    back = read_log(tmp_path)
    assert back.expected_rewards is None and back.context.dtype == np.float64
    np.testing.assert_array_equal(back.context[:, 1], np.arange(1, 2 * b, 2))
    np.testing.assert_array_equal(back.extra["env_index"], np.arange(b))


def test_batches_run_across_parts(tmp_path: Path) -> None:
    with LogWriter(tmp_path, flush_every=7) as log:
        for t in range(40):
            log.append(**_round(t, (2,)), round=t)
    reader = LogReader(tmp_path)
    assert len(reader.parts) == 6 and reader.num_rows == 40  # 5 x 7 + 5
    batches = list(reader.iter_batches(batch_size=16))
    assert [len(b) for b in batches] == [16, 16, 8]
    np.testing.assert_array_equal(np.concatenate([b.extra["round"] for b in batches]), range(40))
    np.testing.assert_array_equal(
        np.concatenate([b.context for b in batches]), reader.read_all().context
    )
    assert [len(b) for b in reader.iter_batches(batch_size=40)] == [40]


def test_appending_to_an_existing_log(tmp_path: Path) -> None:
    with LogWriter(tmp_path, flush_every=5) as log:
        for t in range(5):
            log.append(**_round(t, (2,)))
    with pytest.raises(FileExistsError, match="append=True"):
        LogWriter(tmp_path)
    with LogWriter(tmp_path, append=True) as log:
        for t in range(5, 8):
            log.append(**_round(t, (2,)))
    reader = LogReader(tmp_path)
    assert len(reader.parts) == 2 and reader.parts[1].name.startswith("part-000001-")
    np.testing.assert_array_equal(reader.read_all().reward, np.arange(8) / 10)
    with pytest.raises(LogFormatError, match="do not fit the log already there"):
        LogWriter(tmp_path, append=True).append(**_round(9, (3,)))


_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from bandexa_gym.logs import LogWriter

    log = LogWriter(sys.argv[1], flush_every=50)
    t = 0
    while True:
        log.append(context=np.full(64, t, np.float32), candidates=np.ones((4, 8)),
                   action_mask=np.ones(4), action=t % 4, propensity=0.25, reward=t, round=t)
        t += 1
        if log.buffered == 0:
            print("flushed", len(log.parts_written), flush=True)
    """
)


def test_a_killed_writer_leaves_every_flushed_part_readable(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path / "log")],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        seen = 0
        for line in child.stdout:
            seen = int(line.split()[1])
            if seen >= 4:
                break
        child.send_signal(signal.SIGKILL)  # mid-run: it keeps appending and flushing
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
    assert seen >= 4
    reader = LogReader(tmp_path / "log")
    assert len(reader.parts) >= seen
    back = reader.read_all()  # every part reads; nothing raises
    assert len(back) == 50 * len(reader.parts)
    np.testing.assert_array_equal(back.extra["round"], np.arange(len(back)))
    np.testing.assert_array_equal(back.context[:, 0], np.arange(len(back)))
    assert sum(len(b) for b in reader.iter_batches(batch_size=64)) == len(back)


def test_leftover_temporary_files_are_ignored(tmp_path: Path) -> None:
    with LogWriter(tmp_path, flush_every=3) as log:
        for t in range(3):
            log.append(**_round(t, (2,)))
    (tmp_path / ".part-000001-deadbeef.parquet.x1y2.tmp").write_bytes(b"PAR1 half a file")
    assert len(read_log(tmp_path)) == 3


def test_a_version_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    with LogWriter(tmp_path, flush_every=3) as log:
        for t in range(3):
            log.append(**_round(t, (2,)))
    table = pq.read_table(log.parts_written[0])
    meta = {**table.schema.metadata, b"bandexa.log.version": b"99"}
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "part-000001-0000.parquet")
    with pytest.raises(LogFormatError, match=r"part-000001-0000.parquet: log format version 99"):
        LogReader(tmp_path)


def test_a_damaged_part_is_named(tmp_path: Path) -> None:
    with LogWriter(tmp_path, flush_every=3) as log:
        for t in range(3):
            log.append(**_round(t, (2,)))
    (tmp_path / "part-000007-abcd.parquet").write_bytes(b"not parquet")
    with pytest.raises(LogFormatError, match=r"part-000007-abcd.parquet: not a readable"):
        LogReader(tmp_path)
    pq.write_table(pa.table({"x": [1]}), tmp_path / "part-000007-abcd.parquet")
    with pytest.raises(LogFormatError, match="not a bandexa-gym log part"):
        LogReader(tmp_path)


def test_bad_rounds_are_named(tmp_path: Path) -> None:
    log = LogWriter(tmp_path)
    good = _round(0, (2,))
    with pytest.raises(ValueError, match=r"propensity: expected probabilities in \(0, 1\]"):
        log.append(**{**good, "propensity": 0.0})
    with pytest.raises(ValueError, match=r"action: expected integer indices in \[0, 4\)"):
        log.append(**{**good, "action": 4})
    with pytest.raises(ValueError, match=r"candidates: expected shape \(K, d_a\)"):
        log.append(**{**good, "candidates": np.zeros(4)})
    with pytest.raises(ValueError, match=r"action_mask: expected shape \(4,\)"):
        log.append(**{**good, "action_mask": np.ones(3)})
    log.append(**good)
    log.append(**{**good, "propensity": float("nan")})  # unknown propensity: allowed
    with pytest.raises(ValueError, match=r"context: expected shape \(2,\) per round"):
        log.append(**{**good, "context": np.zeros(3)})
    with pytest.raises(ValueError, match=r"missing \['expected_rewards'\]"):
        log.append(**{k: v for k, v in good.items() if k != "expected_rewards"})
    with pytest.raises(ValueError, match=r"reward: expected a leading batch axis of length B = 2"):
        log.append_batch(
            **{k: np.stack([v, v]) for k, v in good.items() if k != "reward"}, reward=[1.0]
        )
    log.close()
    assert len(read_log(tmp_path)) == 2
    with pytest.raises(ValueError, match="closed"):
        log.append(**good)
    with pytest.raises(ValueError, match="flush_every"):
        LogWriter(tmp_path / "x", flush_every=0)
    with pytest.raises(FileNotFoundError, match="no log folder"):
        LogReader(tmp_path / "missing")


def test_missing_pyarrow_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` now raises
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    for opener in (LogWriter, LogReader):
        with pytest.raises(ImportError, match=r'pip install "bandexa-gym\[logs\]"') as info:
            opener(tmp_path)
        assert "\n" not in str(info.value)
