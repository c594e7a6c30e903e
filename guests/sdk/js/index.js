// Locker's SDK for services written in JavaScript.
//
// A service is one ES module, built into a component by componentize-js
// (`locker build`). It exports what it handles:
//   - HTTP: `serve(handler)` (a `fetch` listener), or an `incomingHandler`;
//   - events: `export const eventHandler = onEvent(fn)`;
//   - jobs:   `export const jobHandler = onJob(fn)`.
// Imports of the host's interfaces (`locker:service/*`, `wasi:config/store`,
// `wasi:filesystem` for the service's own folder)
// are wrapped here so that a host error is a `LockerError` with a code and
// a handler's thrown error is the handler's error (retried, then a dead
// letter), never a trap that poisons the instance.
import * as events from 'locker:service/events@0.1.0';
import * as discoveryImport from 'locker:service/discovery@0.1.0';
import * as schedulerImport from 'locker:service/scheduler@0.1.0';
import * as store from 'wasi:config/store@0.2.0-draft-2024-09-27';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.10';

/** An error the host returned: `code` is its kind (`undeclared-topic`,
 * `invalid-json`, `name-taken`, ...), `detail` what the host said. */
export class LockerError extends Error {
  constructor(code, detail) {
    super(detail === undefined ? code : `${code}: ${detail}`);
    this.name = 'LockerError';
    this.code = code;
    this.detail = detail;
  }
}

// Calls a host import, turning the error of a `result` into a LockerError.
function host(call) {
  try {
    return call();
  } catch (e) {
    const payload = e && e.payload;
    if (payload && typeof payload === 'object' && 'tag' in payload) {
      throw new LockerError(payload.tag, payload.val);
    }
    throw e;
  }
}

// The message a handler's failure is reported with.
function describe(e) {
  if (e instanceof Error) return e.stack ? `${e.message}\n${e.stack}` : e.message;
  return typeof e === 'string' ? e : JSON.stringify(e);
}

// What a handler throws to return `err(message)` without trapping: the
// bindings take an object with a `payload` as the error value.
function handlerError(e) {
  return { payload: describe(e) };
}

/** Publishes `value` as the JSON payload of an event on `topic` (a topic
 * the manifest `publishes`); returns the event's id once it is stored. */
export function publishJson(topic, value) {
  return host(() => events.publish(topic, JSON.stringify(value)));
}

/** Publishes a payload that is already JSON text. */
export function publish(topic, json) {
  return host(() => events.publish(topic, json));
}

/** An `eventHandler` export calling `fn(event)` for each event; `event.data`
 * is its payload parsed. A throw (or a rejected promise is not waited for:
 * keep handlers synchronous) becomes the handler's error. */
export function onEvent(fn) {
  return {
    handle(event) {
      try {
        fn({ ...event, data: JSON.parse(event.payload) });
      } catch (e) {
        throw handlerError(e);
      }
    },
  };
}

/** A `jobHandler` export calling `fn(job)` for each run; `job.data` is its
 * payload parsed. A throw becomes the run's error (retried). */
export function onJob(fn) {
  return {
    run(job) {
      try {
        fn({ ...job, data: JSON.parse(job.payload) });
      } catch (e) {
        throw handlerError(e);
      }
    },
  };
}

/** Answers HTTP with `handler(request)` (a `Request` in, a `Response` or a
 * promise of one out) as a `fetch` event listener. A throw becomes a 500
 * naming the error. */
export function serve(handler) {
  addEventListener('fetch', (event) =>
    event.respondWith(
      (async () => {
        try {
          return await handler(event.request);
        } catch (e) {
          console.error(describe(e));
          return new Response(`the service failed: ${e instanceof Error ? e.message : e}\n`, {
            status: 500,
            headers: { 'content-type': 'text/plain; charset=utf-8' },
          });
        }
      })(),
    ),
  );
}

/** The service's settings and secrets (`[config.KEY]` in the manifest). */
export const config = {
  /** The value of `key`, or `undefined` when it has none. */
  get(key) {
    const value = host(() => store.get(key));
    return value === null ? undefined : value;
  },
  /** Every key that has a value, as an object. */
  getAll() {
    return Object.fromEntries(host(() => store.getAll()));
  },
};

/** Finding services by the types they provide. */
export const discovery = {
  /** This service's name. */
  selfName() {
    return discoveryImport.selfName();
  },
  /** Services whose provided types match `pattern` (`contact/*`). */
  find(pattern) {
    return discoveryImport.find(pattern);
  },
};

/** Jobs created at run time. `when` is `{ cron: '0 * * * * *' }` or
 * `{ at: '2027-01-01T00:00:00Z' }`. */
export const scheduler = {
  create(name, when, payload = null) {
    const schedule = 'cron' in when ? { tag: 'cron', val: when.cron } : { tag: 'at', val: when.at };
    host(() => schedulerImport.create(name, schedule, JSON.stringify(payload)));
  },
  cancel(name) {
    host(() => schedulerImport.cancel(name));
  },
  jobs() {
    return schedulerImport.jobs();
  },
};

/** A request to another service of this locker (its manifest's `calls`
 * must name it): `fetch` of `http://SERVICE.locker/PATH`. */
export function call(service, path = '/', init) {
  const rest = path.startsWith('/') ? path : `/${path}`;
  return fetch(`http://${service}.locker${rest}`, init);
}

// ---- the service's folder ----------------------------------------------

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// The service's folder: the one directory the host opens for it.
function folder() {
  const directories = getDirectories();
  if (directories.length === 0) throw new LockerError('no-folder', 'the host gave this service no folder');
  return directories[0][0];
}

// A path inside the folder, as the filesystem interface takes it.
function relative(path) {
  const parts = String(path).split('/').filter((p) => p !== '' && p !== '.');
  return parts.length === 0 ? '.' : parts.join('/');
}

// Runs a filesystem call; its error code (`no-entry`, `access`, ...)
// becomes a LockerError naming the path.
function fs(path, call) {
  try {
    return call();
  } catch (e) {
    const code = e && e.payload;
    if (typeof code === 'string') throw new LockerError(code, path);
    throw e;
  }
}

function missing(e) {
  return e instanceof LockerError && e.code === 'no-entry';
}

/** Files in the service's own folder (the only place it can reach): paths
 * are relative to it, and `..` cannot leave it. Writes replace a file
 * whole and at once (a temporary file renamed over it), so a reader never
 * sees half of one. */
export const files = {
  /** The file's bytes, or `undefined` when there is none. */
  readBytes(path) {
    let file;
    try {
      file = fs(path, () => folder().openAt({}, relative(path), {}, { read: true }));
    } catch (e) {
      if (missing(e)) return undefined;
      throw e;
    }
    const chunks = [];
    let offset = 0n;
    let length = 0;
    for (;;) {
      const [data, end] = fs(path, () => file.read(65536n, offset));
      chunks.push(data);
      length += data.length;
      offset += BigInt(data.length);
      if (end || data.length === 0) break;
    }
    const bytes = new Uint8Array(length);
    let at = 0;
    for (const chunk of chunks) {
      bytes.set(chunk, at);
      at += chunk.length;
    }
    return bytes;
  },
  readText(path) {
    const bytes = files.readBytes(path);
    return bytes === undefined ? undefined : decoder.decode(bytes);
  },
  /** The file parsed as JSON, or `undefined` when there is none. */
  readJson(path) {
    const text = files.readText(path);
    return text === undefined ? undefined : JSON.parse(text);
  },
  writeBytes(path, bytes) {
    const target = relative(path);
    const temporary = `${target}.tmp-${Date.now()}-${Math.random().toString(36).slice(2)}`;
    const file = fs(path, () =>
      folder().openAt({}, temporary, { create: true, truncate: true }, { write: true }),
    );
    let offset = 0;
    while (offset < bytes.length) {
      const chunk = bytes.subarray(offset, offset + 65536);
      offset += Number(fs(path, () => file.write(chunk, BigInt(offset))));
    }
    fs(path, () => folder().renameAt(temporary, folder(), target));
  },
  writeText(path, text) {
    files.writeBytes(path, encoder.encode(text));
  },
  /** Writes `value` as JSON (indented, so the owner can read it). */
  writeJson(path, value) {
    files.writeText(path, `${JSON.stringify(value, null, 2)}\n`);
  },
  /** The names in a folder (default: the service's own), sorted. */
  list(dir = '.') {
    const target = relative(dir);
    let directory;
    try {
      directory =
        target === '.'
          ? folder()
          : fs(dir, () => folder().openAt({}, target, { directory: true }, { read: true }));
    } catch (e) {
      if (missing(e)) return [];
      throw e;
    }
    const entries = fs(dir, () => directory.readDirectory());
    const names = [];
    for (;;) {
      const entry = fs(dir, () => entries.readDirectoryEntry());
      if (entry === undefined || entry === null) break;
      names.push(entry.name);
    }
    return names.sort();
  },
  /** Makes a folder and the folders above it, as needed. */
  makeDir(path) {
    const parts = relative(path).split('/');
    for (let i = 1; i <= parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      try {
        fs(path, () => folder().createDirectoryAt(prefix));
      } catch (e) {
        if (!(e instanceof LockerError && e.code === 'exist')) throw e;
      }
    }
  },
  /** Removes a file; false when there was none. */
  remove(path) {
    try {
      fs(path, () => folder().unlinkFileAt(relative(path)));
      return true;
    } catch (e) {
      if (missing(e)) return false;
      throw e;
    }
  },
  exists(path) {
    try {
      fs(path, () => folder().statAt({}, relative(path)));
      return true;
    } catch (e) {
      if (missing(e)) return false;
      throw e;
    }
  },
};
