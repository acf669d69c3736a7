"""Reading posted forms and checking them with the API's own msgspec Structs, so a form
accepts exactly what the JSON API accepts; failures become messages for the form's fields."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request

from colony.platform.errors import ColonyError
from colony.services.catalog.api import MAX_PRICE_MINOR
from colony.services.gateway.storefront.csrf import CSRF_FIELD, check_csrf
from colony.services.gateway.storefront.money import amount_text, parse_amount

T = TypeVar("T")
GENERAL = ""  # the key of messages about the form as a whole
_PATH = re.compile(r" - at `\$\.(\w+)`")
_MISSING = re.compile(r"^Object missing required field `(\w+)`")
# msgspec's wording, said for people filling in a form.
_PHRASES = [
    (re.compile(r"^Expected `str` of length >= 1$"), "is required"),
    (re.compile(r"^Expected `str` of length >= (\d+)$"), "must be at least {0} characters"),
    (re.compile(r"^Expected `str` of length <= (\d+)$"), "must be at most {0} characters"),
    (re.compile(r"^Expected `str` matching regex"), "is not in the expected format"),
    (re.compile(r"^Expected `int` >= (-?\d+)$"), "must be at least {0}"),
    (re.compile(r"^Expected `int` <= (-?\d+)$"), "must be at most {0}"),
    (re.compile(r"^Expected `int`, got"), "must be a whole number"),
    (re.compile(r"^Invalid enum value"), "is not one of the choices"),
]


class FormInvalid(Exception):
    """What was wrong with a form, by field name, and the HTTP status to answer with."""

    def __init__(self, errors: dict[str, str], status: int = 422) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors
        self.status = status

    @property
    def message(self) -> str:
        return next(iter(self.errors.values()), "")

    @classmethod
    def one(cls, field: str, message: str, status: int = 422) -> FormInvalid:
        return cls({field: message}, status)

    @classmethod
    def from_service(cls, exc: ColonyError, fields: Mapping[str, str]) -> FormInvalid:
        """A service's refusal, shown next to the field it names when the form has it."""
        field = exc.extensions.get("field")
        return cls(
            {field if isinstance(field, str) and field in fields else GENERAL: exc.detail},
            exc.status,
        )


async def read_form(request: Request) -> dict[str, str]:
    """The posted fields (first value of each; files ignored), after the CSRF check."""
    form = await request.form()
    fields: dict[str, str] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            fields.setdefault(key, value)
    check_csrf(request, fields.pop(CSRF_FIELD, None))
    return fields


def convert(
    data: Mapping[str, Any],
    type_: type[T],
    labels: Mapping[str, str],
    aliases: Mapping[str, str] | None = None,
) -> T:
    """``data`` as ``type_``; raises FormInvalid saying which field is wrong and how.

    ``aliases`` name the form field behind a Struct field (the form's "price" is the
    Struct's "price_minor"), so the message lands next to the right input.
    """
    try:
        return msgspec.convert(data, type_, strict=False)
    except msgspec.ValidationError as exc:
        field, message = describe(str(exc), labels)
        raise FormInvalid.one((aliases or {}).get(field, field), message) from None


def field_errors(
    data: Mapping[str, Any], type_: type[Any], labels: Mapping[str, str]
) -> dict[str, str]:
    """Every field's problem at once, by field name (msgspec stops at the first one).

    A nested Struct's fields count as fields of the same form (the checkout's address), so
    their names must not clash with the outer ones.
    """
    errors: dict[str, str] = {}
    for info in msgspec.structs.fields(type_):
        if info.name not in data:
            if info.required:
                errors[info.name] = f"{labels.get(info.name, info.name)} is required."
            continue
        value, nested = data[info.name], info.type
        if (
            isinstance(value, Mapping)
            and isinstance(nested, type)
            and issubclass(nested, msgspec.Struct)
        ):
            errors.update(field_errors(value, nested, labels))
            continue
        try:
            msgspec.convert(value, info.type, strict=False)
        except msgspec.ValidationError as exc:
            errors[info.name] = describe(f"{exc} - at `$.{info.name}`", labels)[1]
    return errors


def convert_all(data: Mapping[str, Any], type_: type[T], labels: Mapping[str, str]) -> T:
    """``data`` as the Struct ``type_``; raises FormInvalid naming every wrong field."""
    errors = field_errors(data, type_, labels)
    if errors:
        raise FormInvalid(errors)
    return convert(data, type_, labels)  # what no single field shows (an unknown field)


def read_price(text: str, field: str, label: str, minimum: int = 1) -> int:
    """A price typed as "12.50", in minor units, within what the catalog accepts."""
    minor = parse_amount(text)
    if minor is None:
        raise FormInvalid.one(field, f"{label} must be an amount like 12.50.")
    if not minimum <= minor <= MAX_PRICE_MINOR:
        raise FormInvalid.one(
            field,
            f"{label} must be between {amount_text(minimum)} and {amount_text(MAX_PRICE_MINOR)}.",
        )
    return minor


def describe(message: str, labels: Mapping[str, str]) -> tuple[str, str]:
    """msgspec's "Expected `int` >= 1 - at `$.quantity`" -> ("quantity", "Quantity must be...")."""
    if missing := _MISSING.match(message):
        field = missing.group(1)
        return field, f"{labels.get(field, field)} is required."
    path = _PATH.search(message)
    if path is None:
        return GENERAL, message
    field, reason = path.group(1), _PATH.sub("", message)
    for pattern, phrase in _PHRASES:
        if found := pattern.match(reason):
            reason = phrase.format(*found.groups())
            break
    return field, f"{labels.get(field, field)} {reason}."
