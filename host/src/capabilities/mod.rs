//! What guests import from Locker, one self-contained unit per capability.
//!
//! Each unit follows one lifecycle (Spin's factors are the model): it is
//! **set up** once for the host with what it shares (the bus, the job
//! table, a directory), **configured** for each service from its manifest
//! when the service is added, and **prepared** for each fresh instance; the
//! instance's calls act on what `prepare` made. A unit owns its WIT
//! bindings' `Host` impl, its error mapping and its `add_to_linker`.
//!
//! Adding a capability: its WIT in `wit/` (and in the `host` world), one
//! new unit here implementing [`Capability`], one line in the list below,
//! and its manifest section in `package::manifest` if it has one. Nothing
//! else in the host changes: the supervisor sets up, configures and
//! forgets every capability in the list, and the linker and the instance
//! state take them all from it.

pub mod config;
pub mod discovery;
pub mod events;
pub mod scheduler;

use std::sync::Arc;

use wasmtime::component::Linker;

use crate::bus::Bus;
use crate::jobs::Scheduler;
use crate::package::Manifest;
use crate::store::{ConfigStore, ServiceLog};

/// A host capability that guests import.
pub trait Capability: Sized + Send + Sync + 'static {
    /// Sets the capability up for the host, from what the host shares.
    fn set_up(host: &HostParts<'_>) -> anyhow::Result<Self>;

    /// What one service's instances share, made from its manifest; cheap to clone.
    type Service: Clone + Send + Sync + 'static;
    /// What one instance's calls act on.
    type Instance: Send + 'static;

    /// Adds the capability's imports to the linker; `get` finds the
    /// instance's state in the store's data.
    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut Self::Instance,
    ) -> wasmtime::Result<()>;

    /// Configures the capability for a service being added (installed,
    /// upgraded, or found at start-up).
    fn configure(&self, service: &ServiceContext<'_>) -> Self::Service;

    /// Forgets a service that was uninstalled.
    fn forget(&self, _service: &str) {}

    /// Prepares the capability for one fresh instance of a service.
    fn prepare(service: &Self::Service) -> Self::Instance;
}

/// What the host shares with its capabilities when setting them up; a
/// capability that needs more of the host adds it here.
pub struct HostParts<'a> {
    pub bus: &'a Arc<Bus>,
    pub jobs: &'a Arc<Scheduler>,
    /// The owner's settings for each service.
    pub config: &'a Arc<ConfigStore>,
}

/// What a capability may know of a service when configuring for it.
pub struct ServiceContext<'a> {
    pub manifest: &'a Manifest,
    /// Where to note what the service was refused.
    pub log: &'a ServiceLog,
}

/// The store data of an instance gives access to its capabilities.
pub trait HasCapabilities: Send + 'static {
    fn capabilities(&mut self) -> &mut InstanceCapabilities;
}

macro_rules! capabilities {
    ($($field:ident: $unit:ty),* $(,)?) => {
        /// Every capability, set up once for the host.
        pub struct HostCapabilities {
            $(pub $field: $unit,)*
        }

        /// Every capability, configured for one service.
        #[derive(Clone)]
        pub struct ServiceCapabilities {
            $(pub $field: <$unit as Capability>::Service,)*
        }

        /// Every capability, prepared for one instance: one field each.
        pub struct InstanceCapabilities {
            $(pub $field: <$unit as Capability>::Instance,)*
        }

        impl HostCapabilities {
            /// Sets every capability up for the host.
            pub fn set_up(host: &HostParts<'_>) -> anyhow::Result<HostCapabilities> {
                Ok(HostCapabilities {
                    $($field: <$unit as Capability>::set_up(host)?,)*
                })
            }

            /// Adds every capability's imports to the linker.
            pub fn add_to_linker<T: HasCapabilities>(
                linker: &mut Linker<T>,
            ) -> wasmtime::Result<()> {
                $(<$unit as Capability>::add_to_linker::<T>(linker, |state| {
                    &mut state.capabilities().$field
                })?;)*
                Ok(())
            }

            pub fn configure(&self, service: &ServiceContext<'_>) -> ServiceCapabilities {
                ServiceCapabilities {
                    $($field: self.$field.configure(service),)*
                }
            }

            pub fn forget(&self, service: &str) {
                $(self.$field.forget(service);)*
            }
        }

        impl ServiceCapabilities {
            pub fn prepare(&self) -> InstanceCapabilities {
                InstanceCapabilities {
                    $($field: <$unit as Capability>::prepare(&self.$field),)*
                }
            }
        }
    };
}

capabilities! {
    events: events::Events,
    discovery: discovery::Discovery,
    scheduler: scheduler::Scheduling,
    config: config::Config,
}
