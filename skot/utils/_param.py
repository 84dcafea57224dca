"""Parameter constraints shared by the estimators."""

from __future__ import annotations

import numpy as np
from sklearn.utils._param_validation import Interval as _SklearnInterval

__all__ = ["Interval"]


class Interval(_SklearnInterval):
    """scikit-learn's :class:`~sklearn.utils._param_validation.Interval` that
    refuses booleans: ``True`` is an ``Integral`` (and a ``Real``) to Python,
    so ``hidden=True`` or ``n_components=True`` passed validation as 1 and
    failed later inside torch."""

    def is_satisfied_by(self, val):
        if isinstance(val, (bool, np.bool_)):
            return False
        return super().is_satisfied_by(val)
