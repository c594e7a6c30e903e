//! Scheduler lateness and idle cost, measured on a real `locker serve`.
//!
//! `jobs LOCKER_BIN COUNT SPREAD_SECONDS` installs the ticker service (without
//! its manifest job), has it create COUNT one-shot jobs spread evenly over
//! SPREAD_SECONDS, and reports (as JSON lines):
//! - the host's CPU use while it waits for the first of them (idle, with
//!   COUNT jobs queued);
//! - how late each fired: from its scheduled time to the host starting the
//!   run, and to the guest's handler starting (p50, p99, max), and the
//!   host's CPU use while they fire.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use locker_bench::host::{cpu_time, start};
use locker_bench::renamed_guest;
use serde_json::{Value, json};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let locker: PathBuf = args
        .next()
        .expect("usage: jobs LOCKER_BIN COUNT SPREAD_SECONDS")
        .into();
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let spread: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("root");
    let package = renamed_guest(&dir.path().join("packages"), "ticker", "ticker", |m| {
        m.split("# Every second").next().unwrap().to_string()
    });
    let status = std::process::Command::new(&locker)
        .args(["install", package.to_str().unwrap(), "--root"])
        .arg(&root)
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "install failed");
    let (host, _) = start(&locker, &root, &dir.path().join("cache"))?;
    let pid = host.child.id();
    let mut owner = reqwest::header::HeaderMap::new();
    owner.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", host.token).parse()?,
    );
    let ticker_host = host.service_host("ticker");
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .default_headers(owner)
        .resolve(
            ticker_host.split(':').next().unwrap_or_default(),
            host.address().parse()?,
        )
        .build()?;

    // Every job fires after all are created: creating them takes a while.
    let first = Utc::now() + chrono::Duration::milliseconds(5_000 + count as i64 / 2);
    let step_ms = (spread * 1000) as f64 / count as f64;
    let times: Vec<DateTime<Utc>> = (0..count)
        .map(|i| first + chrono::Duration::microseconds((i as f64 * step_ms * 1000.0) as i64))
        .collect();
    let specs: Vec<Value> = times
        .iter()
        .enumerate()
        .map(|(i, at)| json!({"name": format!("job-{i}"), "at": at.to_rfc3339_opts(SecondsFormat::Micros, true)}))
        .collect();
    let created = Instant::now();
    // Many requests at once, so their durable inserts share commits.
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let chunks: Vec<_> = specs
            .chunks(count.div_ceil(16).max(1))
            .map(|chunk| {
                let (http, url) = (&http, format!("http://{ticker_host}/jobs"));
                scope.spawn(move || -> anyhow::Result<()> {
                    let response = http
                        .post(url)
                        .body(Value::from(chunk.to_vec()).to_string())
                        .send()?;
                    anyhow::ensure!(response.status().as_u16() == 201, "{}", response.text()?);
                    Ok(())
                })
            })
            .collect();
        for chunk in chunks {
            chunk.join().expect("a creating thread panicked")?;
        }
        Ok(())
    })?;
    let create_seconds = created.elapsed().as_secs_f64();
    let idle_window = (first - Utc::now())
        .to_std()?
        .saturating_sub(Duration::from_millis(500));
    anyhow::ensure!(
        idle_window > Duration::from_millis(500),
        "creating the jobs took too long"
    );
    let cpu_before = cpu_time(pid);
    std::thread::sleep(idle_window);
    let idle_cpu =
        cpu_time(pid).saturating_sub(cpu_before).as_secs_f64() / idle_window.as_secs_f64();
    println!(
        "{}",
        json!({
            "scenario": format!("{count} one-shot jobs queued, none due yet"),
            "create_seconds": create_seconds,
            "idle_host_cpu_percent": idle_cpu * 100.0,
        })
    );

    let cpu_before = cpu_time(pid);
    let last = *times.last().unwrap();
    std::thread::sleep((last - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(2));
    let firing_cpu = cpu_time(pid).saturating_sub(cpu_before).as_secs_f64();
    let jobs: Vec<Value> = http
        .get(format!("{}/_locker/api/jobs?service=ticker", host.url))
        .send()?
        .json()?;
    let mut host_late: Vec<f64> = jobs
        .iter()
        .filter_map(|job| job["last_run"]["late_ms"].as_f64())
        .collect();
    let runs = std::fs::read_to_string(root.join("services/ticker/runs.jsonl"))?;
    let mut handler_late: Vec<f64> = runs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|run| {
            let scheduled =
                DateTime::parse_from_rfc3339(run["scheduled"].as_str().unwrap()).unwrap();
            run["started_ms"].as_f64().unwrap() - scheduled.timestamp_millis() as f64
        })
        .collect();
    anyhow::ensure!(
        host_late.len() == count,
        "only {} of {count} jobs ran",
        host_late.len()
    );
    anyhow::ensure!(
        handler_late.len() == count,
        "the handler saw {} runs, not {count}",
        handler_late.len()
    );
    for (what, samples) in [
        ("time → host starts the run", &mut host_late),
        ("time → guest handler starts", &mut handler_late),
    ] {
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        println!(
            "{}",
            json!({
                "scenario": format!("{count} jobs over {spread} s, lateness: {what}"),
                "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0),
            })
        );
    }
    println!(
        "{}",
        json!({
            "scenario": format!("host CPU while {count} jobs fire over {spread} s"),
            "host_cpu_percent": firing_cpu / (spread as f64 + 2.0) * 100.0,
        })
    );
    Ok(())
}
