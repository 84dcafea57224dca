"""Data-parallel helpers: OT contrastive losses over the global batch.

``gather_with_grad`` all-gathers local features across ``torch.distributed``
processes while keeping their gradients (as open_clip does); ``global_loss``
evaluates any loss callable of :mod:`skot.losses` on the gathered global batch.
"""

from ._distributed import gather_with_grad, global_loss

__all__ = ["gather_with_grad", "global_loss"]
