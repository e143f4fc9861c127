"""Exceptions that cross layer boundaries, each carrying the HTTP status it maps to.

Lower layers raise these; only `app.py` turns them into responses. Keeping the status next to the
exception means the error policy (4xx for the caller's mistakes, 5xx/503 for ours) is decided where
the failure is understood, not guessed at the top.
"""

from __future__ import annotations


class WorkerError(Exception):
    """Base class: `status` is the HTTP status, `str(exc)` the message for the caller."""

    status: int = 500


class BadRequest(WorkerError):
    """The request is malformed or asks for something impossible (400)."""

    status = 400


class InvalidEntries(WorkerError):
    """`entries` is not what Immich sends: not JSON, not an object, no `modelName` (422)."""

    status = 422


class PayloadTooLarge(WorkerError):
    """An upload, image or text beyond the configured limits (413)."""

    status = 413


class ModelNotServed(WorkerError):
    """Immich asked for a model this worker cannot serve faithfully (400).

    The message names what was asked for, what is configured, and how to fix it. Serving another
    model's embeddings instead would silently corrupt the user's library.
    """

    status = 400


class ServiceUnavailable(WorkerError):
    """The device cannot take the work right now: overloaded, recovering or lost (503)."""

    status = 503


class DeviceError(ServiceUnavailable):
    """An inference failed on the device; the runtime recovers by itself."""


class DeviceTimeout(DeviceError):
    """An inference did not complete within its deadline."""


class Overloaded(ServiceUnavailable):
    """Too much work is queued; waiting longer would only add latency."""


class ConfigurationError(Exception):
    """Start-up cannot proceed (missing HEF, wrong driver, unknown setting); the message says what to do."""
