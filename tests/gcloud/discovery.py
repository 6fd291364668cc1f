"""Google's published Compute Engine v1 discovery document, used as the emulator's contract.

The document ships as static JSON with the google-api-python-client test dependency
(``googleapiclient/discovery_cache/documents/compute.v1.json``); it is loaded, never
retyped. From it the emulator gets:

* routing: an HTTP method and path -> the API method id (``compute.instances.insert``) and
  its path parameters, each checked against the parameter's published ``pattern``;
* query parameters: only those the method (or the API globally) declares are accepted;
* request bodies: validated recursively against the method's request schema, field names
  and JSON types (int64 as a decimal string or a number, enums by value), as the real
  API answers "Invalid JSON payload received. Unknown name ..." for a field it lacks.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import googleapiclient

# Sent by gcloud's own generated client and accepted by the live API, but missing from the
# discovery document revision this package ships (list calls' partial-success opt-in).
UNDOCUMENTED_QUERY_PARAMETERS = {"returnPartialSuccess"}


class DiscoveryError(Exception):
    """A request the published API would refuse; ``code`` is the HTTP status to answer."""

    def __init__(self, code: int, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason


@dataclass(frozen=True)
class Route:
    """One API method: how its path looks and what it declares."""

    method_id: str
    http_method: str
    template: str
    pattern: re.Pattern[str]
    names: tuple[str, ...]
    method: dict[str, Any]


@dataclass(frozen=True)
class Call:
    """A routed request: the method id, its path parameters and its request schema."""

    method_id: str
    params: dict[str, str]
    request_schema: str | None


def document_path() -> Path:
    """Where google-api-python-client keeps its copy of the Compute Engine v1 document."""
    root = Path(googleapiclient.__file__).parent
    return root / "discovery_cache" / "documents" / "compute.v1.json"


def _template_regex(template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    names: list[str] = []
    parts = []
    for piece in re.split(r"(\{\+?[A-Za-z_]+\})", template):
        match = re.fullmatch(r"\{\+?([A-Za-z_]+)\}", piece)
        if match:
            names.append(match[1])
            parts.append("([^/]+)")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts)), tuple(names)


class Discovery:
    """Routes and validates requests by the discovery document."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.schemas: dict[str, dict[str, Any]] = document["schemas"]
        self.global_parameters: dict[str, Any] = document["parameters"]
        self.routes: list[Route] = []
        self._collect(document.get("resources", {}))
        # A literal segment beats a parameter: "images/family/{family}" before "images/{image}".
        self.routes.sort(key=lambda route: -len(re.sub(r"\{[^}]+\}", "", route.template)))

    def _collect(self, resources: dict[str, Any]) -> None:
        for resource in resources.values():
            for method in resource.get("methods", {}).values():
                template = method.get("flatPath", method["path"])
                pattern, names = _template_regex(template)
                self.routes.append(
                    Route(method["id"], method["httpMethod"], template, pattern, names, method)
                )
            self._collect(resource.get("resources", {}))

    def route(self, http_method: str, path: str, query: dict[str, list[str]]) -> Call:
        """The method a request calls; raise DiscoveryError as the API would."""
        for route in self.routes:
            if route.http_method != http_method:
                continue
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            params = dict(zip(route.names, match.groups(), strict=True))
            self._check_parameters(route, params, query)
            request = route.method.get("request", {}).get("$ref")
            return Call(route.method_id, params, request)
        raise DiscoveryError(404, f"the Compute Engine API has no {http_method} {path}", "notFound")

    def _check_parameters(
        self, route: Route, params: dict[str, str], query: dict[str, list[str]]
    ) -> None:
        declared = route.method.get("parameters", {})
        for name, value in params.items():
            pattern = declared.get(name, {}).get("pattern")
            if pattern and not re.fullmatch(pattern, value):
                raise DiscoveryError(
                    400,
                    f"Invalid value for field '{name}': '{value}'. "
                    f"Must be a match of regex '{pattern}'",
                )
        for name in query:
            if name in UNDOCUMENTED_QUERY_PARAMETERS:
                continue
            spec = declared.get(name) or self.global_parameters.get(name)
            if spec is None or spec.get("location") != "query":
                raise DiscoveryError(
                    400,
                    f'Invalid JSON payload received. Unknown name "{name}": Cannot bind '
                    f"query parameter. Field '{name}' could not be found in request message.",
                )

    def validate(self, schema: str | None, body: Any) -> None:
        """Check a request body against the method's request schema (None: no body)."""
        if schema is None:
            if body not in (None, {}):
                raise DiscoveryError(
                    400, "Invalid JSON payload received: this method takes no body"
                )
            return
        if not isinstance(body, dict):
            raise DiscoveryError(400, "Invalid JSON payload received: expected an object")
        self._value({"$ref": schema}, body, "resource")

    def _value(self, spec: dict[str, Any], value: Any, where: str) -> None:
        if "$ref" in spec:
            spec = self.schemas[spec["$ref"]]
        kind = spec.get("type")
        if kind == "object":
            self._object(spec, value, where)
        elif kind == "array":
            if not isinstance(value, list):
                raise _type_error(where, "a list", value)
            for index, item in enumerate(value):
                self._value(spec["items"], item, f"{where}[{index}]")
        elif kind == "string":
            if spec.get("format") in {"int64", "uint64"} and isinstance(value, int):
                return  # the JSON mapping accepts 64-bit integers as numbers or strings
            if not isinstance(value, str):
                raise _type_error(where, "a string", value)
            if "enum" in spec and value not in spec["enum"]:
                raise DiscoveryError(
                    400, f"Invalid value at '{where}': \"{value}\" is not one of {spec['enum']}"
                )
            if spec.get("format") in {"int64", "uint64"} and not re.fullmatch(r"-?[0-9]+", value):
                raise _type_error(where, "an integer", value)
        elif kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                raise _type_error(where, "an integer", value)
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _type_error(where, "a number", value)
        elif kind == "boolean":
            if not isinstance(value, bool):
                raise _type_error(where, "a boolean", value)
        elif kind == "any" or kind is None:
            return

    def _object(self, spec: dict[str, Any], value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _type_error(where, "an object", value)
        properties = spec.get("properties")
        additional = spec.get("additionalProperties")
        for key, item in value.items():
            if properties is not None and key in properties:
                self._value(properties[key], item, f"{where}.{key}")
            elif additional is not None:
                self._value(additional, item, f"{where}.{key}")
            else:
                raise DiscoveryError(
                    400,
                    f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': "
                    "Cannot find field.",
                )


def _type_error(where: str, expected: str, value: Any) -> DiscoveryError:
    return DiscoveryError(
        400, f"Invalid value at '{where}' ({expected} expected), {json.dumps(value)[:80]}"
    )


@functools.cache
def compute_v1() -> Discovery:
    """The Compute Engine v1 document, parsed once per process (it is 5 MB)."""
    return Discovery(json.loads(document_path().read_text(encoding="utf-8")))
