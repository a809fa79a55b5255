"""Replay buffers for contextual-bandit transitions ``(x, a, r)``.

A transition is a context ``x`` of any fixed shape (``(d_x,)``, ``(1, 28, 28)``,
``(3, 224, 224)``, ...), an action feature vector ``a`` of shape ``(d_a,)`` and a scalar
reward ``r``. Both buffers implement :class:`ReplayBuffer`, so an agent does not care
which one it holds:

* :class:`MemoryReplayBuffer` -- a preallocated ring buffer in RAM.
* :class:`DiskReplayBuffer` -- crash-safe shards on disk (safetensors files plus a JSON
  index, each written to a temporary name, fsync'd and atomically renamed).

Conventions shared by both:

* Data lives on the CPU and every returned tensor is a CPU copy; the agent moves it.
* The first insert fixes the schema: ``x_shape`` and ``x_dtype`` (``x`` keeps its dtype),
  ``action_dim`` (actions are stored as float32) and rewards (float32). A later insert of
  another shape, or of a dtype that cannot be cast safely, raises ``ValueError`` naming
  the expected and the received value, and stores nothing. Non-finite rewards, and
  values too large for the stored dtype, are rejected the same way.
* Wrong types are a ``TypeError`` naming the argument: complex contexts, actions or
  rewards (they would lose their imaginary part), bool or string rewards (``True``,
  ``"0.5"``), and a bool, float or string where a count is expected
  (``MemoryReplayBuffer(True)``, ``shard_size=2.0``).
* Transitions have a *logical* order, oldest to newest. :meth:`ReplayBuffer.sample`
  draws logical indices with ``torch.randint(len(buf), (batch_size,), generator=g)``, so
  a memory and a disk buffer holding the same transitions return the same samples for
  the same generator state.
* Every transition gets a *step*: its insertion sequence number over the buffer's
  lifetime, counting from 0 (the ``k``-th transition ever added has step ``k - 1``, a
  batch takes consecutive steps). Steps survive capacity trimming, :meth:`transform`
  and (disk) reopening; the stored transitions hold the consecutive steps
  ``total_added - len(buf)`` to ``total_added - 1``. ``sample(..., with_steps=True)``
  and ``iter_chunks(..., with_steps=True)`` return them as a fourth tensor, and
  ``sample(..., recency=h)`` favours recent transitions with a half-life of ``h`` steps.
* Buffers are not thread-safe, and adding or transforming while an
  :meth:`ReplayBuffer.iter_chunks` iterator is live raises ``RuntimeError``.

The implementation is split by seam: :mod:`bandexa_gym.buffers.base` (the interface,
validation, steps and sampling), :mod:`bandexa_gym.buffers.memory` and
:mod:`bandexa_gym.buffers.disk` (with the index format in ``_format``). Import the public
names from here.
"""

from bandexa_gym.buffers.base import ReplayBuffer
from bandexa_gym.buffers.disk import DiskReplayBuffer
from bandexa_gym.buffers.memory import MemoryReplayBuffer
from bandexa_gym.buffers.schema import (
    Batch,
    ReplayBufferCorruptError,
    ReplayBufferVersionError,
    StepBatch,
    TransformFn,
)

__all__ = [
    "Batch",
    "DiskReplayBuffer",
    "MemoryReplayBuffer",
    "ReplayBuffer",
    "ReplayBufferCorruptError",
    "ReplayBufferVersionError",
    "StepBatch",
    "TransformFn",
]
