//! The samples of one source key, as its replays read them: a [`Point`]
//! and a traffic [`Shape`] for every sample in the window, and the full
//! per-partition offsets of only the newest few (those the next sample's
//! rates and lags are measured against). A window of a 24-partition key
//! costs a few hundred bytes per sample instead of a few kilobytes.

use std::sync::Arc;

use crate::point::Point;
use crate::sample::Sample;
use crate::signals::SHORT_RATE_WINDOW_S;
use crate::traffic::Shape;

/// The samples of one source key, oldest first, and when this process began
/// keeping them. Samples older than `keep_seconds` before the newest drop out.
#[derive(Debug, Clone)]
pub struct SampleWindow {
    points: Vec<Point>,
    /// Each sample's traffic shape, computed once as it joins.
    shapes: Vec<Shape>,
    /// The newest samples in full: from the start of the newest one's
    /// short rate window.
    recent: Vec<Arc<Sample>>,
    started_at: Option<f64>,
    keep_seconds: f64,
}

impl SampleWindow {
    pub fn new(keep_seconds: f64) -> Self {
        Self {
            points: Vec::new(),
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
        self.points.push(Point::of(&sample, previous, base));
        self.shapes
            .push(Shape::next(&self.shapes, previous, &sample));
        self.recent.push(sample);
        let oldest = t - self.keep_seconds;
        let expired = self.points.iter().take_while(|p| p.t < oldest).count();
        self.points.drain(..expired);
        self.shapes.drain(..expired);
        let unused = start
            .unwrap_or(0)
            .max(self.recent.iter().take_while(|s| s.t < oldest).count());
        self.recent.drain(..unused);
        if expired > 0 {
            compact(&mut self.points);
            compact(&mut self.shapes);
        }
    }

    /// Forgets everything, as a scaler replica that has just started.
    pub fn clear(&mut self) {
        self.points.clear();
        self.shapes.clear();
        self.recent.clear();
        self.started_at = None;
    }

    /// What the window keeps of each sample, oldest first.
    pub fn points(&self) -> &[Point] {
        &self.points
    }

    pub(crate) fn shapes(&self) -> &[Shape] {
        &self.shapes
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

/// Gives back what a window that has stopped growing holds beyond its
/// length: one sample joins as one leaves, so a little room is enough.
fn compact<T>(items: &mut Vec<T>) {
    let room = items.len() / 16 + 2;
    if items.capacity() > items.len() + 2 * room {
        items.shrink_to(items.len() + room);
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
    (window.points, window.shapes)
}
