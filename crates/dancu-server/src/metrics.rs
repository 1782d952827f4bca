//! Prometheus metrics, hand-rolled: request counts and latency histograms per route and
//! status. Routes are the matched patterns (`/api/v1/persons/{ref}`), never the raw path,
//! so no personal ID ever reaches a metric label.

use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default, Clone)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

type Key = (String, String, u16);

/// A few dozen series at most (routes × statuses): a vector scanned without allocating
/// beats a map keyed by owned strings on the per-request path.
#[derive(Default)]
pub struct Metrics {
    series: Mutex<Vec<(Key, Series)>>,
}

impl Metrics {
    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut list = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let i = match list.iter().position(|((m, r, st), _)| *st == status && m == method && r == route) {
            Some(i) => i,
            None => {
                list.push(((method.to_string(), route.to_string(), status), Series::default()));
                list.len() - 1
            }
        };
        let s = &mut list[i].1;
        s.count += 1;
        s.sum += secs;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                s.buckets[i] += 1;
            }
        }
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        let mut list: Vec<(Key, Series)> = self.series.lock().unwrap_or_else(|p| p.into_inner()).clone();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        out.push_str("# HELP dancu_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE dancu_http_requests_total counter\n");
        for ((m, r, st), s) in &list {
            let _ =
                writeln!(out, "dancu_http_requests_total{{method=\"{m}\",route=\"{r}\",status=\"{st}\"}} {}", s.count);
        }
        out.push_str("# HELP dancu_http_request_duration_seconds HTTP request latency.\n");
        out.push_str("# TYPE dancu_http_request_duration_seconds histogram\n");
        for ((m, r, st), s) in &list {
            let labels = format!("method=\"{m}\",route=\"{r}\",status=\"{st}\"");
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ =
                    writeln!(out, "dancu_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}", s.buckets[i]);
            }
            let _ = writeln!(out, "dancu_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", s.count);
            let _ = writeln!(out, "dancu_http_request_duration_seconds_sum{{{labels}}} {}", s.sum);
            let _ = writeln!(out, "dancu_http_request_duration_seconds_count{{{labels}}} {}", s.count);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe("GET", "/a", 200, Duration::from_micros(300));
        m.observe("GET", "/a", 200, Duration::from_millis(7));
        m.observe("GET", "/a", 404, Duration::from_millis(7));
        let text = m.render(&[]);
        assert!(text.contains("dancu_http_requests_total{method=\"GET\",route=\"/a\",status=\"200\"} 2"));
        assert!(text.contains("dancu_http_requests_total{method=\"GET\",route=\"/a\",status=\"404\"} 1"));
        assert!(text.contains("route=\"/a\",status=\"200\",le=\"0.0005\"} 1"));
        assert!(text.contains("route=\"/a\",status=\"200\",le=\"0.01\"} 2"));
        assert!(text.contains("route=\"/a\",status=\"200\",le=\"+Inf\"} 2"));
    }
}
