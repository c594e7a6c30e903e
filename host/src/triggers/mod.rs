//! What calls into guests besides HTTP: event delivery (one dispatcher per
//! subscribing service) and the job timer and runner. Triggers see services
//! through the registry (`runtime::Services`) and call them the one way
//! every caller does (`runtime::call`); they never reach the supervisor.

pub mod delivery;
pub mod jobs;
