//! The host's metrics, as `/_locker/metrics` serves them in Prometheus
//! text format (`prometheus-client`): requests, statuses and latency per
//! service; loads and their time; instances in use; events published,
//! delivered, retried and dead-lettered per subscriber; job runs and their
//! lateness; memory limits hit.
//!
//! Each part records through a handle it keeps, so a request costs a few
//! atomic adds and one histogram observation, with no label lookup. A host
//! started with metrics off hands out handles that record nothing.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    service: String,
    /// The status class: `2xx`, `4xx`, …
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoadLabels {
    service: String,
    /// `hit` (from the code cache), `compiled` or `rebuilt`.
    cache: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    subscriber: String,
    /// `delivered`, `retried` or `dead_letter`.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    service: String,
    job: String,
    /// `ok` or `failed`.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabel {
    service: String,
    job: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~52 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

struct Families {
    requests: Family<StatusLabels, Counter>,
    request_seconds: Family<ServiceLabel, Histogram, fn() -> Histogram>,
    loads: Family<LoadLabels, Counter>,
    load_seconds: Family<ServiceLabel, Histogram, fn() -> Histogram>,
    instances_in_use: Family<ServiceLabel, Gauge>,
    memory_limit_hits: Family<ServiceLabel, Counter>,
    events_published: Family<SourceLabel, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
    job_runs: Family<JobLabels, Counter>,
    job_lateness_seconds: Family<JobLabel, Histogram, fn() -> Histogram>,
}

/// The host's metrics: on, with a registry to render, or off.
#[derive(Clone, Default)]
pub struct Metrics(Option<Arc<Inner>>);

struct Inner {
    registry: Registry,
    families: Families,
}

impl Metrics {
    /// Metrics that are kept and can be rendered.
    pub fn on() -> Metrics {
        let families = Families {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            loads: Family::default(),
            load_seconds: Family::new_with_constructor(latency_histogram),
            instances_in_use: Family::default(),
            memory_limit_hits: Family::default(),
            events_published: Family::default(),
            deliveries: Family::default(),
            job_runs: Family::default(),
            job_lateness_seconds: Family::new_with_constructor(latency_histogram),
        };
        let mut registry = Registry::with_prefix("locker");
        let f = &families;
        registry.register(
            "requests",
            "HTTP requests answered, by service and status class",
            f.requests.clone(),
        );
        registry.register(
            "request_seconds",
            "Time from a request's arrival to its response head, by service",
            f.request_seconds.clone(),
        );
        registry.register(
            "loads",
            "Loads of a service's code, by how the code cache served them",
            f.loads.clone(),
        );
        registry.register(
            "load_seconds",
            "Time a load (cold start) took, by service",
            f.load_seconds.clone(),
        );
        registry.register(
            "instances_in_use",
            "Instances serving a request, event or job right now, by service",
            f.instances_in_use.clone(),
        );
        registry.register(
            "memory_limit_hits",
            "Calls stopped by the service's memory limit",
            f.memory_limit_hits.clone(),
        );
        registry.register(
            "events_published",
            "Events published, by source (`locker` for the host, `owner` for the API)",
            f.events_published.clone(),
        );
        registry.register(
            "deliveries",
            "Event deliveries to a subscriber, by outcome: delivered, retried or dead_letter",
            f.deliveries.clone(),
        );
        registry.register(
            "job_runs",
            "Job runs, by service, job and outcome",
            f.job_runs.clone(),
        );
        registry.register(
            "job_lateness_seconds",
            "How long after its scheduled time a job run started",
            f.job_lateness_seconds.clone(),
        );
        Metrics(Some(Arc::new(Inner { registry, families })))
    }

    /// Metrics that record nothing (`[metrics] enabled = false`).
    pub fn off() -> Metrics {
        Metrics(None)
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// The handles one service records through. Its series are made at its
    /// first record, not here: ten thousand installed services that are
    /// never used cost neither memory (two histograms and seven counters,
    /// ~2 KiB each) nor lines in the exposition.
    pub fn service(&self, name: &str) -> ServiceMetrics {
        ServiceMetrics(self.0.as_ref().map(|inner| {
            Arc::new(LazyHandles {
                name: name.to_string(),
                inner: inner.clone(),
                handles: OnceLock::new(),
            })
        }))
    }
}

impl Families {
    /// One service's series, made now.
    fn service_handles(&self, name: &str) -> ServiceHandles {
        let label = ServiceLabel {
            service: name.to_string(),
        };
        let status = |class: &str| {
            self.requests.get_or_create_owned(&StatusLabels {
                service: name.to_string(),
                status: class.to_string(),
            })
        };
        ServiceHandles {
            by_class: [
                status("1xx"),
                status("2xx"),
                status("3xx"),
                status("4xx"),
                status("5xx"),
            ],
            request_seconds: self.request_seconds.get_or_create_owned(&label),
            load_seconds: self.load_seconds.get_or_create_owned(&label),
            memory_limit_hits: self.memory_limit_hits.get_or_create_owned(&label),
        }
    }
}

impl Metrics {
    pub fn published(&self, source: &str) {
        if let Some(inner) = &self.0 {
            inner
                .families
                .events_published
                .get_or_create(&SourceLabel {
                    source: source.to_string(),
                })
                .inc();
        }
    }

    pub fn delivery(&self, subscriber: &str, outcome: Delivery) {
        self.deliveries(subscriber, outcome, 1);
    }

    /// `count` delivery attempts that ended alike.
    pub fn deliveries(&self, subscriber: &str, outcome: Delivery, count: u64) {
        if let Some(inner) = &self.0 {
            let outcome = match outcome {
                Delivery::Delivered => "delivered",
                Delivery::Retried => "retried",
                Delivery::DeadLetter => "dead_letter",
            };
            inner
                .families
                .deliveries
                .get_or_create(&DeliveryLabels {
                    subscriber: subscriber.to_string(),
                    outcome: outcome.to_string(),
                })
                .inc_by(count);
        }
    }

    /// A job run that started `late` after its scheduled time.
    pub fn job_run(&self, service: &str, job: &str, ok: bool, late: Duration) {
        if let Some(inner) = &self.0 {
            let f = &inner.families;
            f.job_runs
                .get_or_create(&JobLabels {
                    service: service.to_string(),
                    job: job.to_string(),
                    outcome: if ok { "ok" } else { "failed" }.to_string(),
                })
                .inc();
            f.job_lateness_seconds
                .get_or_create(&JobLabel {
                    service: service.to_string(),
                    job: job.to_string(),
                })
                .observe(late.as_secs_f64());
        }
    }

    /// The text format, with the instances in use set from `in_use`
    /// (service, instances) as of now; `None` when metrics are off.
    pub fn render(&self, in_use: impl IntoIterator<Item = (String, usize)>) -> Option<String> {
        let inner = self.0.as_ref()?;
        for (service, count) in in_use {
            inner
                .families
                .instances_in_use
                .get_or_create(&ServiceLabel { service })
                .set(count as i64);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &inner.registry)
            .expect("writing to a String cannot fail");
        Some(text)
    }

    /// Forgets what was kept of a service that was uninstalled.
    pub fn forget(&self, service: &str) {
        if let Some(inner) = &self.0 {
            let f = &inner.families;
            let label = ServiceLabel {
                service: service.to_string(),
            };
            f.request_seconds.remove(&label);
            f.load_seconds.remove(&label);
            f.instances_in_use.remove(&label);
            f.memory_limit_hits.remove(&label);
            for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
                f.requests.remove(&StatusLabels {
                    service: service.to_string(),
                    status: class.to_string(),
                });
            }
        }
    }
}

/// How one delivery attempt of an event ended.
#[derive(Debug, Clone, Copy)]
pub enum Delivery {
    Delivered,
    /// It failed and will be tried again.
    Retried,
    /// It failed for the last time.
    DeadLetter,
}

/// One service's handles: recording costs no lookup (after the first).
#[derive(Clone, Default)]
pub struct ServiceMetrics(Option<Arc<LazyHandles>>);

struct LazyHandles {
    name: String,
    inner: Arc<Inner>,
    handles: OnceLock<ServiceHandles>,
}

struct ServiceHandles {
    by_class: [Counter; 5],
    request_seconds: Histogram,
    load_seconds: Histogram,
    memory_limit_hits: Counter,
}

impl ServiceMetrics {
    fn handles(&self) -> Option<(&LazyHandles, &ServiceHandles)> {
        let lazy = self.0.as_deref()?;
        let handles = lazy
            .handles
            .get_or_init(|| lazy.inner.families.service_handles(&lazy.name));
        Some((lazy, handles))
    }

    /// A request answered with `status` after `took`.
    pub fn request(&self, status: u16, took: Duration) {
        if let Some((_, handles)) = self.handles() {
            let class = (status / 100).clamp(1, 5) as usize - 1;
            handles.by_class[class].inc();
            handles.request_seconds.observe(took.as_secs_f64());
        }
    }

    /// A load that took `took`; `cache` says how the code was obtained.
    pub fn load(&self, cache: &str, took: Duration) {
        if let Some((lazy, handles)) = self.handles() {
            handles.load_seconds.observe(took.as_secs_f64());
            lazy.inner
                .families
                .loads
                .get_or_create(&LoadLabels {
                    service: lazy.name.clone(),
                    cache: cache.to_string(),
                })
                .inc();
        }
    }

    pub fn memory_limit_hit(&self) {
        if let Some((_, handles)) = self.handles() {
            handles.memory_limit_hits.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_and_off_records_nothing() {
        let metrics = Metrics::on();
        let notes = metrics.service("notes");
        notes.request(200, Duration::from_millis(3));
        notes.request(503, Duration::from_millis(1));
        notes.load("hit", Duration::from_millis(2));
        metrics.published("notes");
        metrics.delivery("contacts", Delivery::Retried);
        metrics.job_run("notes", "sync", true, Duration::from_millis(5));
        let text = metrics.render([("notes".to_string(), 2)]).unwrap();
        for line in [
            "locker_requests_total{service=\"notes\",status=\"2xx\"} 1",
            "locker_requests_total{service=\"notes\",status=\"5xx\"} 1",
            "locker_request_seconds_count{service=\"notes\"} 2",
            "locker_loads_total{service=\"notes\",cache=\"hit\"} 1",
            "locker_instances_in_use{service=\"notes\"} 2",
            "locker_events_published_total{source=\"notes\"} 1",
            "locker_deliveries_total{subscriber=\"contacts\",outcome=\"retried\"} 1",
            "locker_job_runs_total{service=\"notes\",job=\"sync\",outcome=\"ok\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        metrics.forget("notes");
        assert!(
            !metrics
                .render([])
                .unwrap()
                .contains("locker_requests_total{service=\"notes\"")
        );

        let off = Metrics::off();
        off.service("notes").request(200, Duration::ZERO);
        assert!(off.render([]).is_none());
    }
}
