//! A gRPC channel for request messages that Sluice compressed itself.
//!
//! tonic compresses gzip at a fixed level (6). The OTLP/gRPC exporter instead compresses each
//! request with [`sluice_core::compression::compress`], at `compression_params.level`, like the
//! OTLP/HTTP exporter, and hands tonic the compressed bytes as the message. This channel then
//! says so on the wire: it names the encoding in `grpc-encoding` and sets the message's
//! compressed flag, the first byte of a gRPC request body, which tonic writes as 0 since it did
//! not compress the message. Responses are left to tonic (it reads them compressed or not).

use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tonic::Status;
use tonic::body::Body;
use tonic::transport::Channel;
use tower_service::Service;

/// A [`Channel`] whose requests carry one message already compressed with `encoding` (`gzip`,
/// `zstd`), or plain ones when `encoding` is `None`.
#[derive(Clone, Debug)]
pub(super) struct Precompressed {
    pub channel: Channel,
    pub encoding: Option<&'static str>,
}

impl Service<http::Request<Body>> for Precompressed {
    type Response = <Channel as Service<http::Request<Body>>>::Response;
    type Error = <Channel as Service<http::Request<Body>>>::Error;
    type Future = <Channel as Service<http::Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::poll_ready(&mut self.channel, cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        if let Some(encoding) = self.encoding {
            req.headers_mut()
                .insert("grpc-encoding", HeaderValue::from_static(encoding));
            req = req.map(|inner| {
                Body::new(FlagFirst {
                    inner,
                    flagged: false,
                })
            });
        }
        self.channel.call(req)
    }
}

/// A request body whose first message is marked compressed.
struct FlagFirst {
    inner: Body,
    flagged: bool,
}

impl http_body::Body for FlagFirst {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if self.flagged {
            return Poll::Ready(frame);
        }
        let Some(Ok(frame)) = frame else {
            return Poll::Ready(frame);
        };
        match frame.into_data() {
            Ok(data) if !data.is_empty() => {
                // tonic wrote 0: it compresses nothing itself (the client must not be told to
                // `send_compressed`). Copying the frame to change one byte costs about 20 µs for
                // a batch of 8,192 points, against milliseconds to compress it.
                debug_assert_eq!(data[0], 0, "the message was compressed twice");
                let mut data = BytesMut::from(data);
                data[0] = 1;
                self.flagged = true;
                Poll::Ready(Some(Ok(Frame::data(data.freeze()))))
            }
            Ok(empty) => Poll::Ready(Some(Ok(Frame::data(empty)))),
            Err(other) => Poll::Ready(Some(Ok(other))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
