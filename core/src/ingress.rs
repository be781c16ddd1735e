//! What every push receiver does with a request: its tenant (authenticated, from a trusted
//! header, or fixed; decided before the body is read) and the batch context with the request's
//! carried headers (`metadata_keys`), the hand-off to the pipeline, and the accepted and refused
//! counts. One place, so that every receiver decides and counts the same way.

use crate::batch::{Batch, Context};
use crate::component::{Consumer, Refusal};
use crate::telemetry::{ReceiverReasonLabels, Telemetry};
use crate::tenancy::{Authenticator, Denied};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// How many tenants' request sizes an [`Ingress`] remembers.
const REMEMBERED_TENANTS: usize = 4096;

pub struct Ingress {
    name: String,
    next: Arc<dyn Consumer>,
    telemetry: Arc<Telemetry>,
    /// Lowercased header / metadata keys carried into the context.
    metadata_keys: Vec<String>,
    /// How the tenant is decided; `None`: requests have no tenant.
    tenancy: Option<Arc<Authenticator>>,
    /// Each tenant's last request, in points: how much room [`Ingress::ready`] asks for.
    expected_points: Mutex<HashMap<Option<Arc<str>>, usize>>,
}

impl Ingress {
    pub fn new(
        name: String,
        next: Arc<dyn Consumer>,
        telemetry: Arc<Telemetry>,
        metadata_keys: &[String],
    ) -> Self {
        let metadata_keys = metadata_keys
            .iter()
            .map(|k| k.to_ascii_lowercase())
            .collect();
        Ingress {
            name,
            next,
            telemetry,
            metadata_keys,
            tenancy: None,
            expected_points: Mutex::default(),
        }
    }

    /// Decides each request's tenant with `auth` (the receiver's `auth` or `tenant` setting).
    pub fn with_tenancy(mut self, auth: Option<Arc<Authenticator>>) -> Self {
        self.tenancy = auth;
        self
    }

    /// The receiver's id, as in telemetry and logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// The batch context from a request's headers; `get` looks a (lowercase) header or metadata key
    /// up. Call it before reading the body: a request without a tenant is refused, and counted
    /// (reason `unauthenticated` or `invalid_tenant`).
    pub fn context(&self, get: impl Fn(&str) -> Option<String>) -> Result<Context, Denied> {
        let (tenant, tenant_info) = match &self.tenancy {
            Some(auth) => match auth.identify(&get) {
                Ok((t, info)) => (Some(t), info),
                Err(denied) => {
                    tracing::debug!(receiver = %self.name, reason = denied.reason(), message = denied.message(), "request refused");
                    self.refuse_unread(denied.reason());
                    return Err(denied);
                }
            },
            None => (None, None),
        };
        let mut metadata: Vec<(Arc<str>, Arc<str>)> = self
            .metadata_keys
            .iter()
            .filter_map(|k| get(k).map(|v| (Arc::from(k.as_str()), Arc::from(v))))
            .collect();
        metadata.sort();
        Ok(Context {
            tenant,
            tenant_info,
            metadata,
            ..Default::default()
        })
    }

    /// Whether the process's memory allows taking a request of this context now
    /// ([`crate::memory::admit`]). Receivers ask before reading the body, so that a refused request
    /// costs no memory; a refusal is counted as a refused request (its points are not known yet).
    pub fn admit(&self, context: &Context) -> Result<(), Refusal> {
        self.count_unread(context, crate::memory::admit(context))
    }

    /// Whether the pipeline has room for this context's tenant now ([`Consumer::ready`]), asked
    /// before a request is decoded so that a request the pipeline would refuse costs no decoding:
    /// HTTP receivers once the body is read, before it is decompressed; OTLP/gRPC before the
    /// message is read, answering at once. A refusal is counted as a refused request.
    ///
    /// The room asked for is that of the tenant's last request (one point before its first):
    /// asking for room for one point would let a request in whenever the queue is not quite
    /// full, to be decoded, processed and then refused whole when it does not fit, the work
    /// thrown away just when the pipeline is the busiest.
    pub fn ready(&self, context: &Context) -> Result<(), Refusal> {
        let points = self
            .expected_points
            .lock()
            .get(&context.tenant)
            .copied()
            .unwrap_or(1);
        self.count_unread(context, self.next.ready(context, points))
    }

    /// Remembers a tenant's request size for [`Ingress::ready`]; the sizes of at most
    /// `REMEMBERED_TENANTS` tenants are kept (all are forgotten when a new one would pass it).
    fn expect(&self, context: &Context, points: usize) {
        let mut sizes = self.expected_points.lock();
        if sizes.len() >= REMEMBERED_TENANTS && !sizes.contains_key(&context.tenant) {
            sizes.clear();
        }
        sizes.insert(context.tenant.clone(), points);
    }

    fn count_unread(&self, context: &Context, result: Result<(), Refusal>) -> Result<(), Refusal> {
        result.inspect_err(|refusal| {
            self.telemetry
                .receiver_refused_requests
                .get_or_create(&ReceiverReasonLabels {
                    receiver: self.name.clone(),
                    tenant: context.tenant_label().to_string(),
                    reason: refusal.reason().to_string(),
                })
                .inc();
        })
    }

    /// Counts points of a request that were left out (invalid), by reason.
    pub fn refused(&self, context: &Context, reason: &str, points: u64) {
        if points > 0 {
            self.telemetry
                .receiver_refused(&self.name, context.tenant_label(), reason, points);
        }
    }

    /// Hands a batch to the pipeline and counts it as accepted, or as refused with the
    /// pipeline's reason. Returns the points taken (an empty batch is not passed on).
    pub fn deliver(&self, batch: Batch) -> Result<u64, Refusal> {
        let points = batch.point_count() as u64;
        if points == 0 {
            return Ok(0);
        }
        self.expect(&batch.context, points as usize);
        let tenant = batch.context.tenant_label().to_string();
        match crate::memory::admit(&batch.context).and_then(|()| self.next.consume(batch)) {
            Ok(()) => {
                self.telemetry
                    .receiver_accepted(&self.name, &tenant, points);
                Ok(points)
            }
            Err(refusal) => {
                self.telemetry
                    .receiver_refused(&self.name, &tenant, refusal.reason(), points);
                Err(refusal)
            }
        }
    }

    /// Counts a request refused before its points could be read (malformed, too large, ...).
    pub fn refuse_unread(&self, reason: &str) {
        self.telemetry
            .receiver_refused_requests
            .get_or_create(&ReceiverReasonLabels {
                receiver: self.name.clone(),
                tenant: String::new(),
                reason: reason.to_string(),
            })
            .inc();
    }
}

/// The lookup [`Ingress::context`] takes, over an HTTP request's headers.
pub fn header_lookup(headers: &http::HeaderMap) -> impl Fn(&str) -> Option<String> + '_ {
    |k| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// Reads and throws away an HTTP request body (up to `limit` bytes, one chunk at a time), so that a
/// refusal decided before the body was read reaches an HTTP/1.1 client that is still sending it:
/// answering first and closing the connection would show the client a broken connection instead
/// of the retryable refusal.
pub async fn discard_body(body: axum::body::Body, limit: u64) {
    use futures::StreamExt;
    let mut chunks = body.into_data_stream();
    let mut seen = 0u64;
    while let Some(Ok(chunk)) = chunks.next().await {
        seen += chunk.len() as u64;
        if seen > limit {
            break;
        }
    }
}
