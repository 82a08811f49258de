//! The signal that stops the demo, shared by every task that must stop.

use std::sync::atomic::{AtomicU8, Ordering};

/// The exit status of the signal that interrupted the demo (130 for
/// SIGINT, 143 for SIGTERM); 0 while it runs on.
#[derive(Debug, Default)]
pub struct Interrupt(AtomicU8);

impl Interrupt {
    pub fn is_set(&self) -> bool {
        self.code() != 0
    }

    /// The exit status of the signal received, 0 for none.
    pub fn code(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }

    /// Records the signal that arrived as its exit status.
    pub fn set(&self, code: u8) {
        self.0.store(code, Ordering::Relaxed);
    }
}
