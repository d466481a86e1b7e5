"""The OpenAPI 3.1 document of the REST routes, generated from the `.proto`'s descriptors.

The same `google.api.http` bindings that route requests (`transport/rest.py`) become its paths, and
the message descriptors become JSON Schemas of protobuf's canonical JSON (lowerCamel names, enums by
name, 64-bit integers as strings or numbers, Timestamps as RFC 3339). Only methods this server
implements are listed, so the document describes what answers.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, ServiceDescriptor

from taskservice.transport.rest import Route, routes

_STATUS = "google.rpc.Status"
_INT32 = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_FIXED32,
}
_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_SFIXED64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_FIXED64,
}
# Well-known types have their own JSON forms.
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?s$"},
    "google.protobuf.FieldMask": {"type": "string", "description": "comma-separated field paths"},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}}},
}


def document(
    services: Sequence[ServiceDescriptor],
    implemented: Collection[str],
    *,
    title: str = "TaskService",
    version: str = "1",
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for the REST bindings of `services` whose method path (the API
    table's key, `/package.Service/Method`) is in `implemented`."""
    builder = _Builder()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes(services):
        if route.path in implemented:
            paths.setdefault(route.template, {})[route.verb.lower()] = builder.operation(route)
    builder.schemas[_STATUS] = {
        "type": "object",
        "description": "An error: a google.rpc.Code number, a message for people, and typed details.",
        "properties": {
            "code": {"type": "integer", "format": "int32"},
            "message": {"type": "string"},
            "details": {"type": "array", "items": _WELL_KNOWN["google.protobuf.Any"]},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "REST bindings of the TaskService gRPC API (google.api.http), with JSON in "
            "protobuf's canonical form. The same methods answer gRPC, gRPC-Web and Connect.",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(builder.schemas.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearer": []}],
    }


class _Builder:
    def __init__(self) -> None:
        self.schemas: dict[str, dict[str, Any]] = {}

    def operation(self, route: Route) -> dict[str, Any]:
        method = route.descriptor
        request = method.input_type
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": self.field(_field_at(request, name)),
            }
            for name in route.variables
        ]
        if route.body != "*":
            parameters += self._query(request, set(route.variables))
        elif route.verb == "PATCH" and "update_mask" in request.fields_by_name:
            mask = self._query(request, set(request.fields_by_name) - {"update_mask"})
            parameters += [{**p, "description": "Else the JSON body's keys are the mask."} for p in mask]
        parameters += self._headers(route)
        operation: dict[str, Any] = {
            "operationId": method.name,
            "summary": _words(method.name),
            "tags": [method.containing_service.name],
            "parameters": parameters,
            "responses": {
                "200": self._success(route),
                "default": {
                    "description": "An error (google.rpc.Status), with the HTTP status of its code.",
                    "content": {"application/json": {"schema": self.ref(_STATUS)}},
                },
            },
        }
        if route.body:
            body = self.message(request) if route.body == "*" else self.field(_field_at(request, route.body))
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        if route.streams:
            operation["description"] = (
                "Server-Sent Events: each event's `data` is one JSON message, its `id` the event's "
                "sequence; reconnecting with `Last-Event-ID` resumes after it. Comment lines are sent "
                "while idle. The token may be given as `access_token` (EventSource sends no headers)."
            )
        return operation

    def _success(self, route: Route) -> dict[str, Any]:
        if route.streams:
            return {
                "description": "A stream of events (text/event-stream).",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        response: dict[str, Any] = {
            "description": route.descriptor.output_type.name,
            "content": {"application/json": {"schema": self.message(route.descriptor.output_type)}},
        }
        if "version" in route.descriptor.output_type.fields_by_name:
            response["headers"] = {
                "ETag": {"description": "The resource's version, for If-Match.", "schema": {"type": "string"}}
            }
        return response

    def _query(self, request: Descriptor, skip: set[str]) -> list[dict[str, Any]]:
        parameters = []
        for field in request.fields:
            if field.name in skip or _is_map(field):
                continue
            if field.message_type is not None and field.message_type.full_name not in _WELL_KNOWN:
                continue  # nested messages are set in JSON bodies, not query strings
            parameter: dict[str, Any] = {"name": field.json_name, "in": "query", "schema": self.field(field)}
            if field.is_repeated:
                parameter["style"], parameter["explode"] = "form", True
            parameters.append(parameter)
        return parameters

    def _headers(self, route: Route) -> list[dict[str, Any]]:
        fields = route.descriptor.input_type.fields_by_name
        headers = []
        if "expected_version" in fields:
            headers.append(
                {
                    "name": "If-Match",
                    "in": "header",
                    "description": "Apply only at this version (an ETag); 412 otherwise.",
                    "schema": {"type": "string", "pattern": r'^(W/)?"?[0-9]{1,18}"?$'},
                }
            )
        if "request_id" in fields:
            headers.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "description": "A retry with the same key returns what the first request created.",
                    "schema": {"type": "string", "maxLength": 128},
                }
            )
        if route.streams and "after_sequence" in fields:
            headers.append(
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "description": "Resume after this event sequence.",
                    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                }
            )
        return headers

    def ref(self, name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{name}"}

    def message(self, descriptor: Descriptor) -> dict[str, Any]:
        name = descriptor.full_name
        if name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[name])
        short = _short(name)
        if short not in self.schemas:
            self.schemas[short] = {}  # placeholder: recursive messages refer to themselves
            properties = {field.json_name: self.field(field) for field in descriptor.fields}
            self.schemas[short] = {"type": "object", "properties": properties, "additionalProperties": False}
        return self.ref(short)

    def enum(self, descriptor: EnumDescriptor) -> dict[str, Any]:
        short = _short(descriptor.full_name)
        if short not in self.schemas:
            self.schemas[short] = {"type": "string", "enum": [value.name for value in descriptor.values]}
        return self.ref(short)

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None and _is_map(field):
            value = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.scalar(value)}
        schema = self.scalar(field)
        if field.is_repeated:
            return {"type": "array", "items": schema}
        return schema

    def scalar(self, field: FieldDescriptor) -> dict[str, Any]:
        kind = field.type
        if field.message_type is not None:
            return self.message(field.message_type)
        if field.enum_type is not None:
            return self.enum(field.enum_type)
        if kind == FieldDescriptor.TYPE_BOOL:
            return {"type": "boolean"}
        if kind == FieldDescriptor.TYPE_STRING:
            return {"type": "string"}
        if kind == FieldDescriptor.TYPE_BYTES:
            return {"type": "string", "contentEncoding": "base64"}
        if kind in _INT32:
            return {"type": "integer", "format": "int32"}
        if kind in _INT64:
            # Canonical JSON writes 64-bit integers as strings and reads either form.
            return {"type": ["string", "integer"], "format": "int64", "pattern": "^-?[0-9]+$"}
        return {"type": "number"}


def _field_at(message: Descriptor, path: str) -> FieldDescriptor:
    *parents, last = path.split(".")
    for name in parents:
        nested = message.fields_by_name[name].message_type
        if nested is None:
            raise ValueError(f"{message.full_name}.{name} is not a message field")
        message = nested
    return message.fields_by_name[last]


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _short(full_name: str) -> str:
    return full_name.removeprefix("taskservice.")


def _words(name: str) -> str:
    """`BatchCreateTasks` → `Batch create tasks`."""
    spaced = "".join(f" {c.lower()}" if c.isupper() else c for c in name).strip()
    return spaced[:1].upper() + spaced[1:]
