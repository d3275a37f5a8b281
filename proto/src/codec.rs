//! The codec of every generated server and client: prost's encoding, with smaller buffers.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, DecodeBuf};
use tonic::{Code, Status};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// The bytes a call's encode and decode buffers start with; each grows when a message needs more.
///
/// tonic's own codec starts them at 8 KiB, allocated when the call starts: an open response
/// stream kept its 8 KiB encode buffer for as long as it lasted, whatever it sent (an idle
/// Watch stream sends a progress event of a few dozen bytes). Most of the platform's messages
/// are under 1 KiB; an answer of a few KiB grows the buffer once or twice.
const CODEC_BUFFER_BYTES: usize = 1024;

/// A response stream's messages are framed into one write until their bytes reach this
/// (tonic's default): a settled Ask's events go out together.
const YIELD_THRESHOLD: usize = 32 * 1024;

fn buffers() -> BufferSettings {
    BufferSettings::new(CODEC_BUFFER_BYTES, YIELD_THRESHOLD)
}

/// `application/grpc+proto` through prost, as `tonic_prost::ProstCodec`, with buffers of
/// [`CODEC_BUFFER_BYTES`]. The generated code names it (proto/build.rs, `codec_path`).
#[derive(Debug, Clone)]
pub struct Codec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Codec { _types: PhantomData }
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = Decoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(buffers())
    }

    fn decoder(&mut self) -> Self::Decoder {
        let name = std::any::type_name::<U>();
        Decoder { inner: ProstDecoder::new(buffers()), request: name.ends_with("Request").then_some(name) }
    }
}

/// prost's decoder, except that a request that is not a valid message of its method (bytes
/// that are not UTF-8 in a string, a cut or garbled message) is the caller's error,
/// INVALID_ARGUMENT, not INTERNAL as prost's decoder has it: INTERNAL is counted as the
/// server's own failure. A server decodes requests (every request message is named
/// `<Method>Request`, which `buf lint` holds to); a client decodes responses, and a response
/// it cannot decode stays INTERNAL.
#[derive(Debug)]
pub struct Decoder<U> {
    inner: ProstDecoder<U>,
    /// The request type's path, when `U` is a request.
    request: Option<&'static str>,
}

impl<U: prost::Message + Default> tonic::codec::Decoder for Decoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.inner.decode(src).map_err(|status| match self.request {
            Some(name) if status.code() == Code::Internal => {
                let name = name.rsplit("::").next().unwrap_or(name);
                Status::invalid_argument(format!("the request is not a valid {name}: {}", status.message()))
            }
            _ => status,
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}

#[cfg(test)]
mod tests {
    use tonic::codec::{Codec as _, Decoder as _, Encoder as _};

    use super::*;

    #[test]
    fn its_buffers_start_small_and_yield_as_tonic_does() {
        let mut codec = Codec::<crate::v1::AskResponse, crate::v1::AskRequest>::default();
        for settings in [codec.encoder().buffer_settings(), codec.decoder().buffer_settings()] {
            assert_eq!(format!("{settings:?}"), format!("{:?}", BufferSettings::new(1024, 32 * 1024)));
        }
        assert_ne!(format!("{:?}", BufferSettings::default()), format!("{:?}", buffers()), "tonic's default is larger");
    }

    #[test]
    fn a_server_decodes_requests_and_a_client_responses() {
        let server = Codec::<crate::v1::AskResponse, crate::v1::AskRequest>::default().decoder();
        assert_eq!(server.request, Some("aap_proto::v1::AskRequest"));
        let client = Codec::<crate::v1::AskRequest, crate::v1::AskResponse>::default().decoder();
        assert_eq!(client.request, None, "a response it cannot decode stays INTERNAL");
    }
}
