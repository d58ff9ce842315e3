//! The handshake: both sides prove they hold the secret before either says
//! anything about itself; then the worker says who it is.
//!
//! ```text
//! worker    -> scheduler  Hello { magic, nonce_w }
//! scheduler -> worker     Challenge { nonce_s, sealed,
//!                                     proof_s = HMAC(secret, "scheduler", nonce_w, nonce_s | sealed) }
//! worker    -> scheduler  Proof { proof_w = HMAC(secret, "worker", nonce_s, nonce_w), protocol }
//! scheduler -> worker     Verdict::Proceed | Verdict::Reject { reason }   (wrong secret, protocol)
//!                         --- sealed from here when `sealed` (see [`super::session`]) ---
//! worker    -> scheduler  Introduce { build, identity }
//! scheduler -> worker     Verdict::Welcome { worker_id } | Verdict::Reject { reason } (build)
//! ```
//!
//! Each side checks the other's proof, so neither a stranger worker nor a stranger
//! scheduler gets anywhere, and the secret never crosses the wire. A peer that has
//! not proved the secret learns nothing: not the build, not the protocol version,
//! not the cluster's queues or jobs (the worker sends its protocol only after the
//! scheduler proved itself, its identity only sealed or on loopback). Whether the
//! connection is sealed is the scheduler's choice, bound into its proof, so nobody
//! on the path can turn sealing off; a worker also refuses a plain connection to a
//! scheduler beyond loopback.

use super::auth::{random_bytes, Secret};
use super::frame::{encode_self_describing, read_msg, write_msg};
use super::session::{is_loopback, Inbound, Outbound, SessionKeys};
use super::{WireError, PROTOCOL_VERSION};
use crate::resources::Resources;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

const MAGIC: &str = "gridpipe";
/// Handshake messages are small; a larger frame is refused.
pub const HANDSHAKE_MAX_FRAME: u64 = 64 * 1024;
/// What the scheduler says to a worker that does not hold the secret (and
/// nothing more).
const WRONG_SECRET: &str = "authentication failed: the worker does not hold the cluster secret";

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
    /// The memory it may use, in bytes: its grid job's request, or its host's
    /// (`None`: unknown).
    #[serde(default)]
    pub memory: Option<u64>,
    /// Where its peers reach it (a worker process listening for them).
    #[serde(default)]
    pub peer: Option<String>,
}

/// The worker's opening message: only that it speaks gridpipe, and its nonce.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Hello {
    magic: String,
    nonce: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Challenge {
    nonce: Vec<u8>,
    sealed: bool,
    proof: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Proof {
    proof: Vec<u8>,
    protocol: u32,
}

/// The worker's account of itself, once both sides are proven.
#[derive(Debug, Serialize, Deserialize)]
struct Introduce {
    build: String,
    identity: WorkerIdentity,
}

#[derive(Debug, Serialize, Deserialize)]
enum Verdict {
    Proceed,
    Welcome { worker_id: u32, max_message: u64 },
    Reject { reason: String },
}

/// An admitted connection's protection: how its frames go out and come in.
#[derive(Debug)]
pub struct Channel {
    /// The sending half (seals frames when the connection is sealed).
    pub outbound: Outbound,
    /// The receiving half (opens and checks them).
    pub inbound: Inbound,
    /// The largest message either side sends or takes (the scheduler's
    /// setting, told to the worker in its welcome).
    pub max_message: u64,
}

/// A worker the scheduler admitted.
#[derive(Debug)]
pub struct Admitted {
    /// Who it is.
    pub identity: WorkerIdentity,
    /// Its connection's protection.
    pub channel: Channel,
}

/// What the scheduler's proof covers: its nonce and whether the connection is sealed.
fn scheduler_proof_input(nonce_s: &[u8], sealed: bool) -> Vec<u8> {
    let mut v = nonce_s.to_vec();
    v.push(u8::from(sealed));
    v
}

/// Writes one message through a connection's sending half.
async fn send<S: AsyncWrite + Unpin, T: Serialize>(
    stream: &mut S,
    out: &mut Outbound,
    msg: &T,
) -> Result<(), WireError> {
    let mut frame = encode_self_describing(msg)?;
    out.protect(&mut frame)?;
    stream.write_all(&frame).await?;
    stream.flush().await?;
    Ok(())
}

/// The worker's side, on a connection to the scheduler at `peer` (a plain
/// connection beyond loopback is refused). Returns the id the scheduler gave it
/// and the connection's protection.
pub async fn worker_side<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    peer: std::net::IpAddr,
    secret: &Secret,
    build: &str,
    identity: WorkerIdentity,
) -> Result<(u32, Channel), WireError> {
    let nonce_w = random_bytes().to_vec();
    let hello = Hello {
        magic: MAGIC.to_string(),
        nonce: nonce_w.clone(),
    };
    write_msg(stream, &hello).await?;
    let challenge: Challenge = read_msg(stream, HANDSHAKE_MAX_FRAME).await?;
    let bound = scheduler_proof_input(&challenge.nonce, challenge.sealed);
    if !secret.verify("scheduler", &nonce_w, &bound, &challenge.proof) {
        return Err(WireError::Refused(
            "the scheduler could not prove it holds the cluster secret (wrong secret?)".into(),
        ));
    }
    if !challenge.sealed && !is_loopback(peer) {
        return Err(WireError::Refused(format!(
            "the scheduler at {peer} offered a plain connection beyond loopback"
        )));
    }
    let proof = Proof {
        proof: secret.proof("worker", &challenge.nonce, &nonce_w),
        protocol: PROTOCOL_VERSION,
    };
    write_msg(stream, &proof).await?;
    match read_msg(stream, HANDSHAKE_MAX_FRAME).await? {
        Verdict::Proceed => {}
        Verdict::Reject { reason } => return Err(WireError::Refused(reason)),
        Verdict::Welcome { .. } => return Err(WireError::Garbage("welcome before proof".into())),
    }
    let (mut outbound, mut inbound) = if challenge.sealed {
        SessionKeys::derive(secret, &nonce_w, &challenge.nonce).worker_halves()
    } else {
        (Outbound::plain(), Inbound::plain())
    };
    let intro = Introduce {
        build: build.to_string(),
        identity,
    };
    send(stream, &mut outbound, &intro).await?;
    match inbound.read_msg(stream, HANDSHAKE_MAX_FRAME).await? {
        Verdict::Welcome {
            worker_id,
            max_message,
        } => Ok((
            worker_id,
            Channel {
                outbound,
                inbound,
                max_message,
            },
        )),
        Verdict::Reject { reason } => Err(WireError::Refused(reason)),
        Verdict::Proceed => Err(WireError::Garbage("a second proceed".into())),
    }
}

/// The scheduler's side: checks the proof first, then (to a proven worker only)
/// the version and build; returns the admitted worker, given `worker_id`.
/// `sealed` says whether the connection is sealed after the proofs.
pub async fn scheduler_side<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &Secret,
    build: &str,
    worker_id: u32,
    sealed: bool,
    max_message: u64,
) -> Result<Admitted, WireError> {
    let hello: Hello = read_msg(stream, HANDSHAKE_MAX_FRAME).await?;
    if hello.magic != MAGIC {
        // Not a gridpipe worker: it is told nothing.
        return Err(WireError::Refused(format!(
            "not a gridpipe worker (magic {:?})",
            hello.magic
        )));
    }
    let nonce_s = random_bytes().to_vec();
    let bound = scheduler_proof_input(&nonce_s, sealed);
    let challenge = Challenge {
        nonce: nonce_s.clone(),
        sealed,
        proof: secret.proof("scheduler", &hello.nonce, &bound),
    };
    write_msg(stream, &challenge).await?;
    let proof: Proof = read_msg(stream, HANDSHAKE_MAX_FRAME).await?;
    let refusal = if !secret.verify("worker", &nonce_s, &hello.nonce, &proof.proof) {
        Some(WRONG_SECRET.to_string())
    } else if proof.protocol != PROTOCOL_VERSION {
        Some(format!(
            "protocol version mismatch: the scheduler speaks version {PROTOCOL_VERSION}, the worker version {}",
            proof.protocol
        ))
    } else {
        None
    };
    if let Some(reason) = refusal {
        let _ = write_msg(
            stream,
            &Verdict::Reject {
                reason: reason.clone(),
            },
        )
        .await;
        return Err(WireError::Refused(reason));
    }
    write_msg(stream, &Verdict::Proceed).await?;
    let (mut outbound, mut inbound) = if sealed {
        SessionKeys::derive(secret, &hello.nonce, &nonce_s).scheduler_halves()
    } else {
        (Outbound::plain(), Inbound::plain())
    };
    let intro: Introduce = inbound.read_msg(stream, HANDSHAKE_MAX_FRAME).await?;
    if intro.build != build {
        let reason = format!(
            "build mismatch: the scheduler's binary is {build}, the worker's is {}; start workers from the same executable",
            intro.build
        );
        let _ = send(
            stream,
            &mut outbound,
            &Verdict::Reject {
                reason: reason.clone(),
            },
        )
        .await;
        return Err(WireError::Refused(reason));
    }
    let welcome = Verdict::Welcome {
        worker_id,
        max_message,
    };
    send(stream, &mut outbound, &welcome).await?;
    Ok(Admitted {
        identity: intro.identity,
        channel: Channel {
            outbound,
            inbound,
            max_message,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn me() -> WorkerIdentity {
        WorkerIdentity {
            memory: None,
            peer: None,
            name: "w".into(),
            resources: Resources::one("gpu", 1),
            queue: Some("q_gpu".into()),
            job: Some("17".into()),
            label: None,
        }
    }

    /// A scheduler that admits connections one after the other and reports each
    /// outcome (the admitted worker's identity); it keeps serving whatever a
    /// connection sends.
    async fn serve(
        secret: Secret,
        n: usize,
        sealed: bool,
    ) -> (
        std::net::SocketAddr,
        tokio::task::JoinHandle<Vec<Result<WorkerIdentity, String>>>,
    ) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let h = tokio::spawn(async move {
            let mut out = Vec::new();
            for id in 0..n {
                let (mut s, _) = l.accept().await.unwrap();
                out.push(
                    scheduler_side(
                        &mut s,
                        &secret,
                        "build-a",
                        id as u32,
                        sealed,
                        crate::wire::stream::DEFAULT_MAX_MESSAGE,
                    )
                    .await
                    .map(|a| a.identity)
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
        let (addr, server) = serve(secret.clone(), 6, false).await;
        // 1. Wrong secret.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let e = worker_side(&mut s, LO, &Secret::generate(), "build-a", me())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("wrong secret"), "{e}");
        drop(s);
        // 2. Another build (a proven worker is told why).
        let mut s = TcpStream::connect(addr).await.unwrap();
        let e = worker_side(&mut s, LO, &secret, "build-b", me())
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
        // 5. An old protocol version, from a worker that holds the secret.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let nonce_w = vec![1; 32];
        let hello = Hello {
            magic: MAGIC.into(),
            nonce: nonce_w.clone(),
        };
        write_msg(&mut s, &hello).await.unwrap();
        let c: Challenge = read_msg(&mut s, HANDSHAKE_MAX_FRAME).await.unwrap();
        let old = Proof {
            proof: secret.proof("worker", &c.nonce, &nonce_w),
            protocol: 0,
        };
        write_msg(&mut s, &old).await.unwrap();
        match read_msg(&mut s, HANDSHAKE_MAX_FRAME).await.unwrap() {
            Verdict::Reject { reason } => assert!(
                reason.contains(&format!("version {PROTOCOL_VERSION}"))
                    && reason.contains("version 0"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
        drop(s);
        // 6. The scheduler still admits a good worker.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let (id, _) = worker_side(&mut s, LO, &secret, "build-a", me())
            .await
            .unwrap();
        assert_eq!(id, 5);
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
        assert_eq!(outcomes[5].as_ref().unwrap(), &me());
    }

    /// Everything a scheduler sends until the peer closes, raw.
    async fn read_all(s: &mut TcpStream) -> Vec<u8> {
        let mut all = Vec::new();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut all)).await;
        all
    }

    #[tokio::test]
    async fn a_peer_without_the_secret_learns_nothing_about_the_build_protocol_or_cluster() {
        let secret = Secret::generate();
        let build = "0123456789abcdef-build-of-the-scheduler";
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for id in 0..2 {
                let (mut s, _) = l.accept().await.unwrap();
                let _ = scheduler_side(
                    &mut s,
                    &secret,
                    build,
                    id,
                    false,
                    crate::wire::stream::DEFAULT_MAX_MESSAGE,
                )
                .await;
            }
        });
        // A stranger that speaks the protocol, with a made-up proof.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let hello = Hello {
            magic: MAGIC.into(),
            nonce: vec![7; 32],
        };
        write_msg(&mut s, &hello).await.unwrap();
        write_msg(
            &mut s,
            &Proof {
                proof: vec![0; 32],
                protocol: 999,
            },
        )
        .await
        .unwrap();
        let heard = read_all(&mut s).await;
        // A stranger with a wrong magic.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let hello = Hello {
            magic: "other".into(),
            nonce: vec![7; 32],
        };
        write_msg(&mut s, &hello).await.unwrap();
        let heard_too = read_all(&mut s).await;
        server.await.unwrap();
        for bytes in [&heard, &heard_too] {
            let text = String::from_utf8_lossy(bytes);
            assert!(!text.contains(build), "the build leaked: {text:?}");
            assert!(!text.contains("build"), "{text:?}");
            assert!(!text.contains("version"), "the protocol leaked: {text:?}");
        }
        assert!(String::from_utf8_lossy(&heard).contains("authentication failed"));
        assert!(heard_too.is_empty(), "a non-gridpipe peer hears nothing");
    }

    #[tokio::test]
    async fn a_sealed_connection_carries_frames_both_ways_and_hides_the_identity() {
        let secret = Secret::generate();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let s2 = secret.clone();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut admitted = scheduler_side(
                &mut s,
                &s2,
                "build-a",
                3,
                true,
                crate::wire::stream::DEFAULT_MAX_MESSAGE,
            )
            .await
            .unwrap();
            let got: String = admitted
                .channel
                .inbound
                .read_msg(&mut s, HANDSHAKE_MAX_FRAME)
                .await
                .unwrap();
            send(
                &mut s,
                &mut admitted.channel.outbound,
                &format!("echo {got}"),
            )
            .await
            .unwrap();
            admitted.identity
        });
        let mut s = TcpStream::connect(addr).await.unwrap();
        let (id, mut channel) = worker_side(&mut s, LO, &secret, "build-a", me())
            .await
            .unwrap();
        assert_eq!(id, 3);
        assert!(channel.outbound.is_sealed());
        send(&mut s, &mut channel.outbound, &"hi".to_string())
            .await
            .unwrap();
        let back: String = channel
            .inbound
            .read_msg(&mut s, HANDSHAKE_MAX_FRAME)
            .await
            .unwrap();
        assert_eq!(back, "echo hi");
        assert_eq!(server.await.unwrap(), me());
    }

    #[tokio::test]
    async fn a_worker_refuses_a_plain_connection_beyond_loopback() {
        let secret = Secret::generate();
        let (addr, server) = serve(secret.clone(), 1, false).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let far = IpAddr::V4(Ipv4Addr::new(10, 9, 8, 7));
        let e = worker_side(&mut s, far, &secret, "build-a", me())
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("plain connection beyond loopback"),
            "{e}"
        );
        drop(s);
        assert!(server.await.unwrap()[0].is_err());
    }
}
