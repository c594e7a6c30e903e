// The owner's page of address-book: everyone the contacts collection knows,
// a search as you type, and for the chosen person each detail with the
// connectors it came from. Plain HTML, CSS and script; the script fetches
// only this service's own `/api/...`.
//
// What a test can find: `#search` (the input), `.person` (one per person
// listed, with `data-id`, holding the name), `#count` (how many are shown),
// `#sources a` (a link to each connector's page), `#detail` (the chosen
// person), `#notice` (what went wrong, when something did).
export const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Address book</title>
<link rel="icon" href="data:,">
<style>
  :root {
    color-scheme: light dark;
    --bg: #f5f4f0; --panel: #ffffff; --text: #23272b; --muted: #6b7075; --faint: #9a9fa4;
    --line: #e6e3dd; --hover: #f0eee9; --accent: #2f6f6a; --accent-soft: #e4efed;
    --warn-bg: #fbf1e6; --warn-line: #ecd3b4; --warn-text: #7a4a17;
    --badge-s: 40%; --badge-bg-l: 92%; --badge-text-l: 30%;
  }
  @media (prefers-color-scheme: dark) {
    :root {
      --bg: #15191c; --panel: #1c2125; --text: #e5e6e3; --muted: #9ba2a8; --faint: #6f777e;
      --line: #2b3238; --hover: #232a2f; --accent: #7cc2b9; --accent-soft: #1f3330;
      --warn-bg: #2d2418; --warn-line: #54402a; --warn-text: #e8c79f;
      --badge-s: 30%; --badge-bg-l: 22%; --badge-text-l: 80%;
    }
  }
  * { box-sizing: border-box; }
  body {
    margin: 0; background: var(--bg); color: var(--text);
    font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif;
  }
  a { color: var(--accent); }
  .top { max-width: 1120px; margin: 0 auto; padding: 32px 24px 8px; }
  h1 { font-size: 1.6rem; font-weight: 600; margin: 0; letter-spacing: -0.01em; }
  .subtitle { margin: 2px 0 0; color: var(--muted); }
  .layout {
    max-width: 1120px; margin: 0 auto; padding: 16px 24px 56px;
    display: grid; grid-template-columns: minmax(0, 1fr) minmax(300px, 400px); gap: 24px; align-items: start;
  }
  .panel { background: var(--panel); border: 1px solid var(--line); border-radius: 14px; }
  .list-pane { padding: 16px 8px 8px; }
  .search-row { padding: 0 8px 10px; }
  #search {
    width: 100%; font: inherit; font-size: 1rem; padding: 10px 14px; border-radius: 10px;
    border: 1px solid var(--line); background: var(--bg); color: var(--text); outline: none;
  }
  #search:focus { border-color: var(--accent); box-shadow: 0 0 0 3px var(--accent-soft); }
  .meta { margin: 0; padding: 0 10px 8px; color: var(--muted); font-size: .88rem; }
  #notice {
    margin: 4px 8px 12px; padding: 12px 14px; border-radius: 10px; line-height: 1.45;
    background: var(--warn-bg); border: 1px solid var(--warn-line); color: var(--warn-text);
  }
  #notice strong { display: block; font-weight: 600; }
  ul { list-style: none; margin: 0; padding: 0; }
  .person {
    display: flex; gap: 12px; align-items: flex-start; padding: 10px 10px; border-radius: 10px;
    color: inherit; text-decoration: none;
  }
  .person:hover { background: var(--hover); }
  .person:focus-visible { outline: 2px solid var(--accent); outline-offset: -2px; }
  .person[aria-current="true"] { background: var(--accent-soft); }
  .avatar {
    flex: none; width: 38px; height: 38px; border-radius: 50%; display: grid; place-items: center;
    font-size: .85rem; font-weight: 600; letter-spacing: .02em;
    background: hsl(var(--hue) var(--badge-s) var(--badge-bg-l)); color: hsl(var(--hue) 35% var(--badge-text-l));
  }
  .avatar.large { width: 52px; height: 52px; font-size: 1.05rem; }
  .who { flex: 1; min-width: 0; }
  .name { display: block; font-weight: 550; }
  .line { display: block; color: var(--muted); font-size: .88rem; overflow-wrap: anywhere; }
  .nowrap { white-space: nowrap; }
  .title-row { display: flex; flex-wrap: wrap; gap: 2px 10px; align-items: baseline; justify-content: space-between; }
  .badges { display: flex; flex-wrap: wrap; gap: 4px; margin-left: auto; }
  .badge {
    display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: .75rem; white-space: nowrap;
    background: hsl(var(--hue) var(--badge-s) var(--badge-bg-l)); color: hsl(var(--hue) 35% var(--badge-text-l));
  }
  .empty, .placeholder { color: var(--muted); padding: 12px 10px; margin: 0; }
  .more-row { padding: 8px 10px 10px; }
  button {
    font: inherit; font-size: .9rem; padding: 6px 14px; border-radius: 8px; cursor: pointer;
    border: 1px solid var(--line); background: var(--panel); color: var(--text);
  }
  button:hover { border-color: var(--accent); color: var(--accent); }
  .side {
    display: grid; gap: 20px; position: sticky; top: 16px;
    max-height: calc(100vh - 32px); overflow-y: auto; /* a long detail scrolls on its own */
  }
  #detail { padding: 20px 22px; min-height: 180px; }
  /* Empty until a person's details arrive; meanwhile it says why. */
  #detail:empty::before { content: attr(data-placeholder); display: block; color: var(--muted); padding: 12px 10px; }
  .detail-head { display: flex; gap: 14px; align-items: center; margin-bottom: 14px; }
  .detail-head h2 { margin: 0; font-size: 1.25rem; font-weight: 600; overflow-wrap: anywhere; }
  .detail-head .line { font-size: .92rem; }
  .detail-head .close {
    margin-left: auto; align-self: flex-start; border: none; background: none; color: var(--faint);
    font-size: 1.4rem; line-height: 1; padding: 2px 6px;
  }
  dl { margin: 0; }
  .field { padding: 10px 0; border-top: 1px solid var(--line); }
  dt { color: var(--faint); font-size: .75rem; text-transform: uppercase; letter-spacing: .06em; margin-bottom: 2px; }
  dd { margin: 0; }
  .value-row { display: flex; flex-wrap: wrap; gap: 2px 10px; align-items: baseline; padding: 3px 0; }
  .value { flex: 1 1 12em; min-width: 0; overflow-wrap: break-word; white-space: pre-wrap; }
  .value a { text-decoration: none; }
  .value a:hover { text-decoration: underline; }
  .from { display: flex; flex-wrap: wrap; gap: 4px; justify-content: flex-end; margin-left: auto; }
  .cards { margin-top: 6px; padding-top: 10px; border-top: 1px solid var(--line); color: var(--muted); font-size: .82rem; }
  .cards li { display: flex; gap: 8px; align-items: baseline; padding: 2px 0; }
  .uid { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .78rem; overflow-wrap: anywhere; }
  .sources-pane { padding: 18px 22px; }
  .sources-pane h2 { margin: 0 0 4px; font-size: 1rem; font-weight: 600; }
  .sources-pane p { margin: 0 0 10px; color: var(--muted); font-size: .88rem; }
  #sources li { display: flex; gap: 10px; align-items: center; padding: 6px 0; }
  #sources .dot { width: 10px; height: 10px; border-radius: 50%; flex: none;
    background: hsl(var(--hue) 45% 55%); }
  #sources .type { color: var(--faint); font-size: .82rem; margin-left: auto; }
  #sources .none { color: var(--muted); }
  .keys { color: var(--faint); font-size: .8rem; text-align: center; margin: 0; }
  kbd { font: inherit; border: 1px solid var(--line); border-radius: 4px; padding: 0 4px; }
  @media (max-width: 820px) {
    .layout { grid-template-columns: 1fr; }
    .side { position: static; max-height: none; overflow: visible; }
  }
</style>
</head>
<body>
<header class="top">
  <h1>Address book</h1>
  <p class="subtitle">Everyone your connectors know, the same person merged into one.</p>
</header>
<main class="layout">
  <section class="panel list-pane" aria-label="People">
    <div class="search-row">
      <input id="search" type="search" autocomplete="off" spellcheck="false"
        placeholder="Search by name, email, phone or organisation" aria-label="Search your contacts">
    </div>
    <p class="meta" aria-live="polite"><span id="count">…</span><span id="count-rest"> people</span></p>
    <div id="notice" role="alert" hidden></div>
    <ul id="people"><li class="empty">Loading…</li></ul>
    <p class="empty" id="empty" hidden></p>
    <div class="more-row" id="more-row" hidden><button type="button" id="more">Show more</button></div>
  </section>
  <div class="side">
    <section class="panel" id="detail" aria-live="polite"
      data-placeholder="Choose someone to see their details, and which connector each one came from."></section>
    <section class="panel sources-pane" aria-labelledby="sources-title">
      <h2 id="sources-title">Sources</h2>
      <p>The connectors your contacts come from. Open one to add or sync contacts.</p>
      <ul id="sources"><li class="none">Looking for connectors…</li></ul>
    </section>
    <p class="keys"><kbd>/</kbd> to search, <kbd>Esc</kbd> to clear</p>
  </div>
</main>
<script>
  const PAGE_SIZE = 100;
  // The hues of badges and avatars (no reds: nothing here is an alarm).
  const HUES = [205, 150, 270, 35, 320, 95, 180, 55];
  const FIELDS = [
    ['name', 'Name'], ['emails', 'Email'], ['phones', 'Phone'], ['org', 'Organisation'],
    ['title', 'Title'], ['birthday', 'Birthday'], ['note', 'Note'],
  ];
  const search = document.getElementById('search');
  // Each search and each detail load has a number: only the latest is shown.
  let searchNumber = 0;
  let detailNumber = 0;
  let limit = PAGE_SIZE;

  search.value = new URLSearchParams(location.search).get('q') || '';
  search.addEventListener('input', debounce(() => { limit = PAGE_SIZE; runSearch(); }, 200));
  search.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && search.value !== '') {
      search.value = '';
      limit = PAGE_SIZE;
      runSearch();
    }
  });
  document.addEventListener('keydown', (event) => {
    if (event.key === '/' && document.activeElement !== search && !event.ctrlKey && !event.metaKey) {
      event.preventDefault();
      search.focus();
    }
  });
  document.getElementById('more').addEventListener('click', () => { limit += PAGE_SIZE; runSearch(); });
  window.addEventListener('hashchange', showChosen);
  runSearch();
  showChosen();
  loadSources();

  // ---- the list ----------------------------------------------------------

  async function runSearch() {
    const number = ++searchNumber;
    const query = search.value.trim();
    rememberQuery(query);
    let found;
    try {
      found = await api('/api/search?q=' + encodeURIComponent(query) + '&limit=' + limit);
    } catch (error) {
      if (number === searchNumber) showProblem(error.message);
      return;
    }
    if (number !== searchNumber) return;
    hideProblem();
    showPeople(found.people || [], found.total || 0, query);
  }

  function showPeople(people, total, query) {
    document.getElementById('people').replaceChildren(...people.map(personItem));
    document.getElementById('count').textContent = people.length;
    document.getElementById('count-rest').textContent =
      total > people.length ? ' of ' + total + ' people' : people.length === 1 ? ' person' : ' people';
    const empty = document.getElementById('empty');
    empty.hidden = people.length > 0;
    empty.textContent = query
      ? 'No one matches “' + query + '”.'
      : 'No contacts yet. Open one of the sources to add some.';
    document.getElementById('more-row').hidden = total <= people.length;
    markChosen();
  }

  function personItem(person) {
    const link = element('a', 'person');
    link.href = '#person=' + encodeURIComponent(person.id);
    link.dataset.id = person.id;
    const title = element('span', 'title-row');
    title.append(element('span', 'name', person.name), badges(person.sources || [], 'badges'));
    const who = element('span', 'who');
    who.append(title);
    const reach = [...(person.emails || []), ...(person.phones || [])];
    if (reach.length > 0) who.append(joined(reach));
    if (person.org) who.append(element('span', 'line', person.org));
    link.append(avatar(person.name), who);
    const item = document.createElement('li');
    item.append(link);
    return item;
  }

  function rememberQuery(query) {
    const url = new URL(location.href);
    if (query) url.searchParams.set('q', query); else url.searchParams.delete('q');
    history.replaceState(null, '', url);
  }

  function showProblem(message) {
    const notice = document.getElementById('notice');
    notice.replaceChildren(element('strong', '', 'Your contacts cannot be shown right now.'), message);
    notice.hidden = false;
    document.getElementById('people').replaceChildren();
    document.getElementById('count').textContent = 0;
    document.getElementById('count-rest').textContent = ' people';
    document.getElementById('empty').hidden = true;
    document.getElementById('more-row').hidden = true;
  }

  function hideProblem() {
    document.getElementById('notice').hidden = true;
  }

  // ---- the chosen person -------------------------------------------------

  function chosenId() {
    const match = /^#person=(.+)$/.exec(location.hash);
    if (!match) return undefined;
    try { return decodeURIComponent(match[1]); } catch { return undefined; }
  }

  function markChosen() {
    const id = chosenId();
    for (const link of document.querySelectorAll('.person')) {
      if (link.dataset.id === id) link.setAttribute('aria-current', 'true');
      else link.removeAttribute('aria-current');
    }
  }

  async function showChosen() {
    markChosen();
    const detail = document.getElementById('detail');
    const id = chosenId();
    const number = ++detailNumber;
    detail.replaceChildren();
    if (id === undefined) {
      detail.dataset.placeholder = 'Choose someone to see their details, and which connector each one came from.';
      return;
    }
    detail.dataset.placeholder = 'Loading…';
    let person;
    try {
      person = await api('/api/people/' + encodeURIComponent(id));
    } catch (error) {
      if (number !== detailNumber) return;
      detail.replaceChildren(element('p', 'placeholder', error.status === 404
        ? 'This person is no longer in your address book.'
        : 'Their details cannot be shown right now. ' + error.message));
      return;
    }
    if (number !== detailNumber) return;
    detail.replaceChildren(...personDetail(person));
    if (window.matchMedia('(max-width: 820px)').matches) detail.scrollIntoView({ behavior: 'smooth' });
  }

  function personDetail(person) {
    const fields = person.fields || {};
    const name = person.name || firstValue(fields.name) || 'Unnamed';
    const head = element('div', 'detail-head');
    const titles = element('div', 'who');
    titles.append(element('h2', '', name));
    const org = firstValue(fields.org);
    if (org) titles.append(element('span', 'line', org));
    const close = element('button', 'close', '×');
    close.type = 'button';
    close.setAttribute('aria-label', 'Close the details');
    close.addEventListener('click', () => {
      history.replaceState(null, '', location.pathname + location.search);
      showChosen();
    });
    const big = avatar(name);
    big.classList.add('large');
    head.append(big, titles, close);

    const list = document.createElement('dl');
    for (const [key, label] of FIELDS) {
      const values = fields[key] || [];
      if (values.length === 0) continue;
      const field = element('div', 'field');
      field.dataset.field = key;
      const rows = element('dd', '');
      for (const entry of values) rows.append(valueRow(key, entry));
      field.append(element('dt', '', label), rows);
      list.append(field);
    }
    return [head, list, cardsList(person.cards || [])];
  }

  // One value of a field, and the sources it came from.
  function valueRow(key, entry) {
    const row = element('div', 'value-row');
    const value = element('span', 'value');
    const text = String(entry.value);
    if (key === 'emails') value.append(link('mailto:' + text, text));
    else if (key === 'phones') value.append(link('tel:' + text.replace(/[^0-9+]/g, ''), text));
    else value.textContent = text;
    row.append(value, badges(entry.from || [], 'from'));
    return row;
  }

  // The cards the person was merged from: which source, under which uid.
  function cardsList(cards) {
    const box = element('div', 'cards');
    if (cards.length === 0) return box;
    box.append(element('div', '', cards.length === 1 ? 'Seen on 1 card:' : 'Merged from ' + cards.length + ' cards:'));
    const list = document.createElement('ul');
    for (const card of cards) {
      const item = document.createElement('li');
      item.append(badge(card.source), element('span', 'uid', card.uid));
      list.append(item);
    }
    box.append(list);
    return box;
  }

  // ---- sources -----------------------------------------------------------

  async function loadSources() {
    const list = document.getElementById('sources');
    let connectors;
    try {
      connectors = await api('/api/connectors');
    } catch (error) {
      list.replaceChildren(element('li', 'none', 'The connectors cannot be listed: ' + error.message));
      return;
    }
    if (connectors.length === 0) {
      list.replaceChildren(element('li', 'none', 'No contact connector is installed yet.'));
      return;
    }
    list.replaceChildren(...connectors.map(sourceItem));
  }

  function sourceItem(connector) {
    const item = document.createElement('li');
    const dot = element('span', 'dot');
    dot.style.setProperty('--hue', hue(connector.name));
    const open = link(connectorOrigin(connector.name), connector.name);
    open.target = '_blank';
    open.rel = 'noopener';
    item.append(dot, open, element('span', 'type', (connector.provides || []).join(', ')));
    return item;
  }

  // A service lives on its own origin, <service>.<the locker's domain>.
  function connectorOrigin(name) {
    return location.protocol + '//' + location.host.replace(/^[^.]+/, name) + '/';
  }

  // ---- small things ------------------------------------------------------

  // GET of one of this app's own routes: its JSON, or an Error saying why not.
  async function api(path) {
    let response;
    try {
      response = await fetch(path, { headers: { accept: 'application/json' } });
    } catch {
      throw new Error('The locker could not be reached, or your login ended: reload the page.');
    }
    let body;
    try { body = await response.json(); } catch { body = undefined; }
    if (!response.ok) {
      const problem = new Error((body && body.error) || 'The address book answered ' + response.status + '.');
      problem.status = response.status;
      throw problem;
    }
    return body;
  }

  function badges(sources, className) {
    const box = element('span', className);
    for (const source of sources) box.append(badge(source));
    return box;
  }

  function badge(source) {
    const node = element('span', 'badge', source);
    node.dataset.source = source;
    node.style.setProperty('--hue', hue(source));
    return node;
  }

  function avatar(name) {
    const node = element('span', 'avatar', initials(name));
    node.setAttribute('aria-hidden', 'true');
    node.style.setProperty('--hue', hue(name || ''));
    return node;
  }

  function initials(name) {
    const words = String(name || '').split(/[\\s@.]+/).filter(Boolean);
    const letters = words.length > 1 ? [words[0], words[words.length - 1]] : words;
    return letters.map((word) => Array.from(word)[0]).join('').toUpperCase() || '?';
  }

  // A calm hue for a name, the same on every visit.
  function hue(text) {
    let hash = 0;
    for (const char of String(text)) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
    return String(HUES[hash % HUES.length]);
  }

  // Values on one line, each kept whole, with dots between.
  function joined(values) {
    const line = element('span', 'line');
    values.forEach((value, index) => {
      if (index > 0) line.append(' ');
      line.append(element('span', 'nowrap', index < values.length - 1 ? value + ' ·' : value));
    });
    return line;
  }

  function firstValue(values) {
    return values && values.length > 0 ? String(values[0].value) : '';
  }

  function link(href, text) {
    const node = element('a', '', text);
    node.href = href;
    return node;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function debounce(fn, wait) {
    let timer;
    return () => {
      clearTimeout(timer);
      timer = setTimeout(fn, wait);
    };
  }
</script>
</body>
</html>
`;
