//! Reading Kubernetes YAML into objects, and walking an object's fields so that every field
//! the translation does not read is reported with its path.

use serde_json::{Map, Value};

use super::ImportError;

/// One Kubernetes object of the input.
#[derive(Debug)]
pub(crate) struct Object {
    pub(super) kind: String,
    pub(super) name: String,
    pub(super) namespace: String,
    /// Where it came from: `FILE` or `FILE#N` (the Nth document, from 1) for multi-document input.
    pub(super) source: String,
    pub(super) value: Value,
}

impl Object {
    /// `Gateway default/httpbin-gateway`: how reports and comments name the object.
    pub(super) fn label(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Every object in `text` (`name` is the file's name, for messages): multi-document YAML,
/// and `kind: List` (what `kubectl get -o yaml` prints) unpacked into its items.
pub(crate) fn objects(name: &str, text: &str) -> Result<Vec<Object>, ImportError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| ImportError::Yaml {
        file: name.to_owned(),
        message: e.to_string(),
    })?;
    let many = docs.len() > 1;
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let source = match many {
            true => format!("{name}#{}", i + 1),
            false => name.to_owned(),
        };
        unpack(doc, &source, &mut out);
    }
    Ok(out)
}

fn unpack(doc: Value, source: &str, out: &mut Vec<Object>) {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind == "List" || kind.ends_with("List") && doc.get("items").is_some() {
        if let Some(Value::Array(items)) = doc.get("items") {
            for item in items.clone() {
                unpack(item, source, out);
            }
        }
        return;
    }
    if doc.is_null() {
        return;
    }
    let meta = |key: &str| {
        doc.get("metadata")
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    out.push(Object {
        kind: kind.to_owned(),
        name: meta("name").unwrap_or_else(|| "(unnamed)".to_owned()),
        namespace: meta("namespace").unwrap_or_else(|| "default".to_owned()),
        source: source.to_owned(),
        value: doc,
    });
}

/// One thing the input asks for that the output does not do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `Gateway default/httpbin-gateway`, or `input` for the translation as a whole.
    pub object: String,
    /// `spec.servers[0].tls.cipherSuites`.
    pub path: String,
    pub why: String,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.path.is_empty() {
            true => write!(f, "{}: {}", self.object, self.why),
            false => write!(f, "{}: {}: {}", self.object, self.path, self.why),
        }
    }
}

/// The reports of one run, with the object being translated.
#[derive(Debug, Default)]
pub(crate) struct Reports {
    pub(super) object: String,
    pub(super) items: Vec<Report>,
}

impl Reports {
    pub(super) fn push(&mut self, path: impl Into<String>, why: impl Into<String>) {
        self.items.push(Report {
            object: self.object.clone(),
            path: path.into(),
            why: why.into(),
        });
    }
}

/// A mapping being translated: each key read is marked, and [`Fields::finish`] reports the
/// others, so nothing in the input is dropped without a word.
pub(crate) struct Fields<'a> {
    map: Option<&'a Map<String, Value>>,
    path: String,
    used: Vec<&'a str>,
}

impl<'a> Fields<'a> {
    /// `value` at `path`; anything but a mapping (or null, read as empty) is reported.
    pub(super) fn new(value: &'a Value, path: impl Into<String>, r: &mut Reports) -> Self {
        let path = path.into();
        let map = match value {
            Value::Object(m) => Some(m),
            Value::Null => None,
            other => {
                r.push(
                    &path,
                    format!("expected a mapping, found {}", kind_of(other)),
                );
                None
            }
        };
        Self {
            map,
            path,
            used: Vec::new(),
        }
    }

    /// This mapping's own path.
    pub(super) fn path(&self) -> &str {
        &self.path
    }

    /// The path of `key` under this mapping.
    pub(super) fn at(&self, key: &str) -> String {
        match self.path.is_empty() {
            true => key.to_owned(),
            false => format!("{}.{key}", self.path),
        }
    }

    /// The value of `key` (marked as read), if present and not null.
    pub(super) fn get(&mut self, key: &'a str) -> Option<&'a Value> {
        let v = self.map?.get(key)?;
        self.used.push(key);
        (!v.is_null()).then_some(v)
    }

    /// Marks `keys` as read without translating them: structure, not configuration.
    pub(super) fn skip(&mut self, keys: &[&'a str]) {
        self.used.extend_from_slice(keys);
    }

    /// A string (numbers and booleans are taken as their text, as Kubernetes does for
    /// annotation-like fields).
    pub(super) fn str(&mut self, key: &'a str, r: &mut Reports) -> Option<String> {
        let at = self.at(key);
        self.get(key).and_then(|v| scalar(v, &at, r))
    }

    /// A list of strings.
    pub(super) fn strings(&mut self, key: &'a str, r: &mut Reports) -> Vec<String> {
        self.list(key, r)
            .into_iter()
            .filter_map(|(at, v)| scalar(v, &at, r))
            .collect()
    }

    /// A nested mapping.
    pub(super) fn object(&mut self, key: &'a str, r: &mut Reports) -> Option<Self> {
        let at = self.at(key);
        self.get(key).map(|v| Self::new(v, at, r))
    }

    /// A list, each item with its path.
    pub(super) fn list(&mut self, key: &'a str, r: &mut Reports) -> Vec<(String, &'a Value)> {
        let at = self.at(key);
        match self.get(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{at}[{i}]"), v))
                .collect(),
            Some(other) => {
                r.push(at, format!("expected a list, found {}", kind_of(other)));
                Vec::new()
            }
        }
    }

    /// The keys present and not read.
    pub(super) fn unread(&self) -> Vec<String> {
        let Some(map) = self.map else {
            return Vec::new();
        };
        map.iter()
            .filter(|(k, v)| !v.is_null() && !self.used.contains(&k.as_str()))
            .map(|(k, _)| self.at(k))
            .collect()
    }

    /// Reports every key present and not read.
    pub(super) fn finish(self, r: &mut Reports) {
        for at in self.unread() {
            r.push(at, "not translated: gatehouse has no equivalent");
        }
    }
}

fn scalar(v: &Value, at: &str, r: &mut Reports) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => {
            r.push(at, format!("expected a string, found {}", kind_of(other)));
            None
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
