"""The error hierarchy: one root, a few kinds that callers act on."""

from __future__ import annotations


class GeoEtlError(Exception):
    """Root of every error geoetl raises on purpose."""


class InputError(GeoEtlError):
    """The user's input is wrong; retrying will not help. Say what and how to fix it."""


class TooLarge(InputError):
    """The input is larger than this deployment accepts."""


class TransientError(GeoEtlError):
    """A fault that may go away; the task is retried with backoff."""


class NotFound(GeoEtlError):
    """The thing asked for does not exist (or is not visible to this audience)."""


class Conflict(GeoEtlError):
    """The request conflicts with the current state."""


class Forbidden(GeoEtlError):
    """The caller may not do this."""


class Unauthorized(GeoEtlError):
    """The caller did not prove who it is (no credentials, or bad ones)."""


class TooManyRequests(GeoEtlError):
    """The caller has too much work in flight; it may try again later."""


class StaleAttempt(GeoEtlError):
    """A worker tried to act on a task attempt it no longer owns (lost lease)."""


class TaskCancelled(GeoEtlError):
    """The task's job was cancelled or its lease lost while it ran."""
