"""Great Expectations suites over manifests and datasets (GX is imported inside functions only)."""

from migration_waves.validation.manifests import FailedExpectation, ValidationReport, validate_manifests

__all__ = ["FailedExpectation", "ValidationReport", "validate_manifests"]
