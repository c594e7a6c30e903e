//! Bindings to Locker's own interfaces (`wit/`): events, discovery and the
//! event handler. WASI types come from the `wasip2` crate, so the request and
//! response helpers of this crate work with them.
//!
//! A service that handles events implements both `Guest` traits and exports
//! them with `locker_guest::export_service!(MyService)`.

wit_bindgen::generate!({
    world: "locker:service/service",
    path: "../../wit",
    with: {
        "wasi:http/types@0.2.12": wasip2::http::types,
        "wasi:http/outgoing-handler@0.2.12": wasip2::http::outgoing_handler,
        "wasi:io/error@0.2.12": wasip2::io::error,
        "wasi:io/poll@0.2.12": wasip2::io::poll,
        "wasi:io/streams@0.2.12": wasip2::io::streams,
        "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
        "wasi:clocks/wall-clock@0.2.12": wasip2::clocks::wall_clock,
        "wasi:random/random@0.2.12": wasip2::random::random,
        "wasi:cli/stdout@0.2.12": wasip2::cli::stdout,
        "wasi:cli/stderr@0.2.12": wasip2::cli::stderr,
        "wasi:cli/stdin@0.2.12": wasip2::cli::stdin,
    },
    pub_export_macro: true,
    export_macro_name: "export_service",
    default_bindings_module: "locker_guest::bindings",
});
