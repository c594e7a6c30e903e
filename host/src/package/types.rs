//! Data types: a package defines a type (`contact/card`) with a JSON Schema
//! (`[types."contact/card"] schema = "schemas/card.json"`) and binds topics
//! it publishes to it; every payload on such a topic must match (Sockethub's
//! validated messages). The schema travels inside the manifest once the
//! package is read (`schema_json`), so an install through the admin API or
//! a registry carries it. Schemas may not fetch anything: `$ref` resolves
//! within the schema only.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::Manifest;
use crate::api::TypeView;

/// The largest schema a package may carry.
const MAX_SCHEMA_BYTES: u64 = 1024 * 1024;

/// A type's schema, compiled.
pub struct DataType {
    pub name: String,
    pub schema: Value,
    validator: jsonschema::Validator,
}

impl DataType {
    pub fn compile(name: &str, json: &str) -> Result<DataType> {
        let schema: Value = serde_json::from_str(json)
            .with_context(|| format!("the schema of type {name:?} is not JSON"))?;
        // The `regex` engine, which runs in linear time: a `pattern` cannot
        // make a payload (a webhook's, say) cost minutes of CPU. A pattern
        // it cannot take (lookaround, back-references) is refused at install.
        let validator = jsonschema::options()
            .with_retriever(NoRetrieval)
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .build(&schema)
            .map_err(|e| {
                anyhow::anyhow!("the schema of type {name:?} is not a JSON Schema: {e}")
            })?;
        Ok(DataType {
            name: name.to_string(),
            schema,
            validator,
        })
    }

    /// The first way `payload` breaks the schema, if it does: where, and what.
    pub fn violation(&self, payload: &Value) -> Option<String> {
        self.validator.validate(payload).err().map(|error| {
            let at = error.instance_path().to_string();
            let at = if at.is_empty() { "/".to_string() } else { at };
            format!("at {at}: {error}")
        })
    }
}

/// Schemas may not reach outside themselves.
struct NoRetrieval;

impl jsonschema::Retrieve for NoRetrieval {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!("a schema may not refer outside itself ({uri})").into())
    }
}

/// Reads each type's schema file (next to the manifest in `dir`) into the
/// manifest, refusing a path that leaves the package.
pub fn embed_schemas(manifest: &mut Manifest, dir: &Path) -> Result<()> {
    let root = dir
        .canonicalize()
        .with_context(|| format!("cannot open {}", dir.display()))?;
    for (name, def) in manifest.types.iter_mut() {
        let Some(relative) = &def.schema else {
            continue;
        };
        let path = dir.join(relative);
        let real = path.canonicalize().with_context(|| {
            format!(
                "cannot read the schema of type {name:?}: {}",
                path.display()
            )
        })?;
        if !real.starts_with(&root) {
            bail!("the schema of type {name:?} ({relative}) is outside the package");
        }
        let metadata = std::fs::metadata(&real)?;
        if !metadata.is_file() {
            bail!("the schema of type {name:?} ({relative}) is not a file");
        }
        if metadata.len() > MAX_SCHEMA_BYTES {
            bail!(
                "the schema of type {name:?} is {} bytes; at most {MAX_SCHEMA_BYTES}",
                metadata.len()
            );
        }
        let mut json = String::new();
        std::fs::File::open(&real)?
            .take(MAX_SCHEMA_BYTES)
            .read_to_string(&mut json)
            .with_context(|| format!("cannot read the schema of type {name:?}"))?;
        def.schema_json = Some(json);
    }
    Ok(())
}

/// Fills in each type's schema from files uploaded with the manifest (a
/// browser sends file names, not folders): by the path the manifest names,
/// or by its file name. A schema not among them is named.
pub fn embed_uploaded_schemas(
    manifest: &mut Manifest,
    files: &std::collections::HashMap<String, Vec<u8>>,
) -> Result<()> {
    for (name, def) in manifest.types.iter_mut() {
        let (Some(relative), None) = (&def.schema, &def.schema_json) else {
            continue;
        };
        let file_name = Path::new(relative)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(relative);
        let bytes = files
            .get(relative.as_str())
            .or_else(|| files.get(file_name))
            .with_context(|| {
                format!(
                    "the schema of type {name:?} ({relative}) was not uploaded with the package"
                )
            })?;
        if bytes.len() as u64 > MAX_SCHEMA_BYTES {
            bail!(
                "the schema of type {name:?} is {} bytes; at most {MAX_SCHEMA_BYTES}",
                bytes.len()
            );
        }
        let json = String::from_utf8(bytes.clone())
            .with_context(|| format!("the schema of type {name:?} is not UTF-8"))?;
        def.schema_json = Some(json);
    }
    Ok(())
}

/// Every type a manifest defines, compiled; an error names the first bad one.
pub fn compile_all(manifest: &Manifest) -> Result<Vec<DataType>> {
    manifest
        .types
        .iter()
        .map(|(name, def)| {
            let json = def.schema_json.as_deref().with_context(|| {
                format!("the schema of type {name:?} did not come with the package")
            })?;
            DataType::compile(name, json)
        })
        .collect()
}

/// Checks a package's types against the installed services' (`others`,
/// the package's own earlier version left out): a type another package
/// defines must have the same schema, and a topic may only be bound to a
/// type that is defined.
pub fn check_against<'a>(
    manifest: &Manifest,
    others: impl IntoIterator<Item = &'a Manifest> + Clone,
) -> Result<()> {
    for mine in compile_all(manifest)? {
        for other in others.clone() {
            let Some(def) = other.types.get(&mine.name) else {
                continue;
            };
            let theirs: Option<Value> = def
                .schema_json
                .as_deref()
                .and_then(|json| serde_json::from_str(json).ok());
            if theirs.as_ref() != Some(&mine.schema) {
                bail!(
                    "type {:?} is already defined by service {:?} with a different schema; \
                     {:?} would define it again differently (one type, one schema: agree on it, \
                     or name yours differently)",
                    mine.name,
                    other.name,
                    manifest.name
                );
            }
        }
    }
    for entry in &manifest.publishes {
        let Some(data_type) = entry.data_type() else {
            continue;
        };
        let defined = manifest.types.contains_key(data_type)
            || others
                .clone()
                .into_iter()
                .any(|other| other.types.contains_key(data_type));
        if !defined {
            bail!(
                "`publishes` binds {:?} to type {data_type:?}, which neither this package nor \
                 an installed one defines",
                entry.topic()
            );
        }
    }
    Ok(())
}

/// Every type the manifests define, with who defines, binds and provides it.
pub fn views<'a>(manifests: impl IntoIterator<Item = &'a Manifest> + Clone) -> Vec<TypeView> {
    let mut views: std::collections::BTreeMap<String, TypeView> = Default::default();
    for manifest in manifests.clone() {
        for (name, def) in &manifest.types {
            let view = views.entry(name.clone()).or_insert_with(|| TypeView {
                name: name.clone(),
                defined_by: Vec::new(),
                topics: Vec::new(),
                provided_by: Vec::new(),
                description: def.description.clone(),
                schema: def
                    .schema_json
                    .as_deref()
                    .and_then(|json| serde_json::from_str(json).ok())
                    .unwrap_or_default(),
            });
            view.defined_by.push(manifest.name.clone());
        }
    }
    for manifest in manifests {
        for entry in &manifest.publishes {
            if let Some(view) = entry.data_type().and_then(|t| views.get_mut(t)) {
                view.topics
                    .push(format!("{}: {}", manifest.name, entry.topic()));
            }
        }
        for provided in &manifest.provides {
            if let Some(view) = views.get_mut(provided) {
                view.provided_by.push(manifest.name.clone());
            }
        }
    }
    views.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = r#"{"type": "object", "required": ["name"],
        "properties": {"name": {"type": "string"}, "email": {"type": "string", "format": "email"}}}"#;

    fn manifest(name: &str, schema: &str, publishes: &str) -> Manifest {
        let text = format!(
            "name = \"{name}\"\nversion = \"0.1.0\"\nkind = \"connector\"\ndescription = \"d\"\n\
             component = \"c.wasm\"\npublishes = [{publishes}]\n\
             [types.\"contact/card\"]\nschema_json = '''{schema}'''\n"
        );
        Manifest::parse(&text, "test").unwrap()
    }

    #[test]
    fn a_payload_is_checked_against_its_type() {
        let card = DataType::compile("contact/card", CARD).unwrap();
        assert_eq!(card.violation(&serde_json::json!({"name": "Ada"})), None);
        let missing = card
            .violation(&serde_json::json!({"email": "a@b.c"}))
            .unwrap();
        assert!(
            missing.contains("\"name\" is a required property"),
            "{missing}"
        );
        let wrong = card.violation(&serde_json::json!({"name": 7})).unwrap();
        assert!(wrong.starts_with("at /name:"), "{wrong}");
        let bad = DataType::compile("x/y", r#"{"type": "nonsense"}"#)
            .err()
            .unwrap();
        assert!(format!("{bad:#}").contains("not a JSON Schema"), "{bad:#}");
        let far = DataType::compile("x/y", r#"{"$ref": "https://evil.example/s.json"}"#);
        assert!(far.is_err());
        let pattern =
            DataType::compile("x/y", r#"{"type": "string", "pattern": "^(a+)+$"}"#).unwrap();
        assert!(pattern.violation(&serde_json::json!("aaaa")).is_none());
        let slow = format!("{}!", "a".repeat(5000));
        assert!(pattern.violation(&serde_json::json!(slow)).is_some());
        assert!(DataType::compile("x/y", r#"{"type": "string", "pattern": "(?=a)a"}"#).is_err());
    }

    #[test]
    fn one_type_has_one_schema_and_a_bound_type_must_exist() {
        let first = manifest(
            "carddav",
            CARD,
            r#"{ topic = "contact/changed", type = "contact/card" }"#,
        );
        let same = manifest("google", CARD, "");
        assert!(check_against(&same, [&first]).is_ok());
        let other = manifest("vcard", r#"{"type": "string"}"#, "");
        let error = format!("{:#}", check_against(&other, [&first]).unwrap_err());
        assert!(
            error.contains("\"contact/card\" is already defined by service \"carddav\"")
                && error.contains("\"vcard\""),
            "{error}"
        );
        let mut unbound = manifest("x", CARD, r#"{ topic = "a/b", type = "photo/item" }"#);
        unbound.types.clear();
        let error = format!("{:#}", check_against(&unbound, [&first]).unwrap_err());
        assert!(
            error.contains("type \"photo/item\", which neither"),
            "{error}"
        );
    }
}
