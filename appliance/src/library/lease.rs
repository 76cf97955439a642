//! Who holds a job: each opened appliance is one worker, named uniquely, that takes jobs
//! on a lease it extends while it works. Several replicas on one database then share the
//! queue: a job is held by one worker at a time, a job whose lease ran out (its worker
//! stopped answering, on whatever machine) goes back to the queue, and a job whose worker
//! is known dead goes back at once — a process on the same machine (same boot, same process
//! namespace) can see that the holder's process is gone, as after a `kill -9` and restart.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::db::jobs;

/// Where a worker runs: enough for another process on the same machine to tell whether it
/// is still alive (a pid is only meaningful within one boot and one pid namespace, and is
/// reused, so its start time is kept too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claimer {
    pub host: String,
    pub boot: String,
    pub pidns: String,
    pub pid: u32,
    /// Start time of the process, in clock ticks since boot (`/proc/PID/stat`, field 22).
    pub start: u64,
}

impl Claimer {
    /// This process.
    pub fn this_process() -> Claimer {
        let pid = std::process::id();
        Claimer {
            host: hostname(),
            boot: std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default(),
            pidns: std::fs::read_link("/proc/self/ns/pid").map(|p| p.to_string_lossy().into_owned()).unwrap_or_default(),
            pid,
            start: start_ticks(pid).unwrap_or(0),
        }
    }

    /// Whether `self`, as seen from `here`, is a process that has ended: only answered for
    /// a process in the same boot and pid namespace (elsewhere its lease decides).
    pub fn is_dead_seen_from(&self, here: &Claimer) -> bool {
        if self.boot.is_empty() || self.pidns.is_empty() || self.boot != here.boot || self.pidns != here.pidns {
            return false;
        }
        if self.pid == here.pid && self.start == here.start {
            return false;
        }
        start_ticks(self.pid) != Some(self.start)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".into())
}

/// Field 22 of `/proc/PID/stat` (after the parenthesised command name, which may hold
/// spaces and parentheses itself).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start(&stat)
}

fn parse_start(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // after ")" come field 3 (state) onwards: the start time is the 20th of those
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// One worker: its unique name, where it runs, and the length of its leases.
#[derive(Debug, Clone)]
pub struct Worker {
    /// `host:pid:random`, unique to this opened appliance; what `claimed_by` holds.
    pub id: String,
    pub claimer: Claimer,
    pub lease: Duration,
}

impl Worker {
    pub fn new(lease: Duration) -> Worker {
        let claimer = Claimer::this_process();
        let tag = uuid::Uuid::new_v4().simple().to_string();
        Worker { id: format!("{}:{}:{}", claimer.host, claimer.pid, &tag[..8]), claimer, lease }
    }

    /// Extends this worker's leases every third of a lease until the returned guard is
    /// dropped. A failed extension is logged and tried again at the next beat; if the
    /// leases run out meanwhile, another worker may take the jobs, and this one's results
    /// for them are then not recorded (see [`jobs::finish`]).
    pub fn heartbeat(&self, pool: &PgPool) -> Heartbeat {
        let (pool, worker) = (pool.clone(), self.clone());
        let every = (self.lease / 3).max(Duration::from_millis(100));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = jobs::extend_leases(&pool, &worker).await {
                    tracing::warn!(worker = %worker.id, error = %e, "could not extend the job leases");
                }
            }
        });
        Heartbeat(task)
    }
}

/// Extends leases while it lives.
pub struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 50";
        assert_eq!(parse_start(stat), Some(987654));
        assert_eq!(parse_start("4242 (x) S 1"), None);
    }

    #[test]
    fn a_live_process_is_alive_and_an_ended_one_dead_only_where_it_can_be_seen() {
        let here = Claimer::this_process();
        assert!(here.start > 0, "{here:?}");
        assert!(!here.is_dead_seen_from(&here));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = start_ticks(pid);
        child.wait().unwrap();
        let ended = Claimer { pid, start: start.unwrap_or(1), ..here.clone() };
        assert!(ended.is_dead_seen_from(&here), "{ended:?}");
        // the same pid reused by another process: a different start time
        let reused = Claimer { pid: here.pid, start: here.start + 1, ..here.clone() };
        assert!(reused.is_dead_seen_from(&here));
        // another machine, or another pid namespace: not for this process to say
        let elsewhere = Claimer { boot: "another-boot".into(), ..ended.clone() };
        assert!(!elsewhere.is_dead_seen_from(&here));
        let other_ns = Claimer { pidns: "pid:[1]".into(), ..ended };
        assert!(!other_ns.is_dead_seen_from(&here));
    }
}
