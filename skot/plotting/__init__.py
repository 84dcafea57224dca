"""Plotting helpers (matplotlib is imported only when a plot is drawn)."""

from ._risk_coverage import RiskCoverageDisplay

__all__ = ["RiskCoverageDisplay"]
