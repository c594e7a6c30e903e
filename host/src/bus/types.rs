//! The installed data types and the topics bound to them: a payload
//! published on a bound topic, by a service, the host or the owner, must
//! match the type's schema, or nothing is stored. Kept from the manifests,
//! like the subscriptions, so it holds while services are not loaded.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::package::Manifest;
use crate::package::topics;
use crate::package::types::{DataType, compile_all};

#[derive(Default)]
pub struct Types {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    by_service: BTreeMap<String, ServiceTypes>,
    /// Every binding and every defined type, gathered from `by_service`
    /// when it changes, so that a publish looks at bindings only, however
    /// many services are installed.
    bound: Vec<(String, String)>,
    defined: BTreeMap<String, Arc<DataType>>,
}

impl Inner {
    fn gather(&mut self) {
        self.bound = self
            .by_service
            .values()
            .flat_map(|s| s.bound.iter().cloned())
            .collect();
        self.defined = self
            .by_service
            .values()
            .flat_map(|s| &s.defined)
            .map(|defined| (defined.name.clone(), defined.clone()))
            .collect();
    }
}

#[derive(Default)]
struct ServiceTypes {
    defined: Vec<Arc<DataType>>,
    /// (topic pattern, type) of its typed `publishes`.
    bound: Vec<(String, String)>,
}

/// A payload a bound topic refused.
#[derive(Debug, Clone)]
pub struct Violation {
    pub data_type: String,
    pub problem: String,
}

impl Types {
    /// What a service's manifest defines and binds (installed packages'
    /// schemas compiled once already, so an error here is not expected).
    pub fn set(&self, manifest: &Manifest) {
        let defined = compile_all(manifest)
            .inspect_err(|e| tracing::warn!(service = %manifest.name, "its types: {e:#}"))
            .unwrap_or_default()
            .into_iter()
            .map(Arc::new)
            .collect();
        let bound = manifest
            .publishes
            .iter()
            .filter_map(|entry| Some((entry.topic().to_string(), entry.data_type()?.to_string())))
            .collect();
        let types = ServiceTypes { defined, bound };
        let mut inner = self.inner.write().unwrap();
        // Most services define and bind nothing: they take no entry, and
        // adding one changes nothing to gather (which would make a start
        // with 10,000 services quadratic).
        let changed = if types.defined.is_empty() && types.bound.is_empty() {
            inner.by_service.remove(&manifest.name).is_some()
        } else {
            inner.by_service.insert(manifest.name.clone(), types);
            true
        };
        if changed {
            inner.gather();
        }
    }

    pub fn remove(&self, service: &str) {
        let mut inner = self.inner.write().unwrap();
        if inner.by_service.remove(service).is_some() {
            inner.gather();
        }
    }

    /// Whether `payload` (JSON text) may go out on `topic`: the first
    /// violation of a type bound to it, if any. A topic no type is bound to
    /// costs one pass over the bindings (not the services), and no parse.
    pub fn check(&self, topic: &str, payload: &str) -> Result<(), Violation> {
        let inner = self.inner.read().unwrap();
        let mut bound = inner
            .bound
            .iter()
            .filter(|(pattern, _)| topics::matches(pattern, topic))
            .map(|(_, data_type)| data_type.as_str())
            .peekable();
        if bound.peek().is_none() {
            return Ok(());
        }
        let value: serde_json::Value = serde_json::from_str(payload).map_err(|e| Violation {
            data_type: String::new(),
            problem: e.to_string(),
        })?;
        for name in bound {
            // A type no installed package defines any more (its package was
            // uninstalled) takes nothing: checking fails closed.
            let Some(data_type) = inner.defined.get(name) else {
                return Err(Violation {
                    data_type: name.to_string(),
                    problem: "no installed package defines this type any more".into(),
                });
            };
            if let Some(problem) = data_type.violation(&value) {
                return Err(Violation {
                    data_type: name.to_string(),
                    problem,
                });
            }
        }
        Ok(())
    }
}
