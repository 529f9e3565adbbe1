//! The one way kgf-up waits for a condition it cannot watch through the API (a node's
//! containerd, an rke2 service over SSH, health checks, allocatable GPUs): look, and look again
//! every interval, until the condition holds or the deadline passes, and then say what the last
//! look saw. Conditions the API can watch (a Deployment Available, a CRD Established) are waited
//! with watches in [`crate::kube`].

use std::future::Future;
use std::time::Duration;

/// What one look found.
pub enum Seen<T> {
    /// The condition holds.
    Ready(T),
    /// Not yet, and what was seen instead (shown if the deadline passes).
    Not(String),
}

/// Why a wait ended without the condition.
#[derive(Debug)]
pub enum Stop<E> {
    /// A look failed in a way that waiting cannot heal.
    Failed(E),
    /// The deadline passed; `last` is what the last look saw.
    TimedOut { waited: Duration, last: String },
}

/// Looks with `look` until it sees [`Seen::Ready`], every `every`, for at most `deadline`.
pub async fn until<T, E, F, Fut>(
    deadline: Duration,
    every: Duration,
    mut look: F,
) -> Result<T, Stop<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Seen<T>, E>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        match look().await.map_err(Stop::Failed)? {
            Seen::Ready(value) => return Ok(value),
            Seen::Not(last) if tokio::time::Instant::now() >= end => {
                return Err(Stop::TimedOut {
                    waited: deadline,
                    last,
                });
            }
            Seen::Not(_) => tokio::time::sleep(every).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn it_waits_until_the_condition_holds() {
        let mut looks = 0;
        let got = until(Duration::from_secs(5), Duration::from_millis(1), || {
            looks += 1;
            let n = looks;
            async move {
                Ok::<_, ()>(if n < 3 {
                    Seen::Not(format!("look {n}"))
                } else {
                    Seen::Ready(n)
                })
            }
        })
        .await;
        assert!(matches!(got, Ok(3)));
    }

    #[tokio::test]
    async fn it_stops_at_the_deadline_with_the_last_look_or_at_a_failure() {
        let timed_out = until(
            Duration::from_millis(20),
            Duration::from_millis(5),
            || async { Ok::<Seen<()>, ()>(Seen::Not("still starting".into())) },
        )
        .await;
        assert!(
            matches!(&timed_out, Err(Stop::TimedOut { last, .. }) if last == "still starting"),
            "{timed_out:?}"
        );
        let failed = until(Duration::from_secs(5), Duration::from_millis(1), || async {
            Err::<Seen<()>, _>("unreachable")
        })
        .await;
        assert!(matches!(failed, Err(Stop::Failed("unreachable"))));
    }
}
