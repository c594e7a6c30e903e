//! Scheduled jobs with a real component (`guests/ticker-rs`): its manifest
//! declares `tick` (every second); it creates and cancels jobs over HTTP and
//! appends every run it is handed to `runs.jsonl` in its working directory.

mod support;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use support::{Locker, cli, eventually, guest, guest_variant, install};

/// The runs a ticker service recorded, read from its working directory.
fn runs(root: &Path, service: &str) -> Vec<Value> {
    let path = root.join("services").join(service).join("runs.jsonl");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // A line being written as we read has no newline yet.
    let complete = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
    complete
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn runs_of(root: &Path, service: &str, job: &str) -> Vec<Value> {
    runs(root, service)
        .into_iter()
        .filter(|run| run["name"] == job)
        .collect()
}

/// Waits until `job` has run at least `count` times.
async fn wait_for_runs(root: &Path, service: &str, job: &str, count: usize) -> Vec<Value> {
    let what = format!("{service}/{job} to run {count} times");
    eventually(&what, Duration::from_secs(20), async || {
        let runs = runs_of(root, service, job);
        match runs.len() {
            ran if ran >= count => Ok(runs),
            ran => Err(format!("{ran} runs")),
        }
    })
    .await
}

fn time_of(run: &Value, field: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(run[field].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Every job, as `locker jobs --json` shows it.
fn jobs(root: &Path) -> Vec<Value> {
    let out = cli(root, &["jobs", "--json"]);
    assert!(out.success, "locker jobs failed: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

fn job<'a>(jobs: &'a [Value], service: &str, name: &str) -> &'a Value {
    jobs.iter()
        .find(|j| j["service"] == service && j["name"] == name)
        .unwrap_or_else(|| panic!("no job {service}/{name} in {jobs:#?}"))
}

async fn create(locker: &Locker, service: &str, spec: Value) -> (u16, String) {
    locker
        .post(&format!("/{service}/jobs"), spec.to_string())
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cron_job_cold_starts_its_idle_service_every_time_it_is_due() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("ticker"));
    // Unloaded after 200 ms idle, so each tick finds the service unloaded.
    let locker = Locker::start(&root, &["--idle-timeout", "200ms"]);

    let ticks = wait_for_runs(&root, "ticker", "tick", 3).await;
    let status = locker.status("ticker").await;
    assert_eq!(
        status["requests"], 0,
        "no HTTP request loaded it: {status:#}"
    );
    assert!(
        status["loads"].as_u64().unwrap() >= 2,
        "each tick cold-started it: {status:#}"
    );
    for run in &ticks {
        assert_eq!(run["payload"], json!({"source": "manifest"}));
        assert_eq!(run["attempt"], 1);
        assert_eq!(time_of(run, "scheduled").timestamp_subsec_millis(), 0);
    }
    let scheduled: Vec<_> = ticks.iter().map(|r| time_of(r, "scheduled")).collect();
    assert!(
        scheduled.windows(2).all(|w| w[1] > w[0]),
        "each second once: {scheduled:?}"
    );

    let jobs = jobs(&root);
    let tick = job(&jobs, "ticker", "tick");
    assert_eq!(tick["kind"], "cron");
    assert_eq!(tick["schedule"], "* * * * * *");
    assert_eq!(tick["from_manifest"], true);
    assert!(tick["runs"].as_u64().unwrap() >= 3, "{tick:#}");
    assert_eq!(tick["last_run"]["result"], "ok");
    assert!(time_of(tick, "next_run") > Utc::now() - chrono::Duration::seconds(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_created_at_run_time_fire_and_cancel_and_a_one_shot_fires_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("ticker"));
    let locker = Locker::start(&root, &[]);

    // Given to the microsecond; the scheduler works in milliseconds.
    let at_micros = Utc::now() + chrono::Duration::milliseconds(800);
    let at = rfc3339(at_micros);
    let at_micros = at_micros.to_rfc3339_opts(SecondsFormat::Micros, true);
    let once = json!({"name": "once", "at": at_micros, "payload": {"kind": "one-shot"}});
    assert_eq!(create(&locker, "ticker", once).await.0, 201);
    let every = json!({"name": "every", "cron": "* * * * * *", "payload": {"kind": "cron"}});
    assert_eq!(create(&locker, "ticker", every).await.0, 201);

    wait_for_runs(&root, "ticker", "every", 2).await;
    let (code, body) = locker.delete("/ticker/jobs/every").await;
    assert_eq!(code, 200, "{body}");
    let after_cancel = runs_of(&root, "ticker", "every").len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // A run already under way when it was cancelled may still finish.
    assert!(runs_of(&root, "ticker", "every").len() <= after_cancel + 1);

    let once_runs = runs_of(&root, "ticker", "once");
    assert_eq!(once_runs.len(), 1, "{once_runs:#?}");
    assert_eq!(once_runs[0]["scheduled"], at);
    assert_eq!(once_runs[0]["payload"], json!({"kind": "one-shot"}));

    let (_, listed) = locker.get("/ticker/jobs").await;
    let listed: Vec<Value> = serde_json::from_str(&listed).unwrap();
    let names: Vec<&str> = listed.iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["once", "tick"], "{listed:#?}");
    assert_eq!(listed[0]["next_run"], Value::Null, "a one-shot runs once");
    let once = job(&jobs(&root), "ticker", "once").clone();
    assert_eq!(
        (once["runs"].clone(), once["skipped"].clone()),
        (json!(1), json!(0))
    );

    let (code, body) = locker.delete("/ticker/jobs/tick").await;
    assert_eq!(code, 404);
    assert!(body.starts_with("declared-in-manifest: tick"), "{body}");
    let (_, body) = locker.delete("/ticker/jobs/nothing").await;
    assert!(body.starts_with("not-found: nothing"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_survive_a_restart_and_each_missed_job_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("ticker"));
    let locker = Locker::start(&root, &[]);
    let every = json!({"name": "every", "cron": "* * * * * *"});
    assert_eq!(create(&locker, "ticker", every).await.0, 201);
    let at = rfc3339(Utc::now() + chrono::Duration::seconds(2));
    let missed = json!({"name": "missed", "at": at});
    assert_eq!(create(&locker, "ticker", missed).await.0, 201);
    wait_for_runs(&root, "ticker", "every", 1).await;
    locker.stop();

    // Down for several ticks of `every` and `tick`, and past `missed`'s time.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let restarted = Utc::now();
    let listed = jobs(&root);
    assert_eq!(job(&listed, "ticker", "missed")["next_run"], at);
    let locker = Locker::start(&root, &[]);
    wait_for_runs(&root, "ticker", "missed", 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let missed_runs = runs_of(&root, "ticker", "missed");
    assert_eq!(missed_runs.len(), 1, "{missed_runs:#?}");
    assert_eq!(missed_runs[0]["scheduled"], at);
    for name in ["every", "tick"] {
        let caught_up: Vec<Value> = runs_of(&root, "ticker", name)
            .into_iter()
            .filter(|r| time_of(r, "scheduled") < restarted && time_of(r, "actual") >= restarted)
            .collect();
        assert_eq!(
            caught_up.len(),
            1,
            "{name} missed several ticks and runs once for them: {caught_up:#?}"
        );
    }
    let (_, listed) = locker.get("/ticker/jobs").await;
    let listed: Vec<Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.len(), 3, "{listed:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_job_is_never_run_twice_at_once_and_a_failing_one_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("ticker"));
    let locker = Locker::start(&root, &["--job-retry", "100ms"]);
    let slow = json!({"name": "slow", "cron": "* * * * * *", "payload": {"sleep_ms": 2500}});
    assert_eq!(create(&locker, "ticker", slow).await.0, 201);
    let flaky =
        json!({"name": "flaky", "at": rfc3339(Utc::now()), "payload": {"fail_attempts": 2}});
    assert_eq!(create(&locker, "ticker", flaky).await.0, 201);

    let mut slow_runs = wait_for_runs(&root, "ticker", "slow", 3).await;
    slow_runs.sort_by_key(|r| r["started_ms"].as_u64());
    for pair in slow_runs.windows(2) {
        assert!(
            pair[1]["started_ms"].as_u64() >= pair[0]["finished_ms"].as_u64(),
            "two runs overlapped: {pair:#?}"
        );
    }
    let listed = jobs(&root);
    let slow = job(&listed, "ticker", "slow");
    assert!(slow["skipped"].as_u64().unwrap() >= 2, "{slow:#}");
    let log = std::fs::read_to_string(root.join("logs/ticker.log")).unwrap();
    assert!(log.contains("\"slow\": skipped its tick"), "{log}");

    // Two failed attempts, then success, all for the one scheduled time.
    let flaky_runs = runs_of(&root, "ticker", "flaky");
    let attempts: Vec<u64> = flaky_runs
        .iter()
        .map(|r| r["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3], "{flaky_runs:#?}");
    assert!(
        flaky_runs
            .iter()
            .all(|r| r["scheduled"] == flaky_runs[0]["scheduled"])
    );
    let flaky = job(&listed, "ticker", "flaky");
    assert_eq!(flaky["last_run"]["attempts"], 3);
    assert_eq!(flaky["last_run"]["result"], "ok");
    assert!(
        log.contains("\"flaky\": attempt 1 failed (retrying in 100ms)"),
        "{log}"
    );
    drop(locker);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_schedules_and_name_clashes_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let bad_cron = guest_variant(dir.path(), "ticker", |m| {
        m.set("schedule.0.cron", "61 * * * * *");
    });
    let out = cli(&root, &["install", bad_cron.to_str().unwrap()]);
    assert!(!out.success);
    assert!(
        out.stderr.contains("job \"tick\"") && out.stderr.contains("\"61 * * * * *\""),
        "{}",
        out.stderr
    );
    let no_handler = guest_variant(dir.path(), "hello-rs", |m| {
        let sync = toml::toml! { name = "sync" cron = "0 * * * * *" };
        m.add("schedule", vec![sync]);
    });
    let out = cli(&root, &["install", no_handler.to_str().unwrap()]);
    assert!(!out.success);
    assert!(out.stderr.contains("job-handler"), "{}", out.stderr);
    assert!(
        cli(&root, &["list"]).stdout.lines().count() == 1,
        "nothing was installed"
    );

    install(&root, &guest("ticker"));
    let locker = Locker::start(&root, &[]);
    let refused = [
        (
            json!({"name": "x", "cron": "*/5 * * * *"}),
            "invalid-cron: cron expression \"*/5 * * * *\" has 5 fields",
        ),
        (
            json!({"name": "x", "cron": "61 * * * * *"}),
            "invalid-cron: cron expression \"61 * * * * *\" is invalid",
        ),
        (
            json!({"name": "x", "at": "next tuesday"}),
            "invalid-time: time \"next tuesday\" is not RFC 3339",
        ),
        (
            json!({"name": "a/b", "cron": "* * * * * *"}),
            "invalid-name: job name \"a/b\"",
        ),
        (
            json!({"name": "tick", "cron": "0 0 * * * *"}),
            "name-taken: tick",
        ),
    ];
    for (spec, expected) in refused {
        let (code, body) = create(&locker, "ticker", spec.clone()).await;
        assert_eq!(code, 409, "{spec}: {body}");
        assert!(body.starts_with(expected), "{spec}: {body}");
    }
    let hourly = json!({"name": "hourly", "cron": "0 0 * * * *"});
    assert_eq!(create(&locker, "ticker", hourly.clone()).await.0, 201);
    let (_, body) = create(&locker, "ticker", hourly).await;
    assert!(body.starts_with("name-taken: hourly"), "{body}");
    let log = std::fs::read_to_string(root.join("logs/ticker.log")).unwrap();
    assert!(
        log.contains("job not created: the service already has a job named \"hourly\""),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_sees_and_cancels_only_its_own_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("ticker"));
    let other = guest_variant(dir.path(), "ticker", |m| {
        m.set("name", "other");
    });
    install(&root, &other);
    let locker = Locker::start(&root, &[]);
    let mine = json!({"name": "mine", "cron": "0 0 * * * *"});
    assert_eq!(create(&locker, "ticker", mine).await.0, 201);

    let (_, listed) = locker.get("/other/jobs").await;
    let listed: Vec<Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.len(), 1, "only its own `tick`: {listed:#?}");
    let (code, body) = locker.delete("/other/jobs/mine").await;
    assert_eq!((code, body.as_str()), (404, "not-found: mine"));
    let (_, listed) = locker.get("/ticker/jobs").await;
    assert!(listed.contains("\"mine\""), "{listed}");

    // An uninstalled service's jobs go with it.
    assert!(cli(&root, &["uninstall", "other"]).success);
    let remaining = jobs(&root);
    assert!(
        remaining.iter().all(|j| j["service"] == "ticker"),
        "{remaining:#?}"
    );
    assert_eq!(remaining.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_owner_runs_a_job_now_and_a_stopped_service_catches_up_when_started() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let hourly = guest_variant(dir.path(), "ticker", |m| {
        m.set("schedule.0.cron", "0 0 0 1 1 *");
    });
    install(&root, &hourly);
    let locker = Locker::start(&root, &[]);

    let out = cli(&root, &["jobs", "run", "tick"]);
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("ran ticker/tick: "),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("1 attempt): ok"), "{}", out.stdout);
    assert_eq!(runs_of(&root, "ticker", "tick").len(), 1);
    let out = cli(&root, &["jobs", "run", "nothing"]);
    assert!(!out.success);
    assert!(
        out.stderr
            .contains("no service has a job named \"nothing\""),
        "{}",
        out.stderr
    );
    let out = cli(&root, &["jobs"]);
    assert!(out.stdout.contains("cron 0 0 0 1 1 *"), "{}", out.stdout);

    // A job due while its service is stopped waits for it, then runs once.
    let at = rfc3339(Utc::now() + chrono::Duration::seconds(1));
    assert_eq!(
        create(&locker, "ticker", json!({"name": "soon", "at": at}))
            .await
            .0,
        201
    );
    assert!(cli(&root, &["stop", "ticker"]).success);
    let out = cli(&root, &["jobs", "run", "ticker/tick"]);
    assert!(!out.success);
    assert!(
        out.stderr.contains("service \"ticker\" is stopped"),
        "{}",
        out.stderr
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(runs_of(&root, "ticker", "soon").is_empty());
    let listed = jobs(&root);
    assert_eq!(job(&listed, "ticker", "soon")["waiting_for_start"], true);
    assert!(cli(&root, &["start", "ticker"]).success);
    let runs = wait_for_runs(&root, "ticker", "soon", 1).await;
    assert_eq!(runs[0]["scheduled"], at);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(runs_of(&root, "ticker", "soon").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_brings_the_manifest_jobs_in_step_and_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("ticker"));
    let locker = Locker::start(&root, &[]);
    let mine = json!({"name": "mine", "cron": "0 0 * * * *"});
    assert_eq!(create(&locker, "ticker", mine).await.0, 201);
    wait_for_runs(&root, "ticker", "tick", 1).await;

    let v2 = guest_variant(dir.path(), "ticker", |m| {
        m.set("version", "0.2.0")
            .set("schedule.0.cron", "0 0 0 1 1 *")
            .push(
                "schedule",
                toml::toml! { name = "nightly" cron = "0 0 3 * * *" },
            );
    });
    let out = cli(&root, &["upgrade", v2.to_str().unwrap()]);
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("upgraded ticker to 0.2.0"),
        "{}",
        out.stdout
    );
    assert_eq!(locker.status("ticker").await["version"], "0.2.0");
    let listed = jobs(&root);
    assert_eq!(job(&listed, "ticker", "tick")["schedule"], "0 0 0 1 1 *");
    assert_eq!(job(&listed, "ticker", "nightly")["from_manifest"], true);
    assert_eq!(job(&listed, "ticker", "mine")["from_manifest"], false);
    assert!(
        !runs_of(&root, "ticker", "tick").is_empty(),
        "its data stayed"
    );

    let v3 = guest_variant(dir.path(), "ticker", |m| {
        m.remove("schedule").set("version", "0.3.0");
    });
    assert!(cli(&root, &["upgrade", v3.to_str().unwrap()]).success);
    let listed = jobs(&root);
    let names: Vec<&str> = listed.iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["mine"], "declared jobs went with the manifest");

    let stranger = guest_variant(dir.path(), "ticker", |m| {
        m.set("name", "stranger");
    });
    let out = cli(&root, &["upgrade", stranger.to_str().unwrap()]);
    assert!(!out.success);
    assert!(
        out.stderr.contains("no service named \"stranger\""),
        "{}",
        out.stderr
    );
}
