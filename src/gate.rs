//! The gate: every change kgf-up makes passes through [`Gate::change`] (or its blocking twin) —
//! a server-side apply, any other API write, a helm, kubectl, kind or docker command, a file
//! written here or on a host over SSH. The gate logs the change (redacted) and, when `plan` runs,
//! records it instead of making it, so `plan` is the same code as `up` with the gate closed.
//!
//! This module decides nothing about what to change: callers describe the change and hand over
//! the action that makes it.

use std::future::Future;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::secret::redact;

/// One change, described before it is made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// One line: `create ConfigMap kgf-system/x`, `helm upgrade --install …`, `write FILE on HOST`.
    pub summary: String,
    /// What it changes, line by line: a values key old → new, a field's diff, a file's content.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub detail: Vec<String>,
    /// kgf-up's own bookkeeping (inventory records, its namespace, its lock): made by every
    /// changing run, so `plan` counts it but does not list it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bookkeeping: bool,
}

impl Change {
    pub fn new(summary: impl Into<String>) -> Self {
        Change {
            summary: redact(&summary.into()),
            detail: Vec::new(),
            bookkeeping: false,
        }
    }

    /// A change to kgf-up's own records rather than to what the profile asks for.
    pub fn bookkeeping(summary: impl Into<String>) -> Self {
        Change {
            bookkeeping: true,
            ..Change::new(summary)
        }
    }

    pub fn with_detail<I, S>(mut self, lines: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.detail
            .extend(lines.into_iter().map(|l| redact(&l.into())));
        self
    }

    /// A file written with `content`, shown whole (its secrets redacted by value).
    pub fn file(path: impl std::fmt::Display, place: &str, content: &str) -> Self {
        Change::new(format!("write {path}{place}")).with_detail(content.lines())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Changes are made (`up`, `down`, …).
    Wet,
    /// Changes are recorded, not made (`plan`).
    Record,
}

/// Cheap to clone; clones share the mode and the record.
#[derive(Clone)]
pub struct Gate {
    mode: Mode,
    recorded: Arc<Mutex<Vec<Change>>>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate::wet()
    }
}

impl Gate {
    /// A gate that lets every change through.
    pub fn wet() -> Self {
        Gate {
            mode: Mode::Wet,
            recorded: Arc::default(),
        }
    }

    /// A gate that records every change and makes none.
    pub fn record() -> Self {
        Gate {
            mode: Mode::Record,
            ..Gate::wet()
        }
    }

    /// Whether changes are recorded instead of made: a step then skips the reads that only make
    /// sense after its change (waiting for a node it did not create to join).
    pub fn recording(&self) -> bool {
        self.mode == Mode::Record
    }

    /// The one way to change anything: logs `change`, then makes it with `action`, or, when
    /// recording, records it and returns `None` without running `action`.
    pub async fn change<T, E, F>(&self, change: Change, action: F) -> Result<Option<T>, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        if self.admit(change) {
            action.await.map(Some)
        } else {
            Ok(None)
        }
    }

    /// [`Gate::change`] for a blocking action.
    pub fn change_now<T, E>(
        &self,
        change: Change,
        action: impl FnOnce() -> Result<T, E>,
    ) -> Result<Option<T>, E> {
        if self.admit(change) {
            action().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Logs the change; true when it is to be made.
    fn admit(&self, change: Change) -> bool {
        match self.mode {
            Mode::Wet => {
                tracing::info!(target: "change", bookkeeping = change.bookkeeping, "{}", change.summary);
                true
            }
            Mode::Record => {
                tracing::info!(target: "change", "plan: not {}", change.summary);
                self.recorded
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(change);
                false
            }
        }
    }

    /// The changes recorded since the last call, in order.
    pub fn take(&self) -> Vec<Change> {
        std::mem::take(&mut *self.recorded.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_recording_gate_runs_nothing_and_keeps_each_change() {
        let gate = Gate::record();
        let mut ran = false;
        let out: Option<u8> = gate
            .change(Change::new("create ConfigMap a/b"), async {
                ran = true;
                Ok::<_, ()>(1)
            })
            .await
            .unwrap();
        assert_eq!(out, None);
        assert!(!ran, "a recording gate must not run the action");
        gate.change_now(Change::bookkeeping("record x"), || Ok::<_, ()>(()))
            .unwrap();
        let taken = gate.take();
        assert_eq!(
            taken.iter().map(|c| c.summary.as_str()).collect::<Vec<_>>(),
            ["create ConfigMap a/b", "record x"]
        );
        assert!(taken[1].bookkeeping);
        assert!(gate.take().is_empty(), "take drains the record");
    }

    #[tokio::test]
    async fn a_wet_gate_makes_the_change_and_records_nothing() {
        let gate = Gate::wet();
        let out = gate
            .change(Change::new("create"), async { Ok::<_, ()>(7) })
            .await
            .unwrap();
        assert_eq!(out, Some(7));
        assert!(gate.take().is_empty());
    }

    #[test]
    fn changes_are_redacted_when_described() {
        let secret = crate::secret::Secret::new("gate-secret-value-93");
        let change = Change::file("/etc/x", " on h", &format!("token: {}", secret.expose()));
        assert_eq!(change.detail, ["token: ***"]);
    }
}
