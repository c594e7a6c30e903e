//! `locker build`: a service folder into a package folder
//! (`target/locker/`: its `locker.toml`, its component, its schemas),
//! checked as `locker install` will check it.
//!
//! Per language: Rust with cargo for `wasm32-wasip2`; JavaScript bundled by
//! esbuild (so npm packages and the SDK resolve) and then componentize-js;
//! Python with componentize-py and the SDK on its path. JavaScript and
//! Python components must export exactly what their world does, so the
//! world (`locker:service/service-http-events`, ...) is chosen from what
//! the source defines, after checking that against the manifest. A build
//! whose inputs (the folder's files, the SDK) did not change is skipped
//! (for Rust, cargo decides; an unchanged component is not packed again).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::language::Language;
use super::sdk::Sdk;
use super::toolchain;
use crate::package::component::{Package, unsupported_imports};
use crate::package::manifest::Manifest;

/// Where a build leaves its package, under the service folder.
pub const PACKAGE_DIR: &str = "target/locker";
/// Where JavaScript and Python builds keep their intermediate files.
const WORK_DIR: &str = "target/locker-build";
/// The stamp of the inputs the package was built from.
const STAMP: &str = ".inputs";
/// Folders whose files are never inputs.
const NOT_INPUTS: &[&str] = &["target", "node_modules", "__pycache__"];

#[derive(Debug, Default, Clone)]
pub struct BuildOptions {
    /// Build even when nothing changed.
    pub force: bool,
}

/// A package folder ready to install.
#[derive(Debug)]
pub struct Built {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub language: Language,
    /// False when the inputs had not changed and the build was skipped.
    pub rebuilt: bool,
    pub took: Duration,
}

/// What a service's source defines, as far as its world goes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Handlers {
    http: bool,
    events: bool,
    jobs: bool,
}

impl Handlers {
    fn world(self) -> Result<String> {
        let parts: Vec<&str> = [
            (self.http, "http"),
            (self.events, "events"),
            (self.jobs, "jobs"),
        ]
        .into_iter()
        .filter_map(|(has, part)| has.then_some(part))
        .collect();
        if parts.is_empty() {
            bail!("it defines no handler: no HTTP handler, no event handler, no job handler");
        }
        Ok(format!("locker:service/service-{}", parts.join("-")))
    }
}

/// Builds the service in `dir`.
pub fn build(dir: &Path, sdk: &Sdk, tools: &Path, options: &BuildOptions) -> Result<Built> {
    let started = Instant::now();
    let dir = dir
        .canonicalize()
        .with_context(|| format!("no service folder {}", dir.display()))?;
    let manifest_path = dir.join("locker.toml");
    let manifest = Manifest::read(&manifest_path)?;
    let language = Language::of(&dir)?;
    let out = dir.join(PACKAGE_DIR);
    let stamp = inputs_stamp(&dir, sdk)?;
    // Cargo keeps its own account of what changed (and writes Cargo.lock,
    // an input, on the first build), so Rust is always handed to it; the
    // others are skipped when their inputs are as they were.
    let done = language != Language::Rust
        && std::fs::read_to_string(out.join(STAMP)).is_ok_and(|s| s == stamp)
        && out.join(&manifest.component).is_file();
    let up_to_date = |out: PathBuf, manifest: Manifest| Built {
        dir: out,
        manifest,
        language,
        rebuilt: false,
        took: started.elapsed(),
    };
    if done && !options.force {
        return Ok(up_to_date(out, manifest));
    }

    let component = match language {
        Language::Rust => build_rust(&dir)?,
        Language::Js => build_js(&dir, &manifest, sdk, tools)?,
        Language::Python => build_python(&dir, &manifest, sdk, tools)?,
    };
    let unchanged = !options.force
        && same_file(&component, &out.join(&manifest.component))
        && same_file(&manifest_path, &out.join("locker.toml"));
    if unchanged {
        return Ok(up_to_date(out, manifest));
    }
    // Checked before it replaces the last package: a refused build leaves
    // nothing that `locker install` could pick up.
    let staged = dir.join(WORK_DIR).join("package");
    std::fs::remove_dir_all(&staged).ok();
    write_package(&dir, &staged, &manifest, &component)?;
    let package =
        Package::read(&staged, None).context("the built package is not one a locker installs")?;
    let unsupported = unsupported_imports(&package.component)?;
    if !unsupported.is_empty() {
        bail!(
            "the component imports what no locker provides: {}",
            unsupported.join(", ")
        );
    }
    std::fs::write(staged.join(STAMP), stamp)?;
    std::fs::remove_dir_all(&out).ok();
    std::fs::rename(&staged, &out)
        .with_context(|| format!("cannot move the package to {}", out.display()))?;
    Ok(Built {
        dir: out,
        manifest,
        language,
        rebuilt: true,
        took: started.elapsed(),
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    matches!((std::fs::read(a), std::fs::read(b)), (Ok(a), Ok(b)) if a == b)
}

/// The package folder: the manifest as written, the component under the
/// name the manifest gives, and the schema files it names.
fn write_package(dir: &Path, out: &Path, manifest: &Manifest, component: &Path) -> Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::copy(dir.join("locker.toml"), out.join("locker.toml"))?;
    let target = out.join(&manifest.component);
    std::fs::copy(component, &target).with_context(|| {
        format!(
            "cannot copy {} to {}",
            component.display(),
            target.display()
        )
    })?;
    for definition in manifest.types.values() {
        if let Some(schema) = &definition.schema {
            let (from, to) = (dir.join(schema), out.join(schema));
            std::fs::create_dir_all(to.parent().expect("a file has a parent"))?;
            std::fs::copy(&from, &to)
                .with_context(|| format!("cannot copy the schema {}", from.display()))?;
        }
    }
    Ok(())
}

/// A hash of every input file (path, size, contents) and of the SDK's version.
fn inputs_stamp(dir: &Path, sdk: &Sdk) -> Result<String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    // Linked folders (a `schemas` shared with another service) are read
    // through, each once, so a link back up cannot loop.
    let mut seen = std::collections::HashSet::new();
    while let Some(folder) = stack.pop() {
        if !seen.insert(folder.canonicalize()?) {
            continue;
        }
        for entry in std::fs::read_dir(&folder)? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue; // `.git`, an editor's swap files, `.gitignore`
            }
            let is_dir = std::fs::metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .is_dir();
            if is_dir {
                if !NOT_INPUTS.iter().any(|n| name == *n) {
                    stack.push(path);
                }
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut hasher = blake3::Hasher::new();
    hasher.update(sdk.version.as_bytes());
    for file in files {
        let contents = std::fs::read(&file)?;
        hasher.update(
            file.strip_prefix(dir)
                .unwrap_or(&file)
                .to_string_lossy()
                .as_bytes(),
        );
        hasher.update(&(contents.len() as u64).to_le_bytes());
        hasher.update(&contents);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// Checks what the source defines against what the manifest needs of it.
fn check_handlers(
    manifest: &Manifest,
    handlers: Handlers,
    file: &str,
    how: [&str; 2],
) -> Result<()> {
    if !manifest.subscribes.is_empty() && !handlers.events {
        bail!(
            "locker.toml subscribes to {:?}, but {file} defines no event handler ({})",
            manifest.subscribes,
            how[0]
        );
    }
    if !manifest.schedule.is_empty() && !handlers.jobs {
        let names: Vec<&str> = manifest.schedule.iter().map(|j| j.name.as_str()).collect();
        bail!(
            "locker.toml schedules the jobs {names:?}, but {file} defines no job handler ({})",
            how[1]
        );
    }
    Ok(())
}

fn build_rust(dir: &Path) -> Result<PathBuf> {
    let cargo = toolchain::cargo()?;
    let output = cargo
        .command()
        .current_dir(dir)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !output.status.success() {
        bail!("cargo could not build {}", dir.display());
    }
    let manifest_path = dir.join("Cargo.toml");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter(|message| {
            message["manifest_path"].as_str().map(Path::new) == Some(manifest_path.as_path())
        })
        .flat_map(|message| {
            message["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
        })
        .find(|file| file.extension().is_some_and(|e| e == "wasm"))
        .with_context(|| {
            format!(
                "cargo built no component for {}: is it a `crate-type = [\"cdylib\"]` library?",
                manifest_path.display()
            )
        })
}

fn build_js(dir: &Path, manifest: &Manifest, sdk: &Sdk, tools: &Path) -> Result<PathBuf> {
    let (componentize, esbuild) = toolchain::javascript(tools)?;
    let work = dir.join(WORK_DIR);
    std::fs::create_dir_all(&work)?;
    let bundle = work.join("app.js");
    let metafile = work.join("meta.json");
    toolchain::run(
        esbuild
            .command()
            .current_dir(dir)
            .args(["app.js", "--bundle", "--format=esm", "--platform=neutral"])
            .args(["--main-fields=module,main", "--log-level=warning"])
            .args(["--external:locker:*", "--external:wasi:*"])
            .arg(format!(
                "--alias:locker-sdk={}",
                sdk.js().join("index.js").display()
            ))
            .arg(format!("--outfile={}", bundle.display()))
            .arg(format!("--metafile={}", metafile.display())),
    )
    .context("esbuild could not bundle app.js")?;
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&metafile)?)?;
    let exported: Vec<String> = meta["outputs"]
        .as_object()
        .and_then(|outputs| outputs.values().next())
        .and_then(|output| output["exports"].as_array())
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let bundled: String = std::fs::read_to_string(&bundle)?
        .split_whitespace()
        .collect();
    let exports = |name: &str| exported.iter().any(|e| e == name);
    let handlers = Handlers {
        http: exports("incomingHandler") || bundled.contains("addEventListener(\"fetch\""),
        events: exports("eventHandler"),
        jobs: exports("jobHandler"),
    };
    check_handlers(
        manifest,
        handlers,
        "app.js",
        [
            "`export const eventHandler = onEvent(...)`",
            "`export const jobHandler = onJob(...)`",
        ],
    )?;
    let world = handlers.world().context("app.js cannot be a service")?;
    let component = work.join("component.wasm");
    toolchain::run(
        componentize
            .command()
            .current_dir(&work)
            .arg(&bundle)
            .arg("--wit")
            .arg(sdk.js_wit())
            .arg("--world-name")
            .arg(world.trim_start_matches("locker:service/"))
            .arg("-o")
            .arg(&component),
    )
    .context("componentize-js could not build app.js")?;
    Ok(component)
}

fn build_python(dir: &Path, manifest: &Manifest, sdk: &Sdk, tools: &Path) -> Result<PathBuf> {
    let componentize = toolchain::python(tools)?;
    let source = std::fs::read_to_string(dir.join("app.py"))?;
    let defines = |class: &str| {
        source.lines().any(|line| {
            line.strip_prefix("class ")
                .and_then(|rest| rest.strip_prefix(class))
                .is_some_and(|rest| rest.starts_with(['(', ':']))
        })
    };
    let handlers = Handlers {
        http: defines("IncomingHandler"),
        events: defines("EventHandler"),
        jobs: defines("JobHandler"),
    };
    check_handlers(
        manifest,
        handlers,
        "app.py",
        [
            "`class EventHandler(locker_sdk.EventHandler)`",
            "`class JobHandler(locker_sdk.JobHandler)`",
        ],
    )?;
    let world = handlers.world().context("app.py cannot be a service")?;
    generate_python_bindings(sdk, &componentize)?;
    let work = dir.join(WORK_DIR);
    std::fs::create_dir_all(&work)?;
    let component = work.join("component.wasm");
    toolchain::run(
        componentize
            .command()
            .current_dir(dir)
            .args(["--quiet", "-w", &world, "componentize", "app", "-p", "."])
            .arg("-p")
            .arg(sdk.python())
            .arg("-o")
            .arg(&component),
    )
    .context("componentize-py could not build app.py")?;
    Ok(component)
}

/// The Python SDK's bindings for editors and type checkers, made once.
fn generate_python_bindings(sdk: &Sdk, componentize: &toolchain::Tool) -> Result<()> {
    let target = sdk.python_bindings();
    if target.join("__init__.py").is_file() {
        return Ok(());
    }
    let staging = tempfile::tempdir_in(sdk.python())?;
    let status = componentize
        .command()
        .arg("-d")
        .arg(sdk.python_wit())
        .args(["-w", "locker:service/service-http-events-jobs"])
        .args(["--world-module", "bindings", "bindings"])
        .arg(staging.path())
        .stdout(Stdio::null())
        .status()
        .context("cannot run componentize-py")?;
    if !status.success() {
        bail!("componentize-py could not generate the SDK's bindings");
    }
    // Entry by entry into the folder componentize-py is given (it must stay
    // there for builds running meanwhile); `__init__.py` last, as the mark.
    let generated = staging.path().join("bindings");
    for entry in std::fs::read_dir(&generated)? {
        let entry = entry?;
        if entry.file_name() != "__init__.py" {
            // Another build may have moved the same entry in already.
            std::fs::rename(entry.path(), target.join(entry.file_name())).ok();
        }
    }
    std::fs::rename(generated.join("__init__.py"), target.join("__init__.py")).ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_world_follows_the_handlers() {
        let world = |http, events, jobs| Handlers { http, events, jobs }.world().unwrap();
        assert_eq!(world(true, false, false), "locker:service/service-http");
        assert_eq!(
            world(true, true, true),
            "locker:service/service-http-events-jobs"
        );
        assert_eq!(world(false, false, true), "locker:service/service-jobs");
        assert!(Handlers::default().world().is_err());
    }
}
