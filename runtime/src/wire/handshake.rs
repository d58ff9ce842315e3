//! The handshake: a worker says who it is, both sides prove they hold the secret.
//!
//! ```text
//! worker    -> scheduler  Hello { magic, protocol, build, name, resources, queue, job, nonce_w }
//! scheduler -> worker     Challenge { nonce_s, proof_s = HMAC(secret, "scheduler", nonce_w, nonce_s) }
//!                         | Reject { reason }                      (version or build mismatch)
//! worker    -> scheduler  Proof { proof_w = HMAC(secret, "worker", nonce_s, nonce_w) }
//! scheduler -> worker     Welcome { worker_id } | Reject { reason } (wrong secret)
//! ```
//!
//! Each side checks the other's proof, so neither a stranger worker nor a stranger
//! scheduler gets anywhere, and the secret never crosses the wire.

use super::auth::{random_bytes, Secret};
use super::frame::{read_msg, write_msg};
use super::{WireError, PROTOCOL_VERSION};
use crate::resources::Resources;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

const MAGIC: &str = "gridpipe";
/// Handshake messages are small; a larger frame is refused.
const HANDSHAKE_MAX_FRAME: u64 = 64 * 1024;

/// Who a worker is, as it tells the scheduler.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerIdentity {
    /// Its name (e.g. `local-3` or `sge-1234`).
    pub name: String,
    /// What it offers.
    pub resources: Resources,
    /// Its cluster queue, if any.
    pub queue: Option<String>,
    /// Its batch-system job id, if any.
    pub job: Option<String>,
    /// The label of its queue spec (`default`, `gpu`), on a cluster.
    #[serde(default)]
    pub label: Option<String>,
}

/// The worker's opening message.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hello {
    /// Always `gridpipe`.
    pub magic: String,
    /// The worker's protocol version.
    pub protocol: u32,
    /// The worker binary's build identity.
    pub build: String,
    /// Who the worker is.
    pub identity: WorkerIdentity,
    /// The worker's nonce.
    pub nonce: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
enum Challenge {
    Challenge { nonce: Vec<u8>, proof: Vec<u8> },
    Reject { reason: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct Proof {
    proof: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
enum Verdict {
    Welcome { worker_id: u32 },
    Reject { reason: String },
}

/// The worker's side. Returns the id the scheduler gave it.
pub async fn worker_side<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &Secret,
    build: &str,
    identity: WorkerIdentity,
) -> Result<u32, WireError> {
    let nonce_w = random_bytes().to_vec();
    let hello = Hello {
        magic: MAGIC.to_string(),
        protocol: PROTOCOL_VERSION,
        build: build.to_string(),
        identity,
        nonce: nonce_w.clone(),
    };
    write_msg(stream, &hello).await?;
    let (nonce_s, proof_s) = match read_msg(stream, HANDSHAKE_MAX_FRAME).await? {
        Challenge::Challenge { nonce, proof } => (nonce, proof),
        Challenge::Reject { reason } => return Err(WireError::Refused(reason)),
    };
    if !secret.verify("scheduler", &nonce_w, &nonce_s, &proof_s) {
        return Err(WireError::Refused(
            "the scheduler could not prove it holds the cluster secret (wrong secret?)".into(),
        ));
    }
    write_msg(
        stream,
        &Proof {
            proof: secret.proof("worker", &nonce_s, &nonce_w),
        },
    )
    .await?;
    match read_msg(stream, HANDSHAKE_MAX_FRAME).await? {
        Verdict::Welcome { worker_id } => Ok(worker_id),
        Verdict::Reject { reason } => Err(WireError::Refused(reason)),
    }
}

/// The scheduler's side: checks version, build and proof; returns the worker's
/// hello once it is admitted with `worker_id`.
pub async fn scheduler_side<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &Secret,
    build: &str,
    worker_id: u32,
) -> Result<Hello, WireError> {
    let hello: Hello = read_msg(stream, HANDSHAKE_MAX_FRAME).await?;
    let mismatch = if hello.magic != MAGIC {
        Some(format!("not a gridpipe worker (magic {:?})", hello.magic))
    } else if hello.protocol != PROTOCOL_VERSION {
        Some(format!(
            "protocol version mismatch: the scheduler speaks version {PROTOCOL_VERSION}, the worker version {}",
            hello.protocol
        ))
    } else if hello.build != build {
        Some(format!(
            "build mismatch: the scheduler's binary is {build}, the worker's is {}; start workers from the same executable",
            hello.build
        ))
    } else {
        None
    };
    if let Some(reason) = mismatch {
        let _ = write_msg(
            stream,
            &Challenge::Reject {
                reason: reason.clone(),
            },
        )
        .await;
        return Err(WireError::Refused(reason));
    }
    let nonce_s = random_bytes().to_vec();
    let proof_s = secret.proof("scheduler", &hello.nonce, &nonce_s);
    write_msg(
        stream,
        &Challenge::Challenge {
            nonce: nonce_s.clone(),
            proof: proof_s,
        },
    )
    .await?;
    let proof: Proof = read_msg(stream, HANDSHAKE_MAX_FRAME).await?;
    if !secret.verify("worker", &nonce_s, &hello.nonce, &proof.proof) {
        let reason =
            "authentication failed: the worker does not hold the cluster secret".to_string();
        let _ = write_msg(
            stream,
            &Verdict::Reject {
                reason: reason.clone(),
            },
        )
        .await;
        return Err(WireError::Refused(reason));
    }
    write_msg(stream, &Verdict::Welcome { worker_id }).await?;
    Ok(hello)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    fn me() -> WorkerIdentity {
        WorkerIdentity {
            name: "w".into(),
            resources: Resources::one("gpu", 1),
            queue: Some("q_gpu".into()),
            job: Some("17".into()),
            label: None,
        }
    }

    /// A scheduler that admits connections one after the other and reports each
    /// outcome; it keeps serving whatever a connection sends.
    async fn serve(
        secret: Secret,
        n: usize,
    ) -> (
        std::net::SocketAddr,
        tokio::task::JoinHandle<Vec<Result<Hello, String>>>,
    ) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let h = tokio::spawn(async move {
            let mut out = Vec::new();
            for id in 0..n {
                let (mut s, _) = l.accept().await.unwrap();
                out.push(
                    scheduler_side(&mut s, &secret, "build-a", id as u32)
                        .await
                        .map_err(|e| e.to_string()),
                );
            }
            out
        });
        (addr, h)
    }

    #[tokio::test]
    async fn admits_the_right_secret_and_refuses_everything_else_while_serving_on() {
        let secret = Secret::generate();
        let (addr, server) = serve(secret.clone(), 6).await;
        // 1. Wrong secret.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let e = worker_side(&mut s, &Secret::generate(), "build-a", me())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("wrong secret"), "{e}");
        drop(s);
        // 2. Another build.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let e = worker_side(&mut s, &secret, "build-b", me())
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("build-a") && e.to_string().contains("build-b"),
            "{e}"
        );
        // 3. Garbage bytes.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[5, 0, 0, 0, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1])
            .await
            .unwrap();
        drop(s);
        // 4. An oversized frame.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
        drop(s);
        // 5. An old protocol version.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let old = Hello {
            magic: MAGIC.into(),
            protocol: 0,
            build: "build-a".into(),
            identity: me(),
            nonce: vec![1; 32],
        };
        write_msg(&mut s, &old).await.unwrap();
        let reply: Challenge = read_msg(&mut s, HANDSHAKE_MAX_FRAME).await.unwrap();
        match reply {
            Challenge::Reject { reason } => assert!(
                reason.contains(&format!("version {PROTOCOL_VERSION}"))
                    && reason.contains("version 0"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
        drop(s);
        // 6. The scheduler still admits a good worker.
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert_eq!(
            worker_side(&mut s, &secret, "build-a", me()).await.unwrap(),
            5
        );
        let outcomes = server.await.unwrap();
        assert!(
            outcomes[0].as_ref().unwrap_err().contains("authentication")
                || outcomes[0].as_ref().unwrap_err().contains("closed")
        );
        assert!(outcomes[1].as_ref().unwrap_err().contains("build mismatch"));
        assert!(outcomes[2].as_ref().unwrap_err().contains("undecodable"));
        assert!(outcomes[3]
            .as_ref()
            .unwrap_err()
            .contains("exceeds the limit"));
        assert!(outcomes[4]
            .as_ref()
            .unwrap_err()
            .contains("protocol version mismatch"));
        let hello = outcomes[5].as_ref().unwrap();
        assert_eq!(hello.identity, me());
    }
}
