//! What each trigger answered KEDA: the group's size as the HPA was told
//! it, which replays start from and follow where the broker reports no
//! member count.

use std::cell::RefCell;
use std::collections::VecDeque;

use crate::State;

/// What one trigger answered KEDA, oldest first: the group's size as the
/// HPA was told it. Where the broker reports no member count, replays
/// start from it and follow its changes, as they do from members. Only
/// changes are kept: a trigger that answers the same for hours costs one
/// entry.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    /// When each answer that differed from the one before was first given.
    log: VecDeque<(f64, u32)>,
    /// Where the trigger's last replay stood before its newest sample.
    pub(crate) resume: RefCell<Option<Resume>>,
}

/// A replay's state before the newest sample it decided on: the next
/// replay of the same window from the same start goes on from here, since
/// every sample before it (and the answer given to it) is what it was.
/// The newest sample itself is decided again, because the answer given to
/// it is recorded only after it was decided.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Resume {
    /// The window's first sample and the replay's start.
    pub started_at: f64,
    pub start: f64,
    /// The sample the replay goes on at.
    pub at: f64,
    pub state: State,
    pub size_before: Option<u32>,
}

impl Answers {
    /// Records `replicas`, the answer to the sample at `t`, when it went
    /// to KEDA (`given`), and forgets the answers that were no longer in
    /// force `keep_seconds` before it.
    pub fn record(&mut self, t: f64, replicas: u32, given: bool, keep_seconds: f64) {
        if given
            && self
                .log
                .back()
                .is_none_or(|&(last, was)| last < t && was != replicas)
        {
            self.log.push_back((t, replicas));
        }
        while self
            .log
            .get(1)
            .is_some_and(|&(next, _)| next <= t - keep_seconds)
        {
            self.log.pop_front();
        }
    }

    /// The answer in force at `t`: the last one given at or before it.
    pub fn at(&self, t: f64) -> Option<u32> {
        let i = self.log.partition_point(|&(at, _)| at <= t);
        i.checked_sub(1).map(|i| self.log[i].1)
    }

    /// Forgets everything, as a scaler replica that has just started.
    pub fn clear(&mut self) {
        self.log.clear();
        self.resume.take();
    }

    /// Where the last replay of `started_at`'s window from `start` stood,
    /// if it did.
    pub(crate) fn resume(&self, started_at: f64, start: f64) -> Option<Resume> {
        self.resume
            .borrow()
            .as_ref()
            .filter(|r| r.started_at == started_at && r.start == start)
            .cloned()
    }

    pub(crate) fn keep_resume(&self, resume: Resume) {
        self.resume.replace(Some(resume));
    }

    /// The same answers with no replay to resume.
    #[cfg(test)]
    pub(crate) fn without_resume(&self) -> Answers {
        Answers {
            log: self.log.clone(),
            resume: RefCell::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_in_force_is_the_last_one_given_and_old_ones_are_forgotten() {
        let mut answers = Answers::default();
        answers.record(10.0, 4, true, 100.0);
        answers.record(15.0, 9, false, 100.0); // Unavailable: not given
        answers.record(20.0, 6, true, 100.0);
        assert_eq!(answers.at(5.0), None);
        assert_eq!(answers.at(10.0), Some(4));
        assert_eq!(answers.at(19.0), Some(4));
        assert_eq!(answers.at(25.0), Some(6));
        answers.record(130.0, 2, true, 100.0);
        assert_eq!(answers.at(15.0), None, "no longer in force 100 s ago");
        assert_eq!(answers.at(35.0), Some(6), "in force 100 s ago");
        assert_eq!(answers.at(130.0), Some(2));
        answers.clear();
        assert_eq!(answers.at(130.0), None);
    }

    #[test]
    fn an_unchanged_answer_is_one_entry_however_long_it_lasts() {
        let mut answers = Answers::default();
        for k in 0..10_000 {
            answers.record(f64::from(k) * 5.0, 3, true, 900.0);
        }
        assert_eq!(answers.log.len(), 1);
        assert_eq!(answers.at(49_995.0), Some(3));
    }
}
