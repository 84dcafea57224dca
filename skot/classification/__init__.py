"""OT classifiers: zero-/few-shot (fused Gromov) OT and selective prediction."""

from ._selective import SelectiveOTClassifier
from ._zero_shot import FGWZeroShotClassifier

__all__ = ["FGWZeroShotClassifier", "SelectiveOTClassifier"]
