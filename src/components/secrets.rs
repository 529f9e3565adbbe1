//! Credentials kgf-up generates for components: MinIO's root user and password, made once into the
//! Secret `minio-root` (keys `rootUser`, `rootPassword`, as the MinIO chart's `existingSecret`
//! expects) and reused by every later run.
//!
//! A generated value lives only in a [`Secret`] and in the cluster object: it is never logged,
//! printed or put in a process's argv. This module must not overwrite a Secret that exists.

use std::io::Read;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret as KubeSecret};
use kube::api::Api;

use crate::kube::{Conflicts, Kube, parse_manifests};
use crate::secret::Secret;
use crate::step::StepError;

/// The Secret MinIO's chart reads through `existingSecret`.
pub const MINIO_ROOT_SECRET: &str = "minio-root";
/// MinIO's root user name: not a secret, and fixed so that people can find it.
pub const MINIO_ROOT_USER: &str = "kgf-admin";
const PASSWORD_LEN: usize = 32;
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Creates `namespace/minio-root` with a fresh random password when it does not exist; an existing
/// one is kept as it is, so MinIO's data stays readable. Creates the namespace when it is missing
/// (call it after the step has noted which namespaces it creates, so `down` removes it).
pub async fn ensure_minio_root(kube: &Kube, namespace: &str) -> Result<(), StepError> {
    let secrets: Api<KubeSecret> = Api::namespaced(kube.client(), namespace);
    let existing = secrets.get_opt(MINIO_ROOT_SECRET).await.map_err(|e| {
        StepError::new(format!(
            "reading Secret {namespace}/{MINIO_ROOT_SECRET}: {e}"
        ))
        .with_fix("check that the cluster is reachable and kgf-up may read Secrets there")
    })?;
    if let Some(existing) = existing {
        let missing = missing_keys(&existing);
        if missing.is_empty() {
            return Ok(());
        }
        return Err(StepError::new(format!(
            "Secret {namespace}/{MINIO_ROOT_SECRET} exists but lacks {}",
            missing.join(" and ")
        ))
        .with_fix(format!(
            "add the keys to it, or delete it to have kgf-up generate new credentials \
             (`kubectl -n {namespace} delete secret {MINIO_ROOT_SECRET}`; MinIO's stored data then \
             needs the old ones)"
        )));
    }
    let password = random_password().map_err(|e| {
        StepError::new(format!(
            "cannot read /dev/urandom for MinIO's password: {e}"
        ))
        .with_fix("kgf-up needs a readable /dev/urandom (run it on Linux)")
    })?;
    let namespaces: Api<Namespace> = Api::all(kube.client());
    let namespace_exists = namespaces
        .get_opt(namespace)
        .await
        .map_err(|e| StepError::new(format!("reading namespace {namespace}: {e}")))?
        .is_some();
    let yaml = manifest(namespace, !namespace_exists, &password);
    // The manifest holds the password (base64): it is parsed here and handed to the API only.
    let objects = parse_manifests(&yaml, "the MinIO root Secret")
        .expect("the generated Secret manifest parses");
    kube.apply(
        &objects,
        namespace,
        std::time::Duration::from_secs(60),
        Conflicts::Refuse,
    )
    .await
    .map_err(|e| {
        StepError::context(
            format!("creating Secret {namespace}/{MINIO_ROOT_SECRET}"),
            e,
        )
        .with_fix("check that kgf-up may create Secrets in the namespace")
    })?;
    Ok(())
}

fn missing_keys(secret: &KubeSecret) -> Vec<&'static str> {
    ["rootUser", "rootPassword"]
        .into_iter()
        .filter(|k| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(*k))
                .is_none_or(|v| v.0.is_empty())
        })
        .collect()
}

/// The Secret (and, when `with_namespace`, its namespace) as YAML; the values are base64 in `data`.
fn manifest(namespace: &str, with_namespace: bool, password: &Secret) -> String {
    let data = [
        ("rootUser".to_string(), ByteString(MINIO_ROOT_USER.into())),
        (
            "rootPassword".to_string(),
            ByteString(password.expose().as_bytes().to_vec()),
        ),
    ];
    let secret = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": MINIO_ROOT_SECRET,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "kgf-up"},
        },
        "type": "Opaque",
        "data": data.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
    });
    let mut yaml = secret.to_string();
    if with_namespace {
        yaml = format!(
            "{}\n---\n{yaml}",
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        );
    }
    yaml
}

/// A password of [`PASSWORD_LEN`] letters and digits from the kernel's random source.
fn random_password() -> std::io::Result<Secret> {
    let mut urandom = std::fs::File::open("/dev/urandom")?;
    let mut out = String::with_capacity(PASSWORD_LEN);
    // Rejection leaves about 3% of bytes unused, so a second read is rare.
    while out.len() < PASSWORD_LEN {
        let mut bytes = [0u8; 64];
        urandom.read_exact(&mut bytes)?;
        out.push_str(&alphanumeric(&bytes, PASSWORD_LEN - out.len()));
    }
    Ok(Secret::new(out))
}

/// Up to `len` characters of [`ALPHABET`] from random bytes, without modulo bias: a byte maps to
/// `byte % 62` only below 248 (the largest multiple of 62 that fits), and is skipped otherwise.
fn alphanumeric(bytes: &[u8], len: usize) -> String {
    let limit = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    bytes
        .iter()
        .filter(|b| **b < limit)
        .take(len)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_map_to_the_alphabet_and_biased_ones_are_skipped() {
        assert_eq!(
            alphanumeric(&[0, 25, 26, 51, 52, 61, 62, 247], 10),
            "AZaz09A9"
        );
        // 248..=255 would favour the first 8 characters: they are dropped.
        assert_eq!(alphanumeric(&[248, 255, 1, 250], 10), "B");
        assert_eq!(alphanumeric(&[1, 2, 3], 2), "BC");
    }

    #[test]
    fn generated_passwords_are_long_alphanumeric_and_different() {
        let a = random_password().unwrap();
        let b = random_password().unwrap();
        assert_eq!(a.expose().len(), PASSWORD_LEN);
        assert!(
            a.expose().bytes().all(|c| c.is_ascii_alphanumeric()),
            "{}",
            a.expose()
        );
        assert_ne!(a.expose(), b.expose());
        // Printing the wrapper never shows the value, and logs redact it.
        assert_eq!(format!("{a} {a:?}"), "*** ***");
        assert_eq!(
            crate::secret::redact(&format!("password={}", a.expose())),
            "password=***"
        );
    }

    #[test]
    fn the_manifest_holds_both_keys_base64_and_the_namespace_only_when_asked() {
        let password = Secret::new("pw-for-the-manifest-test-0123456");
        let objects = parse_manifests(&manifest("minio", true, &password), "t").unwrap();
        let kinds: Vec<&str> = objects
            .iter()
            .map(|o| o.types.as_ref().unwrap().kind.as_str())
            .collect();
        assert_eq!(kinds, ["Namespace", "Secret"]);
        let secret: KubeSecret =
            serde_json::from_value(serde_json::to_value(&objects[1]).unwrap()).unwrap();
        let data = secret.data.clone().unwrap();
        assert_eq!(data["rootUser"].0, MINIO_ROOT_USER.as_bytes());
        assert_eq!(data["rootPassword"].0, password.expose().as_bytes());
        assert!(missing_keys(&secret).is_empty());
        assert!(
            !manifest("minio", false, &password).contains(password.expose()),
            "the value is only there base64-encoded"
        );
        let objects = parse_manifests(&manifest("minio", false, &password), "t").unwrap();
        assert_eq!(objects.len(), 1);
    }

    #[test]
    fn a_secret_without_both_keys_is_reported() {
        let secret: KubeSecret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": MINIO_ROOT_SECRET},
            "data": {"rootUser": "a2dmLWFkbWlu"},
        }))
        .unwrap();
        assert_eq!(missing_keys(&secret), ["rootPassword"]);
    }
}
