"""Archival digitisation and provenance pipeline: the library (no Prefect here)."""

__version__ = "0.1.0"
SOFTWARE_NAME = "archive"
