//! What the user sees: a spinner per running step when interactive, one line per finished step,
//! a summary table; or, with `--output json`, one event object per line on stdout for machines.
//! This is the only module that writes to the terminal: every verb's output goes through [`out`]
//! (stdout) and [`say`] (stderr), which a closed pipe never panics. It runs nothing. Everything a
//! [`Ui`] prints is redacted of registered secrets.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use console::style;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::step::StepId;
use crate::step::{Finished, Outcome, Phase};

/// Why output did not reach stdout.
#[derive(Debug)]
pub enum Unwritten {
    /// The reader went away (`kgf-up plan | head`): not an error, and nothing more to say.
    Closed,
    Failed(std::io::Error),
}

/// Writes a verb's output to stdout, flushed.
pub fn out(text: &str) -> Result<(), Unwritten> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Unwritten::Closed),
        Err(e) => Err(Unwritten::Failed(e)),
    }
}

/// `text` and a newline on stdout.
pub fn outln(text: &str) -> Result<(), Unwritten> {
    out(&format!("{text}\n"))
}

/// A line on stderr; a closed stderr (`2>&1 | head`) is not worth a panic.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[derive(Clone)]
pub struct Ui {
    inner: Arc<Inner>,
}

struct Inner {
    json: bool,
    bars: Option<MultiProgress>,
    running: Mutex<HashMap<StepId, ProgressBar>>,
}

#[derive(Serialize)]
struct Event<'a> {
    step: &'a str,
    phase: Phase,
    status: &'a str,
    elapsed: f64,
    message: &'a str,
}

impl Ui {
    /// `interactive` shows spinners; `json` replaces all progress with event lines on stdout.
    pub fn new(json: bool, interactive: bool) -> Ui {
        Ui {
            inner: Arc::new(Inner {
                json,
                bars: (interactive && !json).then(MultiProgress::new),
                running: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn is_json(&self) -> bool {
        self.inner.json
    }

    /// One event line on stdout. A reader that went away does not stop the run: the steps go on
    /// (an install is not abandoned half way because `| head` stopped reading), and the log has
    /// every event.
    fn event(&self, e: &Event<'_>) {
        let line = crate::secret::redact(&serde_json::to_string(e).expect("events serialize"));
        let _ = outln(&line);
    }

    /// A plain line for people (stderr in text mode; an `info` event in json mode).
    pub fn note(&self, message: &str) {
        if self.inner.json {
            self.event(&Event {
                step: "",
                phase: Phase::Done,
                status: "info",
                elapsed: 0.0,
                message,
            });
        } else {
            self.println(message);
        }
    }

    /// Every line for people passes here, redacted: a step's message may quote a value.
    fn println(&self, line: &str) {
        let line = &crate::secret::redact(line);
        match &self.inner.bars {
            Some(bars) => {
                let _ = bars.println(line);
            }
            None => say(line),
        }
    }

    pub fn phase(&self, id: &StepId, phase: Phase, message: &str) {
        tracing::info!(step = %id, ?phase, message, "phase");
        if self.inner.json {
            self.event(&Event {
                step: id.as_str(),
                phase,
                status: "running",
                elapsed: 0.0,
                message,
            });
            return;
        }
        let Some(bars) = &self.inner.bars else {
            if phase == Phase::Apply {
                self.println(&format!("  {} {id}: {message}", style("→").cyan()));
            }
            return;
        };
        let mut running = self.inner.running.lock().expect("not poisoned");
        let bar = running.entry(id.clone()).or_insert_with(|| {
            let bar = bars.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template(
                    "  {spinner:.cyan} {prefix} {wide_msg:.dim} {elapsed}",
                )
                .expect("a valid template"),
            );
            bar.set_prefix(id.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        let what = match phase {
            Phase::Observe => "observing".to_string(),
            Phase::Apply => format!("applying ({message})"),
            Phase::Wait => "waiting until ready".to_string(),
            Phase::Done => String::new(),
        };
        bar.set_message(what);
    }

    pub fn finished(&self, f: &Finished) {
        tracing::info!(step = %f.id, status = f.outcome.status(), elapsed_ms = f.elapsed.as_millis() as u64, message = %f.outcome.message(), "finished");
        if let Some(bar) = self
            .inner
            .running
            .lock()
            .expect("not poisoned")
            .remove(&f.id)
        {
            bar.finish_and_clear();
        }
        if self.inner.json {
            self.event(&Event {
                step: f.id.as_str(),
                phase: Phase::Done,
                status: f.outcome.status(),
                elapsed: f.elapsed.as_secs_f64(),
                message: &f.outcome.message(),
            });
            return;
        }
        let mark = match &f.outcome {
            Outcome::Converged(_) => style("✓").green(),
            Outcome::Applied(_) => style("✓").green().bold(),
            Outcome::Failed(_) => style("✗").red().bold(),
            Outcome::Skipped(_) => style("-").yellow(),
        };
        self.println(&format!(
            "  {mark} {:<36} {:<9} {:>6.1}s  {}",
            f.id.to_string(),
            f.outcome.status(),
            f.elapsed.as_secs_f64(),
            f.outcome.message()
        ));
    }

    /// The closing summary: counts, every failure with its fix and diagnosis, elapsed time and the
    /// next command to run.
    pub fn summary(&self, finished: &[Finished], elapsed: Duration, next: &str) {
        let count = |s: &str| finished.iter().filter(|f| f.outcome.status() == s).count();
        let (applied, converged, failed, skipped) = (
            count("applied"),
            count("converged"),
            count("failed"),
            count("skipped"),
        );
        if self.inner.json {
            let message = format!(
                "{applied} applied, {converged} unchanged, {failed} failed, {skipped} not attempted"
            );
            self.event(&Event {
                step: "",
                phase: Phase::Done,
                status: if failed > 0 {
                    "failed"
                } else if applied == 0 {
                    "unchanged"
                } else {
                    "ok"
                },
                elapsed: elapsed.as_secs_f64(),
                message: &message,
            });
            return;
        }
        let mut text = String::new();
        if failed == 0 && applied == 0 && skipped == 0 {
            text.push_str(&format!(
                "\n{} no changes: all {converged} steps are converged ({:.1}s)\n",
                style("✓").green(),
                elapsed.as_secs_f64()
            ));
        } else {
            text.push_str(&format!(
                "\n{applied} applied, {converged} unchanged, {failed} failed, {skipped} not attempted ({:.1}s)\n",
                elapsed.as_secs_f64()
            ));
        }
        for f in finished {
            if let Outcome::Failed(e) = &f.outcome {
                text.push_str(&format!(
                    "\n{} {}: {}\n",
                    style("failed").red().bold(),
                    f.id,
                    e.message
                ));
                if let Some(fix) = &e.fix {
                    text.push_str(&format!("{}\n", crate::fix::line(2, fix)));
                }
                if let Some(d) = &e.diagnosis {
                    text.push_str("  diagnosis:\n");
                    for line in d.lines() {
                        text.push_str(&format!("    {line}\n"));
                    }
                }
            }
        }
        text.push_str(&format!("next: {next}\n"));
        self.println(text.trim_end());
    }
}
