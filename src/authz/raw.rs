//! The serde shape of a `[[policy]]` table: Istio's AuthorizationPolicy `spec` in TOML
//! (`from`/`to`/`when`, snake_case). Strings and Options only; [`super::Policies::compile`]
//! validates them.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub name: String,
    pub action: String,
    #[serde(default)]
    pub(crate) rules: Vec<RawRule>,
}

/// One rule of a policy. `from`, `to` and `when` must all match; an absent field
/// matches everything.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub from: Option<RawFrom>,
    pub to: Option<RawTo>,
    pub when: Option<Vec<RawCondition>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFrom {
    pub principals: Option<Vec<String>>,
    pub not_principals: Option<Vec<String>>,
    pub sans: Option<Vec<String>>,
    pub not_sans: Option<Vec<String>>,
    pub common_names: Option<Vec<String>>,
    pub not_common_names: Option<Vec<String>>,
    pub ip_blocks: Option<Vec<String>>,
    pub not_ip_blocks: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTo {
    pub hosts: Option<Vec<String>>,
    pub not_hosts: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    pub not_methods: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub not_paths: Option<Vec<String>>,
    pub ports: Option<Vec<RawPort>>,
    pub not_ports: Option<Vec<RawPort>>,
}

/// Istio accepts ports as integers or as strings of digits.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawPort {
    Number(i64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCondition {
    pub key: String,
    pub values: Option<Vec<String>>,
    pub not_values: Option<Vec<String>>,
}
