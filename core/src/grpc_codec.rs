//! The protobuf codec of Sluice's gRPC services and clients. It differs from tonic's default in two
//! ways: a message that does not decode is the client's fault, so it is answered INVALID_ARGUMENT
//! ("malformed protobuf: ...") rather than INTERNAL; and an OTLP metrics request is decoded by
//! [`crate::otlp_protobuf`], as the OTLP/HTTP receiver decodes it.

use crate::otlp_protobuf::decode_metrics;
use crate::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use std::any::Any;
use std::marker::PhantomData;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

pub struct OtlpCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for OtlpCodec<T, U> {
    fn default() -> Self {
        OtlpCodec(PhantomData)
    }
}

impl<T, U> Codec for OtlpCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = MessageEncoder<T>;
    type Decoder = MessageDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        MessageEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        MessageDecoder(PhantomData)
    }
}

pub struct MessageEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for MessageEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding a message: {e}")))
    }
}

/// A message sent as the bytes it was already encoded to (by [`crate::batch::Batch::encode_request`],
/// say), so that a client sends a batch without first copying it into a request message. Only for
/// sending: decoding one keeps nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Encoded(pub bytes::Bytes);

impl Message for Encoded {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

pub struct MessageDecoder<U>(PhantomData<U>);

impl<U: Message + Default + 'static> Decoder for MessageDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // Taken out as one contiguous block (without a copy) and decoded from a slice: the
        // fields are then read straight from memory, where through `DecodeBuf` every step of
        // every field goes through its length bookkeeping.
        use prost::bytes::Buf;
        let message = buf.copy_to_bytes(buf.remaining());
        decode_message(&message)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("malformed protobuf: {e}")))
    }
}

/// A message from its bytes: an OTLP metrics request by [`crate::otlp_protobuf`], any other by
/// prost.
fn decode_message<U: Message + Default + 'static>(bytes: &[u8]) -> Result<U, String> {
    let mut metrics: Option<U> = None;
    if let Some(slot) =
        (&mut metrics as &mut dyn Any).downcast_mut::<Option<ExportMetricsServiceRequest>>()
    {
        *slot = Some(decode_metrics(bytes)?);
        return Ok(metrics.expect("the request was just decoded"));
    }
    U::decode(bytes).map_err(|e| e.to_string())
}
