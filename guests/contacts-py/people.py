"""How a card that changes, or goes, changes the people kept in files.

Every key names the one person holding every card with that key, so the
cards a change can touch are few: the changed card's person's, and those of
the people its new keys name. They are grouped again from scratch
(``merging.group``), exactly as a rebuild groups all cards: a change that
bridges two people joins them, a card that no longer shares anything with
its person's other cards splits off, and a delete of the bridging card
splits them again. Callers hold ``storage.writing()``.
"""

import storage
from merging import card_keys, group, merged_person, sort_key


def change_card(data, source, card):
    """A card is new or changed. Returns False when it is as kept (a repeat)."""
    old = data.read_card(source, card["uid"])
    if old is not None and old["card"] == card:
        return False
    touched = {old["person"]} if old else set()
    touched |= {data.person_with_key(key) for key in card_keys(card)}
    touched.discard(None)
    fresh = {"source": source, "uid": card["uid"], "card": card, "person": None}
    regroup(data, touched, [fresh], gone=[old] if old else [])
    return True


def delete_card(data, source, uid):
    """A card is gone. Returns False when it was not kept (a repeat)."""
    old = data.read_card(source, uid)
    if old is None:
        return False
    regroup(data, {old["person"]}, [], gone=[old])
    return True


def regroup(data, person_ids, incoming, gone):
    """Groups the cards of ``person_ids`` again, with ``incoming`` cards added
    and ``gone`` ones (old versions) taken out, and rewrites what changed."""
    old_people = [p for p in map(data.read_person, sorted(person_ids)) if p is not None]
    replaced = {sort_key(held) for held in gone + incoming}
    stay = [held for person in old_people for held in member_cards(data, person) if sort_key(held) not in replaced]
    new_people = [merged_person(members) for members in group(stay + incoming)]
    person_of = {(ref["source"], ref["uid"]): p["id"] for p in new_people for ref in p["cards"]}
    old_keys = {key for held in stay + gone for key in card_keys(held["card"])}
    new_keys = {key: person_of[sort_key(held)] for held in stay + incoming for key in card_keys(held["card"])}

    data.mark_dirty(True)
    for person in new_people:
        data.write_person(person)
    for person in old_people:
        if person["id"] not in {p["id"] for p in new_people}:
            data.remove_person(person["id"])
    for key, person_id in new_keys.items():
        if key not in old_keys or data.person_with_key(key) != person_id:
            data.write_key(key, person_id)
    for key in old_keys - new_keys.keys():
        data.remove_key(key)
    for held in stay:
        if held["person"] != person_of[sort_key(held)]:
            data.write_card({**held, "person": person_of[sort_key(held)]})
    for held in gone:
        if sort_key(held) not in person_of:
            data.remove_card(held["source"], held["uid"])
    # The changed card last: until it is written, a retry of the event is
    # not taken for a repeat.
    for held in incoming:
        data.write_card({**held, "person": person_of[sort_key(held)]})
    storage.commit(data, {p["id"] for p in old_people + new_people})
    data.mark_dirty(False)


def member_cards(data, person):
    cards = (data.read_card(ref["source"], ref["uid"]) for ref in person["cards"])
    return [held for held in cards if held is not None]


def write_all(data, held_cards, state):
    """Fills an empty data folder with ``held_cards`` grouped into people;
    returns the people."""
    everyone = []
    for members in group(held_cards):
        person = merged_person(members)
        everyone.append(person)
        data.write_person(person)
        for held in members:
            data.write_card({**held, "person": person["id"]})
            for key in card_keys(held["card"]):
                data.write_key(key, person["id"])
    data.write_state(state)
    return everyone
