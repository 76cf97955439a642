//! The Qdrant cluster's raft consensus as each peer reports it (`GET /cluster` on its REST
//! port; the gRPC API does not expose it): for `doctor`. The peers are the appliance's own
//! infrastructure, reached directly at `search.qdrant.rest_peers` like the gRPC peers.

use std::time::Duration;

use serde::Deserialize;

use crate::config::QdrantConfig;
use crate::error::{Error, Result};

/// One peer's view of the consensus.
#[derive(Debug, Clone, PartialEq)]
pub struct RaftView {
    pub peer_id: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub role: String,
    /// Peers this one knows of.
    pub peers: usize,
    pub pending_operations: u64,
    /// "working", or why the consensus thread stopped.
    pub consensus: String,
}

#[derive(Deserialize)]
struct Reply {
    result: Cluster,
}

#[derive(Deserialize)]
struct Cluster {
    peer_id: u64,
    #[serde(default)]
    peers: std::collections::HashMap<String, serde_json::Value>,
    raft_info: RaftInfo,
    consensus_thread_status: ConsensusStatus,
}

#[derive(Deserialize)]
struct RaftInfo {
    term: u64,
    leader: Option<u64>,
    role: Option<String>,
    pending_operations: u64,
}

#[derive(Deserialize)]
struct ConsensusStatus {
    consensus_thread_status: String,
    err: Option<String>,
}

/// Parses a peer's `GET /cluster` reply.
pub fn parse(body: &[u8]) -> std::result::Result<RaftView, String> {
    let r: Reply = serde_json::from_slice(body).map_err(|e| format!("unexpected /cluster reply: {e}"))?;
    let c = r.result;
    let consensus = match c.consensus_thread_status.err {
        Some(e) => format!("{}: {e}", c.consensus_thread_status.consensus_thread_status),
        None => c.consensus_thread_status.consensus_thread_status,
    };
    Ok(RaftView {
        peer_id: c.peer_id,
        leader: c.raft_info.leader,
        term: c.raft_info.term,
        role: c.raft_info.role.unwrap_or_else(|| "unknown".into()),
        peers: c.peers.len(),
        pending_operations: c.raft_info.pending_operations,
        consensus,
    })
}

/// Each REST peer's view, or why it gave none.
pub async fn views(config: &QdrantConfig) -> Result<Vec<(String, std::result::Result<RaftView, String>)>> {
    let mut client = reqwest::Client::builder().timeout(Duration::from_secs(config.timeout_s)).connect_timeout(Duration::from_secs(3));
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| Error::Config(format!("search.qdrant.ca_file {}: {e}", path.display())))?;
        client = client.add_root_certificate(ca);
    }
    let client = client.build().map_err(|e| Error::Config(format!("search.qdrant.rest_peers: {e}")))?;
    let key = match &config.api_key_file {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?.trim().to_string()),
        None => None,
    };
    let mut out = Vec::new();
    for url in &config.rest_peers {
        let url = url.trim_end_matches('/');
        let mut request = client.get(format!("{url}/cluster"));
        if let Some(key) = &key {
            request = request.header("api-key", key);
        }
        let view = match request.send().await {
            Ok(r) if r.status().is_success() => match r.bytes().await {
                Ok(body) => parse(&body),
                Err(e) => Err(e.to_string()),
            },
            Ok(r) => Err(format!("HTTP {}", r.status())),
            Err(e) => Err(e.to_string()),
        };
        out.push((url.to_string(), view));
    }
    Ok(out)
}

/// Whether the views agree on one leader with every consensus working: the leader, or
/// what is wrong.
pub fn verdict(views: &[(String, std::result::Result<RaftView, String>)]) -> std::result::Result<(u64, u64), String> {
    let mut problems = Vec::new();
    let mut leaders = std::collections::BTreeSet::new();
    let mut term = 0;
    for (url, view) in views {
        match view {
            Err(e) => problems.push(format!("{url}: {e}")),
            Ok(v) => {
                match v.leader {
                    Some(l) => {
                        leaders.insert(l);
                    }
                    None => problems.push(format!("{url} (peer {}) knows no leader", v.peer_id)),
                }
                if v.consensus != "working" {
                    problems.push(format!("{url} (peer {}): consensus {}", v.peer_id, v.consensus));
                }
                term = term.max(v.term);
            }
        }
    }
    if leaders.len() > 1 {
        problems.push(format!("the peers name different leaders: {leaders:?}"));
    }
    match (problems.is_empty(), leaders.first()) {
        (true, Some(&leader)) => Ok((leader, term)),
        (true, None) => Err("no peer answered".into()),
        _ => Err(problems.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(peer: u64, leader: Option<u64>, status: &str) -> Vec<u8> {
        serde_json::json!({"result": {
            "status": "enabled", "peer_id": peer,
            "peers": {"1": {"uri": "http://a:6335/"}, "2": {"uri": "http://b:6335/"}, "3": {"uri": "http://c:6335/"}},
            "raft_info": {"term": 4, "commit": 40, "pending_operations": 0, "leader": leader, "role": if leader == Some(peer) { "Leader" } else { "Follower" }, "is_voter": true},
            "consensus_thread_status": {"consensus_thread_status": status, "last_update": "2026-12-04T00:00:00Z"},
            "message_send_failures": {}
        }, "status": "ok", "time": 0.0001})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn the_peers_views_agree_or_say_what_is_wrong() {
        let view = parse(&reply(2, Some(1), "working")).unwrap();
        assert_eq!((view.peer_id, view.leader, view.term, view.role.as_str(), view.peers), (2, Some(1), 4, "Follower", 3));
        let views = |replies: Vec<std::result::Result<RaftView, String>>| -> Vec<(String, std::result::Result<RaftView, String>)> {
            replies.into_iter().enumerate().map(|(i, r)| (format!("http://q{i}:6333"), r)).collect()
        };
        let agreed = views((1..=3).map(|p| parse(&reply(p, Some(1), "working"))).collect());
        assert_eq!(verdict(&agreed), Ok((1, 4)));
        let split = views(vec![parse(&reply(1, Some(1), "working")), parse(&reply(2, Some(2), "working"))]);
        assert!(verdict(&split).unwrap_err().contains("different leaders"));
        let leaderless = views(vec![parse(&reply(1, None, "working"))]);
        assert!(verdict(&leaderless).unwrap_err().contains("knows no leader"));
        let stopped = views(vec![parse(&reply(1, Some(1), "stopped"))]);
        assert!(verdict(&stopped).unwrap_err().contains("consensus stopped"));
        let down = views(vec![parse(&reply(1, Some(1), "working")), Err("connection refused".into())]);
        assert!(verdict(&down).unwrap_err().contains("http://q1:6333: connection refused"));
        assert!(parse(b"{}").unwrap_err().contains("unexpected /cluster reply"));
    }
}
