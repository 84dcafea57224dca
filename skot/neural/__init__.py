"""Torch heads trained through skorch."""

from ._embedder import OTContrastiveEmbedder
from ._modules import ContrastiveNet, ResidualHead, TwoTower

__all__ = ["OTContrastiveEmbedder", "ContrastiveNet", "ResidualHead", "TwoTower"]
