"""Domain alignment with optimal transport."""

from ._infoot import InfoOTAligner

__all__ = ["InfoOTAligner"]
