//! The hand-off between the threads that record and the audit writer thread, built so
//! that a group commit costs one wake-up, not one per record.
//!
//! - A record somebody waits on (`append_durable`, `append_blocking`) wakes the writer
//!   only when the writer is asleep and nobody has woken it yet for this group; while it
//!   writes and syncs, records pile up and it takes them all in one go when it is done.
//! - A record nobody waits on (`append`, `append_refusal`) wakes nobody. It is written
//!   with the next group, or by the writer's own timer at most [`LINGER`] after it was
//!   queued when no waited record comes (plus the time the write and sync take).
//! - The writer takes the whole queue by swapping vectors, so neither side allocates per
//!   record once the vectors have grown.
//! - A group's waiters are answered with one cross-thread wake-up: the writer answers one
//!   of them, who hands out the others' answers from its own thread ([`Rest`]).
//!
//! When the last [`Sender`] is dropped the queue is closed: the writer writes what is
//! queued, then stops.

use super::event::Event;
use super::AuditError;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The longest a record nobody waits on stays queued before the writer's timer writes
/// it, when no waited record (whose group commit would take it along) comes first.
pub const LINGER: Duration = Duration::from_millis(50);

/// Where a waiting caller learns its record's sequence number (or why it is not on disk).
pub(crate) type Ack = tokio::sync::oneshot::Sender<Delivery>;

/// A waiting caller's answer, and with the first answer of a group, the rest of them.
pub(crate) struct Delivery {
    pub result: Result<u64, AuditError>,
    pub rest: Rest,
}

/// The answers of a group after the first. They are sent when this is dropped, wherever
/// that is: normally on the first waiter's runtime thread as soon as it wakes, where
/// waking the other waiters of that runtime is a local push and not a system call, so a
/// group costs the writer one cross-thread wake-up instead of one per waiter. If the
/// first waiter is gone, the value comes back to the writer and is dropped there. Nobody
/// is left unanswered either way.
pub(crate) struct Rest(Vec<(Result<u64, AuditError>, Ack)>);

impl Drop for Rest {
    fn drop(&mut self) {
        for (result, ack) in self.0.drain(..) {
            let _ = ack.send(Delivery { result, rest: Rest(Vec::new()) });
        }
    }
}

/// Answers a group's waiters (see [`Rest`]).
pub(crate) fn acknowledge(answers: impl Iterator<Item = (Result<u64, AuditError>, Ack)>) {
    let mut all: Vec<_> = answers.collect();
    if let Some((result, first)) = all.pop() {
        let _ = first.send(Delivery { result, rest: Rest(all) });
    }
}

/// What is queued: the events in order, and for the ones somebody waits on, their index
/// and where to acknowledge them.
#[derive(Default)]
pub(crate) struct Batch {
    pub events: Vec<Event>,
    pub acks: Vec<(usize, Ack)>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn clear(&mut self) {
        self.events.clear();
        self.acks.clear();
    }
}

#[derive(Default)]
struct State {
    queued: Batch,
    /// When the oldest queued record was queued (the writer's timer counts from it).
    since: Option<Instant>,
    /// The writer is waiting on the condition variable.
    asleep: bool,
    /// The writer has been woken for a waited record and has not taken the queue yet.
    woken: bool,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    /// The lock, even if a thread panicked holding it: the state stays consistent, since
    /// every change to it is a push or a swap.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The producers' end. Dropping the last one closes the queue.
pub(crate) struct Sender(Arc<Shared>);

/// The writer's end.
pub(crate) struct Receiver(Arc<Shared>);

pub(crate) fn channel() -> (Sender, Receiver) {
    let shared = Arc::new(Shared { state: Mutex::new(State::default()), wake: Condvar::new() });
    (Sender(shared.clone()), Receiver(shared))
}

impl Sender {
    /// Queues `event`; with `ack`, wakes the writer if it sleeps and nobody woke it yet.
    pub fn send(&self, event: Event, ack: Option<Ack>) -> Result<(), AuditError> {
        let mut s = self.0.lock();
        if s.closed {
            return Err(AuditError::Closed);
        }
        if s.since.is_none() {
            s.since = Some(Instant::now());
        }
        let wake = ack.is_some() && s.asleep && !s.woken;
        if let Some(ack) = ack {
            let i = s.queued.events.len();
            s.queued.acks.push((i, ack));
        }
        s.queued.events.push(event);
        if wake {
            s.woken = true;
        }
        drop(s);
        if wake {
            self.0.wake.notify_one();
        }
        Ok(())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.wake.notify_one();
    }
}

impl Drop for Receiver {
    /// The writer is gone (stopped, or its thread panicked): nothing queued will be
    /// written, so its waiters learn it now ([`AuditError::Closed`], `audit.on_failure`
    /// applies) and later records are refused, instead of waiting for ever.
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.closed = true;
        s.queued.acks.clear();
    }
}

/// What [`Receiver::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Records to write (swapped into the caller's batch).
    Records,
    /// Nothing to write before `until`.
    Timeout,
    /// Closed, and nothing is left.
    Closed,
}

impl Receiver {
    /// Waits until there is a group to write and swaps it into `batch` (which must be
    /// empty): at once when a waited record is queued or the queue is closed, at
    /// [`LINGER`] after the oldest record otherwise. Returns [`Taken::Timeout`] at `until`
    /// with nothing to write, so the writer can checkpoint.
    pub fn take(&self, batch: &mut Batch, until: Instant) -> Taken {
        let mut s = self.0.lock();
        loop {
            let now = Instant::now();
            let due = match s.since {
                _ if !s.queued.acks.is_empty() || (s.closed && s.queued.len() > 0) => true,
                Some(since) => now >= since + LINGER,
                None => false,
            };
            if due {
                std::mem::swap(&mut s.queued, batch);
                s.since = None;
                s.woken = false;
                return Taken::Records;
            }
            if s.closed {
                return Taken::Closed;
            }
            // Never asleep longer than LINGER: a record nobody waits on does not wake the
            // writer, so its timer must come round to it.
            let wake_at = s.since.map_or(now + LINGER, |since| since + LINGER).min(until);
            if now >= wake_at {
                return Taken::Timeout;
            }
            s.asleep = true;
            s = self.0.wake.wait_timeout(s, wake_at - now).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
            s.asleep = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Kind;

    fn ev() -> Event {
        Event::new(Kind::AccessCompleted)
    }

    #[test]
    fn an_unwaited_record_is_taken_at_the_linger_bound_not_before() {
        let (tx, rx) = channel();
        let start = Instant::now();
        tx.send(ev(), None).unwrap();
        let mut batch = Batch::default();
        // Asked to wait longer, the writer still takes it at LINGER.
        assert_eq!(rx.take(&mut batch, start + Duration::from_secs(5)), Taken::Records);
        let took = start.elapsed();
        assert!(took >= LINGER && took < LINGER * 4, "taken after {took:?}");
        assert_eq!((batch.events.len(), batch.acks.len()), (1, 0));
    }

    #[test]
    fn a_writer_that_is_gone_answers_its_waiters_and_refuses_new_records() {
        let (tx, rx) = channel();
        let (ack, mut done) = tokio::sync::oneshot::channel();
        tx.send(ev(), Some(ack)).unwrap();
        // The writer thread ends without taking the queue (a panic unwinds through it).
        let writer = std::thread::spawn(move || {
            let _rx = rx;
            panic!("the writer failed");
        });
        assert!(writer.join().is_err());
        assert!(matches!(done.try_recv(), Err(tokio::sync::oneshot::error::TryRecvError::Closed)));
        assert!(matches!(tx.send(ev(), None), Err(AuditError::Closed)));
    }

    #[test]
    fn an_unwaited_record_queued_while_the_writer_sleeps_is_taken_by_its_timer() {
        let (tx, rx) = channel();
        let writer = std::thread::spawn(move || {
            let mut batch = Batch::default();
            let taken = rx.take(&mut batch, Instant::now() + Duration::from_secs(30));
            (taken, Instant::now(), batch.len())
        });
        std::thread::sleep(LINGER / 2);
        let sent = Instant::now();
        tx.send(ev(), None).unwrap();
        let (taken, at, n) = writer.join().unwrap();
        assert_eq!((taken, n), (Taken::Records, 1));
        let after = at - sent;
        assert!(after >= LINGER && after < LINGER * 10, "taken {after:?} after it was queued");
    }

    #[test]
    fn a_waited_record_wakes_the_writer_and_takes_the_unwaited_ones_along() {
        let (tx, rx) = channel();
        let writer = std::thread::spawn(move || {
            let mut batch = Batch::default();
            let start = Instant::now();
            let taken = rx.take(&mut batch, start + Duration::from_secs(5));
            (taken, start.elapsed(), batch.events.len(), batch.acks.iter().map(|a| a.0).collect::<Vec<_>>())
        });
        std::thread::sleep(Duration::from_millis(5));
        tx.send(ev(), None).unwrap();
        let (ack, _done) = tokio::sync::oneshot::channel();
        tx.send(ev(), Some(ack)).unwrap();
        let (taken, took, n, acked) = writer.join().unwrap();
        assert_eq!((taken, n, acked), (Taken::Records, 2, vec![1]));
        assert!(took < LINGER, "a waited record waited for the timer: {took:?}");
    }

    #[test]
    fn a_group_is_answered_through_one_waiter_and_nobody_is_left_out() {
        let mut receivers = Vec::new();
        let mut answers = Vec::new();
        for seq in 1..=3u64 {
            let (ack, done) = tokio::sync::oneshot::channel();
            answers.push((Ok(seq), ack));
            receivers.push(done);
        }
        acknowledge(answers.into_iter());
        // One waiter holds the group; the others hear nothing until it hands them out.
        let mut first = receivers.pop().unwrap().blocking_recv().unwrap();
        assert_eq!(first.result.as_ref().ok(), Some(&3));
        assert!(receivers[0].try_recv().is_err());
        drop(std::mem::replace(&mut first.rest, Rest(Vec::new())));
        let got: Vec<_> = receivers.into_iter().map(|r| r.blocking_recv().unwrap().result.unwrap()).collect();
        assert_eq!(got, vec![1, 2]);
    }

    #[test]
    fn a_waiter_gone_before_its_answer_does_not_strand_the_others() {
        let (gone, dropped) = tokio::sync::oneshot::channel();
        let (ack, done) = tokio::sync::oneshot::channel();
        drop(dropped);
        acknowledge(vec![(Ok(1), ack), (Err(AuditError::Closed), gone)].into_iter());
        assert_eq!(done.blocking_recv().unwrap().result.unwrap(), 1);
    }

    #[test]
    fn closing_hands_over_what_is_queued_then_closes() {
        let (tx, rx) = channel();
        tx.send(ev(), None).unwrap();
        drop(tx);
        let mut batch = Batch::default();
        let far = Instant::now() + Duration::from_secs(5);
        assert_eq!(rx.take(&mut batch, far), Taken::Records);
        assert_eq!(batch.len(), 1);
        batch.clear();
        assert_eq!(rx.take(&mut batch, far), Taken::Closed);
    }

    #[test]
    fn an_idle_writer_times_out_for_its_checkpoints() {
        let (_tx, rx) = channel();
        let mut batch = Batch::default();
        let until = Instant::now() + Duration::from_millis(20);
        assert_eq!(rx.take(&mut batch, until), Taken::Timeout);
        assert!(Instant::now() >= until);
    }
}
