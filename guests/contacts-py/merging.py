"""Who is the same person, and what a person looks like: pure functions, no files.

A *held card* is one card as the collection keeps it:
``{"source": "carddav", "uid": "4c1f...", "card": {...}, "person": "p..."}``.

Two cards are the same person when they share a key: an email
(case-insensitive) or a phone number (its digits, at least seven, compared
on the last nine). Sameness is transitive, so a person is a connected group
of cards, and its id is derived from its smallest ``(source, uid)``: the same
cards always make the same person with the same id, whether they arrived one
event at a time or all at once in a rebuild.
"""

import hashlib

# The fields a person shows, each merged from its cards.
FIELDS = ("name", "emails", "phones", "org", "title", "note", "birthday")
SINGLE_FIELDS = ("org", "title", "note", "birthday")
MIN_PHONE_DIGITS = 7
PHONE_DIGITS_COMPARED = 9


def digits_of(text):
    """Its decimal digits, as ASCII (``"+44 (20) 7946"`` -> ``"44207946"``)."""
    return "".join(str(int(c)) for c in text if c.isdecimal())


def email_key(email):
    email = email.strip().lower()
    return "email:" + email if email else None


def phone_key(phone):
    digits = digits_of(phone)
    if len(digits) < MIN_PHONE_DIGITS:
        return None
    return "phone:" + digits[-PHONE_DIGITS_COMPARED:]


def card_keys(card):
    """The keys that make two cards the same person, sorted."""
    keys = {email_key(e) for e in card.get("emails", [])}
    keys |= {phone_key(p) for p in card.get("phones", [])}
    keys.discard(None)
    return sorted(keys)


def card_ref(held):
    return {"source": held["source"], "uid": held["uid"]}


def sort_key(held):
    return (held["source"], held["uid"])


def person_id(source, uid):
    digest = hashlib.sha256(f"{source}\n{uid}".encode()).hexdigest()
    return "p" + digest[:16]


def group(held_cards):
    """Splits cards into people: connected groups of cards sharing a key.
    Each group is sorted by (source, uid); the groups by their first card."""
    parent = list(range(len(held_cards)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_with_key = {}
    for i, held in enumerate(held_cards):
        for key in card_keys(held["card"]):
            if key in first_with_key:
                parent[root(i)] = root(first_with_key[key])
            else:
                first_with_key[key] = i
    groups = {}
    for i, held in enumerate(held_cards):
        groups.setdefault(root(i), []).append(held)
    people = [sorted(members, key=sort_key) for members in groups.values()]
    return sorted(people, key=lambda members: sort_key(members[0]))


def merged_person(members):
    """The person a group of held cards (sorted by (source, uid)) makes."""
    fields = {name: merged_values(members, name) for name in FIELDS}
    names = [entry["value"] for entry in fields["name"]]
    first = members[0]
    return {
        "id": person_id(first["source"], first["uid"]),
        # The longest name says the most; ties alphabetically, so it is stable.
        "name": min(names, key=lambda n: (-len(n), n)) if names else "",
        "emails": [entry["value"] for entry in fields["emails"]],
        "phones": [entry["value"] for entry in fields["phones"]],
        **{name: fields[name][0]["value"] if fields[name] else "" for name in SINGLE_FIELDS},
        "sources": sorted({held["source"] for held in members}),
        "cards": [card_ref(held) for held in members],
        "fields": fields,
    }


def summary(person):
    return {name: person[name] for name in ("id", "name", "emails", "phones", "org", "sources")}


def merged_values(members, field):
    """``[{"value", "from": [sources]}]`` for one field: each distinct value
    (as first written) in card order, with the sources that have it."""
    entries = {}
    for held in members:
        for value in field_values(held["card"], field):
            identity = value_identity(field, value)
            entry = entries.setdefault(identity, {"value": value, "from": []})
            if held["source"] not in entry["from"]:
                entry["from"].append(held["source"])
    for entry in entries.values():
        entry["from"].sort()
    return list(entries.values())


def field_values(card, field):
    """A card's non-empty values of one field, as a list (emails lowercased)."""
    raw = card.get(field)
    values = [v.strip() for v in (raw if isinstance(raw, list) else [raw]) if isinstance(v, str)]
    return [v.lower() if field == "emails" else v for v in values if v]


def value_identity(field, value):
    """What makes two values of a field the same value."""
    if field == "emails":
        return value.lower()
    if field == "phones":
        return phone_key(value) or digits_of(value) or value
    return value
