//! `locker new`: a working service from the templates the binary carries
//! (`guests/templates`), rendered with minijinja.
//!
//! Each language's folder holds its files; `README.md` and
//! `manifest-body.toml` (included by every `locker.toml`) are shared, so the
//! three languages' manifests stay the same.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use include_dir::{Dir, include_dir};

use super::language::Language;
use super::sdk::Sdk;
use crate::package::manifest::{Kind, validate_service_name};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../guests/templates");

/// Templates every language shares, by their name in `guests/templates`.
const SHARED: &[&str] = &["README.md"];

/// What `locker new` was asked for.
pub struct NewService {
    pub name: String,
    pub language: Language,
    pub kind: Kind,
    /// It receives events (an event handler, a subscription).
    pub events: bool,
    /// It has jobs (a job handler, a `[[schedule]]`).
    pub jobs: bool,
}

/// Writes a new service into `dir` (which must not exist, or be empty);
/// returns the files written.
pub fn new_service(dir: &Path, service: &NewService, sdk: &Sdk) -> Result<Vec<PathBuf>> {
    validate_service_name(&service.name)?;
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} exists and is not empty; give `locker new` a new folder",
            dir.display()
        );
    }
    let mut env = minijinja::Environment::new();
    env.set_keep_trailing_newline(true);
    env.set_loader(|name| {
        Ok(TEMPLATES
            .get_file(name)
            .and_then(|file| file.contents_utf8())
            .map(str::to_string))
    });
    let context = minijinja::context! {
        name => service.name,
        kind => service.kind.to_string(),
        lang => service.language.flag(),
        language => service.language.name(),
        events => service.events,
        jobs => service.jobs,
        rust_sdk => service_path(&sdk.rust()),
        js_sdk => service_path(&sdk.js()),
    };
    let language_dir = TEMPLATES
        .get_dir(service.language.flag())
        .expect("every language has templates");
    let mut templates: Vec<(String, PathBuf)> = Vec::new();
    let mut stack = vec![language_dir];
    while let Some(folder) = stack.pop() {
        stack.extend(folder.dirs());
        for file in folder.files() {
            let relative = file
                .path()
                .strip_prefix(service.language.flag())
                .expect("under its language");
            templates.push((file.path().display().to_string(), relative.to_path_buf()));
        }
    }
    templates.extend(SHARED.iter().map(|s| (s.to_string(), PathBuf::from(s))));

    let mut written = Vec::new();
    for (template, relative) in templates {
        let text = env
            .get_template(&template)
            .and_then(|t| t.render(&context))
            .with_context(|| format!("the template {template} does not render"))?;
        let path = dir.join(&relative);
        std::fs::create_dir_all(path.parent().expect("a file has a parent"))?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(relative);
    }
    written.sort();
    Ok(written)
}

/// A path as a template writes it into TOML or JSON (forward slashes).
fn service_path(path: &Path) -> String {
    path.display().to_string().replace('\\', "/")
}
