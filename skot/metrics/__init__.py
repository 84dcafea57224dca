"""Metrics for selective classification."""

from ._selective import aurc, risk_coverage_curve, selective_accuracy

__all__ = ["selective_accuracy", "risk_coverage_curve", "aurc"]
