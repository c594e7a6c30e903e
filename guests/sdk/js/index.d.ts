// Types of Locker's JavaScript SDK (`index.js`); those of the host
// interfaces it wraps (`locker:service/*`, `wasi:config/store`) are in
// `locker-service.d.ts`.
/// <reference path="./locker-service.d.ts" />

/** An error the host returned. */
export class LockerError extends Error {
  /** Its kind: `undeclared-topic`, `payload-too-large`, `invalid-json`,
   * `invalid-topic`, `storage`, `invalid-name`, `invalid-cron`,
   * `name-taken`, `not-found`, `upstream`, `io`, ... */
  readonly code: string;
  /** What the host said about it. */
  readonly detail: unknown;
  constructor(code: string, detail?: unknown);
}

/** An event as a subscriber receives it. */
export interface Event {
  /** Unique in the locker, stable across redeliveries. */
  id: string;
  topic: string;
  /** The publishing service, `owner`, or `locker` for the host's own events. */
  source: string;
  /** RFC 3339, UTC. */
  time: string;
  /** The payload as JSON text ... */
  payload: string;
  /** ... and parsed. */
  data: any;
}

/** One run of a job. */
export interface Job {
  name: string;
  /** When the run was due (RFC 3339). */
  scheduled: string;
  /** When this attempt started. */
  actual: string;
  /** 1 for the first attempt at this scheduled time. */
  attempt: number;
  payload: string;
  data: any;
}

export interface ServiceInfo {
  name: string;
  kind: string;
  version: string;
  provides: string[];
}

export interface JobInfo {
  name: string;
  schedule: { tag: 'cron' | 'at'; val: string };
  payload: string;
  nextRun?: string;
  fromManifest: boolean;
}

/** Publishes `value` as JSON on `topic`; returns the event id once stored.
 * @throws {LockerError} */
export function publishJson(topic: string, value: unknown): string;
/** Publishes JSON text on `topic`. @throws {LockerError} */
export function publish(topic: string, json: string): string;

/** Export as `eventHandler`: `fn` runs for each event; a throw is the
 * handler's error (retried with backoff, then a dead letter). */
export function onEvent(fn: (event: Event) => void): { handle(event: unknown): void };
/** Export as `jobHandler`: `fn` runs for each run of a job. */
export function onJob(fn: (job: Job) => void): { run(job: unknown): void };

/** Answers HTTP requests; a throw answers 500. */
export function serve(handler: (request: Request) => Response | Promise<Response>): void;

export const config: {
  /** The value of a `[config.KEY]` setting, or undefined. @throws {LockerError} */
  get(key: string): string | undefined;
  /** Every setting that has a value. */
  getAll(): Record<string, string>;
};

export const discovery: {
  selfName(): string;
  /** Services providing a type matching `pattern` (`contact/*`, `*`). */
  find(pattern: string): ServiceInfo[];
};

export const scheduler: {
  /** @throws {LockerError} */
  create(name: string, when: { cron: string } | { at: string }, payload?: unknown): void;
  /** @throws {LockerError} */
  cancel(name: string): void;
  jobs(): JobInfo[];
};

/** `fetch` of `http://SERVICE.locker/PATH`: a service the manifest's
 * `calls` names. */
export function call(service: string, path?: string, init?: RequestInit): Promise<Response>;

/** Files in the service's own folder, the only place it can reach. Paths
 * are relative to it; a write replaces a file whole and at once.
 * @throws {LockerError} with the filesystem's code (`access`, `not-directory`, ...) */
export const files: {
  /** The file's bytes, or undefined when there is none. */
  readBytes(path: string): Uint8Array | undefined;
  readText(path: string): string | undefined;
  readJson(path: string): any;
  writeBytes(path: string, bytes: Uint8Array): void;
  writeText(path: string, text: string): void;
  /** Writes `value` as indented JSON. */
  writeJson(path: string, value: unknown): void;
  /** Names in a folder (default: the service's own), sorted; [] when there is none. */
  list(dir?: string): string[];
  /** Makes a folder and those above it, as needed. */
  makeDir(path: string): void;
  /** False when there was no such file. */
  remove(path: string): boolean;
  exists(path: string): boolean;
};
