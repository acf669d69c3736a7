"""The OpenAPI document of an interface as the HTTP binding serves it: every method, with the
parameters the binding decodes, and a valid OpenAPI 3.1 document for every service."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from openapi_spec_validator import validate

from colony.composition import service_definitions
from colony.platform.runtime.interface import interface_methods
from colony.platform.runtime.operations import OperationsApi
from colony.platform.runtime.rpc_schema import rpc_openapi
from colony.platform.web.api import NO_NUL_PATTERN
from colony.services.payments.api import PaymentsApi

APIS = {d.name: d.api for d in service_definitions()}


def params_schema(document: dict[str, Any], path: str) -> dict[str, Any]:
    body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    name = body["schema"]["$ref"].rsplit("/", 1)[-1]
    return document["components"]["schemas"][name]


@pytest.mark.parametrize("service", list(APIS))
def test_every_method_is_an_operation_of_a_valid_document(service):
    api = APIS[service]
    document = rpc_openapi(api)
    validate(document)
    expected = {f"/rpc/{name}" for name in interface_methods(api)}
    expected |= {f"/platform/{name}" for name in interface_methods(OperationsApi)}
    assert set(document["paths"]) == expected
    assert set(rpc_openapi(api, operations=False)["paths"]) == {
        path for path in expected if path.startswith("/rpc/")
    }


@pytest.mark.parametrize("service", list(APIS))
def test_a_parameter_without_a_default_is_required_and_no_other_is_taken(service):
    api = APIS[service]
    document = rpc_openapi(api)
    for name, spec in interface_methods(api).items():
        schema = params_schema(document, f"/rpc/{name}")
        parameters = [p for p in list(spec.signature.parameters.values())[1:] if p.name != "actor"]
        assert set(schema["properties"]) == {p.name for p in parameters}, name
        required = {p.name for p in parameters if p.default is inspect.Parameter.empty}
        assert set(schema.get("required", [])) == required, name
        assert schema["additionalProperties"] is False, name


def test_payments_document_says_who_may_call_and_what_comes_back():
    document = rpc_openapi(PaymentsApi)
    authorize = document["paths"]["/rpc/authorize"]["post"]
    assert authorize["x-callers"] == ["orders"]
    assert params_schema(document, "/rpc/authorize")["required"] == [
        "order_id",
        "buyer_id",
        "amount_minor",
        "currency",
        "card_number",
        "seller_shares",
    ]
    assert set(authorize["responses"]) == {
        "200", "401", "402", "403", "404", "409", "422", "429", "503", "504"
    }  # fmt: skip
    assert "WWW-Authenticate" in authorize["responses"]["401"]["headers"]
    assert document["security"] == [{"serviceToken": []}]
    assert document["paths"]["/platform/outbox"]["post"]["x-callers"] == [
        "cli",
        "gateway",
        "verify",
    ]


def test_no_text_in_the_parameters_may_hold_nul():
    params = params_schema(rpc_openapi(PaymentsApi), "/rpc/authorize")["properties"]
    assert params["order_id"]["pattern"] == NO_NUL_PATTERN
    assert params["seller_shares"]["propertyNames"] == {"pattern": NO_NUL_PATTERN}
