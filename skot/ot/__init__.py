"""The solver layer of skot: one place for every optimal transport computation.

Mirrors the vocabulary of POT's :func:`ot.solve` / :func:`ot.solve_gromov`.
numpy in gives numpy out; torch in gives torch out on the same device and dtype,
differentiable. Every estimator and loss of skot goes through this module.
"""

import os as _os

_os.environ.setdefault("POT_BACKEND_DISABLE_JAX", "1")
_os.environ.setdefault("POT_BACKEND_DISABLE_TENSORFLOW", "1")

from ._registry import available_methods  # noqa: E402
from ._result import OTResult  # noqa: E402
from ._solve import solve, solve_gromov  # noqa: E402
from ._solver import OTSolver, get_solver  # noqa: E402
from ._gromov import LowRankGraph, fgw_objective  # noqa: E402
from ._online import OnlineOTResult, solve_sample  # noqa: E402

__all__ = [
    "solve",
    "solve_gromov",
    "available_methods",
    "OTResult",
    "OTSolver",
    "get_solver",
    "fgw_objective",
    "LowRankGraph",
    "solve_sample",
    "OnlineOTResult",
]
