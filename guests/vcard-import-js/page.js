// The owner's page of vcard-import: pick .vcf files, import them, see and
// delete the contacts kept. Plain HTML, CSS and script, talking only to this
// service's own routes (`/import`, `/contacts`).
export const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vCard import</title>
<style>
  :root {
    color-scheme: light dark;
    --bg: #f6f5f2; --panel: #ffffff; --text: #24292f; --muted: #6b7280;
    --line: #e4e2dd; --accent: #2f6f6a; --accent-soft: #e3efed; --danger: #a23b3b;
  }
  @media (prefers-color-scheme: dark) {
    :root {
      --bg: #161a1d; --panel: #1e2327; --text: #e6e6e3; --muted: #9aa1a8;
      --line: #2e353b; --accent: #7cc2b9; --accent-soft: #21332f; --danger: #e08a8a;
    }
  }
  * { box-sizing: border-box; }
  body {
    margin: 0; background: var(--bg); color: var(--text);
    font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  }
  main { max-width: 760px; margin: 0 auto; padding: 40px 20px 64px; }
  h1 { font-size: 1.5rem; font-weight: 600; margin: 0 0 4px; }
  h2 { font-size: 1.05rem; font-weight: 600; margin: 0 0 12px; }
  .lead { color: var(--muted); margin: 0 0 28px; }
  section {
    background: var(--panel); border: 1px solid var(--line); border-radius: 12px;
    padding: 20px 22px; margin-bottom: 20px;
  }
  .picker { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; }
  input[type=file] { flex: 1 1 260px; font: inherit; font-size: .9rem; color: var(--muted); }
  input[type=file]::file-selector-button {
    font: inherit; margin-right: 12px; padding: 6px 12px; border-radius: 8px;
    border: 1px solid var(--line); background: var(--bg); color: var(--text); cursor: pointer;
  }
  button {
    font: inherit; border-radius: 8px; padding: 7px 16px; cursor: pointer;
    border: 1px solid var(--accent); background: var(--accent); color: var(--panel);
  }
  button:disabled { opacity: .5; cursor: default; }
  button.delete {
    background: transparent; color: var(--muted); border-color: var(--line);
    padding: 3px 10px; font-size: .85rem;
  }
  button.delete:hover { color: var(--danger); border-color: var(--danger); }
  #result { margin: 14px 0 0; min-height: 1.5em; color: var(--muted); }
  #result.ok { color: var(--accent); }
  #result.bad { color: var(--danger); }
  .heading { display: flex; justify-content: space-between; align-items: baseline; }
  .tally { color: var(--muted); font-size: .9rem; }
  ul { list-style: none; margin: 0; padding: 0; }
  li.contact {
    display: flex; gap: 12px; align-items: center; justify-content: space-between;
    padding: 10px 0; border-top: 1px solid var(--line);
  }
  li.contact:first-child { border-top: none; }
  .who { min-width: 0; }
  .name { font-weight: 500; }
  .details { color: var(--muted); font-size: .88rem; overflow-wrap: anywhere; }
  .empty { color: var(--muted); margin: 0; }
</style>
</head>
<body>
<main>
  <h1>vCard import</h1>
  <p class="lead">Keeps the contacts of the .vcf files you upload (vCard 3.0 and 4.0), and tells the
    rest of your locker about them. Importing a file again only announces what changed.</p>

  <section aria-labelledby="import-title">
    <h2 id="import-title">Import</h2>
    <div class="picker">
      <input type="file" id="file" accept=".vcf,.vcard,text/vcard,text/x-vcard" multiple>
      <button type="button" id="import" disabled>Import</button>
    </div>
    <p id="result" role="status" aria-live="polite"></p>
  </section>

  <section aria-labelledby="kept-title">
    <div class="heading">
      <h2 id="kept-title">Contacts kept</h2>
      <span class="tally"><span id="count">…</span> contacts</span>
    </div>
    <ul id="contacts"><li class="empty">Loading…</li></ul>
    <p class="empty" id="empty" hidden>None yet: import a .vcf file above.</p>
  </section>
</main>
<script>
  const fileInput = document.getElementById('file');
  const importButton = document.getElementById('import');
  const result = document.getElementById('result');

  fileInput.addEventListener('change', () => { importButton.disabled = fileInput.files.length === 0; });
  importButton.addEventListener('click', importFiles);
  loadContacts();

  async function importFiles() {
    importButton.disabled = true;
    importButton.textContent = 'Importing…';
    say('', '');
    const lines = [];
    let failed = false;
    for (const file of fileInput.files) {
      try {
        const answer = await request('/import', { method: 'POST', body: await file.text(),
          headers: { 'content-type': 'text/vcard' } });
        lines.push(file.name + ': ' + describeImport(answer));
      } catch (e) {
        failed = true;
        lines.push(file.name + ': ' + (e.status === 504
          ? 'the import took too long. What it reached is kept: import the same file again to go on.'
          : e.message));
      }
    }
    say(lines.join(' · '), failed ? 'bad' : 'ok');
    importButton.textContent = 'Import';
    fileInput.value = '';
    await loadContacts();
  }

  function describeImport(answer) {
    let text = answer.imported + ' new or changed, ' + answer.unchanged + ' unchanged';
    if (answer.failed) {
      text += ', ' + answer.failed.length + ' refused (' +
        answer.failed.map((f) => f.name + ': ' + f.reason).join('; ') + ')';
    }
    return text + '.';
  }

  async function loadContacts() {
    try {
      showContacts(await request('/contacts'));
    } catch (e) {
      say('Could not list the contacts: ' + e.message, 'bad');
    }
  }

  function showContacts(cards) {
    const list = document.getElementById('contacts');
    list.replaceChildren(...cards.map(contactRow));
    document.getElementById('count').textContent = cards.length;
    document.getElementById('empty').hidden = cards.length > 0;
  }

  function contactRow(card) {
    const row = element('li', 'contact');
    row.dataset.uid = card.uid;
    const who = element('div', 'who');
    who.append(element('div', 'name', card.name));
    const details = [...(card.emails || []), ...(card.phones || []), card.org].filter(Boolean);
    if (details.length > 0) who.append(element('div', 'details', details.join(' · ')));
    const remove = element('button', 'delete', 'Delete');
    remove.type = 'button';
    remove.dataset.uid = card.uid;
    remove.setAttribute('aria-label', 'Delete ' + card.name);
    remove.addEventListener('click', () => deleteContact(card, remove));
    row.append(who, remove);
    return row;
  }

  async function deleteContact(card, button) {
    button.disabled = true;
    try {
      await request('/contacts/' + encodeURIComponent(card.uid), { method: 'DELETE' });
      say('Deleted ' + card.name + '.', 'ok');
    } catch (e) {
      say('Could not delete ' + card.name + ': ' + e.message, 'bad');
    }
    await loadContacts();
  }

  // fetch of one of this service's routes: its JSON, or an Error saying why not.
  async function request(path, options) {
    const response = await fetch(path, options);
    const text = await response.text();
    let body;
    try { body = JSON.parse(text); } catch { body = undefined; }
    if (!response.ok) {
      const problem = new Error((body && body.error) || text.trim() || 'the service answered ' + response.status);
      problem.status = response.status;
      throw problem;
    }
    return body;
  }

  function say(text, tone) {
    result.textContent = text;
    result.className = tone;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
</script>
</body>
</html>
`;
