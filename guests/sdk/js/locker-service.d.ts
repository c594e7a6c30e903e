// The host interfaces the SDK wraps, as componentize-js binds them: a
// `result` error is thrown as an object whose `payload` is the WIT variant
// (`{ tag, val }`); `index.js` turns it into a LockerError.

declare module 'locker:service/events@0.1.0' {
  export interface Event {
    id: string;
    topic: string;
    source: string;
    time: string;
    payload: string;
  }
  export type PublishError =
    | { tag: 'undeclared-topic'; val: string }
    | { tag: 'payload-too-large'; val: bigint }
    | { tag: 'invalid-json'; val: string }
    | { tag: 'invalid-topic'; val: string }
    | { tag: 'storage'; val: string };
  /** Stores an event durably and returns its id. @throws {{ payload: PublishError }} */
  export function publish(topic: string, payload: string): string;
}

declare module 'locker:service/discovery@0.1.0' {
  export interface ServiceInfo {
    name: string;
    kind: string;
    version: string;
    provides: string[];
  }
  export function selfName(): string;
  export function find(pattern: string): ServiceInfo[];
}

declare module 'locker:service/scheduler@0.1.0' {
  export type Schedule = { tag: 'cron'; val: string } | { tag: 'at'; val: string };
  export interface JobInfo {
    name: string;
    schedule: Schedule;
    payload: string;
    nextRun?: string;
    fromManifest: boolean;
  }
  export type ScheduleError =
    | { tag: 'invalid-name'; val: string }
    | { tag: 'invalid-cron'; val: string }
    | { tag: 'invalid-time'; val: string }
    | { tag: 'invalid-json'; val: string }
    | { tag: 'name-taken'; val: string }
    | { tag: 'not-found'; val: string }
    | { tag: 'declared-in-manifest'; val: string }
    | { tag: 'too-many-jobs'; val: number }
    | { tag: 'storage'; val: string };
  /** @throws {{ payload: ScheduleError }} */
  export function create(name: string, when: Schedule, payload: string): void;
  /** @throws {{ payload: ScheduleError }} */
  export function cancel(name: string): void;
  export function jobs(): JobInfo[];
}

declare module 'wasi:config/store@0.2.0-draft-2024-09-27' {
  export type Error = { tag: 'upstream'; val: string } | { tag: 'io'; val: string };
  /** @throws {{ payload: Error }} */
  export function get(key: string): string | undefined;
  /** @throws {{ payload: Error }} */
  export function getAll(): [string, string][];
}

/** What an `eventHandler` export receives and returns (`onEvent` makes one). */
declare module 'locker:service/event-handler@0.1.0' {
  import type { Event } from 'locker:service/events@0.1.0';
  /** Returns for ok; throws `{ payload: string }` for the handler's error. */
  export function handle(event: Event): void;
}

/** What a `jobHandler` export receives (`onJob` makes one). */
declare module 'locker:service/job-handler@0.1.0' {
  export interface Job {
    name: string;
    scheduled: string;
    actual: string;
    attempt: number;
    payload: string;
  }
  export function run(job: Job): void;
}
