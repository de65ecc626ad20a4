"""Errors and markers shared by the backend and the task pack."""

from __future__ import annotations

MEDIA_ERROR_PREFIX = "[vreason media error] "
"""A response that starts with this marks a sample whose video could not be read.

The backend returns it (followed by the reason, naming the file) instead of failing the run; the
task pack scores such a sample as wrong and counts it in ``media_error_rate``.
"""


class MediaError(RuntimeError):
    """A sample's video (or image) is missing or cannot be decoded."""
