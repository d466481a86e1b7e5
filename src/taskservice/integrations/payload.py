"""The one encoding every integration sends: a TaskEvent as protobuf's canonical JSON."""

from __future__ import annotations

from google.protobuf import json_format

from taskservice.api import task_service_pb2 as pb


def event_json(event: pb.TaskEvent | bytes) -> bytes:
    """The TaskEvent (or its binary encoding) as canonical JSON: lowerCamel names, enums by name."""
    message = pb.TaskEvent.FromString(event) if isinstance(event, bytes) else event
    return json_format.MessageToJson(message, indent=None, ensure_ascii=False).encode()


def event_type_name(event_type: int) -> str:
    """`EVENT_TYPE_CREATED` and so on, for a broker header or field beside the JSON."""
    return pb.EventType.Name(event_type)  # type: ignore[arg-type]
