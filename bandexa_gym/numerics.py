"""Re-export of :mod:`bandexa_gym.heads.numerics`, kept for old import paths."""

from bandexa_gym.heads.numerics import (
    GAMMA_NORMALS,
    NumericalWarning,
    draw_row_length,
    gamma_from_normals,
    gamma_variates,
    safe_cholesky,
    seeded_init,
    standard_gamma,
)

__all__ = [
    "GAMMA_NORMALS",
    "NumericalWarning",
    "draw_row_length",
    "gamma_from_normals",
    "gamma_variates",
    "safe_cholesky",
    "seeded_init",
    "standard_gamma",
]
