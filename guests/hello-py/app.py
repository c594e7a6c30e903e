"""A Locker app in Python: a standard `wasi:http` proxy component built with
componentize-py.

The service has its own origin, so it sees its paths from `/`; the host says
who is calling in `x-locker-caller`. The service's working directory is its current
directory, so plain relative paths such as `visits.txt` persist.
"""

from componentize_py_types import Ok, Err
from wit_world import exports
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Post,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = (request.path_with_query() or "/").split("?")[0]
        if isinstance(request.method(), Method_Post) and path == "/echo":
            respond(response_out, 200, read_body(request))
        elif path == "/visits":
            respond(response_out, 200, str(count_visit()).encode())
        else:
            caller = b"".join(request.headers().get("x-locker-caller")).decode()
            respond(response_out, 200, f"hello from python at {path}, to {caller}\n".encode())


def count_visit() -> int:
    """Counts visits in a file of the service's own working directory."""
    try:
        with open("visits.txt") as f:
            visits = int(f.read() or "0")
    except FileNotFoundError:
        visits = 0
    visits += 1
    with open("visits.txt", "w") as f:
        f.write(str(visits))
    return visits


def read_body(request: IncomingRequest) -> bytes:
    body = request.consume()
    stream = body.stream()
    chunks = []
    while True:
        try:
            chunks.append(stream.blocking_read(64 * 1024))
        except Err as e:
            if isinstance(e.value, StreamError_Closed):
                break
            raise
    stream.__exit__(None, None, None)
    return b"".join(chunks)


def respond(response_out: ResponseOutparam, status: int, body: bytes) -> None:
    headers = Fields.from_list([("content-type", b"text/plain; charset=utf-8")])
    response = OutgoingResponse(headers)
    response.set_status_code(status)
    outgoing = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    stream = outgoing.write()
    for start in range(0, len(body), 4096):
        stream.blocking_write_and_flush(body[start : start + 4096])
    stream.__exit__(None, None, None)
    OutgoingBody.finish(outgoing, None)
