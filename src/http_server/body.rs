//! A request body as the handler reads it: decoded from the connection's
//! bytes (Content-Length or chunked) and handed over through a channel, so
//! that nothing is read before the handler asks and nothing is buffered whole.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use tokio::sync::{mpsc, oneshot};

use super::request::Framing;

/// Longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 1024;
/// Most bytes of trailer fields accepted after the last chunk (they are dropped).
const MAX_TRAILERS: usize = 16 * 1024;
/// Most bytes of chunk extensions (ignored) accepted over a whole body.
const MAX_EXTENSIONS: usize = 16 * 1024;

/// Where the decoder is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Bytes left of a Content-Length body.
    Length(u64),
    ChunkSize,
    /// Bytes left of the current chunk.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer fields after the last chunk; bytes of them seen so far.
    Trailers(usize),
    Done,
}

/// One step of decoding.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    /// The buffer holds no more of the body: read from the socket.
    NeedMore,
    Done,
}

/// Takes a body's bytes out of the connection's buffer, leaving what follows
/// it (a pipelined request) in place.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    /// Bytes of chunk extensions seen so far.
    extensions: usize,
}

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
        };
        Decoder { state, extensions: 0 }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The exact length still to come, when the framing says it.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    pub fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Decoded> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::Done),
                State::Length(left) | State::ChunkData(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = left.min(buf.len() as u64);
                    let rest = left - take;
                    self.state = match self.state {
                        State::Length(_) if rest == 0 => State::Done,
                        State::Length(_) => State::Length(rest),
                        _ if rest == 0 => State::ChunkEnd,
                        _ => State::ChunkData(rest),
                    };
                    return Ok(Decoded::Data(buf.split_to(take as usize).freeze()));
                }
                State::ChunkSize => {
                    let Some(&first) = buf.first() else { return Ok(Decoded::NeedMore) };
                    if !first.is_ascii_hexdigit() {
                        return Err(invalid("invalid chunk size"));
                    }
                    match httparse::parse_chunk_size(buf) {
                        Ok(httparse::Status::Complete((used, size))) => {
                            // httparse lets an extension run over a bare LF up to the
                            // next CRLF; a peer ending lines at LF would frame the body
                            // differently, so such a line is refused.
                            let line = &buf[..used - 2];
                            if line.contains(&b'\n') {
                                return Err(invalid("line feed inside a chunk size line"));
                            }
                            if let Some(start) = line.iter().position(|&b| b == b';') {
                                self.extensions += line.len() - start;
                                if self.extensions > MAX_EXTENSIONS {
                                    return Err(invalid("chunk extensions too large"));
                                }
                            }
                            buf.advance(used);
                            self.state = if size == 0 { State::Trailers(0) } else { State::ChunkData(size) };
                        }
                        Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_LINE => {
                            return Err(invalid("chunk size line too long"));
                        }
                        Ok(httparse::Status::Partial) => return Ok(Decoded::NeedMore),
                        Err(_) => return Err(invalid("invalid chunk size")),
                    }
                }
                State::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(invalid("chunk data longer than its size"));
                    }
                    buf.advance(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers(seen) => match buf.windows(2).position(|w| w == b"\r\n") {
                    Some(0) => {
                        buf.advance(2);
                        self.state = State::Done;
                    }
                    Some(line) => {
                        let seen = seen + line + 2;
                        if seen > MAX_TRAILERS {
                            return Err(invalid("trailers too large"));
                        }
                        buf.advance(line + 2);
                        self.state = State::Trailers(seen);
                    }
                    None if seen + buf.len() > MAX_TRAILERS => return Err(invalid("trailers too large")),
                    None => return Ok(Decoded::NeedMore),
                },
            }
        }
    }
}

fn invalid(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The body the handler sees: chunks sent by the connection, which reads
/// them from the socket while the handler waits on this channel. An empty
/// chunk (the decoder never yields one) marks the end of a body read whole;
/// a channel closed without it means the connection stopped reading, and is
/// an error rather than a body cut short.
pub struct ChannelBody {
    chunks: mpsc::Receiver<io::Result<Bytes>>,
    remaining: Option<u64>,
    ended: bool,
    /// Told when the handler first reads: the moment to send `100 Continue`.
    first_read: Option<oneshot::Sender<()>>,
}

impl ChannelBody {
    pub fn new(
        chunks: mpsc::Receiver<io::Result<Bytes>>,
        remaining: Option<u64>,
        first_read: Option<oneshot::Sender<()>>,
    ) -> Self {
        ChannelBody { chunks, remaining, ended: false, first_read }
    }
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        // A length body ends with its last byte, without waiting for the
        // connection to close the channel.
        if self.ended || self.remaining == Some(0) {
            return Poll::Ready(None);
        }
        if let Some(first_read) = self.first_read.take() {
            let _ = first_read.send(());
        }
        match ready!(self.chunks.poll_recv(cx)) {
            Some(Ok(chunk)) if chunk.is_empty() => {
                self.ended = true;
                Poll::Ready(None)
            }
            Some(Ok(chunk)) => {
                if let Some(left) = self.remaining.as_mut() {
                    *left = left.saturating_sub(chunk.len() as u64);
                }
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Some(Err(e)) => {
                self.ended = true;
                Poll::Ready(Some(Err(e)))
            }
            None => {
                self.ended = true;
                Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the request body was not read to its end",
                ))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        self.remaining.map(SizeHint::with_exact).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns the body and what is left after it.
    fn decode_all(framing: Framing, input: &[u8], step: usize) -> io::Result<(Vec<u8>, Vec<u8>)> {
        let mut decoder = Decoder::new(framing);
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(data) => body.extend_from_slice(&data),
                Decoded::Done => return Ok((body, buf.to_vec())),
                Decoded::NeedMore => {
                    assert!(fed < input.len(), "the decoder wants more than the input holds");
                    let end = (fed + step).min(input.len());
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
            }
        }
    }

    #[test]
    fn a_length_body_stops_at_its_length() {
        for step in [1, 3, 100] {
            let (body, rest) = decode_all(Framing::Length(5), b"hello GET /", step).unwrap();
            assert_eq!(body, b"hello");
            assert!(b" GET /".starts_with(&rest), "{rest:?}");
        }
    }

    #[test]
    fn chunks_with_extensions_and_trailers_are_decoded_in_any_split() {
        let wire = b"5;name=value\r\nhello\r\nA\r\n, world!!!\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
        for step in [1, 2, 7, 1000] {
            let (body, rest) = decode_all(Framing::Chunked, wire, step).unwrap();
            assert_eq!(body, b"hello, world!!!");
            assert!(b"NEXT".starts_with(&rest), "{rest:?}");
        }
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for wire in [&b"zz\r\n"[..], b"5\r\nhelloXX", b";x\r\n", b"\r\n", b"5;a\nb\r\nhello\r\n0\r\n\r\n"] {
            let err = decode_all(Framing::Chunked, wire, 100).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{wire:?}");
        }
        let long_line = [b"1;".as_slice(), &[b'x'; 2 * MAX_CHUNK_LINE]].concat();
        assert!(decode_all(Framing::Chunked, &long_line, 100).is_err());
        let trailers = [b"0\r\n".as_slice(), &b"X: y\r\n".repeat(MAX_TRAILERS / 4)].concat();
        let extensions = b"1;ext=1234567890\r\nx\r\n".repeat(MAX_EXTENSIONS / 10);
        assert!(decode_all(Framing::Chunked, &extensions, 100).is_err());
        assert!(decode_all(Framing::Chunked, &trailers, 100).is_err());
    }

    #[tokio::test]
    async fn the_channel_body_reports_its_exact_remaining_size() {
        use http_body_util::BodyExt;
        let (tx, rx) = mpsc::channel(2);
        let mut body = ChannelBody::new(rx, Some(4), None);
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(4));
        tx.send(Ok(Bytes::from_static(b"ab"))).await.unwrap();
        tx.send(Ok(Bytes::from_static(b"cd"))).await.unwrap();
        assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "ab");
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(2));
        assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "cd");
        assert!(http_body::Body::is_end_stream(&body));
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_body_is_ended_by_its_marker_and_cut_short_by_a_closed_channel() {
        use http_body_util::BodyExt;
        let (tx, rx) = mpsc::channel(2);
        let mut body = ChannelBody::new(rx, None, None);
        tx.send(Ok(Bytes::from_static(b"ab"))).await.unwrap();
        tx.send(Ok(Bytes::new())).await.unwrap();
        assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "ab");
        assert!(body.frame().await.is_none());
        let (tx, rx) = mpsc::channel(2);
        let mut cut = ChannelBody::new(rx, None, None);
        tx.send(Ok(Bytes::from_static(b"ab"))).await.unwrap();
        drop(tx);
        assert!(cut.frame().await.unwrap().is_ok());
        assert_eq!(cut.frame().await.unwrap().unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
