//! The contracts between the topology and its components: receivers push batches into a
//! [`Consumer`], processors are consumers that pass batches on, exporters send batches that the
//! sending engine takes from their queue.

use crate::batch::Batch;
use crate::config::{DeError, Node};
use crate::telemetry::Telemetry;
use futures::future::BoxFuture;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A component id as written in the config: `type` or `type/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    pub kind: String,
    pub name: Option<String>,
}

impl ComponentId {
    pub fn parse(s: &str) -> Result<ComponentId, String> {
        let (kind, name) = match s.split_once('/') {
            Some((k, n)) => (k, Some(n)),
            None => (s, None),
        };
        let ok = |t: &str| !t.is_empty() && !t.chars().any(|c| c.is_whitespace() || c == '/');
        if !ok(kind) || name.is_some_and(|n| !ok(n)) {
            return Err(format!(
                "invalid component id {s:?}: expected `type` or `type/name`"
            ));
        }
        Ok(ComponentId {
            kind: kind.to_string(),
            name: name.map(str::to_string),
        })
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.kind, n),
            None => f.write_str(&self.kind),
        }
    }
}

/// Why a batch was not taken. Receivers turn this into the protocol's status.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
    /// How long the client should wait before retrying, for retryable refusals.
    pub retry_after: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// A queue on the way is full: retry later (backpressure).
    Full,
    /// Sluice is shutting down.
    ShuttingDown,
    /// The process is near its memory limit (`service.memory_limit`): retry later.
    MemoryLimit,
    /// A per-tenant limit was exceeded: retry later.
    Limited,
    /// The data itself is unacceptable: do not retry.
    Invalid,
}

impl Refusal {
    pub fn full(message: impl Into<String>) -> Self {
        Refusal {
            kind: RefusalKind::Full,
            message: message.into(),
            retry_after: Some(Duration::from_secs(1)),
        }
    }
    pub fn shutting_down() -> Self {
        Refusal {
            kind: RefusalKind::ShuttingDown,
            message: "sluice is shutting down".into(),
            retry_after: Some(Duration::from_secs(1)),
        }
    }
    pub fn retryable(&self) -> bool {
        self.kind != RefusalKind::Invalid
    }
    /// The reason label for telemetry.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            RefusalKind::Full => "queue_full",
            RefusalKind::ShuttingDown => "shutting_down",
            RefusalKind::MemoryLimit => "memory_limit",
            RefusalKind::Limited => "limited",
            RefusalKind::Invalid => "invalid",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Takes batches. Returning `Ok` means the batch is now held by the pipeline (acknowledged).
pub trait Consumer: Send + Sync {
    fn consume(&self, batch: Batch) -> Result<(), Refusal>;

    /// Whether a batch of this context, of about `points` points, would be refused now for lack
    /// of room: a cheap probe that receivers make before reading a request's body, so that a
    /// request the pipeline cannot take costs no decoding. `Ok` promises nothing; `consume` still
    /// decides.
    fn ready(&self, _context: &crate::batch::Context, _points: usize) -> Result<(), Refusal> {
        Ok(())
    }

    /// [`Consumer::consume`] for a caller that keeps what is refused (the batch processor): a
    /// batch refused whole comes back with the refusal. The default copies the batch first;
    /// stages that can tell before taking anything (the exporters' fan-out) hand it back instead.
    fn offer(&self, batch: Batch) -> Result<(), Box<Returned>> {
        let copy = batch.clone();
        self.consume(batch).map_err(|refusal| {
            Box::new(Returned {
                refusal,
                batch: copy,
            })
        })
    }
}

/// A batch [`Consumer::offer`] refused whole, with the refusal.
#[derive(Debug)]
pub struct Returned {
    pub refusal: Refusal,
    pub batch: Batch,
}

/// A processor: a consumer that passes batches on to the next one, and may hold some (batching)
/// until it is shut down.
pub trait Processor: Consumer {
    /// Passes on everything held, trying until `deadline`; what cannot be passed on by then is
    /// counted as dropped.
    fn shutdown(&self, _deadline: tokio::time::Instant) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// What a receiver gets to run.
pub struct ReceiverContext {
    pub id: ComponentId,
    pub next: Arc<dyn Consumer>,
    pub shutdown: CancellationToken,
    pub telemetry: Arc<Telemetry>,
}

pub struct ProcessorContext {
    pub id: ComponentId,
    pub pipeline: String,
    pub next: Arc<dyn Consumer>,
    pub telemetry: Arc<Telemetry>,
}

pub struct ExporterContext {
    pub id: ComponentId,
    pub telemetry: Arc<Telemetry>,
}

pub trait ReceiverConfig: fmt::Debug + Send + Sync {
    /// Binds and starts serving; returns once the receiver is accepting, with the task that runs
    /// it. The task ends after `shutdown` is cancelled and in-flight requests are answered.
    fn start(&self, ctx: ReceiverContext) -> BoxFuture<'static, Result<JoinHandle<()>, BoxError>>;
}

pub trait ProcessorConfig: fmt::Debug + Send + Sync {
    fn build(&self, ctx: ProcessorContext) -> Result<Arc<dyn Processor>, BoxError>;
    /// The exporters this processor may send batches to (a `route` processor's targets), with
    /// their positions in the config: each must be among the exporters of every pipeline that
    /// uses the processor.
    fn routes_to(&self) -> Vec<crate::config::Located<ComponentId>> {
        Vec::new()
    }
}

pub trait ExporterConfig: fmt::Debug + Send + Sync {
    fn build(&self, ctx: ExporterContext) -> Result<Arc<dyn Exporter>, BoxError>;
    /// Queue and retry settings for the sending engine.
    fn sending(&self) -> crate::sending::SendingSettings;
}

/// The protocol-specific part of an exporter: encode and send one batch, and say whether a failure
/// may be retried. The sending engine does queueing, concurrency, retries and telemetry.
pub trait Exporter: Send + Sync {
    /// Starts whatever the exporter serves (e.g. an exposition endpoint). Called once.
    fn start(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async { Ok(()) })
    }
    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<Delivered, SendError>>;
    /// Encodes `batch` into the request that every attempt at it sends, for an exporter whose
    /// request does not change from one attempt to the next. The sending engine then frees the
    /// batch, whose decoded points take several times the room of the compressed request, and
    /// sends with [`Exporter::send_encoded`] instead of [`Exporter::send`], retries included.
    /// `None` (the default): the batch is kept and sent with `send`.
    fn encode(&self, _batch: &Batch) -> Option<EncodedBatch> {
        None
    }
    /// Sends what [`Exporter::encode`] made. Only called for an exporter whose `encode` gives
    /// `Some`.
    fn send_encoded<'a>(
        &'a self,
        _encoded: &'a EncodedBatch,
    ) -> BoxFuture<'a, Result<Delivered, SendError>> {
        // An exporter whose `encode` gives `Some` must send what it gave.
        debug_assert!(false, "send_encoded called on an exporter without it");
        Box::pin(async {
            Err(SendError::permanent(
                "this exporter sends batches, not requests",
            ))
        })
    }
    /// Makes the exporter's own form of `batch` as it enters a memory queue, for an exporter that
    /// would otherwise make it at the batch's first attempt and whose form takes less room than
    /// the decoded points (remote_write's translated series). It is made once, when the queue is
    /// sure to take the batch, so that what it changes in the exporter (a label cache, delta sums)
    /// is changed once. The queue then frees the batch's points, keeps its context, and the engine
    /// sends with [`Exporter::send_prepared`], retries included. Only called for an exporter
    /// whose [`Exporter::prepares`] is true; `None`: the batch is queued as it is. With the form
    /// comes its size in bytes, what the queue's `sluice_exporter_queue_bytes` counts for the batch
    /// (so that the queue need not walk the points to size them).
    fn prepare(&self, _batch: &Batch) -> Option<(Prepared, usize)> {
        None
    }
    /// Whether the exporter prepares the batches of its memory queue (default false): the queue
    /// then prepares and queues one batch at a time, so that its order is that of the preparing.
    fn prepares(&self) -> bool {
        false
    }
    /// Sends what [`Exporter::prepare`] made for a batch of `context`, taking it out of `prepared`
    /// once it is sent or handed off; a failure to be retried leaves it there. Only called for an
    /// exporter whose `prepare` gives `Some`.
    fn send_prepared<'a>(
        &'a self,
        _context: &'a crate::batch::Context,
        _prepared: &'a mut Option<Prepared>,
    ) -> BoxFuture<'a, Result<Delivered, SendError>> {
        debug_assert!(false, "send_prepared called on an exporter without it");
        Box::pin(async {
            Err(SendError::permanent(
                "this exporter sends batches, not prepared ones",
            ))
        })
    }
    /// Called once the engine's senders have stopped: an exporter with a sending stage of its own
    /// (see [`Delivered::handed_off`]) sends what it holds until `deadline`, then drops and counts
    /// the rest.
    fn shutdown(&self, _deadline: tokio::time::Instant) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// A queued batch in its exporter's own form (see [`Exporter::prepare`]); only that exporter
/// reads it.
pub type Prepared = Box<dyn std::any::Any + Send>;

/// A batch as its exporter's request (see [`Exporter::encode`]).
#[derive(Clone, Debug)]
pub struct EncodedBatch {
    /// The request body, compressed as the exporter sends it.
    pub body: bytes::Bytes,
    /// The batch's tenant, or the exporter's default when it has none.
    pub tenant: String,
}

/// A successful send; the peer may still have rejected some points (OTLP partial success).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delivered {
    pub rejected_points: u64,
    pub message: String,
    /// The exporter took the batch into a sending stage of its own (e.g. remote_write's per-series
    /// shards), which counts what it sends and drops; the engine counts nothing for it.
    pub handed_off: bool,
    /// With `handed_off`: tells when that stage is done with the batch, so that a disk queue
    /// acknowledges its record only then. `None`: done at once.
    pub completion: Option<crate::sending::Completion>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SendError {
    pub retryable: bool,
    /// The peer's own hint (Retry-After, RetryInfo).
    pub retry_after: Option<Duration>,
    pub message: String,
    /// Not a failure: the exporter's own sending stage has no room for this batch yet (e.g. its
    /// tenant's remote_write shards are full). The engine tries again shortly, without counting a
    /// failure or a retry and without growing the backoff.
    pub busy: bool,
}

impl SendError {
    pub fn retryable(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        SendError {
            retryable: true,
            retry_after,
            message: message.into(),
            busy: false,
        }
    }
    /// See [`SendError::busy`]; `retry_in` is when to try again.
    pub fn busy(message: impl Into<String>, retry_in: Duration) -> Self {
        SendError {
            retryable: true,
            retry_after: Some(retry_in),
            message: message.into(),
            busy: true,
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        SendError {
            retryable: false,
            retry_after: None,
            message: message.into(),
            busy: false,
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Parses one component's config from its node; used by the binary's registry.
pub type ParseFn<T> = fn(&Node, &crate::config::LoadContext) -> Result<Box<T>, Vec<DeError>>;

/// Which component types exist. The binary provides it (a `match` on the type name).
pub trait Registry {
    fn receiver(&self, kind: &str) -> Option<ParseFn<dyn ReceiverConfig>>;
    fn processor(&self, kind: &str) -> Option<ParseFn<dyn ProcessorConfig>>;
    fn exporter(&self, kind: &str) -> Option<ParseFn<dyn ExporterConfig>>;
    /// The type names of one class, for "unknown type" messages.
    fn kinds(&self, class: Class) -> &'static [&'static str];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Receiver,
    Processor,
    Exporter,
}

impl Class {
    pub fn singular(self) -> &'static str {
        match self {
            Class::Receiver => "receiver",
            Class::Processor => "processor",
            Class::Exporter => "exporter",
        }
    }
    pub fn plural(self) -> &'static str {
        match self {
            Class::Receiver => "receivers",
            Class::Processor => "processors",
            Class::Exporter => "exporters",
        }
    }
}

/// A component config that can check itself beyond what deserialization checks.
pub trait Validate {
    /// Makes relative paths relative to the config file's folder (called before `validate`).
    fn resolve_paths(&mut self, _ctx: &crate::config::LoadContext) {}

    /// Problems found, each with the position it concerns (use the config node's position when no
    /// better one is known).
    fn validate(&self, _node: &Node, _ctx: &crate::config::LoadContext) -> Vec<DeError> {
        Vec::new()
    }
}

/// Deserializes and validates a component config of type `C`.
pub fn parse_config<C>(node: &Node, ctx: &crate::config::LoadContext) -> Result<C, Vec<DeError>>
where
    C: serde::de::DeserializeOwned + Validate,
{
    let mut c: C = crate::config::from_node(node).map_err(|e| vec![e])?;
    c.resolve_paths(ctx);
    let errs = c.validate(node, ctx);
    if errs.is_empty() { Ok(c) } else { Err(errs) }
}
