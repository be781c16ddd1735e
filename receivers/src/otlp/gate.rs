//! The OTLP/gRPC receiver's gate: decides a request's tenant and context from its metadata, and
//! whether the process and the pipeline can take it now, before the message is read. A request
//! refused here is answered at once and its message left unread: once the answer is sent, HTTP/2
//! ends the stream with NO_ERROR (RFC 9113 §8.1), so the client reads the status and stops sending
//! the rest of the body. A refusal costs neither reading nor decoding.

use super::Shared;
use super::grpc::{denied, status};
use futures::future::BoxFuture;
use sluice_core::ingress::header_lookup;
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
            // Answered at once, the body unread (see the module's comment).
            Err(refusal) => {
                drop(req);
                Box::pin(async move { Ok(refusal.into_http()) })
            }
        }
    }
}

impl<S: NamedService> NamedService for Gate<S> {
    const NAME: &'static str = S::NAME;
}
