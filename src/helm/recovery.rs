//! Recovery of a release that an interrupted or failed helm left stuck (see the module docs of
//! [`super`]): what to do, decided from its history alone. The client does it.

use std::fmt;

use super::{ReleaseStatus, Revision};

/// What [`Helm::install`] had to do before upgrading a stuck release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Roll back to the last revision that was deployed.
    Rollback { stuck: u32, status: String, to: u32 },
    /// Uninstall a release that was never deployed, or finish an interrupted uninstall.
    Uninstall { stuck: u32, status: String },
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recovery::Rollback { stuck, status, to } => write!(
                f,
                "revision {stuck} was left {status} by an interrupted helm; rolling back to revision {to}, the last one deployed"
            ),
            Recovery::Uninstall { stuck, status } if status == "uninstalling" => write!(
                f,
                "revision {stuck} was left uninstalling by an interrupted helm; finishing the uninstall"
            ),
            Recovery::Uninstall { stuck, status } => write!(
                f,
                "revision {stuck} was left {status} by an interrupted helm and no revision was ever deployed; uninstalling it"
            ),
        }
    }
}

/// Decides how to recover from a release's history (oldest first), or `None` when the latest
/// revision is not stuck (a `failed` one is upgraded in place by helm itself).
pub fn recovery_for(history: &[Revision]) -> Option<Recovery> {
    let latest = history.iter().max_by_key(|r| r.revision)?;
    let status = ReleaseStatus::parse(&latest.status);
    if status == ReleaseStatus::Uninstalling {
        return Some(Recovery::Uninstall {
            stuck: latest.revision,
            status: latest.status.clone(),
        });
    }
    if !status.is_pending() {
        return None;
    }
    // The revision that is live: `deployed` while an upgrade is pending, else the newest that was
    // once deployed (`superseded`).
    let earlier = || history.iter().filter(|r| r.revision < latest.revision);
    let target = earlier()
        .filter(|r| r.status == "deployed")
        .max_by_key(|r| r.revision)
        .or_else(|| {
            earlier()
                .filter(|r| r.status == "superseded")
                .max_by_key(|r| r.revision)
        });
    Some(match target {
        Some(to) => Recovery::Rollback {
            stuck: latest.revision,
            status: latest.status.clone(),
            to: to.revision,
        },
        None => Recovery::Uninstall {
            stuck: latest.revision,
            status: latest.status.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(revision: u32, status: &str) -> Revision {
        Revision {
            revision,
            status: status.into(),
            chart: "c-0.1.0".into(),
            description: String::new(),
        }
    }

    #[test]
    fn pending_install_that_never_deployed_is_uninstalled() {
        assert_eq!(
            recovery_for(&[rev(1, "pending-install")]),
            Some(Recovery::Uninstall {
                stuck: 1,
                status: "pending-install".into()
            })
        );
        // An install that failed, then an upgrade that was interrupted: nothing to roll back to.
        assert!(matches!(
            recovery_for(&[rev(1, "failed"), rev(2, "pending-upgrade")]),
            Some(Recovery::Uninstall { stuck: 2, .. })
        ));
    }

    #[test]
    fn pending_upgrade_rolls_back_to_the_deployed_revision() {
        assert_eq!(
            recovery_for(&[
                rev(1, "superseded"),
                rev(2, "deployed"),
                rev(3, "pending-upgrade")
            ]),
            Some(Recovery::Rollback {
                stuck: 3,
                status: "pending-upgrade".into(),
                to: 2
            })
        );
        // A rollback interrupted after a failed upgrade: the newest once-deployed revision.
        assert!(matches!(
            recovery_for(&[
                rev(1, "superseded"),
                rev(2, "superseded"),
                rev(3, "failed"),
                rev(4, "pending-rollback")
            ]),
            Some(Recovery::Rollback {
                to: 2,
                stuck: 4,
                ..
            })
        ));
        // Order in the input does not matter; an old pending revision below a deployed one is
        // history, not a stuck release.
        assert_eq!(
            recovery_for(&[
                rev(3, "deployed"),
                rev(2, "pending-upgrade"),
                rev(1, "superseded")
            ]),
            None
        );
    }

    #[test]
    fn failed_and_deployed_releases_need_no_recovery_but_uninstalling_is_finished() {
        assert_eq!(recovery_for(&[rev(1, "failed")]), None);
        assert_eq!(
            recovery_for(&[rev(1, "superseded"), rev(2, "failed")]),
            None
        );
        assert_eq!(recovery_for(&[rev(1, "deployed")]), None);
        assert_eq!(recovery_for(&[]), None);
        let r = recovery_for(&[rev(1, "superseded"), rev(2, "uninstalling")]).unwrap();
        assert!(r.to_string().contains("finishing the uninstall"), "{r}");
    }
}
