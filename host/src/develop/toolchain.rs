//! Finding the guest toolchains, and installing the JavaScript and Python
//! ones into the tools folder when they are missing.
//!
//! A toolchain on the `PATH` is used as it is; otherwise the one in the
//! tools folder; otherwise `locker` installs the versions it is tested
//! with (with npm or pip, saying so). Rust is the author's own: a missing
//! `cargo` or `wasm32-wasip2` target is a message naming the command.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The versions `locker` installs, which its tests build with.
pub const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.23.0";
/// componentize-js needs it at build time (its optional peer).
pub const PREVIEW2_SHIM: &str = "@bytecodealliance/preview2-shim@0.25.0";
pub const ESBUILD: &str = "esbuild@0.25.12";
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// A program to run, with what its environment needs.
pub struct Tool {
    pub program: PathBuf,
    /// `PYTHONPATH` for a componentize-py installed with `pip --target`.
    pub python_path: Option<PathBuf>,
}

impl Tool {
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        if let Some(path) = &self.python_path {
            let mut joined = OsString::from(path);
            if let Some(existing) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
                joined.push(":");
                joined.push(existing);
            }
            command.env("PYTHONPATH", joined);
        }
        command
    }
}

/// `cargo`, once the `wasm32-wasip2` target is known to be there.
pub fn cargo() -> Result<Tool> {
    let Ok(program) = which::which("cargo") else {
        bail!(
            "cargo is not installed: install Rust (https://rustup.rs), then run `rustup target add wasm32-wasip2`"
        );
    };
    if let Ok(rustup) = which::which("rustup") {
        let installed = Command::new(rustup)
            .args(["target", "list", "--installed"])
            .output()
            .context("cannot run `rustup target list`")?;
        let listed = String::from_utf8_lossy(&installed.stdout);
        if installed.status.success() && !listed.lines().any(|l| l.trim() == "wasm32-wasip2") {
            bail!(
                "the Rust target wasm32-wasip2 is not installed: run `rustup target add wasm32-wasip2`"
            );
        }
    }
    Ok(Tool {
        program,
        python_path: None,
    })
}

/// componentize-js and esbuild.
pub fn javascript(tools: &Path) -> Result<(Tool, Tool)> {
    let bin = tools.join("node/node_modules/.bin");
    let find = |name: &str| {
        which::which(name)
            .ok()
            .or_else(|| executable(&bin.join(name)))
    };
    if let (Some(componentize), Some(esbuild)) = (find("componentize-js"), find("esbuild")) {
        return Ok((plain(componentize), plain(esbuild)));
    }
    let Ok(npm) = which::which("npm") else {
        bail!(
            "building JavaScript needs componentize-js and esbuild, and installing them needs npm: install Node.js 20 or later (with npm), or put componentize-js and esbuild on the PATH"
        );
    };
    let prefix = tools.join("node");
    eprintln!(
        "installing {COMPONENTIZE_JS} and {ESBUILD} into {} (once)",
        prefix.display()
    );
    std::fs::create_dir_all(&prefix)?;
    run(Command::new(npm)
        .arg("install")
        .arg("--prefix")
        .arg(&prefix)
        .args(["--no-audit", "--no-fund", "--loglevel=error"])
        .args([COMPONENTIZE_JS, PREVIEW2_SHIM, ESBUILD]))
    .context("cannot install componentize-js with npm")?;
    match (find("componentize-js"), find("esbuild")) {
        (Some(componentize), Some(esbuild)) => Ok((plain(componentize), plain(esbuild))),
        _ => bail!(
            "npm installed componentize-js, but {} lacks it",
            bin.display()
        ),
    }
}

/// componentize-py.
pub fn python(tools: &Path) -> Result<Tool> {
    if let Ok(program) = which::which("componentize-py") {
        return Ok(pip_target_aware(program));
    }
    let target = tools.join("python");
    if let Some(program) = executable(&target.join("bin/componentize-py")) {
        return Ok(pip_target_aware(program));
    }
    let Ok(python3) = which::which("python3") else {
        bail!(
            "building Python needs componentize-py, and installing it needs python3 with pip: install them, or put componentize-py on the PATH"
        );
    };
    eprintln!(
        "installing {COMPONENTIZE_PY} into {} (once)",
        target.display()
    );
    run(Command::new(python3)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg("--target")
        .arg(&target)
        .arg(COMPONENTIZE_PY))
    .context(
        "cannot install componentize-py with pip (is pip installed? `python3 -m ensurepip`)",
    )?;
    executable(&target.join("bin/componentize-py"))
        .map(pip_target_aware)
        .with_context(|| {
            format!(
                "pip installed componentize-py, but not into {}",
                target.display()
            )
        })
}

fn plain(program: PathBuf) -> Tool {
    Tool {
        program,
        python_path: None,
    }
}

/// A componentize-py installed with `pip install --target DIR` lives in
/// `DIR/bin` and imports its module from `DIR`.
fn pip_target_aware(program: PathBuf) -> Tool {
    let python_path = program
        .parent()
        .and_then(Path::parent)
        .filter(|dir| dir.join("componentize_py").is_dir())
        .map(Path::to_path_buf);
    Tool {
        program,
        python_path,
    }
}

fn executable(path: &Path) -> Option<PathBuf> {
    path.is_file().then(|| path.to_path_buf())
}

/// Runs a command, its output going to the terminal; fails naming it.
pub fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{:?} failed ({status})", command.get_program());
    }
    Ok(())
}
