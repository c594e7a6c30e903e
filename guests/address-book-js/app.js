// address-book: a Locker app, the owner's address book. It shows the people
// the `contacts` collection merged from every connector, searchable, with
// where each detail came from (guests/CONTACTS.md). The page's script only
// fetches this service's own `/api/...`; the backend asks the collection
// with a service call, never the browser.
//
// - `GET /`: the page (HTML, CSS and script inline);
// - `GET /api/search?q=TEXT[&limit=N]`: the collection's `/search`,
//   `{ total, people: [summary...] }`;
// - `GET /api/people/<id>`: the collection's `/people/<id>` (a 404 stays one);
// - `GET /api/connectors`: the connectors found by `contact/*`,
//   `[{ name, provides }]`, sorted by name.
// When the collection is not installed or fails, `/api/search` and
// `/api/people` answer 502 `{ error }`, saying which.
import { call, discovery, serve } from 'locker-sdk';
import { PAGE } from './page.js';

/** The collection this app shows. */
const COLLECTION = 'contacts';
/** The type the collection provides, to tell "not installed" from "failed". */
const COLLECTION_TYPE = 'collection/contacts';

serve(async (request) => {
  const url = new URL(request.url);
  const path = url.pathname;
  if (request.method !== 'GET') return problem(405, 'this app only answers GET', { allow: 'GET' });
  if (path === '/') return page();
  if (path === '/api/search') return search(url.searchParams);
  if (path.startsWith('/api/people/')) return person(path.slice('/api/people/'.length));
  if (path === '/api/connectors') return json(connectors());
  return problem(404, 'no such page');
});

// ---- routes --------------------------------------------------------------

/** `GET /api/search?q=&limit=`: the collection's search, as it answered. */
function search(params) {
  const query = params.get('q') ?? '';
  const limit = params.get('limit');
  if (limit !== null && !/^\d{1,5}$/.test(limit)) return problem(400, 'limit must be a whole number');
  const extra = limit === null ? '' : `&limit=${limit}`;
  return ask(`/search?q=${encodeURIComponent(query)}${extra}`);
}

/** `GET /api/people/<id>`: one person, with where each field came from. */
function person(segment) {
  const id = decoded(segment);
  if (!id) return problem(400, 'the person id in the path is not valid percent-encoding');
  return ask(`/people/${encodeURIComponent(id)}`, { passNotFound: true });
}

/** The connectors of contacts, each with the types it provides. */
function connectors() {
  return discovery
    .find('contact/*')
    .filter((service) => service.kind === 'connector')
    .map(({ name, provides }) => ({ name, provides }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

// ---- the collection --------------------------------------------------------

/** Calls the collection at `path` and answers with its JSON; a 502 saying
 * why when it is not installed, cannot be reached or fails. With
 * `passNotFound`, its 404 (no such person) is answered as a 404. */
async function ask(path, { passNotFound = false } = {}) {
  let answer;
  try {
    answer = await call(COLLECTION, path);
  } catch (e) {
    console.error(`calling ${COLLECTION}${path} failed: ${messageOf(e)}`);
    return problem(502, unreachable(e));
  }
  const text = await answer.text();
  const body = parsed(text);
  if (answer.status === 404 && passNotFound) {
    return problem(404, body?.error ?? 'no such person');
  }
  if (!answer.ok) {
    const said = body?.error ?? text.trim().slice(0, 300);
    console.error(`${COLLECTION}${path} answered ${answer.status}: ${said}`);
    return problem(502, `The contacts collection failed (it answered ${answer.status}${said ? `: ${said}` : ''}).`);
  }
  if (body === undefined) return problem(502, 'The contacts collection answered something that is not JSON.');
  return json(body);
}

/** Why the collection could not be called, in the owner's words. */
function unreachable(error) {
  if (!isInstalled()) {
    return 'The contacts collection is not installed: install it to see the people your connectors know.';
  }
  return `The contacts collection cannot be reached (${messageOf(error)}).`;
}

function isInstalled() {
  return discovery.find(COLLECTION_TYPE).some((service) => service.name === COLLECTION);
}

// ---- HTTP ------------------------------------------------------------------

function page() {
  return new Response(PAGE, {
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      // The page reaches nothing but this origin: no other API, font or image.
      'content-security-policy':
        "connect-src 'self'; img-src data:; font-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'",
    },
  });
}

function json(value, status = 200, headers = {}) {
  return new Response(JSON.stringify(value), {
    status,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers },
  });
}

function problem(status, message, headers = {}) {
  return json({ error: message }, status, headers);
}

/** A path segment percent-decoded, or undefined when it is malformed. */
function decoded(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

/** JSON text parsed, or undefined when it is not JSON. */
function parsed(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function messageOf(error) {
  return error instanceof Error ? error.message : String(error);
}
