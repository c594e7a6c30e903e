//! Durable events per second: publish → delivered, to one subscriber and
//! fanned out to ten, through a real host (in process) and real components.
//!
//! `events [COUNT] [CONCURRENCY] [FAN_OUTS] [typed]` (e.g. `20000 64 1,10`)
//! prints one JSON line per scenario; with `typed`, the topic is bound to a
//! data type, so every payload is checked against its JSON Schema.

use std::sync::Arc;
use std::time::{Duration, Instant};

use locker::package::Package;
use locker::store::LockerRoot;
use locker::supervisor::{HostOptions, Supervisor};
use locker_bench::{guest, renamed_guest};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let fan_outs: Vec<usize> = match args.next() {
        Some(list) => list.split(',').filter_map(|n| n.parse().ok()).collect(),
        None => vec![1, 10],
    };
    let typed = args.next().as_deref() == Some("typed");
    for subscribers in fan_outs {
        run(count, concurrency, subscribers, typed).await?;
    }
    Ok(())
}

/// The type `bench/tick` is bound to when the run is `typed`.
const TICK_TYPE: &str = r#"
[types."bench/tick"]
schema_json = '{"type": "object", "required": ["n"], "properties": {"n": {"type": "integer", "minimum": 0}}}'
"#;

async fn run(
    count: usize,
    concurrency: usize,
    subscribers: usize,
    typed: bool,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = LockerRoot::open(dir.path().join("root"))?;
    let cache = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-cache");
    let options = HostOptions {
        cache_dir: Some(cache),
        ..HostOptions::default()
    };
    let supervisor = tokio::task::block_in_place(|| Supervisor::new(root, options))?;
    let _background = supervisor.start_background();
    let publisher = if typed {
        renamed_guest(dir.path(), "publisher", "publisher", |m| {
            m.replace(
                "\"bench/tick\"]",
                "{ topic = \"bench/tick\", type = \"bench/tick\" }]",
            ) + TICK_TYPE
        })
    } else {
        guest("publisher")
    };
    supervisor.install(Package::read(&publisher, None)?).await?;
    for n in 0..subscribers {
        let name = format!("sub-{n}");
        let package = renamed_guest(dir.path(), "subscriber", &name, |m| {
            m.replace("note/*", "bench/*")
        });
        supervisor.install(Package::read(&package, None)?).await?;
    }
    // Load every subscriber before the clock starts: this measures the bus.
    for n in 0..subscribers {
        let service = supervisor.service(&format!("sub-{n}")).unwrap();
        service.loaded().await?;
    }
    let declared = vec!["bench/*".to_string()];

    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let publishers: Vec<_> = (0..concurrency)
        .map(|_| {
            let supervisor = supervisor.clone();
            let next = next.clone();
            let declared = declared.clone();
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= count {
                        break;
                    }
                    supervisor
                        .bus
                        .publish_as(
                            "publisher",
                            &declared,
                            "bench/tick",
                            format!("{{\"n\":{n}}}"),
                        )
                        .await
                        .expect("publish");
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await?;
    }
    let published = started.elapsed();
    loop {
        let stats = supervisor.bus.log().stats().await?;
        if stats.pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = started.elapsed();
    let deliveries = count * subscribers;
    println!(
        "{}",
        serde_json::json!({
            "scenario": format!(
                "publish → delivered, {subscribers} subscriber(s){}",
                if typed { ", payloads schema-checked" } else { "" }
            ),
            "events": count,
            "publish_concurrency": concurrency,
            "durable_publishes_per_s": (count as f64 / published.as_secs_f64()).round(),
            "events_delivered_per_s": (count as f64 / delivered.as_secs_f64()).round(),
            "deliveries_per_s": (deliveries as f64 / delivered.as_secs_f64()).round(),
            "seconds": delivered.as_secs_f64(),
        })
    );
    Ok(())
}
