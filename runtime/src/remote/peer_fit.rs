//! A worker process's side of fit inputs kept for peers: it listens for its
//! peers, keeps the rows its chain tasks give a gather fit when told to, and
//! fetches a fit's kept rows from their holders before the fit runs (see
//! [`super::peer`]).

use super::peer::{fetch_inputs, fetch_partition, serve_peers, InputKey, PeerPool, PeerStores};
use crate::actors::messages::{
    ChainInput, TaskEnvelope, TaskKind, TaskOutcome, TaskPayload, TaskResult,
};
use crate::exec::{Contribution, KeptInput};
use crate::wire::auth::Secret;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Per holder (worker id) that could not give its rows, why.
pub(crate) type Unreachable = Vec<(u32, String)>;

/// What a worker process needs to keep fit inputs and held partitions for its
/// peers and fetch them from theirs.
pub(crate) struct Peers {
    /// Where its peers reach it (`None`: it could not listen, and keeps
    /// nothing for them).
    addr: Option<String>,
    /// What it keeps for its peers.
    pub(crate) stores: PeerStores,
    /// The cluster's secret, which peers prove.
    secret: Option<Secret>,
    /// The largest message.
    max_message: u64,
    /// The event loop its fetches run on (made at the first), and the
    /// connections to peers it keeps open on it.
    fetching: std::sync::OnceLock<(tokio::runtime::Runtime, PeerPool)>,
}

/// A socket listening for peers, and the address they reach it by.
pub(crate) struct PeerListener {
    listener: tokio::net::TcpListener,
    /// Where peers reach it.
    pub(crate) addr: String,
}

/// Listens for peers on the address by which this worker reaches the
/// scheduler (the one its peers can reach too); a worker that cannot listen
/// keeps nothing for peers (it goes to the scheduler, as from a worker without
/// peers).
pub(crate) async fn bind_for_peers(scheduler: &tokio::net::TcpStream) -> Option<PeerListener> {
    let bound = match scheduler.local_addr() {
        Ok(local) => tokio::net::TcpListener::bind((local.ip(), 0)).await,
        Err(e) => Err(e),
    };
    match bound.and_then(|l| Ok((l.local_addr()?, l))) {
        Ok((addr, listener)) => Some(PeerListener {
            listener,
            addr: addr.to_string(),
        }),
        Err(e) => {
            eprintln!(
                "gridpipe worker: cannot listen for peers ({e}); its data goes through the scheduler"
            );
            None
        }
    }
}

impl Peers {
    /// Serves its peers from `listener` (when there is one) on the current
    /// event loop.
    pub(crate) fn start(
        listener: Option<PeerListener>,
        secret: &Secret,
        max_message: u64,
        sealed: bool,
    ) -> Self {
        let stores = PeerStores::default();
        let addr = listener.map(|l| {
            tokio::spawn(serve_peers(
                l.listener,
                secret.clone(),
                stores.clone(),
                max_message,
                sealed,
            ));
            l.addr
        });
        Peers {
            addr,
            stores,
            secret: Some(secret.clone()),
            max_message,
            fetching: std::sync::OnceLock::new(),
        }
    }

    /// The event loop fetches run on and the pool of its connections (made
    /// at the first fetch, on the executor's thread, and kept).
    fn fetching(&self) -> Result<&(tokio::runtime::Runtime, PeerPool), String> {
        if let Some(made) = self.fetching.get() {
            return Ok(made);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("no event loop to fetch with: {e}"))?;
        Ok(self.fetching.get_or_init(|| (runtime, PeerPool::default())))
    }

    /// Keeps nothing and fetches nothing (tests of the executor).
    #[cfg(test)]
    pub(crate) fn none() -> Self {
        Peers {
            addr: None,
            stores: PeerStores::default(),
            secret: None,
            max_message: 0,
            fetching: std::sync::OnceLock::new(),
        }
    }

    /// Keeps the rows a chain task gives a gather fit here, and leaves in the
    /// outcome only where they are.
    pub(crate) fn keep_fit_input(&self, o: &mut TaskOutcome) {
        let (Some(addr), TaskKind::Chain { stage, partition }, TaskResult::Chain(out)) =
            (&self.addr, o.task, &mut o.result)
        else {
            return;
        };
        if !matches!(out.contribution, Some(Contribution::Data { .. })) {
            return;
        }
        let rows = out.contribution.take().expect("checked above");
        let key = InputKey {
            run: o.run,
            stage,
            partition,
        };
        let bytes = rows.rows_bytes();
        self.stores.rows.put(key, Arc::new(rows));
        out.contribution = Some(Contribution::Kept(KeptInput {
            holder: 0,
            addr: addr.clone(),
            key,
            bytes,
        }));
    }

    /// Puts into a chain task its input held by a peer, taken from there.
    /// Returns, when the peer could not give it, why.
    pub(crate) fn fetch_partition(&self, env: &mut TaskEnvelope) -> Result<(), Unreachable> {
        let (TaskKind::Chain { partition, .. }, TaskPayload::Chain { input, .. }) =
            (env.task, &mut env.payload)
        else {
            return Ok(());
        };
        let ChainInput::Peer { addr, holder } = input else {
            return Ok(());
        };
        let holder = *holder;
        let Some(secret) = &self.secret else {
            return Err(vec![(holder, "this worker has no cluster secret".into())]);
        };
        let got = self.fetching().and_then(|(rt, pool)| {
            rt.block_on(fetch_partition(
                pool,
                addr,
                secret,
                (env.run, partition),
                self.max_message,
            ))
        });
        match got {
            Ok(batch) => {
                *input = ChainInput::Here(Arc::new(batch));
                Ok(())
            }
            Err(why) => Err(vec![(holder, why)]),
        }
    }

    /// Puts into a fit task the rows kept on worker processes: fetched from
    /// each holder at once, then this worker's own taken from its store (it
    /// is the last to need them). Returns whether it fetched any, or, per
    /// holder that could not give them, why.
    pub(crate) fn fetch_fit_inputs(&self, env: &mut TaskEnvelope) -> Result<bool, Unreachable> {
        let TaskPayload::Fit { parts, .. } = &mut env.payload else {
            return Ok(false);
        };
        if !parts.iter().any(|c| matches!(c, Contribution::Kept(_))) {
            return Ok(false);
        }
        let mut elsewhere: BTreeMap<(String, u32), Vec<(usize, InputKey)>> = BTreeMap::new();
        let mut mine = Vec::new();
        for (i, c) in parts.iter().enumerate() {
            if let Contribution::Kept(k) = c {
                if self.addr.as_deref() == Some(k.addr.as_str()) {
                    mine.push((i, k.holder, k.key));
                } else {
                    elsewhere
                        .entry((k.addr.clone(), k.holder))
                        .or_default()
                        .push((i, k.key));
                }
            }
        }
        let fetched = self.fetch_all(&elsewhere)?;
        let mut lost = Vec::new();
        let mut own = Vec::with_capacity(mine.len());
        for (i, holder, key) in mine {
            match self.stores.rows.take(&key) {
                Some(rows) => own.push((i, rows)),
                None => lost.push((
                    holder,
                    format!(
                        "the fit's own worker no longer keeps partition {} of stage {}",
                        key.partition, key.stage
                    ),
                )),
            }
        }
        if !lost.is_empty() {
            // Put back what was taken: a later try on this worker needs it.
            for (i, rows) in own {
                if let Contribution::Kept(k) = &parts[i] {
                    self.stores.rows.put(k.key, rows);
                }
            }
            return Err(lost);
        }
        let list = Arc::make_mut(parts);
        let own = own
            .into_iter()
            .map(|(i, rows)| (i, Arc::try_unwrap(rows).unwrap_or_else(|a| (*a).clone())));
        for (i, rows) in fetched.into_iter().chain(own) {
            list[i] = rows;
        }
        Ok(true)
    }

    /// Fetches from every holder at once; the rows by their place in the fit's
    /// inputs.
    fn fetch_all(
        &self,
        from: &BTreeMap<(String, u32), Vec<(usize, InputKey)>>,
    ) -> Result<Vec<(usize, Contribution)>, Unreachable> {
        if from.is_empty() {
            return Ok(Vec::new());
        }
        let Some(secret) = &self.secret else {
            let why = "this worker has no cluster secret to fetch with".to_string();
            return Err(from.keys().map(|(_, h)| (*h, why.clone())).collect());
        };
        let (runtime, pool) = self.fetching().map_err(|why| {
            from.keys()
                .map(|(_, h)| (*h, why.clone()))
                .collect::<Vec<_>>()
        })?;
        let results = runtime.block_on(futures::future::join_all(from.iter().map(
            |((addr, holder), keys)| async move {
                let wanted = keys.iter().map(|(_, k)| *k).collect();
                let got = fetch_inputs(pool, addr, secret, wanted, self.max_message).await;
                (*holder, keys, got)
            },
        )));
        let mut out = Vec::new();
        let mut lost = Vec::new();
        for (holder, keys, got) in results {
            match got {
                Ok(rows) => out.extend(keys.iter().map(|(i, _)| *i).zip(rows)),
                Err(why) => lost.push((holder, why)),
            }
        }
        if lost.is_empty() {
            Ok(out)
        } else {
            Err(lost)
        }
    }
}

/// The outcome of a fit that could not fetch its inputs: per holder, why.
pub(crate) fn inputs_lost(env: TaskEnvelope, lost: Unreachable) -> TaskOutcome {
    TaskOutcome::without_running(&env, TaskResult::InputsLost(lost))
}
