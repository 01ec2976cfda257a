//! `gatehouse import`: Kubernetes YAML (Istio `Gateway` / `VirtualService` /
//! `AuthorizationPolicy`, or ingress-nginx `Ingress`) translated into one gatehouse config.
//!
//! The translation reads every field it understands through [`doc::Fields`], which reports
//! every other one with its object and path: nothing is dropped without a word. Where a
//! constraint cannot be expressed, the output fails closed (an ALLOW rule that would widen
//! is left out; a DENY rule is kept, denying more) and the report says so.

mod doc;
mod istio;
mod istio_policy;
mod model;
mod nginx;
#[cfg(test)]
mod tests;

pub use doc::Report;

use model::Config;

/// Which YAML the input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Importer {
    Istio,
    IngressNginx,
}

impl Importer {
    fn name(self) -> &'static str {
        match self {
            Self::Istio => "istio",
            Self::IngressNginx => "ingress-nginx",
        }
    }

    /// The kinds this importer translates.
    fn kinds(self) -> &'static [&'static str] {
        match self {
            Self::Istio => &["Gateway", "VirtualService", "AuthorizationPolicy"],
            Self::IngressNginx => &["Ingress"],
        }
    }
}

/// `--secrets-dir` and `--upstream-template`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where Kubernetes secrets are mounted, one directory per secret.
    pub secrets_dir: String,
    /// `{service}`, `{namespace}` and `{port}` are filled in; `None`: the cluster DNS name.
    pub upstream_template: Option<String>,
}

/// The default `--secrets-dir`.
pub const DEFAULT_SECRETS_DIR: &str = "/etc/gatehouse/secrets";

impl Options {
    fn secret(&self, name: &str) -> String {
        format!("{}/{name}", self.secrets_dir.trim_end_matches('/'))
    }

    /// The upstream URL of a Kubernetes service port.
    fn upstream(&self, service: &str, namespace: &str, port: &str) -> String {
        match &self.upstream_template {
            Some(t) => t
                .replace("{service}", service)
                .replace("{namespace}", namespace)
                .replace("{port}", port),
            None => format!("http://{service}.{namespace}.svc.cluster.local:{port}"),
        }
    }
}

/// One input file (or `-`).
#[derive(Debug)]
pub struct Input {
    pub name: String,
    pub text: String,
}

/// A finished import.
#[derive(Debug)]
pub struct Outcome {
    pub toml: String,
    /// What was not translated; non-empty means exit status 3.
    pub reports: Vec<Report>,
    /// Objects of kinds this importer does not handle: `kind ns/name (source)`.
    pub ignored: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}: not valid YAML: {message}")]
    Yaml { file: String, message: String },
    #[error("no {kinds} object in the input: nothing to translate")]
    Nothing { kinds: String },
    #[error("--upstream-template {0:?}: {1}")]
    Template(String, &'static str),
}

/// Checks `--upstream-template` before anything is read.
pub fn check_template(t: &str) -> Result<(), ImportError> {
    let bad = |why| Err(ImportError::Template(t.to_owned(), why));
    if !t.starts_with("http://") && !t.starts_with("unix:") {
        return bad("must start with http:// or unix:");
    }
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return bad("an unclosed '{'");
        };
        if !matches!(
            &rest[open..open + close + 1],
            "{service}" | "{namespace}" | "{port}"
        ) {
            return bad("only {service}, {namespace} and {port} are filled in");
        }
        rest = &rest[open + close + 1..];
    }
    Ok(())
}

/// Translates `inputs` into one config.
pub fn import(
    importer: Importer,
    inputs: &[Input],
    opts: &Options,
) -> Result<Outcome, ImportError> {
    if let Some(t) = &opts.upstream_template {
        check_template(t)?;
    }
    let mut objects = Vec::new();
    for input in inputs {
        objects.extend(doc::objects(&input.name, &input.text)?);
    }
    let (handled, others): (Vec<_>, Vec<_>) = objects
        .into_iter()
        .partition(|o| importer.kinds().contains(&o.kind.as_str()));
    if handled.is_empty() {
        return Err(ImportError::Nothing {
            kinds: importer.kinds().join(" / "),
        });
    }
    let mut cfg = Config {
        importer: importer.name(),
        inputs: inputs.iter().map(|i| i.name.clone()).collect(),
        ..Config::default()
    };
    let mut reports = doc::Reports::default();
    match importer {
        Importer::Istio => istio::translate(&handled, opts, &mut cfg, &mut reports),
        Importer::IngressNginx => nginx::translate(&handled, opts, &mut cfg, &mut reports),
    }
    reports.object = "output".to_owned();
    if cfg.servers.is_empty() {
        reports.push(
            "",
            "no HTTPS server was translated: add a [[server]] with a certificate",
        );
    }
    if cfg.routes.is_empty() {
        reports.push("", "no route was translated: add a [[route]]");
    }
    Ok(Outcome {
        toml: cfg.to_toml(&reports.items),
        reports: reports.items,
        ignored: others
            .iter()
            .map(|o| format!("{} ({})", o.label(), o.source))
            .collect(),
    })
}

/// A host name as Kubernetes objects write it for gatehouse: Istio's `namespace/host` form
/// loses its namespace.
fn bare_host(h: &str) -> &str {
    h.rsplit_once('/').map_or(h, |(_, host)| host)
}
