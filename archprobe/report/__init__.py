"""Turning results into tables and files: the only place that knows headers and units."""
