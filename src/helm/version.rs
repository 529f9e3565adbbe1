//! Which helm this is: its version, detected once per program and process (the two majors spell
//! `--wait` and `--atomic` differently).

use std::fmt;

use super::HelmError;
use crate::exec::{Cmd, Exec};

/// The oldest helm kgf-up drives: `helm get metadata -o json` arrived in 3.13.
const MIN_HELM3_MINOR: u32 = 13;

/// A helm client version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HelmVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl HelmVersion {
    /// Parses `v3.22.0`, `v4.3.1+g1a2b3c4` or `3.13.0-rc.1`.
    pub fn parse(text: &str) -> Option<Self> {
        let core = text.trim().trim_start_matches('v');
        let core = core.split(['+', '-']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
        let version = HelmVersion {
            major: parts.next()??,
            minor: parts.next()??,
            patch: parts.next()??,
        };
        parts.next().is_none().then_some(version)
    }

    pub(super) fn supported(self) -> bool {
        (self.major == 3 && self.minor >= MIN_HELM3_MINOR) || self.major == 4
    }
}

impl fmt::Display for HelmVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Versions found by [`detect`], per program: asked once per process, not once per release.
static DETECTED: std::sync::Mutex<Vec<(String, HelmVersion)>> = std::sync::Mutex::new(Vec::new());

fn detected(program: &str) -> Option<HelmVersion> {
    DETECTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(p, _)| p == program)
        .map(|(_, v)| *v)
}

/// The version of `program` (usually `helm`), asked once per process and program; an
/// unsupported version is an error naming what it printed.
pub(super) async fn detect(exec: &Exec, program: &str) -> Result<HelmVersion, HelmError> {
    if let Some(version) = detected(program) {
        return Ok(version);
    }
    let out = exec
        .run_async(Cmd::new(program).args(["version", "--template", "{{.Version}}"]))
        .await
        .map_err(|source| HelmError::Version {
            program: program.to_string(),
            source: Box::new(source),
        })?;
    let found = out.stdout.trim().to_string();
    match HelmVersion::parse(&found).filter(|v| v.supported()) {
        Some(version) => {
            DETECTED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((program.to_string(), version));
            Ok(version)
        }
        None => Err(HelmError::Unsupported {
            program: program.to_string(),
            found,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_only_3_13_and_4_are_supported() {
        let v = |s| HelmVersion::parse(s);
        assert_eq!(
            v("v3.22.0"),
            Some(HelmVersion {
                major: 3,
                minor: 22,
                patch: 0
            })
        );
        assert_eq!(v("v4.3.1+g1a2b3c4").map(|v| v.major), Some(4));
        assert_eq!(v("3.13.0-rc.1").map(|v| v.minor), Some(13));
        assert_eq!(v("<no value>"), None);
        assert_eq!(v("v3.22"), None);
        assert!(v("v3.13.0").unwrap().supported());
        assert!(!v("v3.12.3").unwrap().supported());
        assert!(!v("v2.17.0").unwrap().supported());
        assert!(!v("v5.0.0").unwrap().supported());
    }
}
