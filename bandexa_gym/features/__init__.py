"""Representations: what the heads read (fixed feature maps, learned encoders, scaling).

* :mod:`~.fixed`: the fixed feature maps of the linear agents (``concat``, ``disjoint``,
  ``per_arm``) and the choice of ``"auto"``.
* :mod:`~.arms`: fixed-arm detection (one head per arm) and the one switch to a shared head.
* :mod:`~.scaling`: reward and learned-feature standardization.
* :mod:`~.encoders`: the learned encoders of the neural agents and the default choice.

Layer: above the heads (``bandexa_gym.posterior``, ``numerics``, ``buffers``), below the
agents; nothing here imports ``agents``, ``exploration``, the bench or the envs.
"""
