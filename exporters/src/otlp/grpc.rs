//! OTLP/gRPC exporter.
//!
//! Retryable per the OTLP spec: CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE,
//! DATA_LOSS, and RESOURCE_EXHAUSTED when the server sent RetryInfo (it then says how long to wait).
//! Every other code is permanent: the batch is dropped and counted.

use super::config::{OtlpGrpcExporterConfig, sending, tenant_of};
use super::precompressed::Precompressed;
use super::request::{Otlp, Transport};
use futures::future::BoxFuture;
use sluice_core::batch::Batch;
use sluice_core::batch::age::AgeLimit;
use sluice_core::component::{
    BoxError, Delivered, EncodedBatch, Exporter, ExporterConfig, ExporterContext, SendError,
};
use sluice_core::compression::{Compression, CompressionParams, compress};
use sluice_core::grpc_codec::{Encoded, OtlpCodec};
use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceResponse;
use sluice_core::sending::SendingSettings;
use std::sync::Arc;
use tonic::client::Grpc;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

impl ExporterConfig for OtlpGrpcExporterConfig {
    fn build(&self, ctx: ExporterContext) -> Result<Arc<dyn Exporter>, BoxError> {
        let uri = self.uri()?;
        let channel = Channel::builder(uri)
            .connect_timeout(self.timeout.get())
            .timeout(self.timeout.get())
            .tcp_nodelay(true)
            .connect_lazy();
        // Requests are compressed here, at `compression_params.level` (tonic's own gzip is fixed
        // at level 6); responses may come compressed either way.
        let channel = Precompressed {
            channel,
            encoding: self.compression.header(),
        };
        let client = Grpc::new(channel)
            .max_decoding_message_size(64 << 20)
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd);
        let mut headers = Vec::new();
        for (k, v) in &self.headers {
            let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())?;
            headers.push((key, MetadataValue::try_from(v.as_str())?));
        }
        let tenant_key = match &self.tenant_header {
            Some(h) => Some(MetadataKey::from_bytes(h.to_ascii_lowercase().as_bytes())?),
            None => None,
        };
        Ok(Arc::new(Otlp(GrpcExporter {
            client,
            compression: self.compression,
            compression_params: self.compression_params,
            headers,
            tenant_key,
            default_tenant: self.default_tenant.clone(),
            age_limit: AgeLimit::new(
                self.sample_age_limit.map(|d| d.get()),
                &ctx.id.to_string(),
                ctx.telemetry,
            ),
        })))
    }

    fn sending(&self) -> SendingSettings {
        sending(&self.sending_queue, &self.retry_on_failure, self.max_age)
    }
}

/// The OTLP metrics service's one method.
const EXPORT: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

struct GrpcExporter {
    client: Grpc<Precompressed>,
    compression: Compression,
    compression_params: CompressionParams,
    headers: Vec<(
        MetadataKey<tonic::metadata::Ascii>,
        MetadataValue<tonic::metadata::Ascii>,
    )>,
    /// `tenant_header`, lowercased.
    tenant_key: Option<MetadataKey<tonic::metadata::Ascii>>,
    default_tenant: String,
    /// `sample_age_limit`.
    age_limit: Option<AgeLimit>,
}

impl Transport for GrpcExporter {
    fn age_limit(&self) -> Option<&AgeLimit> {
        self.age_limit.as_ref()
    }

    /// The batch as a compressed request message, encoded from the batch itself: no request
    /// message is built from a copy of it.
    fn request(&self, batch: &Batch) -> EncodedBatch {
        EncodedBatch {
            body: compress(
                self.compression,
                self.compression_params,
                batch.encode_request(),
            )
            .into(),
            tenant: tenant_of(batch, &self.default_tenant).to_string(),
        }
    }

    fn post<'a>(
        &'a self,
        request: &'a EncodedBatch,
    ) -> BoxFuture<'a, Result<Delivered, SendError>> {
        Box::pin(self.export(request))
    }
}

impl GrpcExporter {
    /// One attempt at sending `encoded`.
    async fn export(&self, encoded: &EncodedBatch) -> Result<Delivered, SendError> {
        let mut req = tonic::Request::new(Encoded(encoded.body.clone()));
        for (k, v) in &self.headers {
            req.metadata_mut().insert(k.clone(), v.clone());
        }
        if let Some(key) = &self.tenant_key {
            let tenant = &encoded.tenant;
            let value = MetadataValue::try_from(tenant.as_str()).map_err(|_| {
                SendError::permanent(format!(
                    "tenant {tenant:?} cannot be sent as gRPC metadata {key}"
                ))
            })?;
            req.metadata_mut().insert(key.clone(), value);
        }
        let mut client = self.client.clone();
        let sent = match client.ready().await {
            Ok(()) => {
                let codec = OtlpCodec::<Encoded, ExportMetricsServiceResponse>::default();
                let path = http::uri::PathAndQuery::from_static(EXPORT);
                client.unary(req, path, codec).await
            }
            Err(e) => Err(Status::unavailable(format!("connection not ready: {e}"))),
        };
        match sent {
            Ok(resp) => {
                let ps = resp.into_inner().partial_success.unwrap_or_default();
                Ok(Delivered {
                    rejected_points: ps.rejected_data_points.max(0) as u64,
                    message: ps.error_message,
                    ..Default::default()
                })
            }
            Err(status) => Err(classify(&status)),
        }
    }
}

pub(crate) fn classify(status: &Status) -> SendError {
    let retry_after = status.get_details_retry_info().and_then(|r| r.retry_delay);
    let message = format!(
        "OTLP/gRPC export failed: {:?}: {}",
        status.code(),
        status.message()
    );
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => SendError::retryable(message, retry_after),
        Code::ResourceExhausted if retry_after.is_some() => {
            SendError::retryable(message, retry_after)
        }
        _ => SendError::permanent(message),
    }
}
