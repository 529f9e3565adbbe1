//! How an error is shown. The one way an error carries what the user should do about it: its type
//! implements [`Fix`], and the fix is rendered by [`render`] or [`line`] where the error is shown
//! (the exit message, a failed step's lines, `plan`, `verify`); an error's message never carries
//! its own fix line. [`chain`] is the one way its causes are told.

/// An error that may know how the user fixes it.
pub trait Fix {
    fn fix(&self) -> Option<String>;
}

/// `message` with its fix on the line under it, when there is one.
pub fn render(message: &str, fix: Option<&str>) -> String {
    match fix {
        Some(fix) => format!("{message}\n{}", line(2, fix)),
        None => message.to_string(),
    }
}

/// The fix line, indented by `indent` spaces to sit under what it fixes.
pub fn line(indent: usize, fix: &str) -> String {
    format!("{:indent$}fix: {fix}", "")
}

/// An error's message followed by each cause in its chain that the text does not already say
/// (hyper's "client error (Connect)" keeps the reason below; thiserror's messages often repeat it).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let said = s.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = s.source();
    }
    text
}

/// An error's message and fix, rendered as the exit message shows them: for tests of the errors'
/// texts (the product renders through its own `Failure` and step lines).
#[cfg(test)]
pub(crate) fn shown(e: &(impl std::fmt::Display + Fix + ?Sized)) -> String {
    render(&e.to_string(), e.fix().as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fix_goes_on_its_own_line_under_the_message() {
        assert_eq!(
            render("no GPU", Some("install the driver")),
            "no GPU\n  fix: install the driver"
        );
        assert_eq!(render("no GPU", None), "no GPU");
        assert_eq!(line(6, "x"), "      fix: x");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct E(String, #[source] Option<Box<E>>);

    #[test]
    fn the_chain_tells_each_cause_once() {
        let refused = E("connection refused".into(), None);
        let connect = E("client error (Connect)".into(), Some(Box::new(refused)));
        assert_eq!(
            chain(&E(
                "uploading: client error (Connect)".into(),
                Some(Box::new(connect))
            )),
            "uploading: client error (Connect): connection refused"
        );
    }
}
