// The owner's dashboard: one page, five views (services, install, events,
// backups, account) and a page per service, all driven by the admin API with the
// owner's session. Text from services (names, descriptions, payloads, logs)
// is only ever set as text, never parsed as HTML.

const API = "/_locker/api";

// --- talking to the admin API ------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const init = { method, headers: { "x-locker-request": "1" }, credentials: "same-origin" };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(API + path, init);
  } catch (e) {
    throw new ApiError(0, "the locker did not answer: is it running?");
  }
  if (response.status === 401) {
    location.href = "/_locker/login?next=" + encodeURIComponent("/" + location.hash);
    throw new ApiError(401, "your session has ended: log in again");
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!response.ok) {
    const message = (data && data.error) || `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  return data;
}

// --- small DOM helpers ---------------------------------------------------

function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

const view = () => document.getElementById("view");

function show(...children) {
  view().replaceChildren(...children);
}

function problem(message) {
  const banner = document.getElementById("problem");
  banner.textContent = message;
  banner.hidden = !message;
  if (message) document.getElementById("notice").hidden = true;
}

// The view a notice belongs to: it stays while the owner stays there (an
// install moves to the new service's page, and its notice comes along).
let noticeFor = "";
function notice(message) {
  const banner = document.getElementById("notice");
  banner.textContent = message;
  banner.hidden = !message;
  noticeFor = location.hash;
  if (message) problem("");
}

// Runs an action from a button or form: its failure is shown, never lost.
async function attempt(action, button) {
  if (button) button.disabled = true;
  try {
    return await action();
  } catch (e) {
    problem(e.message);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

function confirmDialog(title, yes, ...body) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-yes").textContent = yes;
  document.getElementById("confirm-body").replaceChildren(...body);
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
  });
}

function when(time) {
  if (!time) return "never";
  const date = new Date(time);
  return isNaN(date) ? time : date.toLocaleString();
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${Math.round(n * 10) / 10} ${units[i]}`;
}

function packageForm(id, label, onsubmit) {
  return h("form", { id, class: "card", onsubmit },
    h("label", {}, label,
      h("input", { type: "file", name: "files", multiple: true, required: true,
        accept: ".toml,.wasm,.json" })),
    h("p", { class: "muted" },
      "Choose the package's locker.toml, its component (.wasm), and any schema files its manifest names."),
    h("button", { class: "primary" }, label.startsWith("Upgrade") ? "Upgrade" : "Install"));
}

// A package's files as the admin API takes them: manifest, component, files.
function packageData(form) {
  const files = [...form.elements.files.files];
  const data = new FormData();
  const manifest = files.find((f) => f.name.endsWith(".toml"));
  const component = files.find((f) => f.name.endsWith(".wasm"));
  if (!manifest) throw new ApiError(400, "choose the package's locker.toml too");
  if (!component) throw new ApiError(400, "choose the package's component (.wasm) too");
  data.append("manifest", manifest);
  data.append("component", component);
  for (const file of files) {
    if (file !== manifest && file !== component) data.append("file", file, file.name);
  }
  return data;
}

// --- views ---------------------------------------------------------------

// Work a view started (timers, streams) that must stop when it is left.
let cleanups = [];
function onLeave(cleanup) {
  cleanups.push(cleanup);
}

async function route(event) {
  for (const cleanup of cleanups) cleanup();
  cleanups = [];
  problem("");
  if (location.hash !== noticeFor) notice("");
  const hash = location.hash.replace(/^#/, "") || "/";
  const [, first = "", ...rest] = hash.split("/");
  const nav = first === "service" ? "services" : first || "services";
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.nav === nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const views = { "": services, install, events, backups, account, service: () => service(decodeURIComponent(rest[0] || "")) };
  const render = views[first] || notFound;
  await attempt(render);
  // After a move (not the first load), the keyboard starts at the new content.
  if (event) view().focus({ preventScroll: true });
}

function notFound() {
  document.title = "Not found · Locker";
  show(h("h1", {}, "Nothing here"), h("p", {}, h("a", { href: "#/" }, "Back to your services")));
}

function stateBadge(status) {
  const state = status.needs_setting ? "stopped" : status.state;
  const text = status.needs_setting ? `needs its setting ${status.needs_setting}` : status.state;
  return h("span", { class: `state ${state}` }, text);
}

function openLink(name) {
  return h("a", { href: `/_locker/ticket?service=${encodeURIComponent(name)}&path=%2F`,
    target: "_blank", rel: "noopener", class: "open" }, "Open");
}

async function services() {
  document.title = "Services · Locker";
  const list = await api("GET", "/services");
  const stats = await api("GET", "/events/stats").catch(() => null);
  const rows = list.map((s) =>
    h("tr", { dataset: { service: s.name } },
      h("td", { "data-label": "Service" }, h("div", {}, h("a", { href: `#/service/${encodeURIComponent(s.name)}` }, s.name),
        h("br"), h("small", {}, s.description))),
      h("td", { "data-label": "Kind" }, s.kind),
      h("td", { "data-label": "Version" }, s.version, s.wasi ? h("small", {}, ` · WASI ${s.wasi}`) : ""),
      h("td", { "data-label": "State", class: "state-cell" }, stateBadge(s)),
      h("td", { "data-label": "Loads", class: "num" }, s.loads),
      h("td", { "data-label": "Requests", class: "num" }, s.requests),
      h("td", { "data-label": "Memory", class: "num" }, bytes(s.settings.memory)),
      h("td", { "data-label": "Last error" }, s.last_error ? h("span", { class: "error-text" }, s.last_error) : h("span", { class: "muted" }, "none")),
      h("td", { "data-label": "" }, openLink(s.name))));
  show(
    h("h1", {}, "Your services"),
    stats ? h("p", { class: "muted", id: "stats" },
      `${stats.published} events published · ${stats.pending} waiting · `,
      stats.dead ? h("a", { href: "#/events" }, `${stats.dead} dead letters`) : "no dead letters") : "",
    list.length
      ? h("table", { id: "services", class: "stack" },
        h("thead", {}, h("tr", {}, ...["Service", "Kind", "Version", "State", "Loads", "Requests", "Memory", "Last error", ""].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows))
      : h("p", { id: "no-services" }, "No services yet. ", h("a", { href: "#/install" }, "Install one.")));
  const cluster = await api("GET", "/cluster").catch(() => null);
  if (cluster) view().append(clusterSection(cluster));
  const timer = setInterval(() => refreshStates().catch(() => {}), 3000);
  onLeave(() => clearInterval(timer));
}

// A locker served by several hosts (`serve --cluster`): the hosts alive,
// which one owns each service, and this host's NATS connection.
function clusterSection(cluster) {
  const owner = {};
  for (const lease of cluster.leases) (owner[lease.host] ||= []).push(lease.service);
  return h("section", { id: "cluster" },
    h("h2", {}, `Hosts (${cluster.hosts.length})`),
    h("p", { class: "muted" },
      `This page comes from ${cluster.host}; its link to NATS server ${cluster.nats.server} is ${cluster.nats.state}. `,
      `A service runs on one host at a time; if that host stops, another takes it over within ${cluster.lease_seconds} s. `,
      "Loads, requests and memory above are this host's: open a host's address for its own."),
    h("table", { id: "hosts", class: "stack" },
      h("thead", {}, h("tr", {}, ...["Host", "Address", "Joined", "NATS server", "Serves"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, cluster.hosts.map((host) =>
        h("tr", { dataset: { host: host.host } },
          h("td", { "data-label": "Host" }, host.host, host.host === cluster.host ? h("small", {}, " (this one)") : ""),
          h("td", { "data-label": "Address" }, host.url),
          h("td", { "data-label": "Joined" }, when(host.joined_at)),
          h("td", { "data-label": "NATS server" }, host.nats_server),
          h("td", { "data-label": "Serves" }, (owner[host.host] || []).join(", ") || h("span", { class: "muted" }, "nothing yet")))))));
}

async function refreshStates() {
  const list = await api("GET", "/services");
  for (const s of list) {
    const row = document.querySelector(`tr[data-service="${CSS.escape(s.name)}"]`);
    if (row) row.querySelector(".state-cell").replaceChildren(stateBadge(s));
  }
}

// --- one service ---------------------------------------------------------

async function service(name) {
  document.title = `${name} · Locker`;
  let status;
  try {
    status = await api("GET", `/services/${encodeURIComponent(name)}`);
  } catch (e) {
    if (e.status === 404) {
      show(h("h1", {}, "No such service"), h("p", {}, `No service named ${name} is installed. `,
        h("a", { href: "#/" }, "Back to your services")));
      return;
    }
    throw e;
  }
  const path = `/services/${encodeURIComponent(name)}`;
  const reload = () => route();
  const act = (verb, label) => h("button", { id: verb, onclick: (e) => attempt(async () => {
    await api("POST", `${path}/${verb}`, verb === "rollback" ? {} : undefined);
    await reload();
    notice(`${name}: ${label.toLowerCase()} done`);
  }, e.target) }, label);
  const facts = h("dl", { class: "facts" },
    h("dt", {}, "Kind"), h("dd", {}, status.kind),
    h("dt", {}, "Version"), h("dd", {}, status.version, status.wasi ? ` · WASI ${status.wasi}` : ""),
    h("dt", {}, "State"), h("dd", { id: "state" }, stateBadge(status)),
    h("dt", {}, "Loads"), h("dd", {}, status.loads, status.last_load ? h("small", {}, ` · last ${status.last_load.millis.toFixed(1)} ms (${status.last_load.outcome})`) : ""),
    h("dt", {}, "Requests"), h("dd", {}, status.requests),
    h("dt", {}, "Memory limit"), h("dd", {}, bytes(status.settings.memory)),
    h("dt", {}, "Deadline"), h("dd", {}, status.settings.timeout),
    h("dt", {}, "Installed"), h("dd", {}, when(status.installed_at), status.origin ? h("small", {}, ` from ${status.origin.reference}`) : ""),
    h("dt", {}, "Last error"), h("dd", { class: status.last_error ? "error-text" : "muted" }, status.last_error || "none"));
  const upgrade = packageForm("upgrade", "Upgrade from files", (e) => {
    e.preventDefault();
    attempt(async () => {
      const upgraded = await api("PUT", path, packageData(e.target));
      await reload();
      notice(`${name} upgraded to ${upgraded.version}`);
    }, e.submitter);
  });
  const log = h("pre", { id: "log", "aria-live": "off", tabindex: "0" });
  show(
    h("p", {}, h("a", { href: "#/" }, "← Services")),
    h("h1", {}, name, " ", h("small", {}, status.description)),
    h("div", { class: "actions" }, openLink(name),
      status.state === "stopped" ? act("start", "Start") : act("stop", "Stop"),
      act("rollback", "Roll back"),
      h("button", { id: "uninstall", class: "danger", onclick: (e) => uninstall(status, e.target) }, "Uninstall…")),
    facts,
    h("h2", {}, "Settings"), h("div", { id: "config" }, h("p", { class: "muted" }, "Loading…")),
    h("h2", {}, "Jobs"), h("div", { id: "jobs" }, h("p", { class: "muted" }, "Loading…")),
    h("h2", {}, "Events"),
    h("p", { id: "subscriptions" }, "Receives: ", status.subscribes.length ? status.subscribes.map((t) => h("code", {}, t, " ")) : h("span", { class: "muted" }, "nothing")),
    h("p", {}, "Publishes: ", status.publishes.length ? status.publishes.map((t) => h("code", {}, t, " ")) : h("span", { class: "muted" }, "nothing")),
    h("div", { id: "published" }),
    h("h2", {}, "Calls"),
    h("p", { id: "calls" }, status.calls && status.calls.length ? status.calls.map((c) => h("code", {}, c, " ")) : h("span", { class: "muted" }, "It calls no other service.")),
    h("h2", {}, "Log ", h("small", {}, "(follows)")), log,
    h("h2", {}, "Upgrade"),
    status.origin ? h("div", { class: "card" },
      h("p", {}, "Installed from ", h("code", {}, status.origin.source), "."),
      h("div", { class: "actions" }, h("button", { id: "check-upgrade", onclick: (e) => attempt(() => upgradeOffer(name), e.target) }, "Check the registry for an upgrade")),
      h("div", { id: "upgrade-offer" })) : "",
    upgrade);
  await Promise.all([
    attempt(() => showConfig(name)),
    attempt(() => showJobs(name)),
    attempt(() => showPublished(name)),
  ]);
  followLog(name, log);
}

async function upgradeOffer(name) {
  const box = document.getElementById("upgrade-offer");
  const answer = await api("POST", `/registry/upgrade-offer/${encodeURIComponent(name)}`, {});
  const offered = answer.offer;
  if (!offered) {
    box.replaceChildren(h("p", { id: "newest" }, `${name} is up to date: the newest release there is ${answer.newest || "this one"}.`));
    return;
  }
  const widens = reachList(offered.widens);
  const accept = h("button", { id: "accept-upgrade", class: "primary", onclick: (e) => attempt(async () => {
    const upgraded = await api("POST", `/registry/upgrade/${encodeURIComponent(name)}`, {
      reference: offered.reference, publisher: offered.publisher, reach: offered.reach,
    });
    await route();
    notice(`${name} upgraded to ${upgraded.version}`);
  }, e.target) }, `Upgrade to ${offered.version}`);
  box.replaceChildren(h("div", { id: "offer" },
    h("p", {}, `${offered.version} is there (installed: ${offered.installed}), signed by `,
      h("span", { class: "fingerprint" }, offered.publisher || "nobody"), "."),
    widens.length ? [h("p", { class: "problem" }, "It asks to reach more than the installed version:"), h("dl", { class: "facts" }, widens)] : h("p", { class: "muted" }, "It reaches nothing the installed version does not."),
    h("div", { class: "actions" }, accept)));
  accept.focus();
}

// What a package may reach, as term and description pairs.
function reachList(reach) {
  return Object.entries({
    "Outbound HTTP to": reach.outbound, "Calls": reach.calls, "Publishes": reach.publishes,
    "Receives": reach.subscribes, "Public routes": reach.public_routes, "Secrets": reach.secrets,
  }).filter(([, items]) => items && items.length).map(([what, items]) => [h("dt", {}, what), h("dd", {}, items.join(", "))]);
}

async function uninstall(status, button) {
  const name = status.name;
  const keep = h("input", { type: "checkbox", id: "keep-data" });
  const yes = await confirmDialog(`Uninstall ${name}?`, "Uninstall",
    h("p", {}, `This deletes ${name} ${status.version}: its package, its settings and secrets, its jobs and its pending events.`),
    h("p", { id: "what-is-deleted" }, "Unless you keep it, its folder is deleted too: ",
      h("strong", {}, `services/${name}`), " in the locker's root, with every file it keeps."),
    h("label", {}, keep, " Keep its folder"));
  if (!yes) return;
  await attempt(async () => {
    await api("DELETE", `/services/${encodeURIComponent(name)}${keep.checked ? "?keep_data=true" : ""}`);
    location.hash = "#/";
    notice(`${name} was uninstalled${keep.checked ? "; its folder was kept" : ""}.`);
  }, button);
}

async function showConfig(name) {
  const entries = await api("GET", `/services/${encodeURIComponent(name)}/config`);
  const box = document.getElementById("config");
  if (!entries.length) {
    box.replaceChildren(h("p", { class: "muted" }, "It has no settings."));
    return;
  }
  const rows = entries.map((entry) => {
    const shown = entry.secret
      ? (entry.set ? "set" : "not set")
      : (entry.set ? entry.value : (entry.default !== null ? `${entry.default} (default)` : "not set"));
    const input = h("input", { type: entry.secret ? "password" : "text", name: "value",
      autocomplete: entry.secret ? "new-password" : "off", "aria-label": `New value of ${entry.key}`,
      placeholder: entry.secret ? "new secret" : "new value", required: true });
    const save = async (e) => {
      e.preventDefault();
      await attempt(async () => {
        await api("PUT", `/services/${encodeURIComponent(name)}/config/${encodeURIComponent(entry.key)}`, { value: input.value });
        input.value = "";
        await Promise.all([showConfig(name), refreshState(name)]);
        notice(`${entry.key} ${entry.secret ? "set (its value is never shown)" : "saved"}`);
      }, e.submitter);
    };
    const unset = (e) => attempt(async () => {
      await api("DELETE", `/services/${encodeURIComponent(name)}/config/${encodeURIComponent(entry.key)}`);
      await Promise.all([showConfig(name), refreshState(name)]);
      notice(`${entry.key} unset`);
    }, e.target);
    return h("tr", { dataset: { key: entry.key } },
      h("td", { "data-label": "Key" }, h("code", {}, entry.key), entry.required ? h("small", {}, " required") : "",
        entry.secret ? h("small", {}, " secret") : "", h("br"), h("small", {}, entry.description || "")),
      h("td", { "data-label": "Value", class: "value" }, shown),
      h("td", { "data-label": "" },
        h("form", { class: "inline", onsubmit: save }, h("label", {}, input), h("button", {}, "Set"),
          entry.set ? h("button", { type: "button", onclick: unset }, "Unset") : "")));
  });
  box.replaceChildren(h("table", { class: "stack" },
    h("thead", {}, h("tr", {}, h("th", {}, "Key"), h("th", {}, "Value"), h("th", {}, ""))),
    h("tbody", {}, rows)));
}

// A setting changed: the service may now be able to run, or no longer.
async function refreshState(name) {
  const status = await api("GET", `/services/${encodeURIComponent(name)}`);
  document.getElementById("state").replaceChildren(stateBadge(status));
}

async function showJobs(name) {
  const jobs = await api("GET", `/jobs?service=${encodeURIComponent(name)}`);
  const box = document.getElementById("jobs");
  if (!jobs.length) {
    box.replaceChildren(h("p", { class: "muted" }, "It has no jobs."));
    return;
  }
  box.replaceChildren(h("table", { class: "stack" },
    h("thead", {}, h("tr", {}, ...["Job", "Schedule", "Next run", "Last run", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, jobs.map((job) => {
      const result = h("span", { class: "result" }, job.last_run ? `${job.last_run.result} (${when(job.last_run.finished)})` : "never run");
      if (job.last_run && job.last_run.error) result.append(h("br"), h("span", { class: "error-text" }, job.last_run.error));
      const run = (e) => attempt(async () => {
        result.textContent = "running…";
        const ran = await api("POST", `/jobs/${encodeURIComponent(name)}/${encodeURIComponent(job.name)}/run`);
        result.replaceChildren(`${ran.result} in ${ran.took_ms} ms`);
        if (ran.error) result.append(h("br"), h("span", { class: "error-text" }, ran.error));
        notice(`job ${job.name}: ${ran.result}`);
      }, e.target);
      return h("tr", { dataset: { job: job.name } },
        h("td", { "data-label": "Job" }, h("code", {}, job.name)),
        h("td", { "data-label": "Schedule" }, job.schedule),
        h("td", { "data-label": "Next run" }, when(job.next_run)),
        h("td", { "data-label": "Last run" }, result),
        h("td", { "data-label": "" }, h("button", { class: "run", onclick: run }, "Run now")));
    }))));
}

async function showPublished(name) {
  const recent = await api("GET", "/events?limit=200");
  const mine = recent.filter((e) => e.source === name).slice(0, 10);
  document.getElementById("published").replaceChildren(
    h("h3", {}, "Recently published"),
    mine.length ? h("ul", { class: "plain" }, mine.map(eventItem)) : h("p", { class: "muted" }, "Nothing recently."));
}

function followLog(name, pre) {
  let from = 0;
  let stopped = false;
  let placeholder = false;
  const read = async () => {
    if (stopped) return;
    try {
      const response = await fetch(`${API}/services/${encodeURIComponent(name)}/log?from=${from}`, { credentials: "same-origin" });
      if (response.ok) {
        const text = await response.text();
        from = Number(response.headers.get("x-log-next") || from);
        if (text) {
          if (placeholder) {
            pre.textContent = "";
            placeholder = false;
          }
          const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
          pre.append(text);
          if (atEnd) pre.scrollTop = pre.scrollHeight;
        }
      } else if (response.status === 404 && !pre.textContent) {
        pre.textContent = "(nothing logged yet)";
        placeholder = true;
      }
    } catch {
      // The next poll tries again.
    }
    if (!stopped) timer = setTimeout(read, 1000);
  };
  let timer = setTimeout(read, 0);
  onLeave(() => {
    stopped = true;
    clearTimeout(timer);
  });
}

// --- install -------------------------------------------------------------

async function install() {
  document.title = "Install · Locker";
  const upload = packageForm("upload", "Install from files", (e) => {
    e.preventDefault();
    attempt(async () => {
      const installed = await api("POST", "/services", packageData(e.target));
      location.hash = `#/service/${encodeURIComponent(installed.name)}`;
      notice(`${installed.name} ${installed.version} installed`);
    }, e.submitter);
  });
  const found = h("div", { id: "found" });
  const search = h("form", { id: "search", class: "card inline", onsubmit: (e) => {
    e.preventDefault();
    const form = e.target;
    attempt(async () => {
      const registry = form.elements.registry.value.trim();
      const results = await api("POST", "/registry/search", {
        registry, type: form.elements.type.value.trim() || undefined, insecure: form.elements.insecure.checked,
      });
      showFound(found, results.found, results.refused, form.elements.insecure.checked);
    }, e.submitter);
  } },
  h("label", {}, "Registry", h("input", { name: "registry", id: "registry", required: true, placeholder: "registry.example.org/locker" })),
  h("label", {}, "Service type", h("input", { name: "type", id: "type", placeholder: "contact/card (empty: all)" })),
  h("label", { class: "check" }, h("input", { type: "checkbox", name: "insecure", id: "insecure" }), " plain HTTP"),
  h("button", { class: "primary" }, "Search"));
  show(h("h1", {}, "Install a service"),
    h("h2", {}, "From a registry"), search, found,
    h("h2", {}, "From files"), upload);
}

function showFound(box, results, refused, insecure) {
  // Packages whose signature did not hold are named, never offered.
  const refusals = refused.length
    ? h("div", { class: "problem", id: "refused" }, "Refused (their signature does not hold): ",
      h("ul", {}, refused.map((r) => h("li", {}, r))))
    : "";
  if (!results.length) {
    box.replaceChildren(h("p", { class: "muted" }, "No signed package there provides that type."), refusals);
    return;
  }
  box.replaceChildren(refusals, h("ul", { class: "plain" }, results.map((p) =>
    h("li", { dataset: { package: p.name } },
      h("strong", {}, p.name), " ", p.version, h("small", {}, ` · ${p.kind}`),
      h("br"), p.description, h("br"),
      h("small", {}, "provides ", p.provides.join(", ") || "nothing", " · signed by "), h("span", { class: "fingerprint" }, p.publisher),
      h("div", { class: "actions" }, h("button", { onclick: (e) => attempt(() => offer(box, p.reference, insecure), e.target) }, "Install…"))))));
}

async function offer(box, reference, insecure) {
  const offered = await api("POST", "/registry/offer", { reference, insecure });
  const first = offered.standing === "first_install";
  const accept = h("button", { id: "accept", class: "primary", onclick: (e) => attempt(async () => {
    const installed = await api("POST", "/registry/install", {
      reference: offered.reference, publisher: offered.publisher, reach: offered.reach, insecure,
    });
    location.hash = `#/service/${encodeURIComponent(installed.name)}`;
    notice(`${installed.name} ${installed.version} installed${first ? "; its publisher's key is now pinned" : ""}`);
  }, e.target) }, first ? "Trust this publisher and install" : "Install");
  const reach = reachList(offered.reach);
  box.replaceChildren(h("div", { id: "offer", class: "card" },
    h("h3", {}, `${offered.name} ${offered.version}`), h("p", {}, offered.description),
    h("p", {}, first ? "First install: you are asked to trust the key that signed it. Later upgrades must be signed by the same key." :
      offered.standing === "pinned" ? "Signed by the key already pinned for it." : "Unsigned."),
    offered.publisher ? h("p", {}, "Publisher's key: ", h("span", { class: "fingerprint", id: "fingerprint" }, offered.publisher)) : "",
    h("p", {}, "From ", h("code", {}, offered.source)),
    reach.length ? h("dl", { class: "facts", id: "reach" }, reach) : h("p", { class: "muted" }, "It reaches nothing outside its own folder."),
    h("div", { class: "actions" }, accept, h("button", { onclick: () => box.replaceChildren() }, "Cancel"))));
  accept.focus();
}

// --- events --------------------------------------------------------------

function eventItem(e) {
  let payload = e.payload;
  try {
    payload = JSON.stringify(JSON.parse(e.payload), null, 2);
  } catch {
    // Shown as it came.
  }
  return h("li", { class: "event", dataset: { id: e.id, topic: e.topic } },
    h("span", { class: "topic" }, e.topic), h("small", {}, ` from ${e.source} · ${when(e.time)}`),
    h("pre", {}, payload));
}

async function events() {
  document.title = "Events · Locker";
  const live = h("ul", { id: "live", class: "plain", "aria-live": "polite" });
  const status = h("span", { id: "stream-state", class: "muted" }, "connecting…");
  let source;
  const connect = (pattern) => {
    if (source) source.close();
    live.replaceChildren();
    const query = pattern ? `?topic=${encodeURIComponent(pattern)}` : "";
    source = new EventSource(`${API}/events/stream${query}`);
    source.onopen = () => { status.textContent = pattern ? `live, topics ${pattern}` : "live, every topic"; };
    source.onerror = () => { status.textContent = "reconnecting…"; };
    source.onmessage = (message) => {
      const event = JSON.parse(message.data);
      live.prepend(eventItem(event));
      while (live.children.length > 100) live.lastChild.remove();
    };
  };
  onLeave(() => source && source.close());
  const filter = h("form", { class: "inline", id: "filter", onsubmit: (e) => {
    e.preventDefault();
    problem("");
    connect(e.target.elements.topic.value.trim());
  } },
  h("label", {}, "Topic filter", h("input", { name: "topic", id: "topic", placeholder: "contact/* (empty: all)" })),
  h("button", {}, "Filter"));
  const dead = h("div", { id: "dead" });
  show(h("h1", {}, "Events"),
    h("h2", {}, "Live ", status), filter, live,
    h("h2", {}, "Dead letters"), dead);
  connect("");
  await showDeadLetters(dead);
  const timer = setInterval(() => showDeadLetters(dead).catch(() => {}), 2000);
  onLeave(() => clearInterval(timer));
}

async function showDeadLetters(box) {
  const letters = await api("GET", "/dead-letters");
  if (!letters.length) {
    box.replaceChildren(h("p", { class: "muted", id: "no-dead" }, "None: every event reached its subscribers."));
    return;
  }
  const replay = (body, button) => attempt(async () => {
    const replayed = await api("POST", "/dead-letters/replay", body);
    notice(`replayed to ${replayed.length ? replayed.join(", ") : "nobody"}`);
    await showDeadLetters(box);
  }, button);
  box.replaceChildren(
    h("div", { class: "actions" }, h("button", { id: "replay-all", onclick: (e) => replay({}, e.target) }, `Replay all ${letters.length}`)),
    h("table", { class: "stack" },
      h("thead", {}, h("tr", {}, ...["Subscriber", "Event", "Attempts", "Last error", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, letters.map((l) => h("tr", { dataset: { event: l.event.id, subscriber: l.subscriber } },
        h("td", { "data-label": "Subscriber" }, l.subscriber),
        h("td", { "data-label": "Event" }, h("code", {}, l.event.topic), h("br"), h("small", {}, `${l.event.id} from ${l.event.source}`)),
        h("td", { "data-label": "Attempts", class: "num" }, l.attempts),
        h("td", { "data-label": "Last error", class: "error-text" }, l.last_error || ""),
        h("td", { "data-label": "" }, h("button", { class: "replay", onclick: (e) => replay({ service: l.subscriber, event: l.event.id }, e.target) }, "Replay")))))));
}

// --- backups -------------------------------------------------------------

async function backups() {
  document.title = "Backups · Locker";
  const passphrases = h("div", { id: "backup-passphrases" },
    h("label", {}, "Passphrase", h("input", { type: "password", name: "passphrase", id: "backup-passphrase", autocomplete: "new-password", required: true })),
    h("label", {}, "Passphrase again", h("input", { type: "password", name: "again", autocomplete: "new-password", required: true })),
    h("p", { class: "muted" }, "Whoever has the backup and the passphrase can read the secrets; without the passphrase, a restore brings everything else back."));
  // Leaving the secrets out needs no passphrase: its fields go.
  const choose = (e) => {
    const sealed = e.currentTarget.elements.secrets.value === "sealed";
    passphrases.hidden = !sealed;
    for (const input of passphrases.querySelectorAll("input")) input.disabled = !sealed;
  };
  const now = h("form", { id: "backup-now", class: "card", onchange: choose, onsubmit: (e) => {
    e.preventDefault();
    const form = e.target;
    const sealed = form.elements.secrets.value === "sealed";
    const passphrase = form.elements.passphrase.value;
    if (sealed && passphrase !== form.elements.again.value) {
      problem("the two passphrases differ");
      return;
    }
    attempt(async () => {
      await api("POST", "/backups", sealed ? { passphrase } : { no_secrets: true });
      form.reset();
      passphrases.hidden = false;
      for (const input of passphrases.querySelectorAll("input")) input.disabled = false;
      notice("backup started");
      awaitingBackup = true;
      await showBackups();
    }, e.submitter);
  } },
  h("fieldset", {}, h("legend", {}, "The services' secrets"),
    h("label", { class: "choice" }, h("input", { type: "radio", name: "secrets", value: "sealed", checked: true }), "Seal them under a passphrase"),
    h("label", { class: "choice" }, h("input", { type: "radio", name: "secrets", value: "left-out" }), "Leave them out")),
  passphrases,
  h("button", { class: "primary" }, "Back up now"));
  show(h("h1", {}, "Backups"),
    h("div", { id: "backup-state" }),
    h("h2", {}, "Back up now"), now,
    h("h2", {}, "Kept"), h("div", { id: "backups" }));
  await showBackups();
  const timer = setInterval(() => showBackups().catch(() => {}), 1000);
  onLeave(() => clearInterval(timer));
}

// A backup the owner started here: its end is told when it comes.
let awaitingBackup = false;

async function showBackups() {
  const view = await api("GET", "/backups");
  if (awaitingBackup && !view.running && view.last) {
    awaitingBackup = false;
    if (view.last.error) problem(`the backup failed: ${view.last.error}`);
    else notice(`backup ${view.last.name} made`);
  }
  const state = [];
  state.push(h("p", {}, view.schedule
    ? `On schedule ${view.schedule} (UTC), next ${when(view.next)}, into ${view.dir}; the newest ${view.keep} are kept; secrets ${view.seals_secrets ? "sealed" : "left out"}.`
    : `No schedule: set [backup] schedule in host.toml. Backups made here go into ${view.dir}.`));
  if (view.running) {
    const r = view.running;
    state.push(h("p", { id: "backup-running" }, `Making ${r.name}: ${r.phase} `,
      h("progress", { max: r.total || 1, value: r.total ? r.done : 0 }), r.total ? ` ${bytes(r.done)} of ${bytes(r.total)}` : ""));
  }
  if (view.last) {
    const l = view.last;
    state.push(l.error
      ? h("p", { id: "backup-last", class: "error-text" }, `The last backup (${l.trigger}, ${when(l.finished)}) failed: ${l.error}`)
      : h("p", { id: "backup-last" }, `The last backup, ${l.name} (${l.trigger}, ${when(l.finished)}): ${l.files} files, ${bytes(l.data_bytes)} of data in ${bytes(l.archive_bytes)}, secrets ${l.secrets}; the services were held still for ${l.paused_ms} ms.`));
  }
  document.getElementById("backup-state").replaceChildren(...state);
  document.getElementById("backups").replaceChildren(view.archives.length
    ? h("table", { class: "stack" },
      h("thead", {}, h("tr", {}, ...["Backup", "Size", "Made", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, view.archives.map((a) => h("tr", { dataset: { backup: a.name } },
        h("td", { "data-label": "Backup" }, h("code", {}, a.name)),
        h("td", { "data-label": "Size", class: "num" }, bytes(a.bytes)),
        h("td", { "data-label": "Made" }, when(a.created)),
        h("td", { "data-label": "" },
          h("a", { class: "download", href: `${API}/backups/${encodeURIComponent(a.name)}`, download: a.name }, "Download"), " ",
          h("button", { class: "danger delete", onclick: async (e) => {
            const sure = await confirmDialog(`Delete ${a.name}?`, "Delete", h("p", {}, "The archive is removed from the backups folder."));
            if (!sure) return;
            attempt(async () => {
              await api("DELETE", `/backups/${encodeURIComponent(a.name)}`);
              notice(`${a.name} deleted`);
              await showBackups();
            }, e.target);
          } }, "Delete"))))))
    : h("p", { class: "muted", id: "no-backups" }, "None yet."));
}

// --- account -------------------------------------------------------------

async function account() {
  document.title = "Account · Locker";
  const password = h("form", { id: "password", class: "card", onsubmit: (e) => {
    e.preventDefault();
    const form = e.target;
    if (form.elements.new.value !== form.elements.again.value) {
      problem("the two new passwords differ");
      return;
    }
    attempt(async () => {
      await api("POST", "/owner/password", { current: form.elements.current.value, new: form.elements.new.value });
      form.reset();
      notice("password changed; every other session has ended");
      await showSessions();
    }, e.submitter);
  } },
  h("input", { type: "text", name: "username", value: "owner", autocomplete: "username", hidden: true }),
  h("label", {}, "Current password", h("input", { type: "password", name: "current", autocomplete: "current-password", required: true })),
  h("label", {}, "New password", h("input", { type: "password", name: "new", autocomplete: "new-password", minlength: 10, required: true })),
  h("label", {}, "New password again", h("input", { type: "password", name: "again", autocomplete: "new-password", required: true })),
  h("button", { class: "primary" }, "Change password"));
  const addPasskey = h("form", { id: "add-passkey", class: "inline", onsubmit: (e) => {
    e.preventDefault();
    attempt(() => registerPasskey(e.target.elements.name.value.trim()).then(() => e.target.reset()), e.submitter);
  } },
  h("label", {}, "Name", h("input", { name: "name", id: "passkey-name", required: true, maxlength: 64, placeholder: "this laptop" })),
  h("button", {}, "Add a passkey"));
  const scopes = ["read", "metrics", "admin"];
  const newToken = h("form", { id: "new-token", class: "inline", onsubmit: (e) => {
    e.preventDefault();
    const form = e.target;
    attempt(async () => {
      const days = Number(form.elements.days.value);
      const made = await api("POST", "/tokens", {
        scope: form.elements.scope.value.trim(), label: form.elements.label.value.trim(),
        expires_in_secs: days > 0 ? Math.round(days * 86400) : undefined,
      });
      form.reset();
      document.getElementById("token-shown").replaceChildren(h("div", { class: "card" },
        h("p", {}, `Your new token (scope ${made.scope}). Copy it now: it is never shown again.`),
        h("p", { class: "token", id: "token-value" }, made.token)));
      await showTokens();
    }, e.submitter);
  } },
  h("label", {}, "Scope", h("input", { name: "scope", list: "scopes", required: true, placeholder: "read, metrics, admin, service:NAME, publish:TOPIC" })),
  h("datalist", { id: "scopes" }, scopes.map((s) => h("option", { value: s }))),
  h("label", {}, "Label", h("input", { name: "label", placeholder: "what it is for" })),
  h("label", {}, "Expires in days", h("input", { name: "days", type: "number", min: 0, step: "any", placeholder: "never" })),
  h("button", {}, "Create token"));
  show(h("h1", {}, "Your account"),
    h("h2", {}, "Password"), password,
    h("h2", {}, "Passkeys"), h("p", { class: "muted" }, "Sign in with this device's passkey instead of the password."),
    h("div", { id: "passkeys" }), addPasskey,
    h("h2", {}, "Sessions"), h("div", { id: "sessions" }),
    h("h2", {}, "API tokens"), h("div", { id: "token-shown" }), h("div", { id: "tokens" }), newToken);
  await Promise.all([attempt(showPasskeys), attempt(showSessions), attempt(showTokens)]);
}

async function showPasskeys() {
  const keys = await api("GET", "/passkeys");
  document.getElementById("passkeys").replaceChildren(keys.length
    ? h("ul", { class: "plain" }, keys.map((k) => h("li", { dataset: { passkey: k.name } },
      h("strong", {}, k.name), h("small", {}, ` · added ${when(k.created_at)} · last used ${when(k.last_used)} `),
      h("button", { class: "danger remove", onclick: (e) => attempt(async () => {
        await api("DELETE", `/passkeys/${encodeURIComponent(k.id)}`);
        notice(`passkey ${k.name} removed`);
        await showPasskeys();
      }, e.target) }, "Remove"))))
    : h("p", { class: "muted", id: "no-passkeys" }, "No passkeys yet."));
}

async function registerPasskey(name) {
  if (!window.PublicKeyCredential || !PublicKeyCredential.parseCreationOptionsFromJSON) {
    throw new Error("this browser cannot make passkeys");
  }
  const started = await api("POST", "/passkeys", { name });
  const options = PublicKeyCredential.parseCreationOptionsFromJSON(started.options.publicKey);
  let credential;
  try {
    credential = await navigator.credentials.create({ publicKey: options });
  } catch (e) {
    throw new Error(`no passkey was made: ${e.message}`);
  }
  await api("POST", `/passkeys/register/${encodeURIComponent(started.ceremony)}`, credential.toJSON());
  notice(`passkey ${name} added`);
  await showPasskeys();
}

async function showSessions() {
  const sessions = await api("GET", "/sessions");
  document.getElementById("sessions").replaceChildren(h("ul", { class: "plain" }, sessions.map((s) =>
    h("li", { dataset: { session: s.id } }, s.current ? h("strong", {}, "This browser") : `Session ${s.id}`,
      h("small", {}, ` · from ${s.client} · since ${when(s.created_at)} · last seen ${when(s.last_seen)} `),
      s.current ? "" : h("button", { onclick: (e) => attempt(async () => {
        await api("DELETE", `/sessions/${encodeURIComponent(s.id)}`);
        notice("session ended");
        await showSessions();
      }, e.target) }, "End")))));
}

async function showTokens() {
  const tokens = await api("GET", "/tokens");
  document.getElementById("tokens").replaceChildren(tokens.length
    ? h("table", { class: "stack" },
      h("thead", {}, h("tr", {}, ...["Label", "Scope", "Created", "Expires", "Last used", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, tokens.map((t) => h("tr", { dataset: { token: t.label || t.id } },
        h("td", { "data-label": "Label" }, t.label || h("span", { class: "muted" }, t.id)),
        h("td", { "data-label": "Scope" }, h("code", {}, t.scope)),
        h("td", { "data-label": "Created" }, when(t.created_at)),
        h("td", { "data-label": "Expires" }, t.expired ? h("span", { class: "error-text" }, "expired") : (t.expires_at ? when(t.expires_at) : "never")),
        h("td", { "data-label": "Last used" }, when(t.last_used)),
        h("td", { "data-label": "" }, h("button", { class: "danger revoke", onclick: (e) => attempt(async () => {
          await api("DELETE", `/tokens/${encodeURIComponent(t.id)}`);
          notice(`token ${t.label || t.id} revoked`);
          await showTokens();
        }, e.target) }, "Revoke"))))))
    : h("p", { class: "muted" }, "No tokens."));
}

window.addEventListener("hashchange", route);
// The skip link moves the keyboard to the content without touching the hash
// (the hash is the dashboard's route).
document.querySelector(".skip").addEventListener("click", (e) => {
  e.preventDefault();
  view().focus();
});
route();
