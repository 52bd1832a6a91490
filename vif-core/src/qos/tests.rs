//! Token bucket arithmetic with an injected clock (no sleeps), the limiter's all-or-nothing
//! consumption, and a rate bound over random request sequences.

use proptest::prelude::*;

use super::*;

const MS: u64 = NS_PER_MS;

#[test]
fn disabled_buckets_are_none() {
    assert_eq!(TokenBucket::new(0, 10, 1000, 0), None);
    assert_eq!(TokenBucket::new(10, 10, 0, 0), None);
    assert!(RateLimiter::new(&RateLimitSpec::default(), 0).is_unlimited());
}

#[test]
fn refills_at_the_configured_rate() {
    // 1000 tokens per second: one per millisecond.
    let mut bucket = TokenBucket::new(1000, 0, 1000, 0).unwrap();
    assert_eq!(bucket.reduce(1000, 0), BucketReduction::Success);
    assert_eq!(bucket.reduce(1, 0), BucketReduction::Failure);
    assert_eq!(bucket.time_until(1, 0), MS);
    assert_eq!(bucket.time_until(10, 0), 10 * MS);
    assert_eq!(bucket.reduce(1, MS - 1), BucketReduction::Failure);
    assert_eq!(bucket.reduce(1, MS), BucketReduction::Success);
    assert_eq!(bucket.reduce(5, 6 * MS), BucketReduction::Success);
    assert_eq!(bucket.budget(), 0);
    // A long pause fills the bucket but not beyond.
    assert_eq!(bucket.time_until(1000, 60_000 * MS), 0);
    assert_eq!(
        bucket.reduce(1001, 60_000 * MS),
        BucketReduction::OverConsumption { debt_ns: MS }
    );
}

#[test]
fn fractions_of_a_token_carry_over() {
    // 3 tokens per 10 ms: one per 3.33 ms. Polled every millisecond for 100 ms, exactly 30
    // tokens are earned beyond the initial 3, none lost to rounding and none invented.
    let mut bucket = TokenBucket::new(3, 0, 10, 0).unwrap();
    let mut taken = 0;
    for ms in 0..=100 {
        while bucket.reduce(1, ms * MS) == BucketReduction::Success {
            taken += 1;
        }
    }
    assert_eq!(taken, 3 + 30);
}

#[test]
fn one_time_burst_is_spent_first_and_never_refills() {
    let mut bucket = TokenBucket::new(100, 50, 1000, 0).unwrap();
    assert_eq!(bucket.reduce(30, 0), BucketReduction::Success);
    assert_eq!((bucket.one_time_burst(), bucket.budget()), (20, 100));
    assert_eq!(bucket.reduce(120, 0), BucketReduction::Success);
    assert_eq!((bucket.one_time_burst(), bucket.budget()), (0, 0));
    assert_eq!(bucket.reduce(1, 0), BucketReduction::Failure);
    assert_eq!(bucket.time_until(100, 0), 1000 * MS);
    // A day later the bucket is full again; the burst is not.
    assert_eq!(
        bucket.reduce(100, 86_400_000 * MS),
        BucketReduction::Success
    );
    assert_eq!(bucket.one_time_burst(), 0);
    bucket.replenish(500);
    assert_eq!(bucket.budget(), 100, "replenish caps at size");
}

#[test]
fn over_consumption_is_repaid_before_more_passes() {
    // 100 bytes per 100 ms; a 250-byte frame from a full bucket passes and owes 150 bytes.
    let mut bucket = TokenBucket::new(100, 0, 100, 0).unwrap();
    assert_eq!(
        bucket.reduce(250, 0),
        BucketReduction::OverConsumption { debt_ns: 150 * MS }
    );
    assert_eq!(bucket.time_until(1, 0), 151 * MS);
    assert_eq!(bucket.reduce(1, 150 * MS), BucketReduction::Failure);
    assert_eq!(bucket.reduce(1, 151 * MS), BucketReduction::Success);
    // Another over-sized frame waits for a full bucket.
    assert_eq!(bucket.time_until(250, 151 * MS), 100 * MS);
}

#[test]
fn limiter_takes_from_both_buckets_or_neither() {
    let spec: RateLimitSpec = toml::from_str(
        "bandwidth = { size = 1000, refill_time_ms = 1000 }\nops = { size = 2, refill_time_ms = 100 }",
    )
    .unwrap();
    let mut limiter = RateLimiter::new(&spec, 0);
    assert_eq!(limiter.consume(100, 0), RateDecision::Pass);
    assert_eq!(limiter.consume(100, 0), RateDecision::Pass);
    // The packet bucket is empty: one packet per 50 ms.
    assert_eq!(
        limiter.consume(100, 0),
        RateDecision::Throttle {
            retry_in_ns: 50 * MS
        }
    );
    assert_eq!(
        limiter.bandwidth().unwrap().budget(),
        800,
        "bytes were not taken"
    );
    // Both constrain: 900 bytes need 100 ms of refill, more than the packet's 50 ms.
    assert_eq!(limiter.time_until_ready(900, 0), 100 * MS);
    assert_eq!(
        limiter.consume(900, 100 * MS - 1),
        RateDecision::Throttle { retry_in_ns: 1 }
    );
    assert_eq!(limiter.consume(900, 100 * MS), RateDecision::Pass);
}

#[test]
fn qos_spec_parses_and_validates() {
    let text = r#"
name = "gold"
tx = { bandwidth = { size = 125000000, one_time_burst = 10000000, refill_time_ms = 1000 } }
rx = { ops = { size = 100000, refill_time_ms = 1000 } }
"#;
    let spec: QosSpec = toml::from_str(text).unwrap();
    assert_eq!(spec.validate(), Ok(()));
    assert_eq!(spec.tx.bandwidth.unwrap().one_time_burst, 10_000_000);
    let mut bad = spec.clone();
    bad.rx.ops = Some(BucketSpec {
        size: 10,
        one_time_burst: 0,
        refill_time_ms: 0,
    });
    assert!(matches!(
        bad.validate(),
        Err(QosError::OutOfRange {
            field: "rx.ops",
            ..
        })
    ));
    bad.name = "has space".into();
    assert!(matches!(bad.validate(), Err(QosError::InvalidName { .. })));
    assert!(toml::from_str::<QosSpec>("name = \"a\"\n[tx]\nburst = 1").is_err());
}

proptest! {
    /// However requests are timed, what passes never exceeds the initial budget, the burst and
    /// what refill earned, plus at most one bucket of over-consumption still owed.
    #[test]
    fn never_exceeds_the_rate(
        size in 1u64..10_000,
        burst in 0u64..1000,
        refill_ms in 1u64..1000,
        steps in prop::collection::vec((0u64..50 * MS, 1u64..20_000), 1..200),
    ) {
        let mut bucket = TokenBucket::new(size, burst, refill_ms, 0).unwrap();
        let (mut now, mut passed) = (0u64, 0u128);
        for (gap, tokens) in steps {
            now += gap;
            let wait = bucket.time_until(tokens, now);
            match bucket.reduce(tokens, now) {
                BucketReduction::Failure => prop_assert!(wait > 0),
                _ => {
                    prop_assert_eq!(wait, 0);
                    passed += u128::from(tokens);
                }
            }
        }
        let earned = u128::from(now) * u128::from(size) / u128::from(refill_ms * MS);
        let bound = u128::from(size) + u128::from(burst) + earned;
        // An over-sized request may be in flight, owing up to its excess.
        prop_assert!(passed <= bound + 20_000, "passed {} > bound {}", passed, bound);
    }
}
