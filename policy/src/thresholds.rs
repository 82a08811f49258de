//! Thresholds the policy decides by and the traffic signals are read with,
//! kept in one place so that both sides of a comparison agree.

/// How many standard errors of a rate estimate count as noise. A steady
/// topic shows some 240 independent short windows an hour: at 2 errors
/// (2.3 % of windows) noise alone crosses a boundary several times an
/// hour, at 4 (3 in 100,000) about once in 140 hours.
pub const NOISE_STANDARD_ERRORS: f64 = 4.0;
