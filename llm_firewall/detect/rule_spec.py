"""A detection rule as typed models: the one description of what a rule file may say.

Pydantic checks the shape of every rule (keys, types, enums, ids, tags); `detect.rules` then
checks what a schema cannot (patterns RE2 compiles and cannot backtrack on, response rules of
bounded width, the rule's own examples) and compiles it. `llm-firewall schema rules` writes
these models as JSON Schema for editors. Tags and references follow Sigma rules: a tag names a
class of attack in a public catalogue, `owasp-llm:LLM01` (OWASP Top 10 for LLM applications,
2025) or `atlas:AML.T0051` (MITRE ATLAS technique, `.000` for a sub-technique).
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Union

from pydantic import BeforeValidator, Discriminator, Field, Tag, WithJsonSchema, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError

from llm_firewall.schema.typed import (Doc, FileSchema, Probability, Severity, Text, Threat, choice, located_error,
                                       many, matching, optional)

DIRECTIONS = ("request", "response", "both")
STATUSES = ("stable", "experimental")
ROLES = ("user", "system", "developer", "assistant", "tool", "tool_call", "tool_description", "schema",
         "prompt", "input", "instructions", "embedding", "response")
VALIDATOR_NAMES = ("luhn", "iban")  # check functions in detect.rules.VALIDATORS
TAG_PATTERN = r"^(?:owasp-llm:LLM(?:0[1-9]|10)|atlas:AML\.T[0-9]{4}(?:\.[0-9]{3})?|cwe:CWE-[1-9][0-9]*)$"
ID_PATTERN = r"^[A-Z][A-Z0-9]*-[A-Z0-9-]+$"

Role = choice(ROLES)
RuleId = matching(ID_PATTERN, "must look like PI-001 (upper-case prefix, dash, number)")


class AppliesTo(Doc):
    """Which texts the rule reads: the direction and the message roles."""

    direction: choice(DIRECTIONS) = "request"
    roles: many(Role) = Field(default_factory=list, description="none listed: every role")


class RegexEntry(Doc):
    """An RE2 pattern, matched case-insensitively."""

    regex: Text


class PhrasesEntry(Doc):
    """Phrases matched as whole words, any run of whitespace between their words."""

    phrases: Annotated[many(matching(r"\S", "a phrase must not be blank")), Field(min_length=1)]


PATTERN_TAGS = {"regex": "regex-entry", "phrases": "phrases-entry"}


def _pattern_form(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        return PATTERN_TAGS.get(next(iter(value)))
    return None


PatternEntry = Annotated[
    Union[Annotated[RegexEntry, Tag(PATTERN_TAGS["regex"])], Annotated[PhrasesEntry, Tag(PATTERN_TAGS["phrases"])]],
    Discriminator(_pattern_form, custom_error_type="pattern",
                  custom_error_message="each entry is exactly one of {regex: '...'} or {phrases: [...]}")]
Patterns = Annotated[list[PatternEntry], Field(min_length=1)]


class MatchSpec(Doc):
    """The rule matches when any `any` entry matches and every `all` entry is present."""

    any: Patterns
    all: optional(Patterns) = None


class TestsSpec(Doc):
    """The rule's own examples; loading fails when one is not matched (or is)."""

    __test__ = False  # not a pytest class
    match: Annotated[many(str), Field(min_length=1)]
    no_match: Annotated[many(str), Field(min_length=1)]


def _role_map(value: Any) -> Any:
    if not isinstance(value, dict) or not value:
        raise PydanticCustomError("role_map", "must be a mapping of role name to severity")
    return value


class RuleSpec(Doc):
    """One detection rule."""

    id: RuleId
    title: str
    description: str = ""
    threat: Threat
    severity: Severity
    category: matching(r"^[a-z0-9_]+$", "must be a snake_case name such as sql_injection")
    status: choice(STATUSES) = "stable"
    applies_to: AppliesTo = Field(default_factory=AppliesTo)
    match: MatchSpec
    exclude: optional(Patterns) = Field(None, description="matches that explain the rule's match away")
    validate_: optional(choice(VALIDATOR_NAMES)) = Field(None, alias="validate")
    falsepositives: many(str)
    tests: TestsSpec
    references: many(Text) = Field(default_factory=list, description="URLs of write-ups of the attack")
    tags: many(matching(TAG_PATTERN, "a tag is owasp-llm:LLM01..LLM10, atlas:AML.T0051 (or .000) or cwe:CWE-89")) = Field(
        default_factory=list, description="owasp-llm:LLM01..LLM10, atlas:AML.T0051(.000), cwe:CWE-89")
    precision: optional(Probability) = None
    author: optional(str) = None
    date: optional(Annotated[datetime.date, Field(strict=False), WithJsonSchema(
        {"type": "string", "format": "date", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"})]) = Field(
        None, description="when the rule was written or last changed, YYYY-MM-DD")
    stream_anchor: optional(str) = None
    severity_by_role: optional(Annotated[dict[Role, Severity], BeforeValidator(_role_map)]) = None

    @model_validator(mode="after")
    def _roles_seen(self) -> "RuleSpec":
        roles = self.applies_to.roles
        for role in self.severity_by_role or {}:
            if roles and role not in roles:
                raise located_error(("severity_by_role", role),
                                    f"{role!r} is not in applies_to.roles, so the rule never sees it")
        return self


def hidden_in_paths(part: Any) -> bool:
    """Union tags and dict-key markers pydantic puts in error paths, which are not in the file."""
    return part in PATTERN_TAGS.values() or part == "[key]"


class RuleFileSpec(Doc):
    """A rules file: rules, and ids of rules from earlier directories to switch off."""

    rules: list[RuleSpec] = Field(default_factory=list)
    disable: list[RuleId] = Field(default_factory=list)


def json_schema() -> JsonSchemaValue:
    """The JSON Schema `llm-firewall schema rules` writes: a file of one rule, a list of rules,
    or `rules:` / `disable:`."""
    out = RuleFileSpec.model_json_schema(schema_generator=FileSchema)
    defs = out.pop("$defs")
    defs["RuleFileSpec"] = {k: out.pop(k) for k in list(out) if k != "$schema"}
    return {**out, "title": "llm-firewall rules file",
            "anyOf": [{"$ref": "#/$defs/RuleFileSpec"}, {"$ref": "#/$defs/RuleSpec"},
                      {"type": "array", "items": {"$ref": "#/$defs/RuleSpec"}}],
            "$defs": defs}
