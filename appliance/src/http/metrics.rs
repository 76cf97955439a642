//! `GET /metrics` in the Prometheus text format: requests by route and status with their
//! latency (a histogram), searches and questions refused for want of capacity, and the
//! ingest queue by state.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default, Clone)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), Series>>,
}

impl Metrics {
    pub fn observe(&self, method: &str, route: &str, status: u16, took: Duration) {
        let secs = took.as_secs_f64();
        let mut map = match self.requests.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let s = map.entry((method.to_string(), route.to_string(), status)).or_default();
        s.count += 1;
        s.sum += secs;
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                s.buckets[i] += 1;
            }
        }
    }

    /// The text exposition; `jobs` are the ingest jobs by state, `expired` the running
    /// ones whose lease ran out (their worker stopped answering), `decisions` the audit
    /// records this process wrote by action and decision (allow, deny, ...).
    pub fn render(&self, jobs: &[(String, i64)], expired: i64, decisions: &[((String, String), u64)]) -> String {
        let map = match self.requests.lock() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let mut out = String::new();
        out.push_str("# HELP sanctum_http_requests_total HTTP requests by method, route and status.\n# TYPE sanctum_http_requests_total counter\n");
        for ((m, r, st), s) in &map {
            out.push_str(&format!("sanctum_http_requests_total{{method=\"{m}\",route=\"{r}\",status=\"{st}\"}} {}\n", s.count));
        }
        out.push_str("# HELP sanctum_http_request_duration_seconds Request latency by method and route.\n# TYPE sanctum_http_request_duration_seconds histogram\n");
        let mut by_route: BTreeMap<(String, String), Series> = BTreeMap::new();
        for ((m, r, _), s) in &map {
            let t = by_route.entry((m.clone(), r.clone())).or_default();
            t.count += s.count;
            t.sum += s.sum;
            for i in 0..BUCKETS.len() {
                t.buckets[i] += s.buckets[i];
            }
        }
        for ((m, r), s) in &by_route {
            for (i, le) in BUCKETS.iter().enumerate() {
                out.push_str(&format!("sanctum_http_request_duration_seconds_bucket{{method=\"{m}\",route=\"{r}\",le=\"{le}\"}} {}\n", s.buckets[i]));
            }
            out.push_str(&format!("sanctum_http_request_duration_seconds_bucket{{method=\"{m}\",route=\"{r}\",le=\"+Inf\"}} {}\n", s.count));
            out.push_str(&format!("sanctum_http_request_duration_seconds_sum{{method=\"{m}\",route=\"{r}\"}} {}\n", s.sum));
            out.push_str(&format!("sanctum_http_request_duration_seconds_count{{method=\"{m}\",route=\"{r}\"}} {}\n", s.count));
        }
        out.push_str("# HELP sanctum_ingest_jobs Ingest jobs by state.\n# TYPE sanctum_ingest_jobs gauge\n");
        for (state, n) in jobs {
            out.push_str(&format!("sanctum_ingest_jobs{{state=\"{state}\"}} {n}\n"));
        }
        out.push_str("# HELP sanctum_ingest_job_leases_expired Running jobs whose worker's lease ran out (taken back at the next drain).\n# TYPE sanctum_ingest_job_leases_expired gauge\n");
        out.push_str(&format!("sanctum_ingest_job_leases_expired {expired}\n"));
        out.push_str("# HELP sanctum_decisions_total Audited operations since start by action and outcome (allow, deny, ok, ...).\n# TYPE sanctum_decisions_total counter\n");
        for ((action, decision), n) in decisions {
            out.push_str(&format!("sanctum_decisions_total{{action=\"{action}\",decision=\"{decision}\"}} {n}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_cumulative_buckets() {
        let m = Metrics::default();
        m.observe("POST", "/v1/search", 200, Duration::from_millis(20));
        m.observe("POST", "/v1/search", 200, Duration::from_millis(300));
        m.observe("POST", "/v1/search", 503, Duration::from_millis(1));
        let text = m.render(&[("queued".into(), 3)], 1, &[(("search".into(), "deny".into()), 2)]);
        assert!(text.contains("sanctum_http_requests_total{method=\"POST\",route=\"/v1/search\",status=\"200\"} 2"), "{text}");
        assert!(text.contains("sanctum_http_requests_total{method=\"POST\",route=\"/v1/search\",status=\"503\"} 1"), "{text}");
        assert!(text.contains("sanctum_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/search\",le=\"0.025\"} 2"), "{text}");
        assert!(text.contains("sanctum_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/search\",le=\"+Inf\"} 3"), "{text}");
        assert!(text.contains("sanctum_ingest_jobs{state=\"queued\"} 3"), "{text}");
        assert!(text.contains("sanctum_ingest_job_leases_expired 1"), "{text}");
        assert!(text.contains("sanctum_decisions_total{action=\"search\",decision=\"deny\"} 2"), "{text}");
    }
}
