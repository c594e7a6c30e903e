//! A service package: a manifest plus the component it names, checked before
//! anything is written to the root.

use std::path::Path;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use wasmparser::{Encoding, Parser, Payload};

use super::manifest::Manifest;
pub use crate::api::Origin;

/// The interface a WASI 0.2 service exports to receive HTTP requests.
const HTTP_HANDLER: &str = "wasi:http/incoming-handler@0.2";
/// The interface a WASI 0.3 service exports to receive HTTP requests.
const HTTP_HANDLER_P3: &str = "wasi:http/handler@0.3";
/// The interface a service exports to receive events.
pub const EVENT_HANDLER: &str = "locker:service/event-handler@0.1";
/// The interface a service exports to run jobs.
pub const JOB_HANDLER: &str = "locker:service/job-handler@0.1";

/// A package that passed every check, ready to install.
pub struct Package {
    pub manifest: Manifest,
    pub component: Vec<u8>,
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
    /// What the component can handle, read from its own type.
    pub exports: Exports,
    /// The registry it came from; `None` for a package folder.
    pub origin: Option<Origin>,
}

/// What a component exports, as far as the host cares.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Exports {
    /// The exact `wasi:http/incoming-handler` (WASI 0.2) or
    /// `wasi:http/handler` (WASI 0.3) it exports.
    #[serde(default)]
    pub http_handler: Option<String>,
    /// The exact `locker:service/event-handler` version it exports.
    #[serde(default)]
    pub event_handler: Option<String>,
    /// The exact `locker:service/job-handler` version it exports.
    #[serde(default)]
    pub job_handler: Option<String>,
}

/// Which WASI a service's HTTP handler speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasiHttp {
    /// `wasi:http/incoming-handler@0.2.x`: one request per call, one call
    /// at a time per instance.
    P2,
    /// `wasi:http/handler@0.3.x`: an async export, several requests at once
    /// per instance.
    P3,
}

impl WasiHttp {
    pub fn version(self) -> &'static str {
        match self {
            WasiHttp::P2 => "0.2",
            WasiHttp::P3 => "0.3",
        }
    }
}

impl Exports {
    /// The WASI version of its HTTP handler, if it has one.
    pub fn wasi_http(&self) -> Option<WasiHttp> {
        let export = self.http_handler.as_deref()?;
        Some(if export.starts_with(HTTP_HANDLER_P3) {
            WasiHttp::P3
        } else {
            WasiHttp::P2
        })
    }
}

impl Package {
    /// Reads a package from PATH: a folder holding `locker.toml` and the
    /// component it names, or a `.wasm` file with a separate manifest.
    pub fn read(path: &Path, manifest_path: Option<&Path>) -> Result<Package> {
        let (manifest_path, component_dir) = match manifest_path {
            Some(manifest) => (manifest.to_path_buf(), None),
            None if path.is_dir() => (path.join("locker.toml"), Some(path)),
            None => bail!(
                "{} is not a package folder; give a folder holding locker.toml, or a .wasm with --manifest",
                path.display()
            ),
        };
        let mut manifest = Manifest::read(&manifest_path)?;
        let package_dir = manifest_path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        super::types::embed_schemas(&mut manifest, package_dir)
            .with_context(|| format!("invalid package {}", manifest_path.display()))?;
        let component_path = match component_dir {
            Some(dir) => dir.join(&manifest.component),
            None => path.to_path_buf(),
        };
        let component = std::fs::read(&component_path)
            .with_context(|| format!("cannot read component {}", component_path.display()))?;
        Package::new(manifest, component, &component_path.display().to_string())
    }

    /// A package as the catalog keeps it: the manifest as installed (its
    /// schemas inside it, as JSON) with its component; checked again.
    pub fn installed(
        manifest: &str,
        component: Vec<u8>,
        origin: Option<Origin>,
        whence: &str,
    ) -> Result<Package> {
        let mut manifest = Manifest::parse(manifest, whence)?;
        for definition in manifest.types.values_mut() {
            if definition.schema_json.is_some() {
                definition.schema = None;
            }
        }
        let mut package = Package::new(manifest, component, whence)?;
        package.origin = origin;
        Ok(package)
    }

    /// Checks a manifest and component that arrived from elsewhere (the admin API).
    pub fn new(manifest: Manifest, component: Vec<u8>, origin: &str) -> Result<Package> {
        let exports = inspect_component(&component)
            .with_context(|| format!("{origin} is not a usable component"))?;
        if !manifest.subscribes.is_empty() && exports.event_handler.is_none() {
            bail!(
                "service {:?} subscribes to {:?} but its component does not export `{EVENT_HANDLER}.x`",
                manifest.name,
                manifest.subscribes
            );
        }
        if !manifest.schedule.is_empty() && exports.job_handler.is_none() {
            bail!(
                "service {:?} declares jobs in `[[schedule]]` but its component does not export `{JOB_HANDLER}.x`",
                manifest.name
            );
        }
        super::types::compile_all(&manifest)
            .with_context(|| format!("service {:?} defines a type badly", manifest.name))?;
        let digest = digest_of(&component);
        Ok(Package {
            manifest,
            component,
            digest,
            exports,
            origin: None,
        })
    }
}

/// `sha256:<hex>` of some bytes: how packages name their component.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Validates the bytes as a component and reads what it exports.
pub fn inspect_component(bytes: &[u8]) -> Result<Exports> {
    if !wasmparser::Parser::is_component(bytes) {
        if wasmparser::Parser::is_core_wasm(bytes) {
            bail!(
                "it is a core wasm module, not a component (build for wasm32-wasip2, or wrap it with `wasm-tools component new`)"
            );
        }
        bail!("it is not WebAssembly (bad magic number)");
    }
    let mut validator = wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all());
    validator
        .validate_all(bytes)
        .map_err(|e| anyhow::anyhow!("invalid component: {e}"))?;

    let mut exports = Exports::default();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| anyhow::anyhow!("invalid component: {e}"))? {
            Payload::Version {
                encoding: Encoding::Component,
                ..
            } => depth += 1,
            Payload::Version {
                encoding: Encoding::Module,
                ..
            } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            // Only the outermost component's exports are what the host can call.
            Payload::ComponentExportSection(section) if depth == 1 => {
                for export in section {
                    let export = export.map_err(|e| anyhow::anyhow!("invalid component: {e}"))?;
                    let name = export.name.name;
                    if name.starts_with(HTTP_HANDLER) || name.starts_with(HTTP_HANDLER_P3) {
                        exports.http_handler = Some(name.to_string());
                    } else if name.starts_with(EVENT_HANDLER) {
                        exports.event_handler = Some(name.to_string());
                    } else if name.starts_with(JOB_HANDLER) {
                        exports.job_handler = Some(name.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    if exports == Exports::default() {
        bail!(
            "it exports none of `{HTTP_HANDLER}.x`, `{HTTP_HANDLER_P3}.x`, `{EVENT_HANDLER}.x` and `{JOB_HANDLER}.x`, so the host cannot call it"
        );
    }
    Ok(exports)
}

/// The interfaces a host provides to guests: WASI's own (the policy decides
/// what each may reach), settings, and Locker's.
const PROVIDED_IMPORTS: &[&str] = &[
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
    "wasi:http/",
    "wasi:config/",
    "locker:service/",
];

/// The component's imports that no locker provides (an SDK's mistake, or a
/// component built for another host).
pub fn unsupported_imports(bytes: &[u8]) -> Result<Vec<String>> {
    let mut unsupported = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| anyhow::anyhow!("invalid component: {e}"))? {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    let import = import.map_err(|e| anyhow::anyhow!("invalid component: {e}"))?;
                    let name = import.name.name;
                    if !PROVIDED_IMPORTS.iter().any(|p| name.starts_with(p)) {
                        unsupported.push(name.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(unsupported)
}
