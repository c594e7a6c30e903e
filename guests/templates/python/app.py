"""{{ name }}: a Locker {{ kind }}.

- ``GET /`` greets with its ``greeting`` setting;
- ``GET /call/SERVICE/PATH`` asks another service (its manifest's ``calls``
  must name it);
- ``POST /publish/TOPIC`` publishes ``{}`` on TOPIC and says what the host
  answered (an undeclared topic is refused with a LockerError).
{%- if events %}
- each ``{{ name }}/ping`` event is kept as ``seen/ID.json`` in its folder
  (``GET /seen`` lists them) and answered with a ``{{ name }}/seen`` event; a
  payload ``{"fail": true}`` fails the handler, which the host retries and
  then keeps as a dead letter.
{%- endif %}
{%- if jobs %}
- the ``tick`` job publishes ``{{ name }}/ticked``.
{%- endif %}
"""

import json
import os

import locker_sdk
from locker_sdk import LockerError, Request, Response, call, config, publish_json


class IncomingHandler(locker_sdk.IncomingHandler):
    def on_request(self, request: Request) -> Response:
        if request.path == "/":
            return Response(200, f"{config.get('greeting', 'Hello')} from {{ name }}\n")
        if request.path == "/seen":
            names = sorted(os.listdir("seen")) if os.path.isdir("seen") else []
            return Response(200, "\n".join(names))
        if request.path.startswith("/call/"):
            service, _, path = request.path[len("/call/"):].partition("/")
            answer = call(service, "/" + path)
            return Response(answer.status, answer.body)
        if request.method == "POST" and request.path.startswith("/publish/"):
            try:
                event_id = publish_json(request.path[len("/publish/"):], {})
                return Response(200, f"published {event_id}\n")
            except LockerError as e:
                return Response(400, f"{e.code}\n")
        return Response(404, "no such page\n")
{%- if events %}


class EventHandler(locker_sdk.EventHandler):
    def on_event(self, event: locker_sdk.Event) -> None:
        if event.data.get("fail") is True:
            raise RuntimeError(f"event {event.id} asked to fail")
        # Its folder is its current directory: plain files, kept.
        os.makedirs("seen", exist_ok=True)
        with open(f"seen/{event.id}.json", "w") as f:
            json.dump(event.data, f)
        publish_json("{{ name }}/seen", {"id": event.id, "payload": event.data})
{%- endif %}
{%- if jobs %}


class JobHandler(locker_sdk.JobHandler):
    def on_job(self, job: locker_sdk.Job) -> None:
        publish_json("{{ name }}/ticked", {"job": job.name, "scheduled": job.scheduled})
{%- endif %}
