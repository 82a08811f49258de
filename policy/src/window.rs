//! The samples of one source key, as its replays read them: a [`Point`]
//! and a traffic [`Shape`] for every sample in the window, and the full
//! per-partition offsets of only the newest few (those the next sample's
//! rates and lags are measured against). Points and shapes are kept packed
//! ([`crate::packed`]): a window costs about fifty bytes per sample however
//! many partitions its key has, and is unpacked, per thread, to be read.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::packed::{Packed, Unpacked};
use crate::point::Point;
use crate::sample::Sample;
use crate::signals::SHORT_RATE_WINDOW_S;
use crate::traffic::{NOISE_WINDOW_S, Shape};

/// The samples of one source key, oldest first, and when this process began
/// keeping them. Samples older than `keep_seconds` before the newest drop out.
#[derive(Debug)]
pub struct SampleWindow {
    id: u64,
    /// Each sample's point and traffic shape (computed once as it joins),
    /// packed.
    packed: Packed,
    /// The newest shapes, from the newest one at least the noise window
    /// old: all that the next sample's shape is computed from.
    shapes: Vec<Shape>,
    /// The newest samples in full: from the start of the newest one's
    /// short rate window.
    recent: Vec<Arc<Sample>>,
    started_at: Option<f64>,
    keep_seconds: f64,
}

thread_local! {
    /// The window this thread read last, unpacked: reading it again after
    /// samples joined unpacks only those.
    static UNPACKED: RefCell<(u64, Unpacked)> = RefCell::new((0, Unpacked::default()));
}

/// Names each window (a copy is another window), for [`UNPACKED`].
fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Clone for SampleWindow {
    fn clone(&self) -> Self {
        Self {
            id: next_id(),
            packed: self.packed.clone(),
            shapes: self.shapes.clone(),
            recent: self.recent.clone(),
            started_at: self.started_at,
            keep_seconds: self.keep_seconds,
        }
    }
}

impl SampleWindow {
    pub fn new(keep_seconds: f64) -> Self {
        Self {
            id: next_id(),
            packed: Packed::default(),
            shapes: Vec::new(),
            recent: Vec::new(),
            started_at: None,
            keep_seconds,
        }
    }

    /// Adds the newest sample and forgets what fell out of the window.
    pub fn push(&mut self, sample: Arc<Sample>) {
        let t = sample.t;
        self.started_at.get_or_insert(t);
        let previous = self.recent.last().map(|s| &**s);
        // The short rate window starts at the newest sample at least its
        // length old, or else at the previous one; nothing before that start
        // is read again, by this sample or a later one.
        let start = self
            .recent
            .iter()
            .rposition(|s| t - s.t >= SHORT_RATE_WINDOW_S);
        let base = start.map(|b| &*self.recent[b]).or(previous);
        let point = Point::of(&sample, previous, base);
        let shape = Shape::next(&self.shapes, previous, &sample);
        self.packed.push(&point, &shape);
        self.shapes.push(shape);
        self.recent.push(sample);
        let oldest = t - self.keep_seconds;
        self.packed.drop_oldest(self.packed.count_before(oldest));
        let unread = self
            .shapes
            .iter()
            .rposition(|s| t - s.t >= NOISE_WINDOW_S)
            .unwrap_or(0)
            .max(self.shapes.iter().take_while(|s| s.t < oldest).count());
        self.shapes.drain(..unread);
        let unused = start
            .unwrap_or(0)
            .max(self.recent.iter().take_while(|s| s.t < oldest).count());
        self.recent.drain(..unused);
    }

    /// Forgets everything, as a scaler replica that has just started.
    pub fn clear(&mut self) {
        self.id = next_id();
        self.packed = Packed::default();
        self.shapes.clear();
        self.recent.clear();
        self.started_at = None;
    }

    /// `read` of what the window keeps of each sample, oldest first: the
    /// points and their traffic shapes, unpacked for it.
    pub(crate) fn read<R>(&self, read: impl FnOnce(&[Point], &[Shape]) -> R) -> R {
        UNPACKED.with(|cell| match cell.try_borrow_mut() {
            Ok(mut unpacked) => {
                let (id, unpacked) = &mut *unpacked;
                if *id != self.id {
                    *id = self.id;
                    *unpacked = Unpacked::default();
                }
                self.packed.unpack(unpacked);
                read(&unpacked.points, &unpacked.shapes)
            }
            // Read inside another read on this thread.
            Err(_) => {
                let mut unpacked = Unpacked::default();
                self.packed.unpack(&mut unpacked);
                read(&unpacked.points, &unpacked.shapes)
            }
        })
    }

    /// What the window keeps of each sample, oldest first (a copy).
    pub fn points(&self) -> Vec<Point> {
        self.read(|points, _| points.to_vec())
    }

    /// How many samples the window keeps.
    pub fn len(&self) -> usize {
        self.packed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// History kept, seconds before the newest sample.
    pub fn keep_seconds(&self) -> f64 {
        self.keep_seconds
    }

    /// Time of this process's first sample of the key.
    pub fn started_at(&self) -> Option<f64> {
        self.started_at
    }

    /// The newest sample, in full.
    pub fn newest(&self) -> Option<&Arc<Sample>> {
        self.recent.last()
    }
}

/// The points and shapes of `samples` (oldest first) as a window that kept
/// them all would hold them.
#[cfg(test)]
pub(crate) fn points(samples: &[Arc<Sample>]) -> (Vec<Point>, Vec<Shape>) {
    let mut window = SampleWindow::new(f64::INFINITY);
    for sample in samples {
        window.push(sample.clone());
    }
    window.read(|points, shapes| (points.to_vec(), shapes.to_vec()))
}
