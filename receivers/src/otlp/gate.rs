//! The OTLP/gRPC receiver's gate: decides a request's tenant and context from its metadata, and
//! whether the process and the pipeline can take it now, before the message is decoded. A request
//! refused here has its body read and thrown away (not decoded) before the answer, so that a
//! client still sending it gets the status, not a reset stream; a refusal costs no decoding.

use super::Shared;
use super::grpc::{denied, status};
use futures::future::BoxFuture;
use sluice_core::ingress::{discard_body, header_lookup};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;
use tower::Service;

/// Wraps the OTLP metrics service; the admitted request carries its [`sluice_core::batch::Context`]
/// in its extensions.
#[derive(Clone)]
pub struct Gate<S> {
    pub inner: S,
    pub shared: Arc<Shared>,
}

impl<S> Gate<S> {
    /// The context of an admissible request, or the status that refuses it (counted).
    fn check(&self, req: &http::Request<Body>) -> Result<sluice_core::batch::Context, Status> {
        let context = self
            .shared
            .context(header_lookup(req.headers()))
            .map_err(|d| denied(&d))?;
        // Near the memory limit, or with no room in the pipeline for the tenant.
        self.shared.admit(&context).map_err(|r| status(&r))?;
        self.shared.ready(&context).map_err(|r| status(&r))?;
        Ok(context)
    }
}

impl<S> Service<http::Request<Body>> for Gate<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        match self.check(&req) {
            Ok(context) => {
                req.extensions_mut().insert(context);
                Box::pin(self.inner.call(req))
            }
            Err(refusal) => {
                let limit = self.shared.max_decompressed_bytes;
                Box::pin(async move {
                    discard_body(axum::body::Body::new(req.into_body()), limit).await;
                    Ok(refusal.into_http())
                })
            }
        }
    }
}

impl<S: NamedService> NamedService for Gate<S> {
    const NAME: &'static str = S::NAME;
}
