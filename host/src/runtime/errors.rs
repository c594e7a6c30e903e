//! Why a request to a service did not get the service's own answer, and the
//! HTTP status each reason maps to. Every message names the service.

use std::time::Duration;

use bytesize::ByteSize;
use http::StatusCode;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    #[error("no service named {0:?} is installed")]
    NotFound(String),
    #[error("service {0:?} is stopped; start it with `locker start {0}`")]
    Stopped(String),
    #[error("service {service:?} failed to load: {reason} (next attempt in {}s)", retry_in.as_secs_f64().ceil())]
    LoadFailed {
        service: String,
        reason: String,
        retry_in: Duration,
    },
    #[error("service {service:?} is busy: all {max} instances are in use")]
    Busy { service: String, max: u32 },
    #[error("service {service:?} did not answer within its deadline of {}", humantime::format_duration(*deadline))]
    DeadlineExceeded { service: String, deadline: Duration },
    #[error("service {service:?} ran out of memory (its limit is {})", ByteSize(*limit).display().iec())]
    OutOfMemory { service: String, limit: u64 },
    #[error("service {service:?} crashed: {reason}")]
    Trapped { service: String, reason: String },
    #[error("service {service:?} did not send a response")]
    NoResponse { service: String },
    #[error("service {service:?} answered with an error: {reason}")]
    GuestError { service: String, reason: String },
    #[error("the request body is larger than service {service:?} accepts ({})", ByteSize(*limit).display().iec())]
    BodyTooLarge { service: String, limit: u64 },
    #[error(
        "service {service:?} is not set up yet: it needs its setting `{key}` ({description}). \
         The owner sets it with `locker config set {service} {key}{}`{}",
        if *secret { "" } else { " VALUE" },
        if *secret { " (the value is read from standard input)" } else { "" }
    )]
    Unconfigured {
        service: String,
        key: String,
        description: String,
        secret: bool,
    },
    #[error("service {0:?} does not serve HTTP (it only handles events)")]
    NoHttp(String),
    #[error("the host could not run service {service:?}: {reason}")]
    Host { service: String, reason: String },
}

impl ServiceError {
    pub fn status(&self) -> StatusCode {
        match self {
            ServiceError::NotFound(_) | ServiceError::NoHttp(_) => StatusCode::NOT_FOUND,
            ServiceError::Stopped(_)
            | ServiceError::Unconfigured { .. }
            | ServiceError::LoadFailed { .. }
            | ServiceError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ServiceError::DeadlineExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
            ServiceError::GuestError { .. } => StatusCode::BAD_GATEWAY,
            ServiceError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServiceError::OutOfMemory { .. }
            | ServiceError::Trapped { .. }
            | ServiceError::NoResponse { .. }
            | ServiceError::Host { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the failure is the guest's doing (worth noting in its log).
    pub fn is_guest_failure(&self) -> bool {
        !matches!(
            self,
            ServiceError::NotFound(_)
                | ServiceError::NoHttp(_)
                | ServiceError::Stopped(_)
                | ServiceError::BodyTooLarge { .. }
                // Recorded once, when the load failed.
                | ServiceError::LoadFailed { .. }
        )
    }
}

impl ServiceError {
    /// Turns how a guest's run ended (without an answer) into an error.
    pub fn from_run(
        service: &str,
        deadline: Duration,
        memory_limit: u64,
        error: wasmtime::Error,
        memory_hit: bool,
    ) -> ServiceError {
        let service = service.to_string();
        match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => ServiceError::DeadlineExceeded { service, deadline },
            _ if memory_hit => ServiceError::OutOfMemory {
                service,
                limit: memory_limit,
            },
            Some(trap) => ServiceError::Trapped {
                service,
                reason: trap.to_string(),
            },
            None => ServiceError::Trapped {
                service,
                reason: format!("{error:#}"),
            },
        }
    }
}
