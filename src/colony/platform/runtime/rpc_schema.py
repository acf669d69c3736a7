"""An interface's OpenAPI document, as the HTTP binding serves it.

Every service's interface is a second API beside the gateway's: one ``POST /rpc/<method>``
per method (and ``/platform/<method>`` for :class:`OperationsApi`), reachable by every
process of the topology. Like the gateway's API it is held to a document, so a fuzzer can
show that bad input gets a problem with a 4xx status, never a 500. The document is built from
the very parameter structs the binding decodes with, so it says what the binding accepts and
cannot drift from it: a field without a default is required, any field the struct does not
name is refused, and no text may hold NUL.

The interface does not say which errors each method raises, so every operation lists every
status an answer can carry: the binding's own (401 without a valid token, 403 for a caller
the method's list refuses, 422 for parameters it cannot decode, 504 for a deadline already
spent) and those of the errors services raise (402 a declined card, 429 identity's throttle,
503 a dependency away, ...). No other status comes back; a 500 is a fault in the service.
"""

from __future__ import annotations

import inspect
from typing import Any

import msgspec

from colony.platform.errors import (
    ColonyError,
    Conflict,
    DeadlineExceeded,
    Forbidden,
    InvalidInput,
    NotFound,
    PaymentDeclined,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
)
from colony.platform.resilience import ATTEMPT_HEADER
from colony.platform.resilience.deadline import DEADLINE_HEADER
from colony.platform.runtime.http_binding import (
    CORRELATION_HEADER,
    IDEMPOTENCY_FINGERPRINT_HEADER,
    IDEMPOTENCY_KEY_HEADER,
)
from colony.platform.runtime.interface import MethodSpec, interface_methods
from colony.platform.runtime.operations import OperationsApi
from colony.platform.web.api import refuse_nul
from colony.platform.web.problems import PROBLEM_JSON

ANSWERED_ERRORS: tuple[type[ColonyError], ...] = (
    Unauthorized,
    PaymentDeclined,
    Forbidden,
    NotFound,
    Conflict,
    InvalidInput,
    RateLimited,
    ServiceUnavailable,
    DeadlineExceeded,
)
"""The errors an answer may carry, one per status (their subclasses share it)."""
SECURITY_SCHEME = "serviceToken"
PROBLEM = "RFC9457Problem"
_REF = "#/components/schemas/{name}"
_HEADERS = {
    CORRELATION_HEADER: "The call's correlation id (one is made when absent).",
    IDEMPOTENCY_KEY_HEADER: "The Idempotency-Key of the request this call serves, if any.",
    IDEMPOTENCY_FINGERPRINT_HEADER: "The fingerprint of the request the key came with.",
    DEADLINE_HEADER: "The caller's remaining budget in milliseconds: 0 is refused with 504;"
    " a value that is not a whole number of milliseconds is ignored.",
    ATTEMPT_HEADER: "Which attempt of the caller's this is (1 when absent or unreadable).",
}

_PROBLEM: dict[str, Any] = {
    "title": PROBLEM,
    "description": "An RFC 9457 problem; the caller's binding raises it again as the same"
    " error class. Extensions (such as ``field``) may follow.",
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "correlation_id": {"type": "string"},
    },
    "required": ["type", "title", "status", "detail"],
}


def rpc_openapi(api: type, operations: bool = True) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``api`` served by the HTTP binding; with ``operations``,
    the platform's :class:`OperationsApi` served beside it under ``/platform/``."""
    served: list[tuple[str, type, MethodSpec]] = [
        ("/rpc/", api, spec) for spec in interface_methods(api).values()
    ]
    if operations:
        served += [
            ("/platform/", OperationsApi, spec)
            for spec in interface_methods(OperationsApi).values()
        ]
    # One pass over every type, so two of the same name still get components of their own.
    types: list[Any] = []
    for _, _, spec in served:
        types.append(spec.params)
        if spec.result_decoder is not None:
            types.append(spec.returns)
    refs, components = msgspec.json.schema_components(types, ref_template=_REF)
    for schema in [*refs, *components.values()]:
        refuse_nul(schema)
    schemas = iter(refs)
    paths: dict[str, Any] = {}
    for prefix, owner, spec in served:
        params = next(schemas)
        result = next(schemas) if spec.result_decoder is not None else None
        paths[prefix + spec.name] = {"post": _operation(prefix, owner, spec, params, result)}
    components[PROBLEM] = _PROBLEM
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{api.__name__} over the HTTP binding",
            "version": "1",
            "description": inspect.getdoc(api) or "",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A service token (EdDSA-signed JWT) naming the caller, this"
                    " service as its audience, and the actor the call is made for.",
                }
            },
        },
        "security": [{SECURITY_SCHEME: []}],
    }


def _operation(
    prefix: str, owner: type, spec: MethodSpec, params: Any, result: Any
) -> dict[str, Any]:
    doc = inspect.getdoc(getattr(owner, spec.name)) or ""
    answer: dict[str, Any]
    if result is None:
        answer = {"204": {"description": "Done; no content."}}
    else:
        answer = {"200": {"description": "The result.", "content": _json(result)}}
    for error in ANSWERED_ERRORS:
        answer[str(error.status)] = _problem(error)
    return {
        "operationId": prefix.strip("/") + "." + spec.name,
        "tags": [owner.__name__],
        "summary": doc.split("\n\n")[0].replace("\n", " ") or spec.name,
        "description": doc,
        "x-callers": sorted(spec.callers),
        "x-callers-for-people": sorted(spec.for_users),
        "parameters": [
            {
                "name": name,
                "in": "header",
                "required": False,
                "description": text,
                "schema": {"type": "string"},
            }
            for name, text in _HEADERS.items()
        ],
        "requestBody": {"required": True, "content": _json(params)},
        "responses": answer,
    }


def _json(schema: Any) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _problem(error: type[ColonyError]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": error.title,
        "content": {
            PROBLEM_JSON: {
                "schema": {
                    "allOf": [
                        {"$ref": _REF.format(name=PROBLEM)},
                        {"properties": {"status": {"const": error.status}}},
                    ]
                }
            }
        },
    }
    if error is Unauthorized:
        response["headers"] = {
            "WWW-Authenticate": {"required": True, "schema": {"const": "Bearer"}}
        }
    return response
