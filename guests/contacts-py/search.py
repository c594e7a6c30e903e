"""Everyone in memory, for searching fast.

The host reuses an HTTP instance for many requests (the manifest's
``[reuse]``), so the people stay loaded between them. Before answering, an
instance compares the ``generation`` file with the one it loaded: the same,
nothing to do; further on, it reads again just the people the journal says
changed; when the journal cannot say (a rebuild, or too far behind), it
reads everyone.

A new instance starts from the snapshot (one file) and follows the journal
from there: opening thousands of small files costs seconds under WASI. A
reader that had to read everyone, or whose snapshot is far behind, writes a
new one; events never do.
"""

import storage
from merging import digits_of, summary

SNAPSHOT_AFTER = 500  # changes
PHONE_PUNCTUATION = set(" +-()./")


class People:
    def __init__(self):
        self.generation = None
        self.by_id = {}
        self._entries = {}  # id -> (sort key, summary, text to search, phone digits)
        self._ordered = None  # the entries sorted by name, made when needed
        self.snapshot_generation = None

    def refresh(self, data):
        current = storage.generation()
        if current == self.generation:
            return
        # On from what is loaded, else from the snapshot, else from every file.
        if not (self._follow(data, current) or (self._load_snapshot() and self._follow(data, current))):
            self._load_everyone(data)
        self.generation = current
        behind = self.snapshot_generation is None or int(current) - self.snapshot_generation >= SNAPSHOT_AFTER
        # Not while a writer moved on meanwhile: what was read may be half of a rebuild.
        if behind and storage.generation() == current:
            storage.write_snapshot(int(current), list(self.by_id.values()))
            self.snapshot_generation = int(current)

    def _load_snapshot(self):
        snapshot = storage.snapshot()
        if snapshot is None:
            return False
        self._forget_everyone()
        for person in snapshot["people"]:
            self._put(person)
        self.generation = str(snapshot["generation"])
        self.snapshot_generation = snapshot["generation"]
        return True

    def _follow(self, data, current):
        """Reads the people changed since the loaded generation; False when
        the journal cannot say which (a rebuild, too far behind)."""
        if not (self.generation or "").isdigit() or not current.isdigit():
            return False
        loaded, last = int(self.generation), int(current)
        if not 0 <= last - loaded < storage.JOURNAL_KEPT:
            return False
        touched = set()
        for generation in range(loaded + 1, last + 1):
            ids = data.journal(generation)
            if ids is None:
                return False
            touched.update(ids)
        for person_id in touched:
            person = data.read_person(person_id)
            if person is None:
                self._drop(person_id)
            else:
                self._put(person)
        return True

    def _load_everyone(self, data):
        self._forget_everyone()
        for person in data.all_people():
            self._put(person)

    def _forget_everyone(self):
        self.by_id, self._entries, self._ordered = {}, {}, None

    def _put(self, person):
        self.by_id[person["id"]] = person
        searched = "\n".join([person["name"], *person["emails"], person["org"]]).casefold()
        phone_digits = " ".join(digits_of(phone) for phone in person["phones"])
        sort_key = (person["name"].casefold(), person["id"])
        self._entries[person["id"]] = (sort_key, summary(person), searched, phone_digits)
        self._ordered = None

    def _drop(self, person_id):
        self.by_id.pop(person_id, None)
        self._entries.pop(person_id, None)
        self._ordered = None

    def ordered(self):
        if self._ordered is None:
            self._ordered = sorted(self._entries.values(), key=lambda entry: entry[0])
        return self._ordered

    def search(self, query, limit):
        """``(total, summaries)``: the people whose name, emails or org
        contain ``query`` (case-insensitive), or whose phones do when it is
        a number; sorted by name, at most ``limit`` of them."""
        entries = self.ordered()
        text = query.strip().casefold()
        if text:
            number = phone_query(text)
            entries = [entry for entry in entries if text in entry[2] or (number and number in entry[3])]
        return len(entries), [entry[1] for entry in entries[:limit]]

    def cards_per_source(self):
        counts = {}
        for person in self.by_id.values():
            for card in person["cards"]:
                counts[card["source"]] = counts.get(card["source"], 0) + 1
        return dict(sorted(counts.items()))


def phone_query(text):
    """What to look for in phone digits when the query is a number
    (``"+44 20 7946"``), "" otherwise: so "flat 2" finds no phone with a 2.
    A long number is looked for by its last nine digits, as merging compares
    them, so ``020 7946 0001`` finds ``+44 20 7946 0001``."""
    if any(not c.isdecimal() and c not in PHONE_PUNCTUATION for c in text):
        return ""
    digits = digits_of(text)
    return digits[-9:] if len(digits) >= 7 else digits
