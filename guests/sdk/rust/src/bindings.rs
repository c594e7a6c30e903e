//! Bindings to Locker's own interfaces (`wit/`). Each handler a service may
//! export has its own module and export macro, so a service implements only
//! the handlers it has:
//!
//! - [`imports`]: `events`, `discovery`, `scheduler` and `wasi:config/store`,
//!   to call the host;
//! - [`event_handling`]: `export_event_handler!(S)` for `event-handler::Guest`;
//! - [`job_handling`]: `export_job_handler!(S)` for `job-handler::Guest`.
//!
//! HTTP is exported with `wasip2::http::proxy::export!`, as for any
//! `wasi:http` component.

pub mod imports {
    wit_bindgen::generate!({
        world: "locker:service/imports",
        path: "../../../wit",
        generate_all,
    });
}

pub mod event_handling {
    wit_bindgen::generate!({
        world: "locker:service/event-handling",
        path: "../../../wit",
        with: {
            "locker:service/events@0.1.0": crate::bindings::imports::locker::service::events,
        },
        pub_export_macro: true,
        export_macro_name: "export_event_handler",
        default_bindings_module: "locker_sdk::bindings::event_handling",
    });
}

pub mod job_handling {
    wit_bindgen::generate!({
        world: "locker:service/job-handling",
        path: "../../../wit",
        pub_export_macro: true,
        export_macro_name: "export_job_handler",
        default_bindings_module: "locker_sdk::bindings::job_handling",
    });
}
