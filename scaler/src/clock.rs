//! The one place the scaler reads the wall clock. The policy and the
//! simulator never do: they are given `now`.

/// Seconds since the Unix epoch.
#[allow(clippy::disallowed_methods)] // the I/O edge: samplers stamp samples with wall-clock time
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The next instant after `now` on the grid of multiples of `interval_s`.
/// Every scaler replica samples at the same instants, so they see the same
/// samples and reach the same decisions.
pub fn next_grid_tick(now: f64, interval_s: f64) -> f64 {
    ((now / interval_s).floor() + 1.0) * interval_s
}

/// Runs `f` and returns its result and the seconds it took.
#[allow(clippy::disallowed_methods)] // measures the server's own work, never a decision's input
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let started = std::time::Instant::now();
    let out = f();
    (out, started.elapsed().as_secs_f64())
}

/// Awaits `work` and returns its output and the seconds it took.
#[allow(clippy::disallowed_methods)] // measures the server's own work, never a decision's input
pub async fn timed_async<T>(work: impl Future<Output = T>) -> (T, f64) {
    let started = std::time::Instant::now();
    let out = work.await;
    (out, started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_ticks_are_multiples_of_the_interval() {
        assert_eq!(next_grid_tick(12.3, 5.0), 15.0);
        assert_eq!(next_grid_tick(15.0, 5.0), 20.0);
        assert_eq!(next_grid_tick(0.0, 2.0), 2.0);
    }
}
