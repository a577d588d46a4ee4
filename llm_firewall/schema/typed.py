"""Pydantic building blocks for hand-written YAML: strict models, enums with a hint, a single
item accepted for a list, and validation errors rewritten as `(field path, message)` a person
can act on (pydantic's own wording names Python types)."""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Callable, ClassVar, Literal, Optional, Sequence

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, GetCoreSchemaHandler, GetJsonSchemaHandler, \
    ValidationError, WithJsonSchema, model_validator
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from llm_firewall.domain import SEVERITIES, THREATS


class Doc(BaseModel):
    """A mapping in a YAML file: no unknown keys, no type coercion ('yes' is not true)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False)
    key_noun: ClassVar[str] = "key"  # how an unknown key is named in errors

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = [f.alias or name for name, f in cls.model_fields.items()]
            for key in data:
                if key not in allowed:
                    raise located_error((str(key),), f"unknown {cls.key_noun} {key!r}{hint(key, allowed, True)}")
        return data


def located_error(at: tuple[str | int, ...], message: str) -> PydanticCustomError:
    """An error about the field at path `at` below the value being validated (pydantic would
    place an error raised by a model validator on the model itself)."""
    return PydanticCustomError("located", message, {"at": at})  # type: ignore[dict-item]


def hint(value: Any, allowed: Sequence[str], listing: bool = False) -> str:
    close = difflib.get_close_matches(str(value), sorted(allowed), n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (allowed: {', '.join(sorted(allowed))})" if listing else ""


def choice(values: Sequence[str], noun: str = "value") -> Any:
    """`Literal[values]` (an enum in the JSON Schema) whose error names the nearest value."""

    def check(value: Any) -> Any:
        if value not in values:
            raise PydanticCustomError(
                "unknown_value",
                f"unknown {noun} {value!r}{hint(value, values)}: {value!r} is not one of {', '.join(values)}")
        return value

    return Annotated[Literal[tuple(values)], BeforeValidator(check)]  # type: ignore[valid-type]


def matching(pattern: str, explain: str) -> Any:
    """A string matching `pattern` (also in the JSON Schema); an error says `explain`, not the regex."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.search(value):
            raise PydanticCustomError("pattern", f"{value!r}: {explain}")
        return value

    return Annotated[str, AfterValidator(check), WithJsonSchema({"type": "string", "pattern": pattern})]


class OneOrMany:
    """Annotation for a list field: a single item may be written without brackets."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_before_validator_function(
            lambda v: v if isinstance(v, list) else [v], handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        array = handler(schema)
        return {"anyOf": [array.get("items", {}), array]}


class _NullWritten:
    """Annotation: `null` (an empty value in YAML, `{log: }`) is a meaningful way to write it."""

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"anyOf": [handler(schema), {"type": "null"}]}


def optional(typ: Any, null: bool = False) -> Any:
    """`typ` or absent (None); the JSON Schema offers only `typ` (see `FileSchema`) unless
    `null` says an empty value is written on purpose."""
    return Annotated[Optional[typ], _NullWritten()] if null else Optional[typ]


def many(item: Any) -> Any:
    """A list of `item`; one item may be written alone."""
    return Annotated[list[item], OneOrMany()]


Threat = choice(THREATS)
Severity = choice(SEVERITIES)
Text = Annotated[str, StringConstraints(min_length=1)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class FileSchema(GenerateJsonSchema):
    """JSON Schema of a YAML file as a person writes it: an optional field is left out, never
    written as null, so `null` is not offered (nor a `default: null`)."""

    def generate(self, schema: CoreSchema, mode: Any = "validation") -> JsonSchemaValue:
        return {"$schema": self.schema_dialect, **super().generate(schema, mode)}

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        out = super().default_schema(schema)
        if out.get("default", 0) is None:
            del out["default"]
        return out


_KINDS = {"string_type": "a string", "int_type": "an integer", "float_type": "a number",
          "dict_type": "a mapping", "list_type": "a list", "model_type": "a mapping",
          "model_attributes_type": "a mapping", "bool_type": "true or false", "date_type": "a date (YYYY-MM-DD)",
          "date_parsing": "a date (YYYY-MM-DD)", "literal_error": "one of the listed values"}
_BOUNDS = {"greater_than_equal": ("ge", "at least"), "less_than_equal": ("le", "at most"),
           "greater_than": ("gt", "more than"), "less_than": ("lt", "less than")}


def kind(value: Any) -> str:
    """How an error names what was written instead."""
    if value is None:
        return "nothing"
    for typ, label in ((bool, "a boolean"), (dict, "a mapping"), (list, "a list"), (str, "a string")):
        if isinstance(value, typ):
            return label
    return type(value).__name__


def _message(err: Any) -> str:
    typ, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if typ == "missing":
        return "required"
    if typ in _KINDS:
        return f"expected {_KINDS[typ]}, got {kind(value)}"
    if typ in _BOUNDS:
        key, words = _BOUNDS[typ]
        return f"{value!r} is out of range: must be {words} {ctx[key]}"
    if typ == "too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else f"needs at least {ctx.get('min_length')} items"
    if typ == "string_pattern_mismatch":
        return f"{value!r} does not match {ctx.get('pattern')}"
    if typ == "value_error":
        return str(ctx.get("error", err["msg"]))
    return str(err["msg"])


def problems(exc: ValidationError, hidden: Callable[[Any], bool] = lambda part: False) -> list[tuple[tuple[str | int, ...], str]]:
    """(path into the document, message) for each error; `hidden` drops union tags from paths."""
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not hidden(p))
        if err["type"] == "located":
            loc += tuple(err["ctx"]["at"])
        out.append((loc, _message(err)))
    return out
