"""Fails to import: a dependency that is not installed."""

import surgery_missing_dependency  # noqa: F401
