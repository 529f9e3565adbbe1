//! Loading a profile: read it (bounded), register its secrets for redaction before anything is
//! parsed, parse it, apply `--set`, and check it whole — names, references, bounds, sources and
//! the paths they name, the components' needs against the built-in catalog — before anything is
//! touched. Above both `profile` (the schema) and `components` (the catalog), so neither needs the
//! other.

mod check;

use std::path::{Path, PathBuf};

use crate::profile::{self, Loaded, ProfileError, spans::Spans};

/// Loads a built-in profile by name, or a YAML file by path, and applies `--set` overrides.
///
/// Every value under a secret-like key, in the file and in `--set`, is registered for redaction
/// before anything is parsed, so no message can quote it. Then the whole profile is checked
/// (names, references, bounds, sources, the paths they name) before anything is touched.
pub fn load(name_or_path: &str, sets: &[String]) -> Result<Loaded, ProfileError> {
    let (text, origin, base_dir) = match profile::BUILT_IN.iter().find(|(n, _)| *n == name_or_path)
    {
        Some((name, text)) => (
            text.to_string(),
            format!("{name} (built-in)"),
            std::env::current_dir().unwrap_or_default(),
        ),
        None => {
            let path = Path::new(name_or_path);
            let looks_like_path = name_or_path.contains('/')
                || name_or_path.ends_with(".yaml")
                || name_or_path.ends_with(".yml");
            if !looks_like_path && !path.exists() {
                return Err(ProfileError::UnknownName(name_or_path.to_string()));
            }
            let text = read_text(path, name_or_path)?;
            let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
            (text, name_or_path.to_string(), base)
        }
    };
    from_text(&text, origin, sets, base_dir)
}

/// [`load`] for a profile's text: `origin` names it in errors, `base_dir` is where its relative
/// source paths start.
pub fn from_text(
    text: &str,
    origin: String,
    sets: &[String],
    base_dir: PathBuf,
) -> Result<Loaded, ProfileError> {
    for expr in sets {
        if let Some((path, raw)) = expr.split_once('=') {
            for secret in Spans::set_value(path, raw) {
                crate::secret::Secret::new(secret);
            }
        }
    }
    let spans = Spans::new(text);
    for secret in spans.secrets() {
        crate::secret::Secret::new(secret.clone());
    }
    let profile = profile::parse(text, &origin)?;
    let profile = profile::apply_sets(profile, sets)?;
    check::check(&check::Input {
        profile: &profile,
        file: &origin,
        spans: &spans,
        sets,
        base_dir: &base_dir,
    })?;
    Ok(Loaded {
        profile,
        origin,
        base_dir,
    })
}

/// Reads a profile file: a regular file only (a FIFO would wait for a writer forever, a device
/// never end), bounded in size, and UTF-8 (a bad byte is located like any error).
fn read_text(path: &Path, shown: &str) -> Result<String, ProfileError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let read_err = |source| ProfileError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Opened without blocking, so that what the path is can be asked of the open file itself
    // (asking first and opening after would race with a file swapped in between).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_err)?;
    let kind = file.metadata().map_err(read_err)?.file_type();
    let not_a_file = if kind.is_dir() {
        Some("it is a directory, not a YAML file")
    } else if kind.is_fifo() {
        Some("it is a FIFO (a named pipe), not a file: kgf-up reads a profile only from a file")
    } else if kind.is_socket() {
        Some("it is a socket, not a file: kgf-up reads a profile only from a file")
    } else if kind.is_char_device() || kind.is_block_device() {
        Some("it is a device, not a file: kgf-up reads a profile only from a file")
    } else {
        None
    };
    if let Some(what) = not_a_file {
        return Err(read_err(std::io::Error::other(what)));
    }
    let mut bytes = Vec::new();
    file.take(profile::MAX_PROFILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > profile::MAX_PROFILE_BYTES {
        return Err(ProfileError::Semantic {
            file: shown.to_string(),
            message: format!(
                "the file is larger than {} KiB, the limit for a profile",
                profile::MAX_PROFILE_BYTES / 1024
            ),
            fix: Some("check that --profile names the profile you meant".into()),
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let good = String::from_utf8_lossy(good);
        let line = good.matches('\n').count() as u64 + 1;
        let column = good.rsplit('\n').next().unwrap_or("").chars().count() as u64 + 1;
        ProfileError::Invalid {
            file: shown.to_string(),
            line,
            column,
            message: "this byte is not UTF-8 text".into(),
            fix: Some("save the profile as UTF-8".into()),
        }
    })
}
