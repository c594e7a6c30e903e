// vCard text (3.0 and 4.0) to `contact/card`s, as guests/CONTACTS.md and
// schemas/card.json define them. Parsing is ical.js's (jCard, RFC 7095: each
// property is `[name, params, type, value...]`); this file only maps.
import ICAL from 'ical.js';

/** The upload is not a vCard file; `message` says why, for the owner. */
export class NotVcard extends Error {
  constructor(message) {
    super(message);
    this.name = 'NotVcard';
  }
}

/** The schema's limit on a uid's length. */
const MAX_UID = 256;

/** Every vCard in `text`, as cards stamped `updated`; throws NotVcard when
 * there is none or the text does not parse (then nothing is half-read). */
export function cardsOf(text, updated) {
  return vcardsIn(text).map((vcard) => cardOf(vcard, updated));
}

/** The jCard components of the vCards in `text`. */
function vcardsIn(text) {
  const source = text.replace(/^\uFEFF/, '');
  if (!/^BEGIN:VCARD\s*$/im.test(source)) {
    throw new NotVcard('This file holds no vCard: a .vcf file has BEGIN:VCARD … END:VCARD blocks.');
  }
  let parsed;
  try {
    parsed = ICAL.parse(source);
  } catch (e) {
    throw new NotVcard(unreadable(source, e));
  }
  // One component comes back bare, several as a list.
  const components = typeof parsed[0] === 'string' ? [parsed] : parsed;
  const vcards = components.filter((component) => component[0] === 'vcard');
  if (vcards.length === 0) throw new NotVcard('This file holds no vCard.');
  return vcards;
}

/** Why the text did not parse, in the owner's words. */
function unreadable(source, error) {
  if (/^VERSION:2\.1\s*$/im.test(source)) {
    return 'This file is vCard 2.1, which is not supported: export the contacts as vCard 3.0 or 4.0.';
  }
  const detail = error instanceof Error ? error.message : String(error);
  return `This file is not valid vCard (${detail}).`;
}

/** One jCard as a `contact/card`; fields the vCard lacks are left out. */
export function cardOf(vcard, updated) {
  const properties = vcard[1];
  const all = (name) => properties.filter((p) => p[0] === name).map(valueOf);
  const first = (name) => all(name).find((value) => textOf(value) !== '');

  const fn = textOf(first('fn'));
  const n = first('n');
  const given = n === undefined ? '' : nameComponent(n, 1);
  const family = n === undefined ? '' : nameComponent(n, 0);
  const emails = distinct(all('email').map((e) => textOf(e).toLowerCase()));
  const phones = distinct(all('tel').map((t) => phoneOf(textOf(t))));
  const org = first('org');

  const card = {
    uid: uidOf(textOf(first('uid')), [fn, emails[0], phones[0]], vcard),
    name: fn || [given, family].filter(Boolean).join(' ') || emails[0] || textOf(org) || phones[0] || 'Unnamed',
    given,
    family,
    emails,
    phones,
    org: Array.isArray(org) ? textOf(org[0]) : textOf(org),
    title: textOf(first('title')),
    note: textOf(first('note')),
    birthday: textOf(first('bday')),
    updated,
  };
  return withoutEmpty(card);
}

/** A property's value: its only one, or the list of them (`NICKNAME:a,b`). */
function valueOf(property) {
  const values = property.slice(3);
  return values.length === 1 ? values[0] : values;
}

/** A value as trimmed text: a list (structured or multi-valued) joined. */
function textOf(value) {
  if (value === undefined || value === null) return '';
  if (Array.isArray(value)) return value.map(textOf).filter(Boolean).join(' ');
  return String(value).trim();
}

/** Component `index` of a structured N (family; given; additional; ...). */
function nameComponent(n, index) {
  return Array.isArray(n) ? textOf(n[index]) : index === 0 ? textOf(n) : '';
}

/** A phone as written, without the `tel:` of a vCard 4 URI value. */
function phoneOf(value) {
  return value.replace(/^tel:/i, '');
}

/** The vCard's UID, or a stable hash of what names the card (its FN,
 * first email and first phone; the whole card when it has none of them).
 * A UID too long for the schema, or `.`/`..` (which no URL path can carry
 * as a segment), is hashed. */
function uidOf(uid, naming, vcard) {
  if (uid !== '' && uid.length <= MAX_UID && uid !== '.' && uid !== '..') return uid;
  if (uid !== '') return `uid-${stableHash(uid)}`;
  const known = naming.filter(Boolean);
  const basis = known.length > 0 ? naming.map((part) => part ?? '').join('\n') : JSON.stringify(vcard[1]);
  return `vcf-${stableHash(basis)}`;
}

/** 64-bit FNV-1a of the text's UTF-8, as 16 hex digits: the same on every run. */
export function stableHash(text) {
  let hash = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(text)) {
    hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return hash.toString(16).padStart(16, '0');
}

/** The values in order, each once, without empty ones. */
function distinct(values) {
  return [...new Set(values.filter((value) => value !== ''))];
}

/** The card without its empty strings and empty lists. */
function withoutEmpty(card) {
  return Object.fromEntries(
    Object.entries(card).filter(([, value]) => (Array.isArray(value) ? value.length > 0 : value !== '')),
  );
}
