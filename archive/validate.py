"""JSON Schema validation (Draft 2020-12, with format checks) of records against schemas/."""

from __future__ import annotations

import json
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
    # on every record doubled the cost of validating one (measured ~600 -> ~250 us).
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


class _Property:
    """One property's subschema, and the verdicts it gave on short values, while they repeat."""

    def __init__(self, subschema: dict):
        self.checker = Draft202012Validator(subschema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        self.verdicts: dict[tuple, bool] | None = {}
        self.lookups = self.hits = 0

    def is_valid(self, value) -> bool:
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
    if error.validator in ("minLength", "pattern", "maxLength") and isinstance(error.instance, str) and len(error.instance) > 80:
        return f"string of {len(error.instance)} characters fails {error.validator} {error.validator_value!r}"
    return error.message


def describe_problems(found: list[Problem]) -> str:
    """One line for a quarantine detail: the best problem, and how many more."""
    head = str(found[0])
    return head if len(found) == 1 else f"{head} (and {len(found) - 1} more)"
