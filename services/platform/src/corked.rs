//! A connection whose writes of one turn go out together: the gRPC server's sockets are wrapped
//! in [`Corked`], so that a response's HEADERS, DATA and trailers leave in one system call and
//! one TCP segment instead of two.
//!
//! Why: h2 keeps a DATA frame of more than 256 bytes out of its write buffer (it writes the
//! payload from where it is, with `writev`) and flushes the socket before it buffers the next
//! frame. A streamed gRPC response whose messages exceed 256 bytes, which is every answer, so
//! went out as two writes: the headers and data, then the trailers (`grpc-status`) alone, a
//! second segment the client must wake up for. Measured on the exact hit, which sends one of
//! each (docs/performance.md).
//!
//! How: writes are copied into a buffer (up to [`CORK_LIMIT`]; past it the buffer is written
//! first, and a larger write goes straight through). A flush that follows a write of a DATA
//! frame from where it is (a vectored write of more than one slice: the frame's head, then its
//! payload) is held back: h2 flushes again in the same turn of the connection's task, once it
//! has taken that frame back and buffered what comes next (h2 0.4's `Streams::poll_complete`
//! loops until a flush wrote no such frame), and that flush writes both. Every other flush
//! writes at once, so nothing waits for a turn that may not come; shutting down writes what is
//! held. The `corked` integration test holds h2 to this: a response left open after one large
//! message must reach its client.
//!
//! Only plaintext connections are wrapped: under TLS a multi-slice write is several TLS records,
//! not h2's DATA frame, and no second flush is owed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most bytes held back; a write that would go past it is preceded by writing the buffer.
pub const CORK_LIMIT: usize = 64 << 10;

/// An I/O object whose writes of one task turn leave together (module docs).
#[derive(Debug)]
pub struct Corked<T> {
    io: T,
    buf: Vec<u8>,
    /// What of `buf` was written already.
    written: usize,
    /// A flush was held back: the next one writes.
    held: bool,
    /// A write of more than one slice (a DATA frame written from where it is) since the last
    /// flush: h2 flushes again in this turn.
    chained: bool,
}

impl<T> Corked<T> {
    pub fn new(io: T) -> Corked<T> {
        Corked { io, buf: Vec::new(), written: 0, held: false, chained: false }
    }
}

impl<T: AsyncWrite + Unpin> Corked<T> {
    /// Writes out the buffer; ready when all of it is written.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Makes room for `len` more bytes: writes the buffer out first if they would not fit.
    /// Ready(true) when they are to be buffered, Ready(false) when they should go straight
    /// through (larger than the limit on their own, with the buffer written).
    fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<bool>> {
        if self.buf.len() + len > CORK_LIMIT {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(len <= CORK_LIMIT))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Corked<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Corked<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if !ready!(self.poll_room(cx, data.len()))? {
            return Pin::new(&mut self.io).poll_write(cx, data);
        }
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        slices: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len: usize = slices.iter().map(|s| s.len()).sum();
        if !ready!(self.poll_room(cx, len))? {
            return Pin::new(&mut self.io).poll_write_vectored(cx, slices);
        }
        if slices.iter().filter(|s| !s.is_empty()).count() > 1 {
            self.chained = true;
        }
        for slice in slices {
            self.buf.extend_from_slice(slice);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.buf.len() > self.written && self.chained && !self.held {
            // h2 flushes again in this turn (module docs): what it buffers until then leaves
            // with these bytes.
            self.held = true;
            return Poll::Ready(Ok(()));
        }
        self.chained = false;
        ready!(self.poll_drain(cx))?;
        self.held = false;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected for Corked<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    /// An inner socket that records each write it is given, and can refuse writes for a while.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        blocked: bool,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
            if self.blocked {
                return Poll::Pending;
            }
            self.writes.push(data.to_vec());
            Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn write(corked: &mut Corked<Recorder>, cx: &mut Context<'_>, data: &[u8]) {
        assert!(matches!(Pin::new(corked).poll_write(cx, data), Poll::Ready(Ok(n)) if n == data.len()));
    }

    /// What h2 writes for a DATA frame it did not copy: the frame's head, then its payload.
    fn write_frame(corked: &mut Corked<Recorder>, cx: &mut Context<'_>, head: &[u8], payload: &[u8]) {
        let slices = [io::IoSlice::new(head), io::IoSlice::new(payload)];
        let written = Pin::new(corked).poll_write_vectored(cx, &slices);
        assert!(matches!(written, Poll::Ready(Ok(n)) if n == head.len() + payload.len()));
    }

    fn flush(corked: &mut Corked<Recorder>, cx: &mut Context<'_>) {
        assert!(matches!(Pin::new(corked).poll_flush(cx), Poll::Ready(Ok(()))));
    }

    #[test]
    fn the_flush_after_a_data_frame_waits_for_the_next_one_of_the_turn() {
        let woken = Arc::new(CountingWaker::default());
        let waker = woken.clone().into();
        let mut cx = Context::from_waker(&waker);
        let mut corked = Corked::new(Recorder::default());
        write_frame(&mut corked, &mut cx, b"headers+head:", b"payload");
        flush(&mut corked, &mut cx);
        assert!(corked.io.writes.is_empty(), "held for h2's second flush of the turn");
        write(&mut corked, &mut cx, b"trailers");
        flush(&mut corked, &mut cx);
        assert_eq!(corked.io.writes, vec![b"headers+head:payloadtrailers".to_vec()]);
        // Nothing left: a flush now writes nothing.
        flush(&mut corked, &mut cx);
        assert_eq!(corked.io.writes.len(), 1);
        assert_eq!(woken.0.load(Ordering::SeqCst), 0, "no turn is asked for");
    }

    #[test]
    fn a_second_data_frame_in_the_turn_is_written_with_the_first() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut corked = Corked::new(Recorder::default());
        write_frame(&mut corked, &mut cx, b"h1:", b"one");
        flush(&mut corked, &mut cx);
        write_frame(&mut corked, &mut cx, b"h2:", b"two");
        flush(&mut corked, &mut cx);
        assert_eq!(corked.io.writes, vec![b"h1:oneh2:two".to_vec()]);
        // The next frame starts a new pair.
        write_frame(&mut corked, &mut cx, b"h3:", b"three");
        flush(&mut corked, &mut cx);
        assert_eq!(corked.io.writes.len(), 1);
        flush(&mut corked, &mut cx);
        assert_eq!(corked.io.writes, vec![b"h1:oneh2:two".to_vec(), b"h3:three".to_vec()]);
    }

    #[test]
    fn a_flush_after_copied_frames_only_writes_at_once() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut corked = Corked::new(Recorder::default());
        write(&mut corked, &mut cx, b"settings+small data");
        flush(&mut corked, &mut cx);
        assert_eq!(corked.io.writes, vec![b"settings+small data".to_vec()]);
    }

    #[test]
    fn shutdown_writes_what_is_held() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut corked = Corked::new(Recorder::default());
        write_frame(&mut corked, &mut cx, b"head:", b"last");
        flush(&mut corked, &mut cx);
        assert!(corked.io.writes.is_empty());
        assert!(matches!(Pin::new(&mut corked).poll_shutdown(&mut cx), Poll::Ready(Ok(()))));
        assert_eq!(corked.io.writes, vec![b"head:last".to_vec()]);
    }

    #[test]
    fn past_the_limit_the_buffer_goes_first_and_a_large_write_goes_straight_through() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut corked = Corked::new(Recorder::default());
        write(&mut corked, &mut cx, b"small");
        let large = vec![7u8; CORK_LIMIT + 1];
        write(&mut corked, &mut cx, &large);
        assert_eq!(corked.io.writes, vec![b"small".to_vec(), large], "in order, the large one not copied");
        assert!(corked.buf.is_empty());
    }

    #[test]
    fn a_socket_that_is_not_writable_keeps_the_bytes_until_it_is() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut corked = Corked::new(Recorder { blocked: true, ..Default::default() });
        write(&mut corked, &mut cx, b"one");
        assert!(Pin::new(&mut corked).poll_flush(&mut cx).is_pending(), "the write is pending");
        write(&mut corked, &mut cx, b"two");
        corked.io.blocked = false;
        flush(&mut corked, &mut cx);
        assert_eq!(corked.io.writes, vec![b"onetwo".to_vec()]);
    }
}
