//! The one place kgf-up runs external programs (helm, kustomize, kind, docker, ssh, ...).
//!
//! Every command goes through [`Exec::run`], which logs its argv and output to the run log with
//! secrets redacted by value, enforces a timeout, retries only the failures a command declared
//! transient, and passes every command that changes something through the [`Gate`], which records
//! it instead when `plan` runs. Nothing else in kgf-up may spawn a process. This module must not
//! decide *what* to run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::gate::{Change, Gate};
use crate::secret::{Secret, redact};

/// What a command's stdin carries.
#[derive(Clone, Debug)]
enum Stdin {
    Null,
    Bytes(Vec<u8>),
    Secret(Secret),
}

/// One external command, described before it runs.
#[derive(Clone, Debug)]
pub struct Cmd {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    dir: Option<PathBuf>,
    stdin: Stdin,
    timeout: Duration,
    changes: bool,
    retry: Retry,
    secret_stdout: bool,
    headline: Option<String>,
}

/// Retry policy: up to `attempts` tries, only when stderr or stdout contains one of `transient`.
#[derive(Clone, Debug, Default)]
struct Retry {
    attempts: u32,
    transient: Vec<String>,
    backoff: Duration,
}

impl Cmd {
    /// A read-only command with a two-minute timeout and no retries.
    pub fn new(program: impl Into<String>) -> Self {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            dir: None,
            stdin: Stdin::Null,
            timeout: Duration::from_secs(120),
            changes: false,
            retry: Retry::default(),
            secret_stdout: false,
            headline: None,
        }
    }

    /// On failure, keeps the first stderr line that starts with `prefix` ahead of the last lines:
    /// tools like kind print their one-line reason (`ERROR: ...`) and then pages of the failed
    /// inner command's output, which would push it out of the tail.
    pub fn headline(mut self, prefix: &str) -> Self {
        self.headline = Some(prefix.to_string());
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Stdin::Bytes(bytes.into());
        self
    }

    /// Passes a secret on stdin: the only way a secret reaches another program.
    pub fn stdin_secret(mut self, secret: &Secret) -> Self {
        self.stdin = Stdin::Secret(secret.clone());
        self
    }

    /// Marks stdout as carrying a credential (a join token, a kubeconfig with a client key): it is
    /// returned to the caller unredacted but never logged nor put into an error.
    pub fn secret_stdout(mut self) -> Self {
        self.secret_stdout = true;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Marks the command as one that changes something: it passes the gate, which records it
    /// instead of running it when `plan` runs.
    pub fn changes(mut self) -> Self {
        self.changes = true;
        self
    }

    /// Retries up to `attempts` times in all, with exponential backoff from `backoff`, but only when
    /// the output contains one of `transient` (errors known to heal by themselves).
    pub fn retry_on(mut self, transient: &[&str], attempts: u32, backoff: Duration) -> Self {
        self.retry = Retry {
            attempts,
            transient: transient.iter().map(|s| s.to_string()).collect(),
            backoff,
        };
        self
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    pub fn get_args(&self) -> &[String] {
        &self.args
    }

    pub fn is_change(&self) -> bool {
        self.changes
    }

    /// What the command gets on stdin, for a plan to show: text as it is (redacted), a secret
    /// as such, binary data by its size.
    fn shown_stdin(&self) -> Vec<String> {
        match &self.stdin {
            Stdin::Null => Vec::new(),
            Stdin::Secret(_) => vec!["stdin: <redacted secret>".into()],
            Stdin::Bytes(b) => match std::str::from_utf8(b) {
                Ok(text) => std::iter::once("stdin:".to_string())
                    .chain(text.lines().map(|l| format!("  {l}")))
                    .collect(),
                Err(_) => vec![format!("stdin: {} bytes", b.len())],
            },
        }
    }

    /// The command line as a user could paste it, secrets redacted.
    pub fn display(&self) -> String {
        let mut parts = Vec::with_capacity(self.args.len() + self.env.len() + 1);
        for (k, v) in &self.env {
            parts.push(format!("{k}={}", shell_quote(v)));
        }
        parts.push(shell_quote(&self.program));
        parts.extend(self.args.iter().map(shell_quote));
        redact(&parts.join(" "))
    }
}

/// `word` as a shell reads it back as one word: kgf-up's one quoting function, for the commands it
/// shows and for those it sends to a remote shell.
///
/// A word of characters no shell treats specially stays bare (one starting with `=` does not: zsh
/// expands `=cmd`). Any other is single-quoted, where sh, bash and zsh treat nothing as special
/// but the quote itself, written `'\''`: spaces, newlines, `$()`, backticks, globs, `~` and
/// non-ASCII text are inert inside. A word that is not UTF-8 (an argument given in another
/// encoding) is written `$'…'` with `\xHH` for its bytes, which bash, zsh and ksh read back (dash
/// does not; kgf-up sends only UTF-8 words to remote shells). A NUL cannot be part of a shell word
/// or a program's argument at all: it is quoted as given, and the spawn that would carry it
/// refuses it ([`ExecError::Spawn`]) rather than cut the word short.
pub fn shell_quote(word: impl AsRef<std::ffi::OsStr>) -> String {
    use std::fmt::Write as _;
    use std::os::unix::ffi::OsStrExt as _;
    let bytes = word.as_ref().as_bytes();
    let Ok(text) = std::str::from_utf8(bytes) else {
        let mut out = String::from("$'");
        for chunk in bytes.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '\'' | '\\' => {
                        out.push('\\');
                        out.push(c);
                    }
                    c if c.is_control() => {
                        let mut buf = [0u8; 4];
                        for b in c.encode_utf8(&mut buf).bytes() {
                            let _ = write!(out, "\\x{b:02x}");
                        }
                    }
                    c => out.push(c),
                }
            }
            for b in chunk.invalid() {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
        out.push('\'');
        return out;
    };
    let bare = !text.is_empty()
        && !text.starts_with('=')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@+%".contains(&b));
    if bare {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// What a finished command printed.
#[derive(Clone, Debug, Default)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("`{program}` was not found on PATH; {hint}")]
    NotFound { program: String, hint: String },
    #[error("could not start `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` exited with {code}: {stderr}")]
    Failed {
        command: String,
        code: String,
        stderr: String,
        /// The full (redacted) stdout, for callers that parse structured errors.
        stdout: String,
    },
    #[error("`{command}` did not finish within {}s and was stopped", after.as_secs())]
    TimedOut { command: String, after: Duration },
}

impl ExecError {
    /// The failed command's stderr (redacted), if it ran to an exit status.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            ExecError::Failed { stderr, .. } => Some(stderr),
            _ => None,
        }
    }
}

/// Runs commands. Cheap to clone; clones share the gate.
#[derive(Clone, Default)]
pub struct Exec {
    gate: Gate,
    hints: Arc<Vec<(String, String)>>,
}

impl Exec {
    pub fn new() -> Self {
        Exec::default()
    }

    /// Commands marked [`Cmd::changes`] pass `gate` (recorded, not run, when it records).
    pub fn with_gate(gate: Gate) -> Self {
        Exec {
            gate,
            ..Exec::default()
        }
    }

    /// Install hints shown when a program is missing, e.g. `("helm", "install helm 3.22+ from ...")`.
    pub fn with_hints(mut self, hints: Vec<(String, String)>) -> Self {
        self.hints = Arc::new(hints);
        self
    }

    /// The gate this runner's changing commands pass.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Runs `cmd` to completion (blocking). Non-zero exit is an error carrying the redacted stderr.
    /// A changing command the gate records comes back with empty output.
    pub fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        if cmd.changes {
            let change = Change::new(format!("$ {}", cmd.display())).with_detail(cmd.shown_stdin());
            return self
                .gate
                .change_now(change, || self.run_now(cmd))
                .map(Option::unwrap_or_default);
        }
        self.run_now(cmd)
    }

    fn run_now(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        let line = cmd.display();
        let program = which::which(&cmd.program).map_err(|_| ExecError::NotFound {
            program: cmd.program.clone(),
            hint: self.hint(&cmd.program),
        })?;
        let mut attempt = 1;
        let mut backoff = cmd.retry.backoff;
        loop {
            let result = self.run_once(cmd, &program, &line);
            let retryable = match &result {
                Err(ExecError::Failed { stderr, stdout, .. }) => cmd
                    .retry
                    .transient
                    .iter()
                    .any(|t| stderr.contains(t.as_str()) || stdout.contains(t.as_str())),
                _ => false,
            };
            if !retryable || attempt >= cmd.retry.attempts {
                return result;
            }
            tracing::warn!(target: "exec", command = %line, attempt, "transient failure, retrying in {}s", backoff.as_secs_f32());
            std::thread::sleep(backoff);
            backoff = backoff.saturating_mul(2);
            attempt += 1;
        }
    }

    /// [`Exec::run`] on tokio's blocking pool.
    pub async fn run_async(&self, cmd: Cmd) -> Result<Output, ExecError> {
        let exec = self.clone();
        match tokio::task::spawn_blocking(move || exec.run(&cmd)).await {
            Ok(result) => result,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }

    fn hint(&self, program: &str) -> String {
        self.hints
            .iter()
            .find(|(p, _)| p == program)
            .map(|(_, h)| h.clone())
            .unwrap_or_else(|| format!("install `{program}` or put it on PATH"))
    }

    fn run_once(
        &self,
        cmd: &Cmd,
        program: &std::path::Path,
        line: &str,
    ) -> Result<Output, ExecError> {
        tracing::info!(target: "exec", command = %line, "run");
        let started = Instant::now();
        let mut expr = duct::cmd(program, &cmd.args)
            .stdout_capture()
            .stderr_capture()
            .unchecked();
        for (k, v) in &cmd.env {
            expr = expr.env(k, v);
        }
        if let Some(dir) = &cmd.dir {
            expr = expr.dir(dir);
        }
        expr = match &cmd.stdin {
            Stdin::Null => expr.stdin_null(),
            Stdin::Bytes(b) => expr.stdin_bytes(b.clone()),
            Stdin::Secret(s) => expr.stdin_bytes(s.expose().as_bytes().to_vec()),
        };
        let handle = expr.start().map_err(|source| ExecError::Spawn {
            command: line.to_string(),
            source,
        })?;
        let finished = handle
            .wait_timeout(cmd.timeout)
            .map_err(|source| ExecError::Spawn {
                command: line.to_string(),
                source,
            })?
            .is_some();
        if !finished {
            let _ = handle.kill();
            tracing::warn!(target: "exec", command = %line, "timed out after {}s", cmd.timeout.as_secs());
            return Err(ExecError::TimedOut {
                command: line.to_string(),
                after: cmd.timeout,
            });
        }
        let out = handle.into_output().map_err(|source| ExecError::Spawn {
            command: line.to_string(),
            source,
        })?;
        let raw_stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = redact(&String::from_utf8_lossy(&out.stderr));
        // A credential the caller asked for comes back as it is (redacting it would hand back
        // `***` once the value is known), and is never logged.
        let (stdout, logged_stdout) = if cmd.secret_stdout {
            let shown = format!("<{} bytes, not logged>", raw_stdout.len());
            (raw_stdout.into_owned(), shown)
        } else {
            let stdout = redact(&raw_stdout);
            (stdout.clone(), stdout)
        };
        let code = out
            .status
            .code()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "a signal".to_string());
        tracing::debug!(target: "exec", command = %line, code = %code, elapsed_ms = started.elapsed().as_millis() as u64, stdout = %logged_stdout, stderr = %stderr, "finished");
        if out.status.success() {
            Ok(Output { stdout, stderr })
        } else {
            Err(ExecError::Failed {
                command: line.to_string(),
                code,
                stderr: shown_stderr(&stderr, cmd.headline.as_deref()),
                stdout: logged_stdout,
            })
        }
    }
}

/// What a failure shows of stderr: the last 20 distinct lines, after the headline line when the
/// command has one and the tail does not already hold it.
fn shown_stderr(stderr: &str, headline: Option<&str>) -> String {
    let shown = tail(stderr, 20);
    let line =
        headline.and_then(|prefix| stderr.lines().find(|l| l.trim_start().starts_with(prefix)));
    match line {
        Some(line) if !shown.lines().any(|l| l == line) => {
            format!(
                "{}
(... the last lines:)
{shown}",
                line.trim_end()
            )
        }
        _ => shown,
    }
}

/// The last `n` distinct lines of `text`, trimmed; a line repeated (helm prints one
/// `failed calling webhook` per object) is shown once, with how many times it came.
pub fn tail(text: &str, n: usize) -> String {
    let mut lines: Vec<(&str, usize)> = Vec::new();
    for line in text.trim_end().lines() {
        match lines.iter_mut().find(|(l, _)| *l == line) {
            Some((_, count)) => *count += 1,
            None => lines.push((line, 1)),
        }
    }
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|(line, count)| match count {
            1 => line.to_string(),
            c => format!("{line} (×{c})"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings a shell would split, expand, run or cut short if quoted carelessly.
    const HOSTILE: &[&str] = &[
        "",
        "plain",
        "a b",
        "it's",
        "'",
        "''\"\"",
        "$(touch /nonexistent/pwned)",
        "`touch /nonexistent/pwned`",
        "${HOME}",
        "line\nbreak",
        "tab\tand\rreturn",
        "semi;colon && or || pipe | amp &",
        "glob * ? [ab]",
        "~",
        "~root/x",
        "=ls",
        "{a,b}",
        "!!",
        "# not a comment",
        "back\\slash\\",
        "-n",
        "ünïcødé ✓",
        "\u{a0}non-breaking",
        "a=b",
        "KEY=va lue",
    ];

    fn shell_says(shell: &str, script: &str) -> Vec<u8> {
        let out = std::process::Command::new(shell)
            .args(["-c", script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell} -c {script}: {out:?}");
        out.stdout
    }

    #[test]
    fn a_quoted_word_comes_back_from_the_shell_as_it_was() {
        for shell in ["sh", "bash"] {
            for word in HOSTILE {
                let script = format!("printf %s {}", shell_quote(word));
                assert_eq!(
                    String::from_utf8(shell_says(shell, &script)).unwrap(),
                    *word,
                    "{shell}: {script}"
                );
            }
        }
        // Words stay words: a quoted list is as many arguments as it has words.
        let all: Vec<String> = HOSTILE.iter().map(shell_quote).collect();
        let script = format!("for w in {}; do printf '%s\\0' \"$w\"; done", all.join(" "));
        let back = shell_says("sh", &script);
        let words: Vec<&[u8]> = back.split(|b| *b == 0).collect();
        assert_eq!(words.len(), HOSTILE.len() + 1, "{script}");
    }

    #[test]
    fn safe_words_stay_bare_and_the_rest_are_quoted() {
        assert_eq!(shell_quote("kind-gpu"), "kind-gpu");
        assert_eq!(
            shell_quote("github.com/o/r/p?ref=1"),
            "'github.com/o/r/p?ref=1'"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("=ls"), "'=ls'", "zsh expands a bare =cmd");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn a_word_that_is_not_utf8_comes_back_from_bash_byte_for_byte() {
        use std::os::unix::ffi::OsStrExt as _;
        let raw: &[u8] = b"caf\xe9 it's\n\\x";
        let word = std::ffi::OsStr::from_bytes(raw);
        let quoted = shell_quote(word);
        assert!(quoted.starts_with("$'"), "{quoted}");
        assert_eq!(shell_says("bash", &format!("printf %s {quoted}")), raw);
    }

    #[test]
    fn a_word_with_a_nul_is_refused_before_any_shell_runs() {
        let quoted = shell_quote("a\0b");
        let err = Exec::new()
            .run(&Cmd::new("sh").args(["-c".to_string(), format!("printf %s {quoted}")]))
            .unwrap_err();
        assert!(matches!(err, ExecError::Spawn { .. }), "{err:?}");
    }

    #[test]
    fn secrets_are_redacted_by_value_everywhere() {
        let token = Secret::new("K10abcdef::server:s3cr3t-token");
        assert_eq!(format!("{token} {token:?}"), "*** ***");
        let cmd = Cmd::new("echo").arg(format!("--token={}", token.expose()));
        assert_eq!(cmd.display(), "echo --token=***");
        assert_eq!(redact("a K10abcdef::server:s3cr3t-token b"), "a *** b");
    }

    #[test]
    fn secret_stdout_comes_back_whole_and_stays_out_of_errors() {
        let known = Secret::new("already-registered-token-77");
        let out = Exec::new()
            .run(&Cmd::new("echo").arg(known.expose()).secret_stdout())
            .unwrap();
        assert_eq!(out.stdout, "already-registered-token-77\n");
        let err = Exec::new()
            .run(
                &Cmd::new("sh")
                    .args(["-c", "echo fresh-credential-88; exit 1"])
                    .secret_stdout(),
            )
            .unwrap_err();
        assert!(
            matches!(&err, ExecError::Failed { stdout, .. } if stdout == "<20 bytes, not logged>"),
            "{err:?}"
        );
    }

    #[test]
    fn a_secret_on_stdin_reaches_the_program_but_not_the_output() {
        let secret = Secret::new("stdin-secret-value-42");
        let out = Exec::new()
            .run(&Cmd::new("cat").stdin_secret(&secret))
            .expect("cat runs");
        assert_eq!(out.stdout, "***");
    }

    #[test]
    fn failure_carries_exit_code_and_stderr() {
        let err = Exec::new()
            .run(&Cmd::new("sh").args(["-c", "echo boom >&2; exit 3"]))
            .unwrap_err();
        assert!(
            matches!(&err, ExecError::Failed { code, stderr, .. } if code == "3" && stderr == "boom"),
            "{err:?}"
        );
    }

    #[test]
    fn repeated_lines_are_shown_once_with_a_count() {
        let text = "Error: 2 errors\nfailed calling webhook x\nfailed calling webhook x\nother\nfailed calling webhook x\n";
        assert_eq!(
            tail(text, 20),
            "Error: 2 errors\nfailed calling webhook x (×3)\nother"
        );
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
    }

    #[test]
    fn a_failed_kind_create_shows_kind_s_error_line_above_the_stack_trace() {
        let mut script = String::from(
            "echo 'Creating cluster \"kgf\" ...' >&2; echo 'Deleted nodes: [\"kgf-control-plane\"]' >&2; \
             echo 'ERROR: failed to create cluster: failed to init node with kubeadm: exit status 1' >&2; \
             echo 'Command Output: [wait-control-plane] Waiting for the kubelet' >&2;",
        );
        for i in 0..30 {
            script.push_str(&format!(" echo 'k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/workflow.(*Runner).Run frame {i}' >&2;"));
        }
        script.push_str(" exit 1");
        let cmd = Cmd::new("sh").args(["-c", &script]);
        let plain = Exec::new().run(&cmd).unwrap_err();
        assert!(
            !plain
                .stderr()
                .unwrap()
                .contains("ERROR: failed to create cluster")
        );
        let err = Exec::new().run(&cmd.headline("ERROR:")).unwrap_err();
        let stderr = err.stderr().unwrap();
        assert!(
            stderr.starts_with("ERROR: failed to create cluster: failed to init node with kubeadm"),
            "{stderr}"
        );
        assert!(stderr.ends_with("frame 29"), "{stderr}");
        // Already in the tail: shown once.
        let short = Cmd::new("sh")
            .args(["-c", "echo 'ERROR: boom' >&2; exit 1"])
            .headline("ERROR:");
        assert_eq!(
            Exec::new().run(&short).unwrap_err().stderr(),
            Some("ERROR: boom")
        );
    }

    #[test]
    fn timeout_kills_the_command() {
        let started = Instant::now();
        let err = Exec::new()
            .run(
                &Cmd::new("sleep")
                    .arg("30")
                    .timeout(Duration::from_millis(200)),
            )
            .unwrap_err();
        assert!(matches!(err, ExecError::TimedOut { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn retries_only_transient_failures() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let script = format!(
            "echo x >> {0}; [ $(wc -l < {0}) -ge 3 ] || {{ echo 'connection refused' >&2; exit 1; }}",
            count.display()
        );
        Exec::new()
            .run(&Cmd::new("sh").args(["-c", &script]).retry_on(
                &["connection refused"],
                5,
                Duration::from_millis(10),
            ))
            .expect("third attempt succeeds");
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 3);

        let permanent = "echo 'invalid values' >&2; exit 1";
        let started = Instant::now();
        Exec::new()
            .run(&Cmd::new("sh").args(["-c", permanent]).retry_on(
                &["connection refused"],
                5,
                Duration::from_secs(1),
            ))
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "a permanent error must not be retried"
        );
    }

    #[test]
    fn a_recording_gate_keeps_changing_commands_and_runs_reads() {
        let exec = Exec::with_gate(Gate::record());
        let out = exec.run(&Cmd::new("echo").arg("read")).unwrap();
        assert_eq!(out.stdout, "read\n");
        exec.run(&Cmd::new("false").arg("would-change").changes())
            .expect("not run");
        let recorded = exec.gate().take();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].summary, "$ false would-change");
    }

    #[test]
    fn missing_program_names_it_and_the_fix() {
        let err = Exec::new()
            .with_hints(vec![(
                "kgf-no-such-tool".into(),
                "install it from the docs".into(),
            )])
            .run(&Cmd::new("kgf-no-such-tool"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`kgf-no-such-tool` was not found on PATH; install it from the docs"
        );
    }
}
