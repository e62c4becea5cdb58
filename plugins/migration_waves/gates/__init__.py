"""Preflight and acceptance gates over the spec and the evidence of a run."""
