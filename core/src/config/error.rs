use super::node::Pos;
use std::fmt;
use std::sync::Arc;

/// One problem in a config file: where it is, which component it concerns, and what is wrong.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError {
    pub file: Arc<str>,
    pub pos: Pos,
    /// `receivers.otlp`, `service.pipelines.metrics`, ...
    pub component: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.pos.is_known() {
            write!(f, ":{}:{}", self.pos.line, self.pos.column)?;
        }
        if let Some(c) = &self.component {
            write!(f, ": {c}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a config file, in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
