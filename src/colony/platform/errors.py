"""Errors every service raises, each mapping to one RFC 9457 problem type and HTTP status.

The same classes cross process boundaries: the HTTP binding turns a problem response back
into the exception the service raised, so callers handle one set of errors in any topology.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ColonyError(Exception):
    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"
    registry: ClassVar[dict[str, type[ColonyError]]] = {}

    def __init__(self, detail: str = "", **extensions: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extensions = extensions

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        ColonyError.registry[cls.slug] = cls

    @property
    def type_uri(self) -> str:
        return problem_type_uri(self.slug)

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        problem: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            problem["instance"] = instance
        problem.update(self.extensions)
        return problem

    @staticmethod
    def from_problem(problem: dict[str, Any]) -> ColonyError:
        slug = str(problem.get("type", "")).rsplit("/", 1)[-1]
        cls = ColonyError.registry.get(slug, ColonyError)
        known = {"type", "title", "status", "detail", "instance"}
        extensions = {k: v for k, v in problem.items() if k not in known}
        return cls(str(problem.get("detail", "")), **extensions)


def problem_type_uri(slug: str) -> str:
    return f"/problems/{slug}"


class InvalidInput(ColonyError):
    status = 422
    slug = "invalid-input"
    title = "The request is not valid"


class MalformedRequest(ColonyError):
    status = 400
    slug = "malformed-request"
    title = "The request could not be parsed"


class Unauthorized(ColonyError):
    status = 401
    slug = "unauthorized"
    title = "Authentication is required"


class Forbidden(ColonyError):
    status = 403
    slug = "forbidden"
    title = "Not allowed"


class NotFound(ColonyError):
    status = 404
    slug = "not-found"
    title = "Not found"


class MethodNotAllowed(ColonyError):
    status = 405
    slug = "method-not-allowed"
    title = "Method not allowed"


class Conflict(ColonyError):
    status = 409
    slug = "conflict"
    title = "Conflict with the current state"


class OutOfStock(Conflict):
    slug = "out-of-stock"
    title = "Not enough stock"


class PaymentDeclined(ColonyError):
    status = 402
    slug = "payment-declined"
    title = "The payment was declined"


class Undeliverable(InvalidInput):
    slug = "undeliverable"
    title = "The address cannot be delivered to"


class PayloadTooLarge(ColonyError):
    status = 413
    slug = "payload-too-large"
    title = "The request body is too large"


class UnsupportedMediaType(ColonyError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class IdempotencyKeyReused(ColonyError):
    status = 422
    slug = "idempotency-key-reused"
    title = "The Idempotency-Key was used with a different request"


class RateLimited(ColonyError):
    status = 429
    slug = "rate-limited"
    title = "Too many requests"


class ServiceUnavailable(ColonyError):
    status = 503
    slug = "service-unavailable"
    title = "A service is unavailable"


class CircuitOpen(ServiceUnavailable):
    """A dependency kept failing, so calls to it fail at once for a while (a breaker)."""

    slug = "circuit-open"
    title = "A service is failing; calls to it are held back"


class Overloaded(ServiceUnavailable):
    """Too many calls at once: refused at once rather than queued without bound."""

    slug = "overloaded"
    title = "Too many requests at once"


class DeadlineExceeded(ColonyError):
    """The caller's deadline passed: it has stopped waiting, so the work is not started."""

    status = 504
    slug = "deadline-exceeded"
    title = "The request ran out of time"
