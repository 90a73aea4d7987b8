"""JSON Schema validation (Draft 2020-12, with format checks) of records against schemas/."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
# Record kind -> schema file stem.
KINDS = {
    "document": "document",
    "file": "file",
    "quarantine": "quarantine",
    "event": "event",
    "manifest": "manifest",
    "metadata-row": "metadata-row",
    "reuse": "reuse",
    "reuse-band": "reuse-band",
    "reuse-cluster": "reuse-cluster",
    "record": "record",
}


@cache
def _schemas() -> dict[str, dict]:
    schemas = {}
    for path in sorted(SCHEMA_DIR.glob("*.schema.json")):
        schemas[path.name.removesuffix(".schema.json")] = json.loads(path.read_text(encoding="utf-8"))
    return schemas


@cache
def _registry() -> Registry:
    resources = [(s["$id"], Resource.from_contents(s)) for s in _schemas().values()]
    return Registry().with_resources(resources)


def schema(kind: str) -> dict:
    return _schemas()[KINDS[kind]]


def schema_id(kind: str) -> str:
    """The versioned $id of a record kind's schema, as recorded in manifests."""
    return schema(kind)["$id"]


@cache
def validator(kind: str) -> Draft202012Validator:
    # The shared definitions are inlined: resolving a $ref through the registry
    # on every record was most of the cost of validating one.
    return Draft202012Validator(
        _inline_common(schema(kind)), registry=_registry(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


_ANNOTATIONS = {"title", "description", "$comment", "examples"}


def _inline_common(node):
    """A copy of a schema with every $ref into common.schema.json replaced by the definition itself."""
    common = _schemas()["common"]
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith(common["$id"] + "#/$defs/") and set(node) - {"$ref"} <= _ANNOTATIONS:
            # (a $ref beside annotations only: the definition, annotated)
            annotations = {key: value for key, value in node.items() if key != "$ref"}
            return {**_inline_common(common["$defs"][ref.rsplit("/", 1)[1]]), **annotations}
        return {key: _inline_common(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline_common(item) for item in node]
    return node


# A record schema whose top level is only these keywords is the conjunction of its
# properties' subschemas, the required and allowed keys, and allOf: each can be
# checked on its own.
_SPLITTABLE = {"$schema", "$id", "$comment", "title", "description", "type", "properties", "required",
               "additionalProperties", "allOf"}
# Values worth remembering a verdict for: the run's ids, media types, tools, nulls
# recur in every record of a batch; a document's text, id or path does not. A
# property whose values repeat less than half the time over its first
# _MEMO_TRIAL values is not remembered any more.
_MEMO_MAX_CHARS = 256
_MEMO_MAX_ENTRIES = 4_096
_MEMO_TRIAL = 256


# The keywords _simple_check reads; a subschema with any other is left to jsonschema.
_SIMPLE = {"type", "pattern", "minLength", "maxLength", "minimum", "maximum", "enum", "const", "format", "anyOf"}


def _simple_check(subschema: dict):
    """A function value -> True | False | None that gives jsonschema's verdict on the plain values of a property
    (None, str, int, float, bool) under a subschema of _SIMPLE keywords (None: another value, jsonschema's to
    judge), or None where the subschema has other keywords (or an enum or const of other than strings).

    Each keyword as Draft 2020-12 defines it and jsonschema applies it: pattern
    is re.search, lengths count code points, minimum and maximum apply to
    numbers and the length keywords to strings only, format is the same format
    checker's verdict. A property's jsonschema validator walks its keywords for
    every value; this is one compiled check.
    """
    if not isinstance(subschema, dict) or set(subschema) - _SIMPLE - _ANNOTATIONS:
        return None
    if "anyOf" in subschema:
        if set(subschema) - _ANNOTATIONS != {"anyOf"}:
            return None
        branches = [_simple_check(branch) for branch in subschema["anyOf"]]
        if not branches or None in branches:
            return None

        def any_of(value):
            verdicts = [branch(value) for branch in branches]
            return True if True in verdicts else None if None in verdicts else False

        return any_of
    types = subschema.get("type", ["string", "integer", "null"])  # (no type: an enum or const, of strings)
    types = {types} if isinstance(types, str) else set(types)
    if types - {"string", "integer", "number", "boolean", "null"}:
        return None
    pattern = re.compile(subschema["pattern"]) if "pattern" in subschema else None
    min_length, max_length = subschema.get("minLength", 0), subschema.get("maxLength")
    minimum, maximum = subschema.get("minimum"), subschema.get("maximum")
    fmt = subschema.get("format")
    conforms = Draft202012Validator.FORMAT_CHECKER.conforms
    enum = [subschema["const"]] if "const" in subschema else subschema.get("enum")
    if enum is not None and ("const" in subschema and "enum" in subschema or not all(type(i) is str for i in enum)):
        return None
    if "type" not in subschema and enum is None:
        return None

    def check(value):
        kind = type(value)
        if kind is str:
            return "string" in types and (enum is None or value in enum) and (
                len(value) >= min_length and (max_length is None or len(value) <= max_length)
                and (pattern is None or pattern.search(value) is not None)
                and (fmt is None or conforms(value, fmt)))
        if enum is not None:
            return None
        if value is None:
            return "null" in types
        if kind is float and ("number" not in types or value != value):
            return None  # 3.0 is an integer to jsonschema; NaN compares as jsonschema's own code decides
        if kind is int or kind is float:  # (a bool is neither: its type is bool)
            return ("number" in types or "integer" in types) and (
                minimum is None or value >= minimum) and (maximum is None or value <= maximum) and (
                fmt is None or conforms(value, fmt))
        if kind is bool:
            return "boolean" in types
        return None

    return check


class _Property:
    """One property's subschema, and the verdicts it gave on short values, while they repeat."""

    def __init__(self, subschema: dict):
        self.checker = Draft202012Validator(subschema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        self.simple = _simple_check(subschema)
        self.verdicts: dict[tuple, bool] | None = {}
        self.lookups = self.hits = 0

    def is_valid(self, value) -> bool:
        if self.simple is not None:
            verdict = self.simple(value)
            if verdict is not None:
                return verdict
        verdicts = self.verdicts
        kind = type(value)
        if verdicts is None or not (value is None or kind is bool or kind is int
                                    or (kind is str and len(value) <= _MEMO_MAX_CHARS)):
            return self.checker.is_valid(value)
        memo = (kind, value)  # the type too: 1 == True, but not for a schema
        ok = verdicts.get(memo)
        self.lookups += 1
        if ok is not None:
            self.hits += 1
            return ok
        ok = self.checker.is_valid(value)
        if self.lookups >= _MEMO_TRIAL and self.hits * 2 < self.lookups:
            self.verdicts = None  # values that rarely repeat (ids, paths, times): remembering them only costs memory
        elif len(verdicts) < _MEMO_MAX_ENTRIES:
            verdicts[memo] = ok
        return ok


class _SplitSchema:
    """The verdict of a whole-record validator, from checks of one property at a time.

    A record schema made only of properties, required keys, additionalProperties
    and allOf (of such schemas, or of if/then/else over such schemas) is the
    conjunction of its parts, and each property's value can be validated against
    its own subschema (by jsonschema, with the same format checker). A verdict on
    a short value is remembered: most values of a batch's records repeat (run_id,
    collection, media_type, extractor, outcome, nulls), so validating a document
    costs a tenth of whole-record validation. Used only for the verdict; the
    errors of an invalid record come from the whole-record validator.
    """

    def __init__(self, root: dict):
        self.required = frozenset(root.get("required", ()))
        properties = root.get("properties", {})
        self.allowed = frozenset(properties) if root.get("additionalProperties") is False else None
        self.properties = {name: _Property(sub) for name, sub in properties.items()}
        self.conditions = [tuple(_SplitSchema(item[word]) if word in item else None for word in ("if", "then", "else"))
                           if "if" in item else (None, _SplitSchema(item), None) for item in root.get("allOf", ())]

    @classmethod
    def of(cls, root: dict) -> "_SplitSchema | None":
        """The split form of a schema, or None where it has other keywords (or references left after inlining)."""
        if root.get("type") != "object" or not cls._splittable(root, top=True) or "$ref" in json.dumps(root):
            return None
        return cls(root)

    @classmethod
    def _splittable(cls, node, top: bool = False) -> bool:
        if not isinstance(node, dict) or set(node) - (_SPLITTABLE if top else _SPLITTABLE - {"$schema", "$id"}):
            return False
        if node.get("type", "object") != "object" or not isinstance(node.get("additionalProperties", True), bool):
            return False
        for item in node.get("allOf", ()):
            if not isinstance(item, dict):
                return False
            if "if" in item:
                if set(item) - {"if", "then", "else"} or not all(cls._splittable(item[w]) for w in item):
                    return False
            elif not cls._splittable(item):
                return False
        return True

    def is_valid(self, record) -> bool:
        if not isinstance(record, dict):  # (the parts of allOf are only ever given the record itself)
            return False
        keys = record.keys()
        if not self.required <= keys or (self.allowed is not None and not keys <= self.allowed):
            return False
        properties = self.properties
        for name, value in record.items():
            checker = properties.get(name)
            if checker is not None and not checker.is_valid(value):
                return False
        for condition, then, otherwise in self.conditions:
            branch = then if condition is None or condition.is_valid(record) else otherwise
            if branch is not None and not branch.is_valid(record):
                return False
        return True


@cache
def _split(kind: str) -> _SplitSchema | None:
    return _SplitSchema.of(_inline_common(schema(kind)))


def is_valid(kind: str, record: dict) -> bool:
    """Whether record is valid against its kind's schema (the same verdict as validator(kind).is_valid)."""
    split = _split(kind)
    return split.is_valid(record) if split is not None else validator(kind).is_valid(record)


@dataclass(frozen=True)
class Problem:
    path: str  # JSON path of the failing value, e.g. "$.date"
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def problems(kind: str, record: dict) -> list[Problem]:
    """Every way record fails its schema, most relevant first (empty when valid)."""
    if is_valid(kind, record):  # the common case, and the fast path
        return []
    checker = validator(kind)
    errors = list(checker.iter_errors(record))
    if not errors:
        return []
    first = best_match(errors)
    ordered = [first] + [e for e in errors if e is not first]
    return [Problem(e.json_path, _message(e)) for e in ordered]


def _message(error) -> str:
    # Keep the long text field out of messages: name the rule, not the value.
    if (error.validator in ("minLength", "pattern", "maxLength") and isinstance(error.instance, str)
            and len(error.instance) > 80):
        return f"string of {len(error.instance)} characters fails {error.validator} {error.validator_value!r}"
    return error.message


def describe_problems(found: list[Problem]) -> str:
    """One line for a quarantine detail: the best problem, and how many more."""
    head = str(found[0])
    return head if len(found) == 1 else f"{head} (and {len(found) - 1} more)"
