//! How many pods a load needs when partitions, not pods, are the unit of
//! work: with P partitions over n pods some pod owns ceil(P/n) of them, and
//! when one partition is hotter than the rest, the pod that owns it (with
//! its share of the others) sets the pace. Assignment does not know the
//! load, so the worst case counts: the hottest partition and the most
//! partitions on one pod.

/// The fraction of the total load on the busiest of `pods` pods, when the
/// hottest of `partitions` partitions carries `hottest_share` of the load
/// and the rest share it evenly.
pub fn busiest_share(partitions: u32, pods: u32, hottest_share: f64) -> f64 {
    let p = partitions.max(1);
    let n = pods.clamp(1, p);
    if p == 1 {
        return 1.0;
    }
    let hot = hottest_share.clamp(1.0 / f64::from(p), 1.0);
    let most = p.div_ceil(n);
    hot + f64::from(most - 1) * (1.0 - hot) / f64::from(p - 1)
}

/// Messages per second `pods` pods process at `capacity` each when the
/// busiest one sets the pace.
pub fn group_capacity(partitions: u32, pods: u32, capacity: f64, hottest_share: f64) -> f64 {
    if pods == 0 {
        return 0.0;
    }
    capacity / busiest_share(partitions, pods, hottest_share)
}

/// The smallest pod count that serves `demand` msg/s spread evenly over
/// `partitions`; `None` when one partition alone needs more than a pod.
/// Never below `ceil(demand / capacity)`.
pub fn partition_aware_pods(demand: f64, partitions: u32, capacity: f64) -> Option<u32> {
    partition_aware_pods_skewed(demand, partitions, capacity, 0.0).map(|sized| sized.pods)
}

/// A pod count and whether the hottest partition is beyond any count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sized {
    pub pods: u32,
    /// The hottest partition alone needs more than one pod: no count helps
    /// it, and the count is sized for the other partitions.
    pub hot_beyond_a_pod: bool,
}

/// The smallest pod count whose busiest pod keeps up with `demand` msg/s
/// when the hottest partition carries `hottest_share` of it. When that
/// partition alone needs more than a pod, the count is sized for the others
/// (as if it were an average one). `None` when an average partition alone
/// needs more than a pod: the fix is more partitions.
pub fn partition_aware_pods_skewed(
    demand: f64,
    partitions: u32,
    capacity: f64,
    hottest_share: f64,
) -> Option<Sized> {
    let p = partitions.max(1);
    if demand <= 0.0 {
        return Some(Sized {
            pods: 0,
            hot_beyond_a_pod: false,
        });
    }
    let even = 1.0 / f64::from(p);
    if demand * even > capacity {
        return None;
    }
    let hot_beyond_a_pod = demand * hottest_share.max(even) > capacity;
    let share = if hot_beyond_a_pod {
        even
    } else {
        hottest_share
    };
    // The busiest pod's share falls as pods are added: the first count that fits.
    let (mut lo, mut hi) = (1, p);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if demand * busiest_share(p, mid, share) <= capacity {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(Sized {
        pods: lo,
        hot_beyond_a_pod,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_hot_partition_needs_its_pod_to_hold_fewer_others() {
        // 24 partitions, 800 msg/s, 10 % on partition 0 (80 msg/s), 100 per
        // pod: evenly 8 pods would do (3 partitions, 100 msg/s each), but the
        // pod with partition 0 would carry 80 + 2 x 31 = 143 msg/s; with any
        // second partition beside it, 111.
        assert_eq!(partition_aware_pods(800.0, 24, 100.0), Some(8));
        let sized = partition_aware_pods_skewed(800.0, 24, 100.0, 0.1).unwrap();
        assert_eq!(
            sized,
            Sized {
                pods: 24,
                hot_beyond_a_pod: false
            }
        );
        // 20 % (160 msg/s) is beyond any pod: size for the others.
        let sized = partition_aware_pods_skewed(800.0, 24, 100.0, 0.2).unwrap();
        assert_eq!(
            sized,
            Sized {
                pods: 8,
                hot_beyond_a_pod: true
            }
        );
        assert_eq!(partition_aware_pods(5000.0, 24, 100.0), None);
    }

    proptest! {
        #[test]
        fn the_count_is_the_smallest_whose_busiest_pod_keeps_up(
            demand in 0.1f64..10_000.0, p in 1u32..200, capacity in 1.0f64..500.0, share in 0.0f64..=1.0,
        ) {
            if let Some(Sized { pods, hot_beyond_a_pod }) = partition_aware_pods_skewed(demand, p, capacity, share) {
                let fits = |n| demand * busiest_share(p, n, if hot_beyond_a_pod { 0.0 } else { share }) <= capacity;
                prop_assert!(pods >= 1 && pods <= p && fits(pods));
                prop_assert!(pods == 1 || !fits(pods - 1));
                prop_assert!(f64::from(pods) >= (demand / capacity).ceil() - 1e-9 || hot_beyond_a_pod);
            } else {
                prop_assert!(demand / f64::from(p) > capacity);
            }
        }
    }
}
