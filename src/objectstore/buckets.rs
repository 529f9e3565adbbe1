//! The step `object-store/buckets`: the profile's buckets exist in an S3 store kgf-up does not run,
//! created with S3 CreateBucket when missing. kgf-up's own MinIO gets its buckets from its chart
//! (`buckets` values) instead, and the bundled store from Kubeflow Pipelines.
//!
//! Buckets hold data, so `down` never deletes them. This step only talks S3; it applies no
//! Kubernetes object.

use futures::FutureExt;
use futures::future::BoxFuture;

use super::s3::{S3, S3Error};
use super::{Store, Wiring};
use crate::gate::Change;
use crate::step::{Ctx, Description, Observation, Step, StepError, StepId, StepResult};

pub struct BucketsStep {
    pub wiring: Wiring,
    pub needs: Vec<StepId>,
}

impl BucketsStep {
    pub fn id() -> StepId {
        StepId::new("object-store", "buckets")
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .wiring
            .buckets
            .all()
            .iter()
            .map(|b| b.to_string())
            .collect();
        names.dedup();
        names
    }

    async fn client(&self, ctx: &Ctx) -> StepResult<S3> {
        let Store::S3(s3) = &self.wiring.store else {
            unreachable!("the buckets step is planned for S3 stores only")
        };
        let keys = self
            .wiring
            .keys(ctx.kube().await?)
            .await?
            .expect("an S3 store has keys");
        S3::for_store(s3, &keys)
            .map_err(|e| StepError::context("the object store client", e).input())
    }

    /// The buckets that are missing; `Err` with the S3 error otherwise.
    async fn missing(&self, s3: &S3) -> Result<Vec<String>, S3Error> {
        let mut missing = Vec::new();
        for name in self.names() {
            if !s3.bucket_exists(&name).await? {
                missing.push(name);
            }
        }
        Ok(missing)
    }
}

/// What to tell the user when S3 refuses.
pub fn s3_fix(e: &S3Error) -> String {
    match e.code() {
        Some("SignatureDoesNotMatch") | Some("InvalidAccessKeyId") => {
            "the store refused the key pair: check object_store.s3.credentials (and the region)".into()
        }
        Some("AccessDenied") => {
            "the key pair may not do this: give it s3:CreateBucket, s3:ListBucket, s3:PutObject, \
             s3:GetObject and s3:DeleteObject on the buckets"
                .into()
        }
        Some("AuthorizationHeaderMalformed") | Some("IllegalLocationConstraintException") => {
            "the region does not match the store's: fix object_store.s3.region".into()
        }
        _ => match e {
            S3Error::Unreachable { .. } => {
                "check object_store.s3.endpoint and that this machine reaches it (proxy, firewall, TLS: object_store.s3.tls.ca_file)".into()
            }
            _ => "check object_store.s3 in the profile".into(),
        },
    }
}

impl Step for BucketsStep {
    fn id(&self) -> StepId {
        Self::id()
    }
    fn needs(&self) -> Vec<StepId> {
        self.needs.clone()
    }
    fn describe(&self) -> Description {
        Description {
            source: self.wiring.describe(),
            commands: self
                .names()
                .iter()
                .map(|b| format!("S3 HeadBucket {b}, CreateBucket when missing"))
                .collect(),
            ..Default::default()
        }
    }
    fn observe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<Observation>> {
        async move {
            let s3 = self.client(ctx).await?;
            match self.missing(&s3).await {
                Ok(missing) if missing.is_empty() => Ok(Observation::converged(format!(
                    "buckets {} exist at {}",
                    self.names().join(", "),
                    s3.shown()
                ))),
                Ok(missing) => Ok(Observation::missing(format!(
                    "buckets {} do not exist at {}",
                    missing.join(", "),
                    s3.shown()
                ))),
                Err(S3Error::Unreachable { endpoint, message }) => {
                    Ok(Observation::converged(format!(
                        "skipped: kgf-up cannot reach {endpoint} from this machine ({message}); \
                         the buckets {} must exist there for the pipeline",
                        self.names().join(", ")
                    )))
                }
                Err(e) => Err(StepError::context("checking the buckets", &e).with_fix(s3_fix(&e))),
            }
        }
        .boxed()
    }
    fn apply<'a>(&'a self, ctx: &'a Ctx, _: &'a Observation) -> BoxFuture<'a, StepResult<()>> {
        async move {
            let s3 = self.client(ctx).await?;
            let missing = self
                .missing(&s3)
                .await
                .map_err(|e| StepError::context("checking the buckets", &e).with_fix(s3_fix(&e)))?;
            for name in missing {
                let change = Change::new(format!("create bucket {name} at {}", s3.shown()));
                ctx.exec
                    .gate()
                    .change(change, s3.create_bucket(&name))
                    .await
                    .map_err(|e| {
                        StepError::context(format!("creating bucket {name}"), &e)
                            .with_fix(s3_fix(&e))
                    })?;
            }
            Ok(())
        }
        .boxed()
    }
}
