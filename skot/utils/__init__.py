"""Utilities shared by the estimators (validation, testing helpers, versions)."""
