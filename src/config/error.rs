//! Configuration errors. A semantic error names the field path
//! (`policy[1].rules[0].to.paths[2]`) and says what is allowed instead.

use std::fmt;

/// One semantic problem in the config, located by its field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl From<crate::authz::PolicyError> for FieldError {
    fn from(e: crate::authz::PolicyError) -> Self {
        Self {
            path: e.path,
            message: e.message,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}
