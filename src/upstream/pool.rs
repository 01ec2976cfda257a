//! The connections to one upstream: at most `upstream_max_connections`, busy and idle
//! together, each owning a slot of the pool's semaphore; a request takes an idle one, opens
//! one on a free slot, or waits in turn. The exchange itself (`Pool::send`) is in
//! `exchange.rs`.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use hyper::client::conn::http2;
use tokio::net::{TcpStream, UnixStream};

use super::replay::Replay;
use super::stream::{Socket, UpstreamStream};
use super::{RequestBody, UpstreamError};
use crate::config::{Upstream, UpstreamProtocol};

/// How long an idle pooled upstream connection is kept (nginx keepalive_timeout's default is 60 s).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a pool drops the connections idle for longer than that.
const POOL_SWEEP: Duration = Duration::from_secs(15);
/// Sweeps in a row that find an h2c connection with no stream in flight and none started
/// since the sweep before, after which it is closed: idle for 60 to 75 s.
const H2_IDLE_SWEEPS: u32 = (POOL_IDLE_TIMEOUT.as_secs() / POOL_SWEEP.as_secs()) as u32;

/// The connections to one upstream: the idle ones, most recently used last, and the
/// requests waiting for one.
#[derive(Debug)]
pub(crate) struct Pool {
    pub(super) upstream: Upstream,
    pub(super) protocol: UpstreamProtocol,
    /// One permit per connection, busy or idle.
    pub(super) slots: Arc<Semaphore>,
    /// Held only to push or pop, never across an await.
    state: Mutex<PoolState>,
    /// The HTTP/2 connections of an h2c pool (each shared by its streams).
    pub(super) h2: Mutex<Vec<H2Conn>>,
    /// Held while an h2c connection is being made.
    pub(super) h2_dial: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct PoolState {
    idle: Vec<Idle>,
    /// Requests waiting for a connection to be handed back, oldest first.
    waiters: VecDeque<oneshot::Sender<Conn>>,
}

/// One upstream connection and the pool slot it occupies.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(super) sender: SendRequest<RequestBody>,
    pub(super) slot: OwnedSemaphorePermit,
    /// Response bytes read on this connection so far (did a failed exchange get any?).
    pub(super) read: Arc<AtomicU64>,
    /// Not reused past this: the upstream's `keep-alive: timeout=` less 1 s.
    pub(super) expires: Option<Instant>,
}

impl Conn {
    pub(super) fn reusable(&self, now: Instant) -> bool {
        !self.sender.is_closed() && self.expires.is_none_or(|t| now < t)
    }
}

impl Conn {
    /// The pool slot, for a connection that leaves the pool for good (an upgraded tunnel
    /// keeps counting against `upstream_max_connections` until it closes).
    pub(crate) fn into_slot(self) -> OwnedSemaphorePermit {
        self.slot
    }
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    since: Instant,
}

/// Where a connection for a request came from.
pub(super) enum Got {
    Pooled(Conn),
    Slot(OwnedSemaphorePermit),
}

impl Pool {
    pub(super) fn new(upstream: Upstream, protocol: UpstreamProtocol, max: usize) -> Arc<Self> {
        let pool = Arc::new(Self {
            upstream,
            protocol,
            slots: Arc::new(Semaphore::new(max)),
            state: Mutex::new(PoolState::default()),
            h2: Mutex::new(Vec::new()),
            h2_dial: tokio::sync::Mutex::new(()),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(sweep(Arc::downgrade(&pool)));
        }
        pool
    }

    /// A new socket to the upstream, counting the bytes read from it.
    pub(super) async fn socket(&self) -> Result<UpstreamStream, UpstreamError> {
        let unavailable = |e: io::Error| UpstreamError::Unavailable(e.to_string());
        let socket = match &self.upstream {
            Upstream::Tcp { authority } => {
                let tcp = TcpStream::connect(authority.as_str())
                    .await
                    .map_err(unavailable)?;
                tcp.set_nodelay(true).map_err(unavailable)?;
                Socket::Tcp(tcp)
            }
            Upstream::Unix(path) => {
                Socket::Unix(UnixStream::connect(path).await.map_err(unavailable)?)
            }
        };
        Ok(UpstreamStream {
            socket,
            read: Arc::new(AtomicU64::new(0)),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle connection, a free slot, or (when neither) a place in the queue.
    pub(super) fn take_or_wait(&self) -> Result<Got, oneshot::Receiver<Conn>> {
        let mut state = self.state();
        let now = Instant::now();
        while let Some(entry) = state.idle.pop() {
            if entry.conn.reusable(now) {
                return Ok(Got::Pooled(entry.conn));
            }
        }
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Ok(Got::Slot(slot));
        }
        let (tx, rx) = oneshot::channel();
        state.waiters.push_back(tx);
        Err(rx)
    }

    /// Waits for a connection handed back or a slot freed, whichever comes first.
    pub(super) async fn wait(&self, mut handed: oneshot::Receiver<Conn>) -> Got {
        let slots = self.slots.clone();
        tokio::select! {
            biased;
            Ok(conn) = &mut handed => Got::Pooled(conn),
            Ok(slot) = slots.acquire_owned() => {
                // A connection handed over at the same moment goes back to the pool.
                handed.close();
                if let Ok(conn) = handed.try_recv() {
                    self.put(conn);
                }
                Got::Slot(slot)
            }
        }
    }

    /// A slot for a new connection, for a retry: closes an idle connection to free one if
    /// need be, else waits for one.
    pub(super) async fn fresh_slot(&self) -> OwnedSemaphorePermit {
        loop {
            if let Ok(slot) = self.slots.clone().try_acquire_owned() {
                return slot;
            }
            let idle = self.state().idle.pop();
            if idle.is_none() {
                break;
            }
        }
        match self.slots.clone().acquire_owned().await {
            Ok(slot) => slot,
            // The semaphore is never closed.
            Err(_) => std::future::pending().await,
        }
    }

    /// Hands a connection to the oldest waiting request, or keeps it idle.
    pub(super) fn put(&self, mut conn: Conn) {
        if !conn.reusable(Instant::now()) {
            return;
        }
        let mut state = self.state();
        while let Some(waiter) = state.waiters.pop_front() {
            match waiter.send(conn) {
                Ok(()) => return,
                // That request gave up (timeout) or got a slot instead.
                Err(back) => conn = back,
            }
        }
        state.idle.push(Idle {
            conn,
            since: Instant::now(),
        });
    }

    /// How many idle connections are pooled.
    #[cfg(test)]
    pub(crate) fn idle_count(&self) -> usize {
        self.state().idle.len()
    }
}

/// One HTTP/2 connection to the upstream: its sender, and the state its requests, its
/// connection task and the pool's sweep share (one allocation, one reference count per
/// request).
#[derive(Clone, Debug)]
pub(super) struct H2Conn {
    pub(super) sender: http2::SendRequest<Replay>,
    pub(super) state: Arc<H2State>,
}

#[derive(Debug)]
pub(super) struct H2State {
    /// Streams open on it: requests whose response body is not done.
    in_flight: AtomicUsize,
    /// The upstream's `SETTINGS_MAX_CONCURRENT_STREAMS`, as the connection task last saw it.
    max_streams: AtomicUsize,
    /// A GOAWAY was seen, or the pool let the connection go: no new request.
    going_away: AtomicBool,
    /// Streams started on it so far.
    started: AtomicU64,
    /// `started` as the last sweep saw it.
    swept: AtomicU64,
    /// Sweeps in a row that found the connection idle.
    idle_sweeps: AtomicU32,
}

impl H2State {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            max_streams: AtomicUsize::new(usize::MAX),
            going_away: AtomicBool::new(false),
            started: AtomicU64::new(0),
            swept: AtomicU64::new(0),
            idle_sweeps: AtomicU32::new(0),
        })
    }

    pub(super) fn set_max_streams(&self, n: usize) {
        self.max_streams.store(n, Ordering::Relaxed);
    }

    /// No new request on this connection; its streams in flight finish.
    pub(super) fn go_away(&self) {
        self.going_away.store(true, Ordering::Relaxed);
    }

    /// A stream starts: counted in flight, and seen by the idle sweep.
    pub(super) fn stream_started(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A stream's response body is done or dropped.
    pub(super) fn stream_ended(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    fn load(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Called once per sweep: true once [`H2_IDLE_SWEEPS`] sweeps in a row found no stream in
    /// flight and none started since the sweep before.
    fn idle_through_sweep(&self) -> bool {
        let started = self.started.load(Ordering::Relaxed);
        if self.load() > 0 || self.swept.swap(started, Ordering::Relaxed) != started {
            self.idle_sweeps.store(0, Ordering::Relaxed);
            return false;
        }
        self.idle_sweeps.fetch_add(1, Ordering::Relaxed) + 1 >= H2_IDLE_SWEEPS
    }
}

impl H2Conn {
    pub(super) fn open(&self) -> bool {
        !self.sender.is_closed() && !self.state.going_away.load(Ordering::Relaxed)
    }

    pub(super) fn load(&self) -> usize {
        self.state.load()
    }

    pub(super) fn has_room(&self) -> bool {
        self.load() < self.state.max_streams.load(Ordering::Relaxed)
    }
}

/// Drops connections idle for longer than `POOL_IDLE_TIMEOUT`, until the pool is gone. An
/// h2c connection let go closes once no request holds it (hyper sends a GOAWAY when the
/// last sender is dropped), and its task then frees its slot.
async fn sweep(pool: Weak<Pool>) {
    let mut tick = tokio::time::interval(POOL_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let now = Instant::now();
        pool.state()
            .idle
            .retain(|e| e.conn.reusable(now) && now.duration_since(e.since) < POOL_IDLE_TIMEOUT);
        pool.h2
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|c| {
                let keep = c.open() && !c.state.idle_through_sweep();
                if !keep {
                    c.state.go_away();
                }
                keep
            });
    }
}
