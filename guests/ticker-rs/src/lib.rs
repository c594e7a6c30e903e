//! A Locker service that runs scheduled jobs and records each run.
//!
//! Every run is appended to `runs.jsonl` in its working directory
//! (`GET /runs` returns it) with the job's name, scheduled and actual times,
//! attempt, payload, and when the run started and finished. A payload can
//! ask a run to be slow (`{"sleep_ms": N}`) or to fail its first attempts
//! (`{"fail_attempts": N}`).
//!
//! Its own jobs are managed over HTTP:
//! - `GET /jobs` lists them;
//! - `POST /jobs` creates one or many: `{"name", "cron" | "at", "payload"}`
//!   or an array of those;
//! - `DELETE /jobs/NAME` cancels one.

use locker_sdk::job_handler::{self, Job};
use locker_sdk::scheduler::{self, Schedule, ScheduleError};
use locker_sdk::wasip2::clocks::{monotonic_clock, wall_clock};
use locker_sdk::wasip2::exports::http::incoming_handler::Guest as HttpGuest;
use locker_sdk::wasip2::http::types::{IncomingRequest, Method, ResponseOutparam};
use locker_sdk::{Request, append_line, respond};
use serde_json::{Value, json};

struct Ticker;

impl job_handler::Guest for Ticker {
    fn run(job: Job) -> Result<(), String> {
        let started_ms = now_ms();
        let payload: Value = serde_json::from_str(&job.payload).unwrap_or_default();
        if let Some(sleep_ms) = payload["sleep_ms"].as_u64() {
            monotonic_clock::subscribe_duration(sleep_ms * 1_000_000).block();
        }
        let line = json!({
            "name": job.name, "scheduled": job.scheduled, "actual": job.actual,
            "attempt": job.attempt, "payload": payload,
            "started_ms": started_ms, "finished_ms": now_ms(),
        });
        append_line("runs.jsonl", &line.to_string())?;
        match payload["fail_attempts"].as_u64() {
            Some(failures) if u64::from(job.attempt) <= failures => Err(format!(
                "failing on purpose (attempt {} of {failures} failures)",
                job.attempt
            )),
            _ => Ok(()),
        }
    }
}

impl HttpGuest for Ticker {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::new(request);
        let path = request.path.clone();
        match (&request.method, path.as_str()) {
            (Method::Get, "/runs") => {
                respond(out, 200, std::fs::read("runs.jsonl").unwrap_or_default())
            }
            (Method::Get, "/jobs") => {
                let jobs: Vec<Value> = scheduler::jobs().iter().map(job_json).collect();
                respond(out, 200, Value::from(jobs).to_string())
            }
            (Method::Post, "/jobs") => {
                let body: Value = match serde_json::from_slice(&request.body()) {
                    Ok(body) => body,
                    Err(e) => return respond(out, 400, format!("bad JSON: {e}")),
                };
                let specs = match body {
                    Value::Array(specs) => specs,
                    single => vec![single],
                };
                for spec in &specs {
                    if let Err(error) = create(spec) {
                        return respond(out, 409, describe(&error));
                    }
                }
                respond(out, 201, format!("created {}", specs.len()))
            }
            (Method::Delete, _) if path.starts_with("/jobs/") => {
                match scheduler::cancel(&path["/jobs/".len()..]) {
                    Ok(()) => respond(out, 200, "cancelled"),
                    Err(error) => respond(out, 404, describe(&error)),
                }
            }
            _ => respond(out, 404, "no such route\n"),
        }
    }
}

fn create(spec: &Value) -> Result<(), ScheduleError> {
    let text = |key: &str| spec[key].as_str().map(str::to_string);
    let when = match (text("cron"), text("at")) {
        (Some(cron), _) => Schedule::Cron(cron),
        (None, Some(at)) => Schedule::At(at),
        (None, None) => Schedule::At(String::new()),
    };
    let payload = spec.get("payload").cloned().unwrap_or(json!({}));
    scheduler::create(
        &text("name").unwrap_or_default(),
        &when,
        &payload.to_string(),
    )
}

fn job_json(job: &scheduler::JobInfo) -> Value {
    let (kind, spec) = match &job.schedule {
        Schedule::Cron(cron) => ("cron", cron),
        Schedule::At(at) => ("at", at),
    };
    json!({
        "name": job.name, kind: spec, "payload": job.payload,
        "next_run": job.next_run, "from_manifest": job.from_manifest,
    })
}

fn describe(error: &ScheduleError) -> String {
    match error {
        ScheduleError::InvalidName(m) => format!("invalid-name: {m}"),
        ScheduleError::InvalidCron(m) => format!("invalid-cron: {m}"),
        ScheduleError::InvalidTime(m) => format!("invalid-time: {m}"),
        ScheduleError::InvalidJson(m) => format!("invalid-json: {m}"),
        ScheduleError::NameTaken(m) => format!("name-taken: {m}"),
        ScheduleError::NotFound(m) => format!("not-found: {m}"),
        ScheduleError::DeclaredInManifest(m) => format!("declared-in-manifest: {m}"),
        ScheduleError::TooManyJobs(limit) => format!("too-many-jobs: {limit}"),
        ScheduleError::Storage(m) => format!("storage: {m}"),
    }
}

fn now_ms() -> u64 {
    let now = wall_clock::now();
    now.seconds * 1000 + u64::from(now.nanoseconds) / 1_000_000
}

locker_sdk::wasip2::http::proxy::export!(Ticker with_types_in locker_sdk::wasip2);
locker_sdk::export_job_handler!(Ticker);
