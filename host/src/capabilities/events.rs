//! `locker:service/events`: a guest publishes events, only on the topics
//! its manifest declares in `publishes`. A refusal goes back to the guest
//! as a `publish-error` and into the service's log; nothing is stored.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::{Capability, HostParts, ServiceContext};
use crate::bindings::events::{self, Host, PublishError as WitPublishError};
use crate::bus::{Bus, PublishError};
use crate::store::ServiceLog;

/// Set up once: the bus every service publishes to.
pub struct Events {
    bus: Arc<Bus>,
}

/// What one service's instances publish as.
pub struct ServiceEvents {
    name: String,
    publishes: Vec<String>,
    bus: Arc<Bus>,
    log: ServiceLog,
}

/// One instance's view of its service's events.
#[derive(Clone)]
pub struct EventsCtx(Arc<ServiceEvents>);

impl Capability for Events {
    type Service = EventsCtx;
    type Instance = EventsCtx;

    fn set_up(host: &HostParts<'_>) -> anyhow::Result<Events> {
        Ok(Events {
            bus: host.bus.clone(),
        })
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut EventsCtx,
    ) -> wasmtime::Result<()> {
        events::add_to_linker::<T, HasSelf<EventsCtx>>(linker, get)
    }

    fn configure(&self, service: &ServiceContext<'_>) -> EventsCtx {
        EventsCtx(Arc::new(ServiceEvents {
            name: service.manifest.name.clone(),
            publishes: service.manifest.published_topics(),
            bus: self.bus.clone(),
            log: service.log.clone(),
        }))
    }

    fn prepare(service: &EventsCtx) -> EventsCtx {
        service.clone()
    }
}

impl Host for EventsCtx {
    async fn publish(
        &mut self,
        topic: String,
        payload: String,
    ) -> wasmtime::Result<Result<String, WitPublishError>> {
        let service = self.0.clone();
        match service
            .bus
            .publish_as(&service.name, &service.publishes, &topic, payload)
            .await
        {
            Ok(record) => Ok(Ok(record.id)),
            Err(error) => {
                tracing::warn!(service = %service.name, "publish refused: {error}");
                service.log.note(&format!("publish refused: {error}"));
                Ok(Err(to_wit(error)))
            }
        }
    }
}

fn to_wit(error: PublishError) -> WitPublishError {
    match error {
        PublishError::UndeclaredTopic { topic, .. } => WitPublishError::UndeclaredTopic(topic),
        PublishError::PayloadTooLarge { limit, .. } => {
            WitPublishError::PayloadTooLarge(limit as u64)
        }
        PublishError::InvalidJson(message) => WitPublishError::InvalidJson(message),
        // `invalid-json` names the violation: a new case would change the
        // WIT every installed component was built against.
        error @ PublishError::NotOfType { .. } => WitPublishError::InvalidJson(error.to_string()),
        PublishError::InvalidTopic(message) => WitPublishError::InvalidTopic(message),
        PublishError::Storage(message) => WitPublishError::Storage(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::DeliveryPolicy;
    use crate::package::Manifest;
    use crate::store::{LockerRoot, SqliteEventLog};

    const MANIFEST: &str = r#"
name = "publisher"
version = "0.1.0"
kind = "connector"
description = "Publishes"
component = "publisher.wasm"
publishes = ["note/*"]
"#;

    /// The capability as a guest's instance sees it, on a real event log,
    /// with no host process.
    fn instance(dir: &std::path::Path) -> (EventsCtx, Arc<Bus>, ServiceLog) {
        let root = LockerRoot::open(dir.join("root")).unwrap();
        let log = Arc::new(SqliteEventLog::open(&root).unwrap());
        let bus = Arc::new(Bus::new(log, 1024, DeliveryPolicy::default()));
        let manifest = Manifest::parse(MANIFEST, "test").unwrap();
        let service_log = ServiceLog::new(root.log_path("publisher"));
        let events = Events { bus: bus.clone() };
        let service = events.configure(&ServiceContext {
            manifest: &manifest,
            log: &service_log,
        });
        (Events::prepare(&service), bus, service_log)
    }

    #[tokio::test]
    async fn publishes_declared_topics_and_refuses_the_rest_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ctx, bus, log) = instance(dir.path());
        let id = ctx
            .publish("note/changed".into(), "{\"n\":1}".into())
            .await
            .unwrap()
            .unwrap();
        // Newest first: nobody subscribes, so the host announced it unhandled.
        let recent = bus.log().recent(None, 10).await.unwrap();
        assert_eq!(recent.len(), 2);
        assert_eq!(recent[1].event.id, id);
        assert_eq!(recent[1].event.source, "publisher");
        assert_eq!(recent[0].event.topic, "locker/event.unhandled");
        assert!(
            recent[0].event.payload.contains(&id),
            "{}",
            recent[0].event.payload
        );

        let refused = ctx
            .publish("contact/updated".into(), "{}".into())
            .await
            .unwrap();
        assert!(
            matches!(refused, Err(WitPublishError::UndeclaredTopic(t)) if t == "contact/updated")
        );
        let not_json = ctx.publish("note/x".into(), "{oops".into()).await.unwrap();
        assert!(matches!(not_json, Err(WitPublishError::InvalidJson(_))));
        let large = ctx
            .publish("note/x".into(), format!("\"{}\"", "x".repeat(2000)))
            .await
            .unwrap();
        assert!(matches!(large, Err(WitPublishError::PayloadTooLarge(1024))));
        assert_eq!(bus.log().stats().await.unwrap().published, 2);
        let noted = std::fs::read_to_string(log.path()).unwrap();
        assert!(noted.contains("publish refused"), "{noted}");
    }
}
