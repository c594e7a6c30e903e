"""contacts: a Locker collection that merges the same person seen by several
connectors, and searches them (the contract: guests/CONTACTS.md).

Connectors announce their cards with ``contact/changed`` (a ``contact/card``)
and ``contact/deleted`` (``{uid}``); ``(event source, uid)`` names a card.
Cards sharing an email (case-insensitive) or a phone number (its digits, at
least seven, compared on the last nine) are one person, transitively. A
repeated event changes nothing; a change or a delete that leaves a person's
cards sharing nothing any more splits it.

- ``GET /search?q=TEXT&limit=N``: ``{"total", "people": [summary...]}``, the
  people whose name, emails or org contain TEXT (case-insensitive), or whose
  phones do when TEXT is a number; sorted by name; everyone without ``q``;
  ``limit`` 50 unless given. A summary is ``{id, name, emails, phones, org,
  sources}``.
- ``GET /people/ID``: the person, with ``cards`` (``[{source, uid}]``) and
  ``fields``: for each of name, emails, phones, org, title, note, birthday,
  ``[{value, from: [sources]}]``.
- ``GET /sources``: cards per source, ``{"carddav": 3, ...}``.
- ``POST /rebuild``: forgets everything and reads ``GET /contacts`` of every
  connector (``find("contact/*")``); ``{"people", "sources", "errors"}``. A
  connector that fails keeps the cards it had. It rebuilds by itself when
  its data is missing, at the first request or event.
- ``GET /``: what it holds, in numbers.

Unknown paths answer 404, known ones with another method 405, both as
``{"error": ...}``. Its files are described in storage.py.
"""

import json
import traceback
from datetime import datetime, timezone
from urllib.parse import parse_qs, unquote

import locker_sdk
import people
import storage
from locker_sdk import Request, Response, call, find
from search import People

DEFAULT_LIMIT = 50
TEXT_FIELDS = ("name", "given", "family", "org", "title", "note", "birthday", "updated")
LIST_FIELDS = ("emails", "phones")

# Kept between the requests a reused instance serves.
everyone = People()


class BadCard(ValueError):
    """A card that is not a ``contact/card``."""


class BadRequest(ValueError):
    pass


# ---- events ----------------------------------------------------------------


class EventHandler(locker_sdk.EventHandler):
    def on_event(self, event: locker_sdk.Event) -> None:
        try:
            if event.topic == "contact/changed":
                card = checked_card(event.data)
                with storage.writing("event"):
                    people.change_card(ready_data(), event.source, card)
            elif event.topic == "contact/deleted":
                uid = checked_uid(event.data)
                with storage.writing("event"):
                    people.delete_card(ready_data(), event.source, uid)
            # Other contact/* topics carry nothing this collection keeps.
        except BadCard as e:
            # Its own words, not a traceback: retrying will not mend it.
            raise locker_sdk.Failed(f"{event.topic} event {event.id} from {event.source}: {e}") from None


def checked_card(value):
    """``value`` if it is a contact/card (uid and name, fields of the right
    types), else BadCard naming what is wrong."""
    uid = checked_uid(value)
    if not isinstance(value.get("name"), str):
        raise BadCard(f"card {uid!r} has no name (a contact/card needs a uid and a name)")
    for field in TEXT_FIELDS:
        if field in value and not isinstance(value[field], str):
            raise BadCard(f"card {uid!r}: {field} must be a string")
    for field in LIST_FIELDS:
        if field in value and not (
            isinstance(value[field], list) and all(isinstance(v, str) for v in value[field])
        ):
            raise BadCard(f"card {uid!r}: {field} must be a list of strings")
    return value


def checked_uid(value):
    if not isinstance(value, dict):
        raise BadCard(f"the payload must be a JSON object, not {json.dumps(value)[:80]}")
    uid = value.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadCard(f"the payload has no uid: {json.dumps(value)[:80]}")
    return uid


# ---- keeping the data whole ------------------------------------------------


def ready_data():
    """The data, rebuilt first if it is missing, or grouped again from its own
    cards if an update was cut short. The caller holds ``storage.writing()``."""
    data = storage.Data()
    if data.state() is None:
        rebuild()
    elif data.is_dirty():
        regroup_kept_cards(data)
    return data


def data_for_reading():
    """The data, made whole first if need be (taking the writer's lock only then)."""
    data = storage.Data()
    if data.state() is None or data.is_dirty():
        with storage.writing():
            ready_data()
    return data


def rebuild():
    """Forgets everything and reads every connector again. The caller holds
    ``storage.writing()``."""
    old = storage.Data()
    held_cards, errors = [], {}
    for connector in sorted(s.name for s in find("contact/*") if s.kind == "connector"):
        try:
            cards, skipped = cards_of_connector(connector)
            if skipped:
                errors[connector] = skipped
        except Exception as e:  # noqa: BLE001 - one connector failing must not stop the rest
            cards = [held["card"] for held in old.cards_of(connector)]
            errors[connector] = f"{e} (kept its {len(cards)} cards from before)"
        held_cards += [{"source": connector, "uid": card["uid"], "card": card, "person": None} for card in cards]
    sources = count_sources(held_cards)
    state = {"rebuilt": now(), "sources": sources, "errors": errors}
    count = replace_data(held_cards, state)
    print(f"rebuilt: {count} people from {sources}" + (f"; errors: {errors}" if errors else ""))
    return {"people": count, "sources": sources, "errors": errors}


def cards_of_connector(name):
    """A connector's cards (``GET /contacts``), and what was wrong with the
    ones left out, if any."""
    answer = call(name, "/contacts")
    if answer.status != 200:
        body = answer.body.decode(errors="replace")[:200]
        raise RuntimeError(f"GET /contacts answered {answer.status}: {body}")
    try:
        listed = json.loads(answer.body)
    except ValueError as e:
        raise RuntimeError(f"GET /contacts answered no JSON: {e}") from None
    if not isinstance(listed, list):
        raise RuntimeError("GET /contacts answered no JSON array")
    cards, problems = {}, []
    for value in listed:
        try:
            card = checked_card(value)
            cards[card["uid"]] = card
        except BadCard as e:
            problems.append(str(e))
    skipped = f"left out {len(problems)} of {len(listed)} cards; the first: {problems[0]}" if problems else ""
    return list(cards.values()), skipped


def regroup_kept_cards(data):
    """Groups the cards it keeps into people again, after an update was cut
    short (a crash, a deadline) between its files."""
    held_cards = list(data.all_cards())
    state = {**(data.state() or {}), "regrouped": now(), "sources": count_sources(held_cards)}
    count = replace_data(held_cards, state)
    print(f"an update was cut short: regrouped {len(held_cards)} cards into {count} people")


def replace_data(held_cards, state):
    """Puts a data folder made from ``held_cards`` in place; returns how many
    people they make. It writes no journal: readers start again from the
    snapshot written here."""
    generation = storage.next_generation()
    fresh = storage.fresh_data()
    rebuilt_people = people.write_all(fresh, held_cards, state)
    storage.swap_in(fresh)
    storage.write_snapshot(generation, rebuilt_people)
    storage.set_generation(generation)
    return len(rebuilt_people)


def count_sources(held_cards):
    counts = {}
    for held in held_cards:
        counts[held["source"]] = counts.get(held["source"], 0) + 1
    return dict(sorted(counts.items()))


def now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# ---- HTTP ------------------------------------------------------------------


class IncomingHandler(locker_sdk.IncomingHandler):
    def on_request(self, request: Request) -> Response:
        try:
            return route(request)
        except BadRequest as e:
            return error(400, str(e))
        except storage.Busy as e:
            return error(503, str(e))
        except Exception as e:  # noqa: BLE001 - the caller gets JSON, the log the traceback
            traceback.print_exc()
            return error(500, f"{type(e).__name__}: {e}")


def route(request):
    if request.path.startswith("/people/"):
        method, handler = "GET", show_person
    elif request.path in ROUTES:
        method, handler = ROUTES[request.path]
    else:
        return error(404, f"no such path: {request.path}")
    if request.method != method:
        answer = error(405, f"{request.path} takes {method}, not {request.method}")
        answer.headers["allow"] = method
        return answer
    return handler(request)


def about(request):
    data = data_for_reading()
    everyone.refresh(data)
    sources = everyone.cards_per_source()
    state = data.state() or {}
    return Response.json({
        "service": "contacts",
        "people": len(everyone.by_id),
        "cards": sum(sources.values()),
        "sources": sources,
        "rebuilt": state.get("rebuilt"),
        "generation": everyone.generation,
        "routes": ["GET /search?q=&limit=", "GET /people/ID", "GET /sources", "POST /rebuild"],
    })


def search(request):
    query = parse_qs(request.query, keep_blank_values=True)
    text = query.get("q", [""])[0]
    limit = query.get("limit", [str(DEFAULT_LIMIT)])[0]
    if not limit.isdigit():
        raise BadRequest(f"limit must be a whole number, not {limit!r}")
    everyone.refresh(data_for_reading())
    total, found = everyone.search(text, int(limit))
    return Response.json({"total": total, "people": found})


def show_person(request):
    person_id = unquote(request.path[len("/people/"):])
    everyone.refresh(data_for_reading())
    person = everyone.by_id.get(person_id)
    if person is None:
        return error(404, f"no person {person_id!r}")
    return Response.json(person)


def sources(request):
    everyone.refresh(data_for_reading())
    return Response.json(everyone.cards_per_source())


def rebuild_now(request):
    with storage.writing():
        answer = rebuild()
    return Response.json(answer)


ROUTES = {
    "/": ("GET", about),
    "/search": ("GET", search),
    "/sources": ("GET", sources),
    "/rebuild": ("POST", rebuild_now),
}


def error(status, message):
    return Response.json({"error": message}, status)
