//! [`ConfigError`]: a `LEAKSCOPE_*` variable with a value leakscope cannot use.

use std::error::Error;
use std::fmt;

/// A `LEAKSCOPE_*` variable with a value leakscope cannot use.
///
/// Its `Display` is one line naming the variable, the value and the accepted form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    var: &'static str,
    value: String,
    expected: &'static str,
}

impl ConfigError {
    pub(super) fn new(var: &'static str, value: &str, expected: &'static str) -> ConfigError {
        ConfigError {
            var,
            value: value.to_string(),
            expected,
        }
    }

    /// The variable's name.
    pub fn var(&self) -> &str {
        self.var
    }

    /// The rejected value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The accepted form.
    pub fn expected(&self) -> &str {
        self.expected
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {}={:?}: expected {}",
            self.var, self.value, self.expected
        )
    }
}

impl Error for ConfigError {}
