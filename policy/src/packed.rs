//! A window's points and shapes packed into bytes: what a sample keeps
//! costs about 50 bytes instead of the 160 of its [`Point`] and [`Shape`]
//! (and the allocator's share of them), so a replica holds thousands of
//! full windows. Packing is exact: the points and shapes unpacked are
//! equal to the ones packed, so every replay decides as it would on them.
//!
//! A record is a flags varint, then each value present: counts as varints,
//! the time and the offset sums as the varint of their bits XORed with the
//! previous record's (values that move little share their high bits),
//! lags as zigzag varints of their change (a sample's unusual lags, when
//! it has them, as zigzag varints), rates as their 8 bytes. What is
//! shared lives beside the bytes: topics named once, and each distinct
//! stretch of carried traffic state once for the records that share it.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::lags::{LagParts, LagSum, RareLags};
use crate::point::{Fastest, Point};
use crate::sample::PrometheusReading;
use crate::traffic::{Carried, Shape};

const MEMBERS: u16 = 1;
const TARGET: u16 = 1 << 1;
const PROMETHEUS_RATE: u16 = 1 << 2;
const PROMETHEUS_UNAVAILABLE: u16 = 1 << 3;
const FASTEST: u16 = 1 << 4;
const RARE: u16 = 1 << 5;
/// The record's carried state is not the one before it.
const CARRIED_NEXT: u16 = 1 << 6;
const SPREAD: u16 = 1 << 7;
const CLIMB: u16 = 1 << 8;

/// The values a record is packed against: the record before it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Previous {
    t: u64,
    committed: u64,
    produced: u64,
    sum: i64,
    max: i64,
}

impl Previous {
    /// The values of a sample's point and shape.
    fn of(point: &Point, shape: &Shape) -> Self {
        let (counted, _) = point.lags.parts();
        Previous {
            t: point.t.to_bits(),
            committed: point.committed.to_bits(),
            produced: shape.produced.to_bits(),
            sum: counted.sum,
            max: counted.max,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Packed {
    bytes: Vec<u8>,
    len: usize,
    /// What the oldest record is packed against.
    first: Previous,
    /// The newest record's values: what the next is packed against.
    last: Previous,
    topics: Vec<Arc<str>>,
    /// The carried state of the oldest record, then each change of it.
    carried: VecDeque<Arc<Carried>>,
    /// What was dropped so far: records, bytes and carried states. An [`Unpacked`] copy counts in these, so that it can tell
    /// what of it is still here.
    dropped: Position,
}

/// A place in a window's records, counted from its first record ever.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Position {
    records: u64,
    bytes: u64,
    carried: u64,
}

/// A window's records unpacked, and where in them it ends: brought up to
/// date by unpacking only the records that joined since.
#[derive(Debug, Default)]
pub(crate) struct Unpacked {
    pub points: Vec<Point>,
    pub shapes: Vec<Shape>,
    /// After the last record: its number, its byte, and the index of its
    /// carried state.
    end: Position,
}

impl Packed {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Appends a sample's point and shape (their times are the same).
    pub fn push(&mut self, point: &Point, shape: &Shape) {
        debug_assert_eq!(point.t.to_bits(), shape.t.to_bits());
        let (counted, rare) = point.lags.parts();
        let mut flags = 0;
        let mut set = |flag: u16, on: bool| {
            if on {
                flags |= flag;
            }
        };
        set(MEMBERS, point.members.is_some());
        set(TARGET, point.target_replicas.is_some());
        set(
            PROMETHEUS_RATE,
            matches!(point.prometheus, PrometheusReading::Rate(_)),
        );
        set(
            PROMETHEUS_UNAVAILABLE,
            point.prometheus == PrometheusReading::Unavailable,
        );
        set(FASTEST, point.fastest.is_some());
        set(RARE, rare.is_some());
        let new_carried = self
            .carried
            .back()
            .is_none_or(|c| !Arc::ptr_eq(c, &shape.carried));
        set(CARRIED_NEXT, new_carried && self.len > 0);
        set(SPREAD, shape.spread().is_some());
        set(CLIMB, shape.climb().is_some());
        let out = &mut self.bytes;
        varint(out, u64::from(flags));
        let now = Previous::of(point, shape);
        varint(out, now.t ^ self.last.t);
        varint(out, now.committed ^ self.last.committed);
        varint(out, now.produced ^ self.last.produced);
        varint(out, zigzag(now.sum.wrapping_sub(self.last.sum)));
        varint(out, zigzag(now.max.wrapping_sub(self.last.max)));
        varint(out, u64::from(counted.positive));
        varint(out, u64::from(point.partitions));
        if let Some(members) = point.members {
            varint(out, u64::from(members));
        }
        if let Some(target) = point.target_replicas {
            varint(out, u64::from(target));
        }
        if let PrometheusReading::Rate(rate) = point.prometheus {
            out.extend_from_slice(&rate.to_le_bytes());
        }
        if let Some(fastest) = &point.fastest {
            let topic = match self.topics.iter().position(|t| *t == fastest.topic) {
                Some(k) => k,
                None => {
                    self.topics.push(fastest.topic.clone());
                    self.topics.len() - 1
                }
            };
            varint(out, topic as u64);
            varint(out, zigzag(i64::from(fastest.partition)));
            out.extend_from_slice(&fastest.rate_per_s.to_le_bytes());
        }
        for value in [shape.spread(), shape.climb()].into_iter().flatten() {
            out.extend_from_slice(&value.to_le_bytes());
        }
        if let Some(rare) = rare {
            for lags in [&rare.stuck, &rare.uncommitted_logs] {
                varint(out, zigzag(lags.sum));
                varint(out, zigzag(lags.max));
                varint(out, u64::from(lags.positive));
            }
            varint(out, u64::from(rare.uncommitted));
        }
        if new_carried {
            self.carried.push_back(shape.carried.clone());
        }
        if self.len == 0 {
            self.first = self.last;
        }
        self.last = now;
        self.len += 1;
    }

    /// How many of the oldest records are of a time before `t`.
    pub fn count_before(&self, t: f64) -> usize {
        let mut reader = Reader::new(self, self.first);
        (0..self.len)
            .take_while(|_| f64::from_bits(reader.next_raw().now.t) < t)
            .count()
    }

    /// Forgets the oldest `count` records.
    pub fn drop_oldest(&mut self, count: usize) {
        let count = count.min(self.len);
        if count == 0 {
            return;
        }
        let mut reader = Reader::new(self, self.first);
        for _ in 0..count {
            reader.next_raw();
        }
        let (end, first) = (reader.at, reader.previous);
        let carried = if count == self.len {
            self.carried.len()
        } else {
            // The carried state of the record that is now the oldest.
            reader.next_raw();
            reader.carried
        };
        self.dropped.records += count as u64;
        self.dropped.bytes += end as u64;
        self.dropped.carried += carried as u64;
        self.first = first;
        self.bytes.drain(..end);
        self.carried.drain(..carried);
        self.len -= count;
        compact(&mut self.bytes);
    }

    /// Brings `into` up to date: when it holds an earlier state of this
    /// packing whose last record is still here, only the records that
    /// joined since are unpacked; otherwise all of them.
    pub fn unpack(&self, into: &mut Unpacked) {
        let here = self.dropped.records..self.dropped.records + self.len as u64;
        let held = into.end.records - into.points.len() as u64..into.end.records;
        let mut reader = match into.points.last().zip(into.shapes.last()) {
            Some((point, shape)) if held.start <= here.start && here.contains(&(held.end - 1)) => {
                let previous = Previous::of(point, shape);
                let stale = (here.start - held.start) as usize;
                into.points.drain(..stale);
                into.shapes.drain(..stale);
                Reader {
                    packed: self,
                    at: (into.end.bytes - self.dropped.bytes) as usize,
                    previous,
                    read: 1,
                    carried: (into.end.carried - self.dropped.carried) as usize,
                }
            }
            _ => {
                into.points.clear();
                into.shapes.clear();
                Reader::new(self, self.first)
            }
        };
        let missing = self.len - into.points.len();
        into.points.reserve(missing);
        into.shapes.reserve(missing);
        for _ in 0..missing {
            let (point, shape) = reader.next();
            into.points.push(point);
            into.shapes.push(shape);
        }
        into.end = Position {
            records: here.end,
            bytes: self.dropped.bytes + reader.at as u64,
            carried: self.dropped.carried + reader.carried as u64,
        };
    }
}

/// One record's values as read, before they are made a point and a shape.
struct Raw {
    now: Previous,
    positive: u32,
    partitions: u32,
    members: Option<u32>,
    target: Option<u32>,
    prometheus: PrometheusReading,
    fastest: Option<(usize, i32, f64)>,
    spread: Option<f64>,
    climb: Option<f64>,
    rare: Option<RareLags>,
}

struct Reader<'a> {
    packed: &'a Packed,
    /// Where the next record begins.
    at: usize,
    /// The values of the record read last.
    previous: Previous,
    read: usize,
    /// Index of the carried state of the record read last.
    carried: usize,
}

impl<'a> Reader<'a> {
    fn new(packed: &'a Packed, first: Previous) -> Self {
        Reader {
            packed,
            at: 0,
            previous: first,
            read: 0,
            carried: 0,
        }
    }

    fn varint(&mut self) -> u64 {
        let (value, width) = read_varint(&self.packed.bytes, self.at);
        self.at += width;
        value
    }

    fn float(&mut self) -> f64 {
        let bytes: [u8; 8] = self.packed.bytes[self.at..self.at + 8]
            .try_into()
            .expect("eight bytes");
        self.at += 8;
        f64::from_le_bytes(bytes)
    }

    fn next_raw(&mut self) -> Raw {
        let flags = self.varint() as u16;
        let p = self.previous;
        let now = Previous {
            t: self.varint() ^ p.t,
            committed: self.varint() ^ p.committed,
            produced: self.varint() ^ p.produced,
            sum: p.sum.wrapping_add(unzigzag(self.varint())),
            max: p.max.wrapping_add(unzigzag(self.varint())),
        };
        let positive = self.varint() as u32;
        let partitions = self.varint() as u32;
        let members = (flags & MEMBERS != 0).then(|| self.varint() as u32);
        let target = (flags & TARGET != 0).then(|| self.varint() as u32);
        let prometheus = if flags & PROMETHEUS_RATE != 0 {
            PrometheusReading::Rate(self.float())
        } else if flags & PROMETHEUS_UNAVAILABLE != 0 {
            PrometheusReading::Unavailable
        } else {
            PrometheusReading::NotConfigured
        };
        let fastest = (flags & FASTEST != 0).then(|| {
            let topic = self.varint() as usize;
            let partition = unzigzag(self.varint()) as i32;
            (topic, partition, self.float())
        });
        let spread = (flags & SPREAD != 0).then(|| self.float());
        let climb = (flags & CLIMB != 0).then(|| self.float());
        let rare = (flags & RARE != 0).then(|| {
            let mut lags = || LagSum {
                sum: unzigzag(self.varint()),
                max: unzigzag(self.varint()),
                positive: self.varint() as u32,
            };
            let (stuck, uncommitted_logs) = (lags(), lags());
            RareLags {
                stuck,
                uncommitted: self.varint() as u32,
                uncommitted_logs,
            }
        });
        // The oldest record starts from the first carried state, whatever
        // its flag (set when it was not the oldest).
        if self.read > 0 && flags & CARRIED_NEXT != 0 {
            self.carried += 1;
        }
        self.previous = now;
        self.read += 1;
        Raw {
            now,
            positive,
            partitions,
            members,
            target,
            prometheus,
            fastest,
            spread,
            climb,
            rare,
        }
    }

    fn next(&mut self) -> (Point, Shape) {
        let raw = self.next_raw();
        let packed = self.packed;
        let t = f64::from_bits(raw.now.t);
        let point = Point {
            t,
            members: raw.members,
            target_replicas: raw.target,
            prometheus: raw.prometheus,
            partitions: raw.partitions,
            committed: f64::from_bits(raw.now.committed),
            lags: LagParts::from_parts(
                LagSum {
                    sum: raw.now.sum,
                    max: raw.now.max,
                    positive: raw.positive,
                },
                raw.rare.map(Box::new),
            ),
            fastest: raw.fastest.map(|(topic, partition, rate_per_s)| Fastest {
                topic: packed.topics[topic].clone(),
                partition,
                rate_per_s,
            }),
        };
        let shape = Shape::from_parts(
            t,
            f64::from_bits(raw.now.produced),
            (raw.spread, raw.climb),
            packed.carried[self.carried].clone(),
        );
        (point, shape)
    }
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The varint at `at` and its width in bytes.
fn read_varint(bytes: &[u8], at: usize) -> (u64, usize) {
    let mut value = 0u64;
    for (k, &byte) in bytes[at..].iter().enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * k);
        if byte < 0x80 {
            return (value, k + 1);
        }
    }
    unreachable!("a record ends inside the bytes")
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Gives back what bytes that have stopped growing hold beyond their
/// length: one record joins as one leaves, so a little room is enough.
fn compact(bytes: &mut Vec<u8>) {
    let room = bytes.len() / 16 + 64;
    if bytes.capacity() > bytes.len() + 2 * room {
        bytes.shrink_to(bytes.len() + room);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A sample's point and shape from drawn values; `carried` picks one of
    /// a few shared states, as consecutive samples share theirs.
    fn record(v: &Drawn, carried: &[Arc<Carried>], topics: &[Arc<str>]) -> (Point, Shape) {
        let t = 1_764_900_000.123 + v.t_step;
        let rare = v.rare.map(|(stuck, logs)| {
            Box::new(RareLags {
                stuck: LagSum {
                    sum: stuck,
                    max: stuck / 2,
                    positive: v.partitions / 3,
                },
                uncommitted: v.partitions + 1,
                uncommitted_logs: LagSum {
                    sum: logs,
                    max: logs,
                    positive: 1,
                },
            })
        });
        let point = Point {
            t,
            members: v.members,
            target_replicas: v.target,
            prometheus: match v.prometheus {
                0 => PrometheusReading::NotConfigured,
                1 => PrometheusReading::Rate(v.rate),
                _ => PrometheusReading::Unavailable,
            },
            partitions: v.partitions,
            committed: v.committed as f64,
            lags: LagParts::from_parts(
                LagSum {
                    sum: v.lag,
                    max: v.lag / 3,
                    positive: v.partitions / 2,
                },
                rare,
            ),
            fastest: v.fastest.map(|(topic, partition)| Fastest {
                topic: topics[topic].clone(),
                partition,
                rate_per_s: v.rate * 0.37,
            }),
        };
        let shape = Shape::from_parts(
            t,
            v.committed as f64 + v.lag as f64,
            (v.spread, v.climb),
            carried[v.carried].clone(),
        );
        (point, shape)
    }

    #[derive(Debug, Clone)]
    struct Drawn {
        t_step: f64,
        members: Option<u32>,
        target: Option<u32>,
        prometheus: u8,
        rate: f64,
        partitions: u32,
        committed: i64,
        lag: i64,
        rare: Option<(i64, i64)>,
        fastest: Option<(usize, i32)>,
        spread: Option<f64>,
        climb: Option<f64>,
        carried: usize,
    }

    fn drawn() -> impl Strategy<Value = Drawn> {
        (
            (
                0.0..1e6f64,
                proptest::option::of(0u32..500),
                proptest::option::of(0u32..500),
                0u8..3,
                -1e9..1e9f64,
                0u32..300,
            ),
            (
                0i64..1 << 52,
                -5i64..1 << 40,
                proptest::option::of((-5i64..1 << 40, 0i64..1 << 50)),
                proptest::option::of((0usize..3, -1i32..100)),
                proptest::option::of(0.0..1e6f64),
                proptest::option::of(-1e4..1e4f64),
                0usize..3,
            ),
        )
            .prop_map(
                |(
                    (t_step, members, target, prometheus, rate, partitions),
                    (committed, lag, rare, fastest, spread, climb, carried),
                )| Drawn {
                    t_step,
                    members,
                    target,
                    prometheus,
                    rate,
                    partitions,
                    committed,
                    lag,
                    rare,
                    fastest,
                    spread,
                    climb,
                    carried,
                },
            )
    }

    proptest! {
        /// Whatever is pushed and dropped, unpacking gives back exactly the
        /// points and shapes kept, in order, sharing their carried states.
        #[test]
        fn unpacking_gives_back_exactly_what_was_packed_and_kept(
            steps in proptest::collection::vec((drawn(), 0usize..4), 1..120),
        ) {
            let carried: Vec<Arc<Carried>> = (0..3)
                .map(|k| {
                    let mut c = Carried::default();
                    c.idle_gap_s = Some(f64::from(k));
                    Arc::new(c)
                })
                .collect();
            let topics: Vec<Arc<str>> = ["a", "b", "c"].into_iter().map(Arc::from).collect();
            let mut packed = Packed::default();
            let mut kept: VecDeque<(Point, Shape)> = VecDeque::new();
            let mut t = 0.0;
            let mut running = Unpacked::default();
            for (v, drop) in steps {
                t += v.t_step;
                let (point, shape) = record(&Drawn { t_step: t, ..v }, &carried, &topics);
                packed.push(&point, &shape);
                kept.push_back((point, shape));
                // Never the newest: a window always keeps its newest sample.
                let drop = drop.min(kept.len() - 1);
                packed.drop_oldest(drop);
                kept.drain(..drop);
                // Unpacked whole, and brought up to date from the last step.
                let mut whole = Unpacked::default();
                packed.unpack(&mut whole);
                packed.unpack(&mut running);
                prop_assert_eq!(packed.len(), kept.len());
                prop_assert_eq!(&running.points, &whole.points);
                prop_assert_eq!(&running.shapes, &whole.shapes);
                for ((p, s), (kp, ks)) in whole.points.iter().zip(&whole.shapes).zip(&kept) {
                    prop_assert_eq!(p, kp);
                    prop_assert_eq!(s.t.to_bits(), ks.t.to_bits());
                    prop_assert_eq!(s, ks);
                    prop_assert!(Arc::ptr_eq(&s.carried, &ks.carried));
                }
            }
            packed.drop_oldest(packed.len());
            prop_assert_eq!(packed.len(), 0);
            prop_assert!(packed.bytes.is_empty() && packed.carried.is_empty());
        }
    }
}
