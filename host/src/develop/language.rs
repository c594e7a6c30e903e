//! The languages a service may be written in, and how a source folder
//! says which it is.

use std::path::Path;

use anyhow::{Result, bail};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    #[value(alias = "javascript")]
    Js,
    #[value(alias = "py")]
    Python,
}

impl Language {
    /// The language of a service folder: `Cargo.toml`, `app.js` or `app.py`.
    pub fn of(dir: &Path) -> Result<Language> {
        let found: Vec<Language> = [
            (Language::Rust, "Cargo.toml"),
            (Language::Js, "app.js"),
            (Language::Python, "app.py"),
        ]
        .into_iter()
        .filter(|(_, file)| dir.join(file).is_file())
        .map(|(language, _)| language)
        .collect();
        match found.as_slice() {
            [language] => Ok(*language),
            [] => bail!(
                "{} holds no service source: a Rust service has Cargo.toml, a JavaScript one app.js, a Python one app.py (`locker new NAME --lang ...` starts one)",
                dir.display()
            ),
            _ => bail!(
                "{} holds sources of more than one language ({}); keep one of Cargo.toml, app.js and app.py",
                dir.display(),
                found
                    .iter()
                    .map(|l| l.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// The name an author knows it by.
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "Rust",
            Language::Js => "JavaScript",
            Language::Python => "Python",
        }
    }

    /// The `--lang` value.
    pub fn flag(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Js => "js",
            Language::Python => "python",
        }
    }
}
