"""The AppError tree: every error a client can see has a stable code and an HTTP status."""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    """Base of every error that is rendered to a client as JSON."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of SPEC §5: {"error": {code, message, details}}."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class ValidationError(AppError):
    code = "validation_error"
    status = 400


class BadJsonError(ValidationError):
    code = "invalid_json"


class PathOutsideLibraryError(ValidationError):
    """A computed path would leave the library root."""

    code = "path_outside_library"


class UnauthorizedError(AppError):
    code = "unauthorized"
    status = 401


class InvalidCredentialsError(UnauthorizedError):
    code = "invalid_credentials"


class ForbiddenError(AppError):
    code = "forbidden"
    status = 403


class CsrfError(ForbiddenError):
    code = "csrf_failed"


class NotFoundError(AppError):
    code = "not_found"
    status = 404


class MethodNotAllowedError(AppError):
    code = "method_not_allowed"
    status = 405


class ConflictError(AppError):
    code = "conflict"
    status = 409


class PayloadTooLargeError(AppError):
    code = "payload_too_large"
    status = 413


class RateLimitedError(AppError):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: float, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class ServiceUnavailableError(AppError):
    code = "service_unavailable"
    status = 503


class StorageError(AppError):
    """The database or a settings file cannot be used (newer schema, unreadable, ...)."""

    code = "storage_error"
    status = 503


class DatabaseTooNewError(StorageError):
    code = "database_too_new"


class DatabaseBusyError(StorageError):
    """Another process held the database's write lock for longer than the busy timeout."""

    code = "database_busy"


class DatabaseUnreadableError(StorageError):
    """The database file is no SQLite database, or a damaged one."""

    code = "database_unreadable"


class SettingsWriteError(StorageError):
    """config.json (or its backup) could not be written: the data disk is full or read-only."""

    code = "settings_write_failed"


class DatabaseWriteError(StorageError):
    """SQLite could not write the database file: the disk is full, read-only, or failing."""

    code = "database_write_failed"


class ProviderError(ServiceUnavailableError):
    """A provider site could not be read; retryable unless stated otherwise."""

    code = "provider_error"

    def __init__(
        self, message: str, *, retry_after: float | None = None, details: Any = None
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class ProviderBlockedError(ProviderError):
    """403 or a challenge page (DDoS-Guard, Cloudflare): never circumvented, only retried later."""

    code = "provider_blocked"


class ProviderRateLimitedError(ProviderError):
    code = "provider_rate_limited"


class ProviderUnavailableError(ProviderError):
    """5xx, timeout or connection failure."""

    code = "provider_unavailable"


class ProviderParseError(ProviderError):
    """A page did not have the structure the parser expects; the message names the page."""

    code = "provider_parse_error"


class ProviderNotFoundError(NotFoundError):
    """The provider has no such series/season/episode (HTTP 404 from the site)."""

    code = "provider_not_found"
