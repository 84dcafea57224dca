"""Coreset selection with optimal transport."""

from ._coreset import WassersteinCoresetSelector

__all__ = ["WassersteinCoresetSelector"]
