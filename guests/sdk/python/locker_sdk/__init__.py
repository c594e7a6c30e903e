"""Locker's SDK for services written in Python (componentize-py).

A service is one module, ``app.py``, built into a component by
``locker build``. It defines a class for each thing it handles, named as
componentize-py expects, on the SDK's base classes:

- HTTP: ``class IncomingHandler(locker_sdk.IncomingHandler)`` with
  ``on_request(self, request) -> Response``;
- events: ``class EventHandler(locker_sdk.EventHandler)`` with
  ``on_event(self, event)``;
- jobs: ``class JobHandler(locker_sdk.JobHandler)`` with ``on_job(self, job)``.

A handler that raises ends as the handler's error (the host retries it, then
keeps it as a dead letter), never as a trap; an error the host returns is a
``LockerError`` whose ``code`` names its kind. The service's folder is the
current directory: ``open("contacts/1.json", "w")`` keeps a file there.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass, field
from typing import Any, Optional

from componentize_py_types import Err, Ok

from .bindings.imports import discovery as _discovery
from .bindings.imports import events as _events
from .bindings.imports import outgoing_handler as _outgoing
from .bindings.imports import scheduler as _scheduler
from .bindings.imports import store as _store
# `types` is both wasi:http's and wasi:filesystem's: componentize-py names them apart.
from .bindings.imports import wasi_http_types as _http
from .bindings.imports.streams import StreamError_Closed

__all__ = [
    "LockerError",
    "Failed",
    "Request",
    "Response",
    "Event",
    "Job",
    "IncomingHandler",
    "EventHandler",
    "JobHandler",
    "publish",
    "publish_json",
    "config",
    "call",
    "fetch",
    "self_name",
    "find",
    "create_job",
    "cancel_job",
    "jobs",
]


class LockerError(Exception):
    """An error the host returned. ``code`` is its kind (``undeclared-topic``,
    ``invalid-json``, ``name-taken``, ...), ``detail`` what the host said and
    ``variant`` the binding's own value."""

    def __init__(self, variant: Any):
        self.variant = variant
        name = type(variant).__name__
        self.code = _kebab(name.split("_", 1)[1] if "_" in name else name)
        self.detail = getattr(variant, "value", None)
        super().__init__(self.code if self.detail is None else f"{self.code}: {self.detail}")


class Failed(Exception):
    """Raised in a handler: fails it with just this message, no traceback
    (for a reason the message says all of, such as a malformed payload).
    The host retries, then keeps a dead letter, as for any failure."""


def _kebab(name: str) -> str:
    return "".join("-" + c.lower() if c.isupper() else c for c in name).lstrip("-")


def _host(call, *args):
    """Calls a host import, raising a LockerError for its error."""
    try:
        return call(*args)
    except Err as e:
        raise LockerError(e.value) from None


def _failure(e: BaseException) -> str:
    return "".join(traceback.format_exception(type(e), e, e.__traceback__)).strip()


# ---- events ---------------------------------------------------------------


def publish(topic: str, payload: str) -> str:
    """Publishes JSON text on ``topic`` (one the manifest ``publishes``);
    returns the event's id once it is stored."""
    return _host(_events.publish, topic, payload)


def publish_json(topic: str, value: Any) -> str:
    """Publishes ``value`` as JSON."""
    return publish(topic, json.dumps(value))


@dataclass
class Event:
    id: str
    topic: str
    source: str
    time: str
    payload: str
    data: Any


class EventHandler:
    """Base of an ``EventHandler``: override ``on_event``."""

    def on_event(self, event: Event) -> None:
        raise NotImplementedError("EventHandler.on_event")

    def handle(self, event) -> None:
        try:
            self.on_event(
                Event(event.id, event.topic, event.source, event.time, event.payload, json.loads(event.payload))
            )
        except Err:
            raise
        except Failed as e:
            raise Err(str(e)) from None
        except BaseException as e:
            raise Err(_failure(e)) from None


# ---- jobs -----------------------------------------------------------------


@dataclass
class Job:
    name: str
    scheduled: str
    actual: str
    attempt: int
    payload: str
    data: Any


class JobHandler:
    """Base of a ``JobHandler``: override ``on_job``."""

    def on_job(self, job: Job) -> None:
        raise NotImplementedError("JobHandler.on_job")

    def run(self, job) -> None:
        try:
            self.on_job(Job(job.name, job.scheduled, job.actual, job.attempt, job.payload, json.loads(job.payload)))
        except Err:
            raise
        except Failed as e:
            raise Err(str(e)) from None
        except BaseException as e:
            raise Err(_failure(e)) from None


def create_job(name: str, *, cron: Optional[str] = None, at: Optional[str] = None, payload: Any = None) -> None:
    """Creates a job at run time: ``cron="0 */15 * * * *"`` or ``at="2027-01-01T00:00:00Z"``."""
    if (cron is None) == (at is None):
        raise ValueError("give exactly one of cron= and at=")
    when = _scheduler.Schedule_Cron(cron) if cron is not None else _scheduler.Schedule_At(at)
    _host(_scheduler.create, name, when, json.dumps(payload))


def cancel_job(name: str) -> None:
    _host(_scheduler.cancel, name)


def jobs() -> list:
    return _scheduler.jobs()


# ---- settings and discovery -----------------------------------------------


class _Config:
    """The service's settings and secrets (``[config.KEY]`` in the manifest)."""

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        value = _host(_store.get, key)
        return default if value is None else value

    def all(self) -> dict:
        return dict(_host(_store.get_all))


config = _Config()


def self_name() -> str:
    return _discovery.self_name()


def find(pattern: str) -> list:
    """Services whose provided types match ``pattern`` (``contact/*``)."""
    return _discovery.find(pattern)


# ---- HTTP -----------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict
    body: bytes

    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Response:
    status: int = 200
    body: Any = b""
    headers: dict = field(default_factory=dict)

    @staticmethod
    def json(value: Any, status: int = 200) -> "Response":
        return Response(status, json.dumps(value), {"content-type": "application/json"})


class IncomingHandler:
    """Base of an ``IncomingHandler``: override ``on_request``. An exception
    answers 500 with its message (and its traceback goes to the log)."""

    def on_request(self, request: Request) -> Response:
        raise NotImplementedError("IncomingHandler.on_request")

    def handle(self, request, response_out) -> None:
        try:
            path_with_query = request.path_with_query() or "/"
            path, _, query = path_with_query.partition("?")
            headers = {name: value.decode(errors="replace") for name, value in request.headers().entries()}
            method = _method_name(request.method())
            response = self.on_request(Request(method, path, query, headers, _read_all(request.consume())))
        except BaseException as e:
            print(_failure(e))
            response = Response(500, f"the service failed: {e}\n")
        _send(response_out, response)


def _method_name(method) -> str:
    if isinstance(method, _http.Method_Other):
        return method.value
    return type(method).__name__.split("_", 1)[1].upper()


def _read_all(body) -> bytes:
    stream = body.stream()
    chunks = []
    try:
        while True:
            chunks.append(stream.blocking_read(64 * 1024))
    except Err as e:
        if not isinstance(e.value, StreamError_Closed):
            raise
    finally:
        stream.__exit__(None, None, None)
    return b"".join(chunks)


def _send(response_out, response: Response) -> None:
    body = response.body if isinstance(response.body, bytes) else str(response.body).encode()
    headers = {"content-type": "text/plain; charset=utf-8", **response.headers}
    fields = _http.Fields.from_list([(k.lower(), str(v).encode()) for k, v in headers.items()])
    outgoing = _http.OutgoingResponse(fields)
    outgoing.set_status_code(response.status)
    outgoing_body = outgoing.body()
    _http.ResponseOutparam.set(response_out, Ok(outgoing))
    stream = outgoing_body.write()
    for start in range(0, len(body), 4096):
        stream.blocking_write_and_flush(body[start : start + 4096])
    stream.__exit__(None, None, None)
    _http.OutgoingBody.finish(outgoing_body, None)


def fetch(url: str, method: str = "GET", body: bytes = b"", headers: Optional[dict] = None) -> Response:
    """An outgoing request (to a host the manifest's ``allow_hosts`` names),
    read whole. Raises LockerError when the host refuses it."""
    scheme, _, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    fields = _http.Fields.from_list([(k.lower(), str(v).encode()) for k, v in (headers or {}).items()])
    request = _http.OutgoingRequest(fields)
    request.set_method(getattr(_http, f"Method_{method.capitalize()}")())
    request.set_scheme(_http.Scheme_Https() if scheme == "https" else _http.Scheme_Http())
    request.set_authority(authority)
    request.set_path_with_query(slash + path if slash else "/")
    outgoing_body = request.body()
    if body:
        stream = outgoing_body.write()
        for start in range(0, len(body), 4096):
            stream.blocking_write_and_flush(body[start : start + 4096])
        stream.__exit__(None, None, None)
    _http.OutgoingBody.finish(outgoing_body, None)
    future = _host(_outgoing.handle, request, None)
    while (answer := future.get()) is None:
        future.subscribe().block()
    # option<result<result<incoming-response, error-code>>>: the outer
    # result fails only when the response is taken twice.
    if isinstance(answer, Err) or isinstance(answer.value, Err):
        raise LockerError(answer.value if isinstance(answer, Err) else answer.value.value)
    incoming = answer.value.value
    response_headers = {name: value.decode(errors="replace") for name, value in incoming.headers().entries()}
    return Response(incoming.status(), _read_all(incoming.consume()), response_headers)


def call(service: str, path: str = "/", **kwargs) -> Response:
    """A request to another service of this locker (the manifest's ``calls``
    must name it): ``http://SERVICE.locker/PATH``."""
    return fetch(f"http://{service}.locker/{path.lstrip('/')}", **kwargs)
