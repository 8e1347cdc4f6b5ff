//! Reads one counter out of a Prometheus text exposition: the proxies' per-Service
//! new-connection counter, summed by (namespace, service) over any other labels.

use std::collections::BTreeMap;

/// The counter each ferry-proxy exposes, one series per Service it programs.
pub const CONNECTIONS_COUNTER: &str = "ferry_proxy_service_connections_total";

/// A Service, as the proxies label it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub namespace: String,
    pub service: String,
}

/// A line of the exposition that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ParseError {
    pub line: usize,
    pub problem: &'static str,
}

/// The connection counters in `text`, summed per Service.
pub fn connection_counters(text: &str) -> Result<BTreeMap<ServiceKey, f64>, ParseError> {
    let mut counters = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix(CONNECTIONS_COUNTER) else {
            continue;
        };
        let error = |problem| ParseError {
            line: index + 1,
            problem,
        };
        let Some(rest) = rest.strip_prefix('{') else {
            // Another metric sharing the prefix, or a series without labels (not a Service).
            continue;
        };
        let (labels, value_part) = parse_labels(rest).map_err(error)?;
        let value: f64 = value_part
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| error("the sample has no numeric value"))?;
        let (Some(namespace), Some(service)) = (labels.get("namespace"), labels.get("service"))
        else {
            return Err(error("the series lacks a namespace or service label"));
        };
        let key = ServiceKey {
            namespace: namespace.clone(),
            service: service.clone(),
        };
        *counters.entry(key).or_insert(0.0) += value;
    }
    Ok(counters)
}

/// Parses `name="value",...}` and returns the labels and the text after the closing brace.
fn parse_labels(mut rest: &str) -> Result<(BTreeMap<String, String>, &str), &'static str> {
    let mut labels = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (name, after_name) = rest.split_once('=').ok_or("a label has no value")?;
        let quoted = after_name
            .strip_prefix('"')
            .ok_or("a label value is not quoted")?;
        let (value, after_value) = unquote(quoted)?;
        labels.insert(name.trim().to_owned(), value);
        rest = after_value;
    }
}

/// Reads a label value up to its closing quote, undoing `\\`, `\"` and `\n`.
fn unquote(text: &str) -> Result<(String, &str), &'static str> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &text[at + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, escaped)) => value.push(escaped),
                None => break,
            },
            c => value.push(c),
        }
    }
    Err("a label value is not terminated")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(namespace: &str, service: &str) -> ServiceKey {
        ServiceKey {
            namespace: namespace.to_owned(),
            service: service.to_owned(),
        }
    }

    #[test]
    fn sums_series_per_service_and_skips_everything_else() {
        let text = r#"# HELP ferry_proxy_service_connections New connections per Service.
# TYPE ferry_proxy_service_connections counter
ferry_proxy_service_connections_total{namespace="default",service="web",protocol="TCP"} 120
ferry_proxy_service_connections_total{service="web",namespace="default",protocol="UDP"} 3 1750000000000
ferry_proxy_service_connections_total{namespace="shop",service="a\"b"} 7.5
ferry_proxy_service_connections_created{namespace="default",service="web"} 1.7e9
ferry_proxy_sync_duration_seconds_count 4
"#;
        let counters = connection_counters(text).expect("readable");
        assert_eq!(counters.get(&key("default", "web")), Some(&123.0));
        assert_eq!(counters.get(&key("shop", "a\"b")), Some(&7.5));
        assert_eq!(counters.len(), 2);
    }

    #[test]
    fn unreadable_series_are_errors_with_a_line() {
        for (text, problem) in [
            (
                "ferry_proxy_service_connections_total{namespace=\"a\"} 1",
                "the series lacks a namespace or service label",
            ),
            (
                "ferry_proxy_service_connections_total{namespace=\"a\",service=\"b\"} many",
                "the sample has no numeric value",
            ),
            (
                "ferry_proxy_service_connections_total{namespace=a} 1",
                "a label value is not quoted",
            ),
            (
                "ferry_proxy_service_connections_total{namespace=\"a",
                "a label value is not terminated",
            ),
        ] {
            assert_eq!(
                connection_counters(text),
                Err(ParseError { line: 1, problem }),
                "{text}"
            );
        }
    }
}
