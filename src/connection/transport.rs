//! What a connection runs over: a plain TCP socket or a TLS session on one. The loop reads
//! and writes at once, so it needs the stream in two halves: a `TcpStream` splits into
//! borrowed halves for free (the hot path stays as it was); a TLS stream, whose halves share
//! one rustls session, through `tokio::io::split` (an uncontended lock per poll).

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::tcp;
use tokio::net::TcpStream;

pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {
    type Read<'a>: AsyncRead + Unpin + Send
    where
        Self: 'a;
    type Write<'a>: AsyncWrite + Unpin + Send
    where
        Self: 'a;
    /// Whether a write may leave bytes inside the stream (TLS records rustls holds until the
    /// socket takes them) that only a flush pushes out.
    const BUFFERED: bool;

    fn halves(&mut self) -> (Self::Read<'_>, Self::Write<'_>);
}

impl Transport for TcpStream {
    type Read<'a> = tcp::ReadHalf<'a>;
    type Write<'a> = tcp::WriteHalf<'a>;
    const BUFFERED: bool = false;

    fn halves(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
        self.split()
    }
}

impl Transport for tokio_rustls::server::TlsStream<TcpStream> {
    type Read<'a> = ReadHalf<&'a mut Self>;
    type Write<'a> = WriteHalf<&'a mut Self>;
    const BUFFERED: bool = true;

    fn halves(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
        tokio::io::split(self)
    }
}
