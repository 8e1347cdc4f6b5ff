//! Turns rounds of counter scrapes from every proxy into new-connection rates per Service.
//!
//! A rate is only as good as its weakest proxy: if any proxy could not be scraped in this
//! round or the previous one, every Service's rate is missing for the round, because a sum
//! over the proxies that answered would undercount and could trigger a scale-down.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use super::prometheus_text::ServiceKey;
use crate::autoscaler::Missing;

/// One proxy's counters at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxySample {
    pub at: Timestamp,
    pub counters: BTreeMap<ServiceKey, f64>,
}

/// The outcome of scraping every proxy once, keyed by a stable proxy name (pod or node).
pub type Round = BTreeMap<String, Result<ProxySample, String>>;

/// Rates computed from the latest round.
#[derive(Debug, Clone, PartialEq)]
pub struct RateSnapshot {
    /// When the round that produced this snapshot finished.
    pub taken_at: Timestamp,
    /// New connections per second per Service, summed over every proxy, or why there are none.
    pub rates: Result<BTreeMap<ServiceKey, f64>, Missing>,
}

/// Keeps each proxy's previous sample to difference against.
#[derive(Debug, Clone, Default)]
pub struct RateTracker {
    previous: BTreeMap<String, ProxySample>,
}

impl RateTracker {
    /// Takes a round (or why the proxies could not even be listed) and returns the rates it
    /// implies. A failed listing keeps the previous samples: the next round's rates then
    /// simply cover a longer interval.
    pub fn observe(&mut self, round: Result<Round, Missing>, taken_at: Timestamp) -> RateSnapshot {
        let rates = match round {
            Ok(round) => {
                let rates = self.rates(&round);
                self.previous = round
                    .into_iter()
                    .filter_map(|(proxy, sample)| Some((proxy, sample.ok()?)))
                    .collect();
                rates
            }
            Err(missing) => Err(missing),
        };
        RateSnapshot { taken_at, rates }
    }

    fn rates(&self, round: &Round) -> Result<BTreeMap<ServiceKey, f64>, Missing> {
        if round.is_empty() {
            return Err(Missing(
                "no ferry-proxy metrics endpoint was found".to_owned(),
            ));
        }
        let mut rates: BTreeMap<ServiceKey, f64> = BTreeMap::new();
        for (proxy, sample) in round {
            let sample = sample
                .as_ref()
                .map_err(|error| Missing(format!("proxy {proxy} unreachable: {error}")))?;
            let previous = self.previous.get(proxy).ok_or_else(|| {
                Missing(format!(
                    "proxy {proxy} has no earlier scrape to compute a rate from yet"
                ))
            })?;
            let elapsed = sample.at.duration_since(previous.at).as_secs_f64();
            if elapsed <= 0.0 {
                return Err(Missing(format!(
                    "proxy {proxy} was scraped twice at the same moment"
                )));
            }
            for (service, &now) in &sample.counters {
                *rates.entry(service.clone()).or_insert(0.0) +=
                    increase(previous.counters.get(service), now) / elapsed;
            }
        }
        Ok(rates)
    }
}

/// How much a counter grew: a counter that went down was reset (the proxy restarted), so all
/// of its current value is new, as Prometheus' `rate()` assumes; a new series grew from zero.
fn increase(before: Option<&f64>, now: f64) -> f64 {
    match before {
        Some(&before) if now >= before => now - before,
        _ => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> ServiceKey {
        ServiceKey {
            namespace: "default".to_owned(),
            service: "web".to_owned(),
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_750_000_000 + seconds).expect("valid instant")
    }

    fn sample(seconds: i64, web_total: f64) -> Result<ProxySample, String> {
        Ok(ProxySample {
            at: at(seconds),
            counters: BTreeMap::from([(web(), web_total)]),
        })
    }

    fn round(samples: [(&str, Result<ProxySample, String>); 2]) -> Result<Round, Missing> {
        Ok(samples
            .into_iter()
            .map(|(proxy, sample)| (proxy.to_owned(), sample))
            .collect())
    }

    #[test]
    fn sums_each_proxys_rate() {
        let mut tracker = RateTracker::default();
        let first = tracker.observe(
            round([("node1", sample(0, 100.0)), ("node2", sample(0, 50.0))]),
            at(0),
        );
        assert!(first.rates.is_err(), "one scrape is not a rate");
        let second = tracker.observe(
            round([("node1", sample(2, 140.0)), ("node2", sample(2, 60.0))]),
            at(2),
        );
        assert_eq!(second.rates, Ok(BTreeMap::from([(web(), 25.0)])));
    }

    #[test]
    fn an_unreachable_proxy_makes_every_rate_missing() {
        let mut tracker = RateTracker::default();
        tracker.observe(
            round([("node1", sample(0, 100.0)), ("node2", sample(0, 50.0))]),
            at(0),
        );
        let partial = tracker.observe(
            round([
                ("node1", sample(2, 140.0)),
                ("node2", Err("timed out".into())),
            ]),
            at(2),
        );
        assert_eq!(
            partial.rates,
            Err(Missing("proxy node2 unreachable: timed out".to_owned()))
        );
        let recovering = tracker.observe(
            round([("node1", sample(4, 150.0)), ("node2", sample(4, 60.0))]),
            at(4),
        );
        assert!(
            recovering.rates.is_err(),
            "node2 needs two good scrapes in a row"
        );
    }

    #[test]
    fn a_restarted_proxy_counts_from_zero() {
        let mut tracker = RateTracker::default();
        tracker.observe(
            round([("node1", sample(0, 1000.0)), ("node2", sample(0, 0.0))]),
            at(0),
        );
        let after_restart = tracker.observe(
            round([("node1", sample(2, 10.0)), ("node2", sample(2, 0.0))]),
            at(2),
        );
        assert_eq!(after_restart.rates, Ok(BTreeMap::from([(web(), 5.0)])));
    }

    #[test]
    fn no_proxies_is_missing_not_zero() {
        let snapshot = RateTracker::default().observe(Ok(Round::new()), at(0));
        assert!(snapshot.rates.is_err());
    }

    #[test]
    fn a_failed_listing_keeps_the_previous_samples() {
        let mut tracker = RateTracker::default();
        tracker.observe(
            round([("node1", sample(0, 0.0)), ("node2", sample(0, 0.0))]),
            at(0),
        );
        let failed = tracker.observe(Err(Missing("listing pods failed".to_owned())), at(2));
        assert!(failed.rates.is_err());
        let later = tracker.observe(
            round([("node1", sample(4, 40.0)), ("node2", sample(4, 0.0))]),
            at(4),
        );
        assert_eq!(later.rates, Ok(BTreeMap::from([(web(), 10.0)])));
    }
}
