//! Deadlines for request bodies: a body must arrive whole within a total
//! time, and keep up a minimum rate after a short grace. Without them a
//! client that declares a large body and sends a byte a second holds its
//! connection (and a handler) for as long as it likes.
//!
//! The body is wrapped in [`DeadlineBody`]; past a deadline its next read
//! fails and a shared flag is set, from which the stack (`stack.rs`)
//! answers 408, whatever the handler made of the failed read. The timer
//! exists only for requests with a body, and is reset once per chunk.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::HttpBody;
use axum::{BoxError, body::Bytes};
use hyper::body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

/// The deadlines of a request body.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BodyDeadlines {
    total: Duration,
    min_bytes_per_second: u64,
    grace: Duration,
}

impl BodyDeadlines {
    /// Default total time for a whole body (`BODY_TIMEOUT_SECS`): 30 s, the
    /// time a request may take at all.
    pub const DEFAULT_TOTAL: Duration = Duration::from_secs(30);
    /// Default minimum rate (`BODY_MIN_RATE`): 1,024 bytes per second, so a
    /// 1 MB body may take the whole 30 s only on a link faster than ~35 KB/s,
    /// and a byte a second is cut after the grace.
    pub const DEFAULT_MIN_BYTES_PER_SECOND: u64 = 1024;
    /// Time before the minimum rate counts: 2 s, for a slow start (TCP slow
    /// start, a handler that reads the body only after a database lookup).
    pub const RATE_GRACE: Duration = Duration::from_secs(2);

    /// A body must arrive whole within `total`, and after the first
    /// [`RATE_GRACE`](Self::RATE_GRACE) average at least
    /// `min_bytes_per_second` (0: no minimum).
    pub fn new(total: Duration, min_bytes_per_second: u64) -> Self {
        Self {
            total,
            min_bytes_per_second,
            grace: Self::RATE_GRACE,
        }
    }

    /// The total time.
    pub fn total(&self) -> Duration {
        self.total
    }

    /// The minimum rate in bytes per second.
    pub fn min_bytes_per_second(&self) -> u64 {
        self.min_bytes_per_second
    }

    /// When a body that started at `started` and has delivered `received`
    /// bytes so far fails, unless more arrives.
    fn deadline(&self, started: Instant, received: u64) -> Instant {
        let total = started + self.total;
        if self.min_bytes_per_second == 0 {
            return total;
        }
        let earned = Duration::from_nanos(
            received.saturating_mul(1_000_000_000) / self.min_bytes_per_second,
        );
        total.min(started + self.grace + earned)
    }
}

impl Default for BodyDeadlines {
    fn default() -> Self {
        Self::new(Self::DEFAULT_TOTAL, Self::DEFAULT_MIN_BYTES_PER_SECOND)
    }
}

/// The error of a body past its deadlines.
#[derive(Debug, thiserror::Error)]
#[error("request body timed out")]
pub(crate) struct BodyTimedOut;

pin_project! {
    /// A request body with [`BodyDeadlines`].
    pub(crate) struct DeadlineBody<B> {
        #[pin]
        inner: B,
        #[pin]
        timer: Sleep,
        deadlines: BodyDeadlines,
        started: Instant,
        received: u64,
        expired: Arc<AtomicBool>,
    }
}

impl<B> DeadlineBody<B> {
    /// `inner` with `deadlines` from now; `expired` is set when one passes.
    pub(crate) fn new(inner: B, deadlines: BodyDeadlines, expired: Arc<AtomicBool>) -> Self {
        let started = Instant::now();
        Self {
            inner,
            timer: tokio::time::sleep_until(deadlines.deadline(started, 0)),
            deadlines,
            started,
            received: 0,
            expired,
        }
    }
}

impl<B> HttpBody for DeadlineBody<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        if this.expired.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(BodyTimedOut.into())));
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.received += data.len() as u64;
                    let deadline = this.deadlines.deadline(*this.started, *this.received);
                    this.timer.as_mut().reset(deadline);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(other) => return Poll::Ready(other.map(|r| r.map_err(Into::into))),
            Poll::Pending => {}
        }
        match this.timer.poll(cx) {
            Poll::Ready(()) => {
                this.expired.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(BodyTimedOut.into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    /// A body fed by the test, a chunk at a time.
    struct Fed(mpsc::Receiver<Bytes>);

    impl HttpBody for Fed {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
        }
    }

    fn fed_body(
        deadlines: BodyDeadlines,
    ) -> (mpsc::Sender<Bytes>, DeadlineBody<Fed>, Arc<AtomicBool>) {
        let (tx, rx) = mpsc::channel(16);
        let expired = Arc::new(AtomicBool::new(false));
        (
            tx,
            DeadlineBody::new(Fed(rx), deadlines, Arc::clone(&expired)),
            expired,
        )
    }

    /// Reads the body to its end or failure; returns the bytes and whether it failed.
    async fn read(body: DeadlineBody<Fed>) -> (usize, bool, Instant) {
        let mut body = std::pin::pin!(body);
        let mut bytes = 0;
        loop {
            match body.frame().await {
                None => return (bytes, false, Instant::now()),
                Some(Ok(frame)) => bytes += frame.into_data().map_or(0, |d| d.len()),
                Some(Err(e)) => {
                    assert!(e.is::<BodyTimedOut>());
                    return (bytes, true, Instant::now());
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_byte_a_second_fails_after_the_grace() {
        let started = Instant::now();
        let (tx, body, expired) = fed_body(BodyDeadlines::new(Duration::from_secs(30), 1024));
        let feeder = tokio::spawn(async move {
            while tx.send(Bytes::from_static(b"x")).await.is_ok() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let (bytes, failed, at) = read(body).await;
        assert!(failed);
        assert!(expired.load(Ordering::Relaxed));
        // 2 s of grace plus what the bytes earned (a few ms).
        let took = at - started;
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_millis(2100),
            "{took:?}"
        );
        assert!(bytes <= 3, "{bytes}");
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_the_rate_arrives_and_the_total_time_still_holds() {
        // 1 KB every 500 ms is 2 KB/s, above the 1 KB/s minimum: 10 KB arrive.
        let (tx, body, _) = fed_body(BodyDeadlines::new(Duration::from_secs(30), 1024));
        tokio::spawn(async move {
            for _ in 0..10 {
                tx.send(Bytes::from(vec![0u8; 1024])).await.unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        assert_eq!(read(body).await.0, 10 * 1024);

        // Fast enough, but not done within the total time.
        let started = Instant::now();
        let (tx, body, expired) = fed_body(BodyDeadlines::new(Duration::from_secs(3), 1024));
        let feeder = tokio::spawn(async move {
            loop {
                if tx.send(Bytes::from(vec![0u8; 4096])).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let (_, failed, at) = read(body).await;
        assert!(failed && expired.load(Ordering::Relaxed));
        assert_eq!(at - started, Duration::from_secs(3));
        feeder.abort();
    }

    #[test]
    fn the_deadline_is_the_earlier_of_the_total_and_the_rate() {
        let deadlines = BodyDeadlines::new(Duration::from_secs(30), 1000);
        let t0 = Instant::now();
        assert_eq!(deadlines.deadline(t0, 0), t0 + Duration::from_secs(2));
        assert_eq!(deadlines.deadline(t0, 5000), t0 + Duration::from_secs(7));
        assert_eq!(
            deadlines.deadline(t0, 1_000_000),
            t0 + Duration::from_secs(30)
        );
        let no_rate = BodyDeadlines::new(Duration::from_secs(30), 0);
        assert_eq!(no_rate.deadline(t0, 0), t0 + Duration::from_secs(30));
    }
}
