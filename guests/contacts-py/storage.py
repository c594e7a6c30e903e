"""The collection's files, in its folder (its current directory).

    data/state.json              {"rebuilt": time, "sources": {...}}: data is there
    data/cards/SOURCE/HASH.json  one held card: the card as received, and its person
    data/keys/HASH               {"key": "email:ada@example.org", "person": "p..."}
    data/people/ID.json          one person: its cards and merged view
    data/changes/N.json          the people generation N touched (the last 2000)
    data/dirty                   an event's update is under way (left by a crash: regroup)
    generation                   a counter bumped by every change
    snapshot.json                everyone at some generation, so a new instance need not
                                 open every person's file: a cache, rewritten rarely
    writing.lock/                held by the one writer at a time (an event or a rebuild)

Many small files, so an event rewrites only what it touches. Each write goes
to a temporary name first and is then renamed over the old file, so a reader
sees the old file or the new one, never half of one. A rebuild writes a fresh
``data.new/`` and swaps it in.
"""

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import time

DATA = "data"
GENERATION = "generation"
SNAPSHOT = "snapshot.json"
LOCK = "writing.lock"
JOURNAL_KEPT = 2000
# A lock older than the longest run (the manifest's 120 s timeout) was left
# by an instance the host killed.
LOCK_STALE_AFTER = 150
LOCK_WAIT = 100


class Busy(Exception):
    """Another writer held the lock for too long."""


def hashed(text):
    """A file name for any text (uids may hold any character)."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def source_folder(source):
    # Service names are already safe; anything else is hashed.
    return source if re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,62}", source) else "x-" + hashed(source)


def read_json(path, default=None):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def write_json(path, value, atomic=True):
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    write_text(path, text, atomic)


def write_text(path, text, atomic=True):
    # A name of its own: a reader may write the snapshot while a rebuild does.
    target = f"{path}.{random.getrandbits(32):08x}.tmp" if atomic else path
    try:
        f = open(target, "w", encoding="utf-8")
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        f = open(target, "w", encoding="utf-8")
    with f:
        f.write(text)
    if atomic:
        os.replace(target, path)


def remove(path):
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


class Data:
    """One data folder: ``data/`` in use, or ``data.new/`` while a rebuild
    fills it (then nothing reads it yet, so writes need not be atomic)."""

    def __init__(self, root=DATA, atomic=True):
        self.root = root
        self.atomic = atomic

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    # ---- cards ----

    def card_path(self, source, uid):
        return self.path("cards", source_folder(source), hashed(uid) + ".json")

    def read_card(self, source, uid):
        return read_json(self.card_path(source, uid))

    def write_card(self, held):
        write_json(self.card_path(held["source"], held["uid"]), held, self.atomic)

    def remove_card(self, source, uid):
        remove(self.card_path(source, uid))

    def all_cards(self):
        top = self.path("cards")
        for folder in sorted(os.listdir(top)) if os.path.isdir(top) else []:
            yield from self._cards_in(os.path.join(top, folder))

    def cards_of(self, source):
        return list(self._cards_in(self.path("cards", source_folder(source))))

    def _cards_in(self, folder):
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            if name.endswith(".json"):
                held = read_json(os.path.join(folder, name))
                if held is not None:
                    yield held

    # ---- keys ----

    def key_path(self, key):
        return self.path("keys", hashed(key))

    def person_with_key(self, key):
        entry = read_json(self.key_path(key))
        return entry["person"] if entry else None

    def write_key(self, key, person_id):
        write_json(self.key_path(key), {"key": key, "person": person_id}, self.atomic)

    def remove_key(self, key):
        remove(self.key_path(key))

    # ---- people ----

    def person_path(self, person_id):
        return self.path("people", person_id + ".json")

    def read_person(self, person_id):
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", person_id):
            return None
        return read_json(self.person_path(person_id))

    def write_person(self, person):
        write_json(self.person_path(person["id"]), person, self.atomic)

    def remove_person(self, person_id):
        remove(self.person_path(person_id))

    def all_people(self):
        top = self.path("people")
        for name in os.listdir(top) if os.path.isdir(top) else []:
            if name.endswith(".json"):
                person = read_json(os.path.join(top, name))
                if person is not None:
                    yield person

    # ---- state, the dirty mark, the journal ----

    def state(self):
        return read_json(self.path("state.json"))

    def write_state(self, state):
        write_json(self.path("state.json"), state, self.atomic)

    def is_dirty(self):
        return os.path.exists(self.path("dirty"))

    def mark_dirty(self, dirty):
        if dirty:
            write_text(self.path("dirty"), "", atomic=False)
        else:
            remove(self.path("dirty"))

    def journal(self, generation):
        """The people generation ``generation`` touched, or None if not kept."""
        return read_json(self.path("changes", f"{generation}.json"))

    def write_journal(self, generation, person_ids):
        write_json(self.path("changes", f"{generation}.json"), sorted(person_ids), self.atomic)
        remove(self.path("changes", f"{generation - JOURNAL_KEPT}.json"))


def generation():
    """The change counter, as text (compared, never parsed, by readers)."""
    try:
        with open(GENERATION, encoding="utf-8") as f:
            return f.read().strip()
    except FileNotFoundError:
        return "0"


def next_generation():
    current = generation()
    return int(current) + 1 if current.isdigit() else 1


def snapshot():
    """``{"generation": N, "people": [...]}``, or None."""
    return read_json(SNAPSHOT)


def write_snapshot(generation, people):
    write_json(SNAPSHOT, {"generation": generation, "people": people})


def set_generation(number):
    write_text(GENERATION, str(number))


def commit(data, person_ids):
    """Announces a change to readers: the people it touched, then a new generation."""
    following = next_generation()
    data.write_journal(following, person_ids)
    set_generation(following)


def swap_in(fresh):
    """Puts a rebuilt ``fresh`` folder in place of ``data/``, then drops the old one."""
    old = DATA + ".old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(DATA):
        os.rename(DATA, old)
    os.rename(fresh.root, DATA)
    shutil.rmtree(old, ignore_errors=True)


def fresh_data():
    """An empty ``data.new/``, for a rebuild to fill."""
    data = Data(DATA + ".new", atomic=False)
    shutil.rmtree(data.root, ignore_errors=True)
    os.makedirs(data.root)
    return data


@contextlib.contextmanager
def writing(holder="request"):
    """Holds the writer's lock: one event or rebuild changes the data at a time
    (events come one at a time, but a rebuild comes over HTTP meanwhile).

    ``holder`` says who takes it: ``"event"`` for the event handler. The host
    delivers events to this service one at a time, so an event handler that
    finds the lock held by an event handler knows that one was cut off (its
    instance killed with the host, or at its deadline) and takes the lock
    over at once; everyone else waits for it, or for a lock to go stale."""
    waited_until = time.monotonic() + LOCK_WAIT
    while True:
        try:
            os.mkdir(LOCK)
            break
        except FileExistsError:
            if lock_age() > LOCK_STALE_AFTER or (holder == "event" and lock_holder() == "event"):
                release()
                continue
            if time.monotonic() > waited_until:
                raise Busy(f"another change held {LOCK} for more than {LOCK_WAIT} s") from None
            time.sleep(0.02)
    with open(os.path.join(LOCK, "holder"), "w") as f:
        f.write(holder)
    try:
        yield
    finally:
        release()


def release():
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(LOCK, "holder"))
    with contextlib.suppress(FileNotFoundError, OSError):
        os.rmdir(LOCK)


def lock_holder():
    try:
        with open(os.path.join(LOCK, "holder")) as f:
            return f.read()
    except FileNotFoundError:
        return None


def lock_age():
    try:
        return time.time() - os.stat(LOCK).st_mtime
    except FileNotFoundError:
        return 0
