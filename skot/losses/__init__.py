"""OT contrastive losses (torch): functions and ``nn.Module`` wrappers."""

from ._functional import (
    alignment_regulariser,
    fgw_loss,
    infonce_loss,
    iot_loss,
    ncu_loss,
    target_plan,
    uniformity_penalty,
)
from ._modules import LOSSES, OTContrastiveLoss

__all__ = [
    "infonce_loss",
    "iot_loss",
    "fgw_loss",
    "ncu_loss",
    "uniformity_penalty",
    "alignment_regulariser",
    "target_plan",
    "OTContrastiveLoss",
    "LOSSES",
]
