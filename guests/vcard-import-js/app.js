// vcard-import: a Locker connector keeping the contacts of the `.vcf` files
// the owner uploads (vCard 3.0 and 4.0, parsed by ical.js), as
// `contact/card`s (guests/CONTACTS.md), one file per card in
// `contacts/<uid, escaped>.json`.
//
// - `GET /`: the owner's page: upload a file, see and delete the contacts;
// - `POST /import` (body: the .vcf text): for each new or changed card,
//   publishes `contact/changed` and then stores it (announced before it is
//   kept, so a crash in between announces it again rather than never);
//   answers `{ imported, unchanged, contacts }` (and `failed`, the cards the
//   host refused). A file without a vCard is a 400, and nothing is kept;
// - `GET /contacts`: every card, sorted by name; `GET /contacts/<uid>`
//   (uid percent-encoded): one, or 404;
// - `DELETE /contacts/<uid>`: publishes `contact/deleted`, then forgets it;
// - `GET /status`: `{ contacts }`.
import { LockerError, files, publishJson, serve } from 'locker-sdk';
import { PAGE } from './page.js';
import { NotVcard, cardsOf, stableHash } from './vcard.js';

const FOLDER = 'contacts';
/** Longest escaped uid used as a file name as it is; longer ones are hashed. */
const MAX_NAME = 200;

serve(async (request) => {
  const path = new URL(request.url).pathname;
  const method = request.method;
  if (path === '/') return only(method, 'GET', () => html(PAGE));
  if (path === '/import') return only(method, 'POST', async () => importUpload(await request.text()));
  if (path === '/contacts') return only(method, 'GET', () => json(allCards()));
  if (path === '/status') return only(method, 'GET', () => json({ contacts: countCards() }));
  if (path.startsWith('/contacts/')) {
    const uid = uidInPath(path.slice('/contacts/'.length));
    if (uid === undefined) return problem(400, 'the uid in the path is not valid percent-encoding');
    if (method === 'DELETE') return deleteCard(uid);
    return only(method, 'GET', () => showCard(uid));
  }
  return problem(404, 'no such page');
});

// ---- routes --------------------------------------------------------------

/** `POST /import`: every vCard of the upload, announced then kept. */
function importUpload(text) {
  const started = Date.now();
  let cards;
  try {
    cards = cardsOf(text, now());
  } catch (e) {
    if (e instanceof NotVcard) return problem(400, e.message);
    throw e;
  }
  files.makeDir(FOLDER);
  let imported = 0;
  let unchanged = 0;
  /** @type {{ uid: string, name: string, reason: string }[]} */
  const failed = [];
  for (const card of cards) {
    const kept = readCard(card.uid);
    if (kept !== undefined && sameContact(kept, card)) {
      unchanged += 1;
      continue;
    }
    const refused = announce('contact/changed', card);
    if (refused) {
      failed.push({ uid: card.uid, name: card.name, reason: refused });
      continue;
    }
    files.writeJson(fileOf(card.uid), card);
    imported += 1;
  }
  console.log(
    `import: ${cards.length} cards, ${imported} new or changed, ${unchanged} unchanged, ${failed.length} refused, in ${Date.now() - started} ms`,
  );
  return json({ imported, unchanged, contacts: countCards(), ...(failed.length > 0 ? { failed } : {}) });
}

/** `GET /contacts/<uid>`. */
function showCard(uid) {
  const card = readCard(uid);
  return card === undefined ? problem(404, `no contact ${uid}`) : json(card);
}

/** `DELETE /contacts/<uid>`: announced, then forgotten. */
function deleteCard(uid) {
  if (readCard(uid) === undefined) return problem(404, `no contact ${uid}`);
  const refused = announce('contact/deleted', { uid });
  if (refused) return problem(502, `the locker refused the deletion's event: ${refused}`);
  files.remove(fileOf(uid));
  console.log(`deleted ${uid}`);
  return json({ deleted: uid, contacts: countCards() });
}

// ---- the cards it keeps ----------------------------------------------------

/** The file a uid is kept in: the uid percent-escaped (`.`, `-`, `_`, `@`,
 * letters and digits as they are; a leading dot escaped), or, when that is
 * too long for a file name, `~` and a hash of it (`~` is never escaped). */
function fileOf(uid) {
  const escaped = encodeURIComponent(uid)
    .replace(/[!'()*~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/^\./, '%2E');
  const name = escaped.length <= MAX_NAME ? escaped : `~${stableHash(uid)}`;
  return `${FOLDER}/${name}.json`;
}

function readCard(uid) {
  return files.readJson(fileOf(uid));
}

/** The names of the kept cards' files (not a write's temporary file). */
function cardFiles() {
  return files.list(FOLDER).filter((name) => name.endsWith('.json'));
}

function countCards() {
  return cardFiles().length;
}

/** Every kept card, sorted by name (then uid, so the order is stable). */
function allCards() {
  const cards = cardFiles().map((name) => files.readJson(`${FOLDER}/${name}`));
  const key = (card) => card.name.toLowerCase();
  return cards.sort((a, b) => compare(key(a), key(b)) || compare(a.uid, b.uid));
}

function compare(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The same contact, whenever each was stored. */
function sameContact(a, b) {
  return canonical(a) === canonical(b);
}

function canonical(card) {
  const { updated, ...contact } = card;
  return JSON.stringify(Object.keys(contact).sort().map((key) => [key, contact[key]]));
}

/** Publishes an event; what the host said when it refused it, or undefined. */
function announce(topic, payload) {
  try {
    publishJson(topic, payload);
    return undefined;
  } catch (e) {
    if (e instanceof LockerError) {
      console.error(`${topic} refused for ${payload.uid}: ${e.message}`);
      return e.code === 'payload-too-large'
        ? `too large: an event carries at most ${e.detail} bytes`
        : e.message;
    }
    throw e;
  }
}

// ---- HTTP ------------------------------------------------------------------

/** The uid in a path segment, or undefined when it is malformed. */
function uidInPath(segment) {
  try {
    const uid = decodeURIComponent(segment);
    return uid === '' ? undefined : uid;
  } catch {
    return undefined;
  }
}

/** Answers with `answer()` when the method is `allowed`, else 405. */
function only(method, allowed, answer) {
  if (method === allowed) return answer();
  return new Response(JSON.stringify({ error: `use ${allowed} here` }), {
    status: 405,
    headers: { allow: allowed, 'content-type': 'application/json' },
  });
}

function json(value, status = 200) {
  return new Response(JSON.stringify(value), {
    status,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
  });
}

function problem(status, message) {
  return json({ error: message }, status);
}

function html(text) {
  return new Response(text, {
    headers: {
      'content-type': 'text/html; charset=utf-8',
      // The page reaches nothing but this origin: no other API, font or image.
      'content-security-policy':
        "connect-src 'self'; img-src data:; font-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'",
    },
  });
}

/** Now, RFC 3339 in UTC to the second. */
function now() {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
}
