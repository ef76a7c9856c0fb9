"""Analyzers: pure functions from a model to frozen result dataclasses in base units."""
