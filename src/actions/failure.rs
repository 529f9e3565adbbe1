//! An error on its way out, and the one mapping of errors to exit codes (`cli` lists the codes).

use crate::fix::{self, Fix};
use crate::step::{ErrorKind, StepError};
use crate::ui::Unwritten;

/// An error on its way out: the message (a sentence), its fix when there is one, and the exit
/// code.
pub struct Failure {
    pub message: String,
    pub fix: Option<String>,
    pub code: u8,
}

/// The exit code of an error of `kind`: a step failing 1, bad input 2, the host failing preflight 3.
pub fn code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Step => 1,
        ErrorKind::Input => 2,
        ErrorKind::Preflight => 3,
    }
}

impl Failure {
    pub fn new(message: impl Into<String>, code: u8) -> Self {
        Failure {
            message: message.into(),
            fix: None,
            code,
        }
    }

    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// An error that knows its fix, exiting with `code`.
    pub fn of(e: impl std::fmt::Display + Fix, code: u8) -> Self {
        Failure {
            fix: e.fix(),
            ..Failure::new(e.to_string(), code)
        }
    }

    /// Bad input (exit 2), with the error's fix.
    pub fn input(e: impl std::fmt::Display + Fix) -> Self {
        Failure::of(e, code(ErrorKind::Input))
    }

    /// An error with every cause in its chain that its message does not already say: a failed
    /// step always prints why.
    pub fn caused(e: &dyn std::error::Error, code: u8) -> Self {
        Failure::new(fix::chain(e), code)
    }

    /// The reader of stdout went away (`kgf-up plan | head`): not an error, and nothing to say.
    pub fn broken_pipe() -> Self {
        Failure::new("", 0)
    }

    /// The message with its fix line, as printed.
    pub fn shown(&self) -> String {
        fix::render(&self.message, self.fix.as_deref())
    }
}

impl From<StepError> for Failure {
    fn from(e: StepError) -> Self {
        Failure {
            fix: e.fix,
            ..Failure::new(e.message, code(e.kind))
        }
    }
}

impl From<Unwritten> for Failure {
    fn from(e: Unwritten) -> Self {
        match e {
            Unwritten::Closed => Failure::broken_pipe(),
            Unwritten::Failed(e) => Failure::new(format!("cannot write to stdout: {e}"), 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_error_has_its_documented_exit_code() {
        for (kind, exit) in [
            (ErrorKind::Step, 1),
            (ErrorKind::Input, 2),
            (ErrorKind::Preflight, 3),
        ] {
            let mut e = StepError::new("x");
            e.kind = kind;
            assert_eq!(Failure::from(e).code, exit);
        }
        let closed = Failure::from(Unwritten::Closed);
        assert_eq!((closed.code, closed.message.as_str()), (0, ""));
    }
}
