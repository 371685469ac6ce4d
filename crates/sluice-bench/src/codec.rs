//! tonic codecs that skip prost: the load generator writes pre-encoded
//! templates straight into the gRPC frame, and the sink counts items with a
//! tag walk instead of decoding.

use std::sync::Arc;

use bytes::Buf;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

use crate::template::Template;
use crate::wire::{count_items, Signal};

/// One request to send: a template and the sequence number for its ids.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub template: Arc<Template>,
    pub seq: u64,
}

/// Client codec: encodes [`Outgoing`], ignores the response body.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendCodec;

#[derive(Debug, Clone, Copy, Default)]
pub struct SendEncoder;

#[derive(Debug, Clone, Copy, Default)]
pub struct IgnoreDecoder;

impl Encoder for SendEncoder {
    type Item = Outgoing;
    type Error = Status;

    fn encode(&mut self, item: Outgoing, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.template.len());
        item.template.write(item.seq, dst);
        Ok(())
    }
}

impl Decoder for IgnoreDecoder {
    type Item = ();
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, Status> {
        let n = src.remaining();
        src.advance(n);
        Ok(Some(()))
    }
}

impl Codec for SendCodec {
    type Encode = Outgoing;
    type Decode = ();
    type Encoder = SendEncoder;
    type Decoder = IgnoreDecoder;

    fn encoder(&mut self) -> SendEncoder {
        SendEncoder
    }

    fn decoder(&mut self) -> IgnoreDecoder {
        IgnoreDecoder
    }
}

/// What the sink learned from one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub items: u64,
    pub bytes: u64,
}

/// Server codec: decodes a request of `signal` into its item count, encodes
/// the empty (all-success) export response.
#[derive(Debug, Clone, Copy)]
pub struct CountCodec {
    pub signal: Signal,
}

#[derive(Debug, Clone, Copy)]
pub struct CountDecoder {
    signal: Signal,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyEncoder;

impl Decoder for CountDecoder {
    type Item = Counted;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Counted>, Status> {
        let n = src.remaining();
        let items = if src.chunk().len() >= n {
            let items = count_items(self.signal, &src.chunk()[..n]);
            src.advance(n);
            items
        } else {
            count_items(self.signal, &src.copy_to_bytes(n))
        };
        let items = items.map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Some(Counted {
            items,
            bytes: n as u64,
        }))
    }
}

impl Encoder for EmptyEncoder {
    type Item = ();
    type Error = Status;

    fn encode(&mut self, _item: (), _dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        // An export response with no fields: zero bytes.
        Ok(())
    }
}

impl Codec for CountCodec {
    type Encode = ();
    type Decode = Counted;
    type Encoder = EmptyEncoder;
    type Decoder = CountDecoder;

    fn encoder(&mut self) -> EmptyEncoder {
        EmptyEncoder
    }

    fn decoder(&mut self) -> CountDecoder {
        CountDecoder {
            signal: self.signal,
        }
    }
}
