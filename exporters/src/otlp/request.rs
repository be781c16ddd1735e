//! What the two OTLP exporters share: a batch becomes one compressed request, which every attempt
//! sends as it is, and `sample_age_limit` filters a batch's points at every attempt instead.

use futures::future::BoxFuture;
use sluice_core::batch::Batch;
use sluice_core::batch::age::AgeLimit;
use sluice_core::component::{Delivered, EncodedBatch, Exporter, SendError};

/// One OTLP transport: how a batch becomes a request, and how a request is sent once.
pub(super) trait Transport: Send + Sync {
    /// `sample_age_limit`.
    fn age_limit(&self) -> Option<&AgeLimit>;
    /// The batch as a compressed request, with its tenant.
    fn request(&self, batch: &Batch) -> EncodedBatch;
    /// One attempt at sending `request`.
    fn post<'a>(&'a self, request: &'a EncodedBatch)
    -> BoxFuture<'a, Result<Delivered, SendError>>;
}

/// An OTLP exporter over a transport.
pub(super) struct Otlp<T>(pub T);

impl<T: Transport> Exporter for Otlp<T> {
    /// Sends the batch without its points older than `sample_age_limit`.
    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<Delivered, SendError>> {
        Box::pin(async move {
            let t = &self.0;
            let Some(limit) = t.age_limit() else {
                return t.post(&t.request(batch)).await;
            };
            let fresh = limit.filter(batch);
            // Nothing left once the too old points are gone: nothing to send.
            let result = if fresh.batch.is_empty() {
                Ok(Delivered::default())
            } else {
                t.post(&t.request(&fresh.batch)).await
            };
            limit.settle(&fresh, result)
        })
    }

    /// The request, unless `sample_age_limit` is set (its points are filtered at every attempt).
    fn encode(&self, batch: &Batch) -> Option<EncodedBatch> {
        self.0.age_limit().is_none().then(|| self.0.request(batch))
    }

    fn send_encoded<'a>(
        &'a self,
        encoded: &'a EncodedBatch,
    ) -> BoxFuture<'a, Result<Delivered, SendError>> {
        self.0.post(encoded)
    }
}
