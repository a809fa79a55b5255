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

from bandexa_gym.offline.log_writer import LogBusyError, LogWriter  # noqa: E402
from bandexa_gym.offline.logs import (  # noqa: E402
    FORMAT_VERSION,
    LogFormatError,
    LogReader,
    read_log,
)

REPO = Path(__file__).resolve().parents[2]
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
    from bandexa_gym.offline.log_writer import LogWriter

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
        with pytest.raises(LogBusyError, match="open in another LogWriter"):
            LogWriter(tmp_path / "log", append=True)  # the child holds the lock
        child.send_signal(signal.SIGKILL)  # mid-run: it keeps appending and flushing
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
    assert seen >= 4
    # The killed writer's lock went with its process: a new writer is accepted at once.
    LogWriter(tmp_path / "log", append=True).close()
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


# -- issue 23 item 7 ---------------------------------------------------------------------


def _batch(b: int = 3, **changes: object) -> dict:
    rows = {
        "context": np.arange(b * 2, dtype=np.float64).reshape(b, 2),
        "candidates": np.ones((b, K, D_A)),
        "action_mask": np.ones((b, K)),
        "action": np.arange(b) % K,
        "propensity": np.full(b, 0.25),
        "reward": np.ones(b),
        "expected_rewards": np.zeros((b, K)),
    }
    return {**rows, **changes}


def test_column_major_and_broadcast_arrays_are_logged(tmp_path: Path) -> None:
    candidates = np.broadcast_to(np.arange(K * D_A, dtype=np.float32).reshape(K, D_A), (3, K, D_A))
    context = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(3, 2))
    expected = np.arange(3 * K, dtype=np.float64).reshape(K, 3).T  # a transposed view
    mask = np.ones((3, K), np.int8)
    with LogWriter(tmp_path) as log:
        log.append_batch(
            **_batch(
                candidates=candidates, context=context, expected_rewards=expected, action_mask=mask
            )  # fmt: skip
        )
        mask[:] = 0  # the caller reuses its buffer: the logged rows keep their values
    back = read_log(tmp_path)
    np.testing.assert_array_equal(back.candidates, candidates)
    np.testing.assert_array_equal(back.context, context)
    np.testing.assert_array_equal(back.expected_rewards, expected)
    np.testing.assert_array_equal(back.action_mask, np.ones((3, K)))


def test_a_failing_flush_keeps_every_buffered_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = pq.write_table
    failures = [OSError(28, "No space left on device")]

    def write_table(*args: object, **kwargs: object) -> None:
        if failures:
            raise failures.pop()
        real_write(*args, **kwargs)

    monkeypatch.setattr(pq, "write_table", write_table)
    log = LogWriter(tmp_path, flush_every=100)
    log.append_batch(**_batch(5))
    with pytest.raises(OSError, match="No space left"):
        log.close()
    assert log.buffered == 5 and not list(tmp_path.glob("*.parquet"))
    assert not list(tmp_path.glob(".*.tmp"))  # no torn part either
    with pytest.raises(LogBusyError):
        LogWriter(tmp_path, append=True)  # still open: it still holds the rows
    log.append_batch(**_batch(2))
    log.close()  # the retry writes all of them
    back = read_log(tmp_path)
    assert len(back) == 7
    np.testing.assert_array_equal(back.action, [0, 1, 2, 3, 0, 0, 1])


def _data_page(part: Path, column: str) -> tuple[int, int]:
    meta = pq.ParquetFile(part).metadata.row_group(0)
    names = [meta.column(i).path_in_schema for i in range(meta.num_columns)]
    chunk = meta.column(names.index(column))
    return chunk.data_page_offset, chunk.total_compressed_size


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_a_damaged_data_page_is_a_log_format_error_naming_the_part(
    tmp_path: Path, compression: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from bandexa_gym.offline.cli import main

    with LogWriter(tmp_path, compression=compression) as log:
        for t in range(40):
            log.append(**_round(t, (2,)))
    (part,) = log.parts_written
    start, size = _data_page(part, "reward")
    data = bytearray(part.read_bytes())
    data[start + size - 12 : start + size - 4] = b"\xff" * 8  # inside the page's values
    part.write_bytes(bytes(data))
    reader = LogReader(tmp_path)  # the footer is intact
    with pytest.raises(LogFormatError, match=rf"{part.name}: could not read"):
        reader.read_all()
    with pytest.raises(LogFormatError, match=rf"{part.name}: could not read"):
        list(reader.iter_batches(batch_size=8))
    # the CLI says so in one line, without a traceback
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--policy", "uniform", "--reward-model", "none"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert part.name in err and "could not read" in err and "Traceback" not in err


def test_bad_values_are_refused_and_nothing_is_buffered(tmp_path: Path) -> None:
    log = LogWriter(tmp_path)
    log.append_batch(**_batch(3))
    nan, inf = float("nan"), float("inf")
    masked = np.ones((3, K))
    masked[1, 1] = 0  # row 1 chose action 1
    cases = {
        r"reward: expected finite values, got NaN or inf in row 2": {"reward": [1.0, 0.0, nan]},
        r"reward: expected finite .* row 0": {"reward": [-inf, 0.0, 1.0]},
        r"context: expected finite .* row 1": {"context": np.array([[0, 0], [nan, 1], [0, 0]])},
        r"context: expected finite .* row 0": {"context": np.array([[inf, 0], [0, 1], [0, 0]])},
        r"candidates: expected finite": {"candidates": np.full((3, K, D_A), nan)},
        r"expected_rewards: expected finite": {"expected_rewards": np.full((3, K), nan)},
        r"action_mask: row 2 of the call has no candidate on offer": {
            "action_mask": np.array([[1] * K, [1] * K, [0] * K])
        },
        r"action_mask: expected 0 \(not on offer\) or 1": {"action_mask": np.full((3, K), 2)},
        r"action: row 1 of the call chose candidate 1, which its action_mask marks as not on": {
            "action_mask": masked
        },
    }
    for message, change in cases.items():
        with pytest.raises(ValueError, match=message):
            log.append_batch(**_batch(3, **change))
        assert log.buffered == 3  # nothing from the bad call
    single = {k: v[0] for k, v in _batch(1).items()}
    with pytest.raises(ValueError, match="reward: expected finite"):
        log.append(**{**single, "reward": nan})
    with pytest.raises(ValueError, match="action_mask marks as not on offer"):
        log.append(**{**single, "action_mask": np.array([0, 1, 1, 1])})
    log.append(**{**single, "propensity": nan})  # an unknown propensity stays allowed
    log.close()
    assert len(read_log(tmp_path)) == 4


def test_two_writers_on_one_folder_are_refused(tmp_path: Path) -> None:
    first = LogWriter(tmp_path)
    with pytest.raises(LogBusyError, match=rf"{tmp_path} is open in another LogWriter"):
        LogWriter(tmp_path)
    with pytest.raises(LogBusyError):
        LogWriter(tmp_path, append=True)
    first.append_batch(**_batch(2))
    first.close()  # releases the lock
    with LogWriter(tmp_path, append=True) as second:
        second.append_batch(**_batch(2))
    assert len(LogReader(tmp_path).parts) == 2 and len(read_log(tmp_path)) == 4
    with pytest.raises(FileExistsError, match="append=True"):
        LogWriter(tmp_path)  # refused for holding a log, and the lock is not kept
    LogWriter(tmp_path, append=True).close()


def test_appending_over_a_corrupt_first_part_names_it(tmp_path: Path) -> None:
    with LogWriter(tmp_path, flush_every=2) as log:
        log.append_batch(**_batch(4))
    first = log.parts_written[0]
    first.write_bytes(first.read_bytes()[:-30])  # the footer is cut
    for _ in range(2):  # the lock is released after the error: the same error again
        with pytest.raises(LogFormatError, match=rf"{first.name}: not a readable Parquet part"):
            LogWriter(tmp_path, append=True)


def test_a_log_without_propensity_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bandexa_gym.offline.cli import main

    with LogWriter(tmp_path / "full") as log:
        log.append_batch(**_batch(6))
    table = pq.read_table(log.parts_written[0])
    (tmp_path / "cut").mkdir()
    part = tmp_path / "cut" / "part-000000-abcd.parquet"
    pq.write_table(table.drop_columns(["propensity"]), part)
    with pytest.raises(LogFormatError, match=r"columns \['propensity'\] are missing"):
        read_log(tmp_path / "cut")
    with pytest.raises(SystemExit):
        main([str(tmp_path / "cut"), "--policy", "uniform", "--reward-model", "none"])
    err = capsys.readouterr().err
    assert "['propensity'] are missing" in err and "shape ()" not in err


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_linked_duplicate_part_is_read_once(tmp_path: Path, link: str) -> None:
    with LogWriter(tmp_path, flush_every=3) as log:
        log.append_batch(**_batch(3))
        log.append_batch(**_batch(3))
    first, second = log.parts_written
    duplicate = tmp_path / "part-000002-ffff.parquet"
    if link == "symlink":
        duplicate.symlink_to(first.name)
    else:
        os.link(first, duplicate)
    reader = LogReader(tmp_path)
    assert reader.parts == [first, second] and reader.num_rows == 6
    assert len(reader.read_all()) == 6
    assert sum(len(b) for b in reader.iter_batches(batch_size=4)) == 6
    with LogWriter(tmp_path, append=True) as log:  # numbered after every part-named file
        log.append_batch(**_batch(1))
    assert log.parts_written[0].name.startswith("part-000003-")
    assert len(read_log(tmp_path)) == 7
