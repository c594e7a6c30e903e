//! Calls between services: a guest's outgoing `wasi:http` request to
//! `http://NAME.locker/…` goes to the service NAME, in process (no socket,
//! no network), if the caller's manifest declares it (`calls = ["NAME"]`,
//! or `"type:PATTERN"` matching a type NAME provides). The callee is
//! cold-started if need be and serves the call as any request, within its
//! own limits and no later than the caller's deadline; it sees
//! `x-locker-caller: service:CALLER`, set by the host over whatever the
//! caller wrote. A call that would loop back to a service already on its
//! way (A → B → A) is cut off with `loop-detected`; an undeclared one is
//! `HTTP-request-denied`; both are noted in the caller's log.

use std::pin::Pin;
use std::sync::{Arc, Weak};

use http::HeaderValue;
use wasmtime_wasi_http::{Error, WasiBody};

use super::call_context::CallContext;
use super::outbound::{ServiceCalls, callee};
use super::registry::Services;
use super::{ServiceError, serve};
use crate::api::{CALLER_HEADER, CHAIN_HEADER};
use crate::package::{Manifest, manifest};
use crate::store::ServiceLog;

/// The longest chain of calls one request may start.
pub const MAX_CHAIN: usize = 8;

/// One service's calls: who it is, whom it may call, where they are.
pub struct CallRouter {
    caller: String,
    /// The caller's `calls` (its whole manifest would be kept per service).
    calls: Vec<String>,
    services: Weak<Services>,
    log: ServiceLog,
}

impl CallRouter {
    pub fn new(manifest: &Manifest, services: Weak<Services>, log: ServiceLog) -> CallRouter {
        CallRouter {
            caller: manifest.name.clone(),
            calls: manifest.calls.clone(),
            services,
            log,
        }
    }

    /// Refuses a call with `error`, and says why in the caller's log.
    fn refuse(&self, error: Error, why: String) -> Error {
        tracing::info!(service = %self.caller, "{why}");
        self.log.note(&why);
        error
    }

    async fn route(
        &self,
        upstream: CallContext,
        mut request: http::Request<WasiBody>,
    ) -> Result<http::Response<WasiBody>, Error> {
        let name = callee(request.uri())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let service = self
            .services
            .upgrade()
            .and_then(|services| services.get(&name));
        // Refused alike whether or not it is installed: a guest learns
        // nothing of services it may not call.
        let provides = service
            .as_ref()
            .map(|service| service.installed().manifest.provides.clone())
            .unwrap_or_default();
        if !manifest::may_call(&self.calls, &name, &provides) {
            let why = format!(
                "refused a call to {name:?}: the manifest's `calls` does not name it \
                 (add \"{name}\", or \"type:…\" for a type it provides)"
            );
            return Err(self.refuse(Error::HttpRequestDenied, why));
        }
        let service = service.ok_or_else(|| {
            let why = format!("refused a call to {name:?}: no such service is installed");
            self.refuse(Error::DestinationNotFound, why)
        })?;
        let mut chain = upstream.chain;
        chain.push(self.caller.clone());
        if chain.contains(&name) || chain.len() > MAX_CHAIN {
            chain.push(name);
            let why = format!(
                "cut off a call that loops back or runs too deep (at most {MAX_CHAIN}): {}",
                chain.join(" → ")
            );
            return Err(self.refuse(Error::LoopDetected, why));
        }
        let headers = request.headers_mut();
        let caller = HeaderValue::from_str(&format!("service:{}", self.caller))
            .expect("a service name is a valid header value");
        headers.insert(CALLER_HEADER, caller);
        let elsewhere = self.services.upgrade().and_then(|s| s.elsewhere());
        let request = match elsewhere {
            None => request,
            Some(elsewhere) => {
                let joined = HeaderValue::from_str(&chain.join(","))
                    .expect("service names are valid header values");
                request.headers_mut().insert(CHAIN_HEADER, joined);
                match elsewhere.route(&name, request).await {
                    Ok(Ok(response)) => return Ok(response),
                    Ok(Err(mut request)) => {
                        request.headers_mut().remove(CHAIN_HEADER);
                        request
                    }
                    Err(problem) => {
                        let why = format!("a call to {name:?} found no host: {problem}");
                        return Err(self.refuse(Error::DestinationUnavailable, why));
                    }
                }
            }
        };
        let mut request = request;
        request.extensions_mut().insert(CallContext {
            chain,
            deadline: None,
        });
        service.count_request();
        serve::serve(&service, request, false, upstream.deadline)
            .await
            .map_err(|error| {
                // The callee's own log and status keep the details; the
                // caller learns only what kind of failure it was.
                if error.is_guest_failure() {
                    tracing::warn!(service = %name, "{error}");
                    service.record_error(&error);
                }
                let why = format!("a call to {name:?} failed: {}", error.status());
                self.refuse(call_error(&error), why)
            })
    }
}

impl ServiceCalls for CallRouter {
    fn call(
        self: Arc<Self>,
        upstream: CallContext,
        request: http::Request<WasiBody>,
    ) -> Pin<Box<dyn Future<Output = Result<http::Response<WasiBody>, Error>> + Send>> {
        Box::pin(async move { self.route(upstream, request).await })
    }
}

/// What the caller's guest sees when the callee did not answer.
fn call_error(error: &ServiceError) -> Error {
    match error {
        ServiceError::NotFound(_) | ServiceError::NoHttp(_) => Error::DestinationNotFound,
        ServiceError::DeadlineExceeded { .. } => Error::HttpResponseTimeout,
        ServiceError::BodyTooLarge { limit, .. } => Error::HttpRequestBodySize(Some(*limit)),
        ServiceError::Stopped(_)
        | ServiceError::LoadFailed { .. }
        | ServiceError::Busy { .. }
        | ServiceError::Unconfigured { .. } => Error::DestinationUnavailable,
        ServiceError::OutOfMemory { .. }
        | ServiceError::Trapped { .. }
        | ServiceError::NoResponse { .. }
        | ServiceError::GuestError { .. }
        | ServiceError::Host { .. } => {
            Error::InternalError(Some(format!("the service answered {}", error.status())))
        }
    }
}
