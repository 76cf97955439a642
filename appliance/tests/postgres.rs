//! Both database modes on real PostgreSQL: the embedded private cluster (Unix socket only,
//! under the data directory; survives stale locks, crashed clusters and a killed owner)
//! and an external server given by `database_url`.

#[path = "../../tests/support/mod.rs"]
mod support;

use sanctum::Sanctum;

async fn tables(ctx: &Sanctum) -> Vec<String> {
    sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1")
        .fetch_all(ctx.pool())
        .await
        .unwrap()
}

fn postmaster_pid(data: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(data.join("postgres/pgdata/postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
}

/// Whether `pid` has exited within a few seconds (a zombie awaiting its reaper counts).
fn exited(pid: i32) -> bool {
    for _ in 0..50 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat) if stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')) => return true,
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_cluster_starts_private_and_stops() {
    let tmp = support::tempdir();
    let ctx = Sanctum::open(support::config(tmp.path())).await.unwrap();
    assert!(ctx.db.is_embedded());
    assert!(tables(&ctx).await.contains(&"ingest_jobs".to_string()));
    // server settings are for the owner to read, not the application role
    let mut owner = ctx.db.owner_connection().await.unwrap();
    let listen: String = sqlx::query_scalar("SHOW listen_addresses").fetch_one(&mut owner).await.unwrap();
    assert_eq!(listen, "", "the embedded cluster must not listen on TCP");
    let sockets: String = sqlx::query_scalar("SHOW unix_socket_directories").fetch_one(&mut owner).await.unwrap();
    sqlx::Connection::close(owner).await.unwrap();
    assert!(sockets.starts_with(tmp.path().to_str().unwrap()), "{sockets}");
    assert!(tmp.path().join("postgres/run/.s.PGSQL.5432").exists());
    let pid = postmaster_pid(tmp.path()).unwrap();

    // A second process may not take the same data directory.
    let err = Sanctum::open(support::config(tmp.path())).await.err().expect("second open must fail");
    assert!(err.to_string().contains("in use by another sanctum process"), "{err}");

    ctx.close().await.unwrap();
    assert!(postmaster_pid(tmp.path()).is_none(), "stop removes postmaster.pid");
    assert!(exited(pid), "postmaster {pid} still running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_lock_and_crashed_cluster_do_not_prevent_start() {
    let tmp = support::tempdir();
    let ctx = Sanctum::open(support::config(tmp.path())).await.unwrap();
    // the application role may not create tables: the owner does
    assert!(sqlx::query("CREATE TABLE marker (x int)").execute(ctx.pool()).await.is_err());
    let mut owner = ctx.db.owner_connection().await.unwrap();
    sqlx::query("CREATE TABLE marker (x int)").execute(&mut owner).await.unwrap();
    sqlx::query("INSERT INTO marker VALUES (42)").execute(&mut owner).await.unwrap();
    sqlx::Connection::close(owner).await.unwrap();
    ctx.close().await.unwrap();

    // A stale postmaster.pid naming a live process that is not postgres (a reused PID).
    let pidfile = tmp.path().join("postgres/pgdata/postmaster.pid");
    std::fs::write(&pidfile, format!("{}\n{}\n", std::process::id(), tmp.path().display())).unwrap();
    let ctx = Sanctum::open(support::config(tmp.path())).await.unwrap();
    let x: i32 = sqlx::query_scalar("SELECT x FROM marker").fetch_one(ctx.pool()).await.unwrap();
    assert_eq!(x, 42);

    // The cluster crashes hard (kill -9 of the postmaster): shared memory and lock files
    // are left behind, and the next start must still work, with committed data intact.
    let pid = postmaster_pid(tmp.path()).unwrap();
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    drop(ctx);
    let ctx = Sanctum::open(support::config(tmp.path())).await.unwrap();
    let x: i32 = sqlx::query_scalar("SELECT x FROM marker").fetch_one(ctx.pool()).await.unwrap();
    assert_eq!(x, 42);
    ctx.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_left_by_a_dead_owner_is_adopted_and_stopped() {
    let tmp = support::tempdir();
    let ctx = Sanctum::open(support::config(tmp.path())).await.unwrap();
    let pid = postmaster_pid(tmp.path()).unwrap();
    drop(ctx); // the owner goes away without stopping the cluster (as after kill -9)
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    let ctx = Sanctum::open(support::config(tmp.path())).await.unwrap();
    assert_eq!(postmaster_pid(tmp.path()), Some(pid), "the running cluster is reused");
    ctx.close().await.unwrap();
    assert!(postmaster_pid(tmp.path()).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_database_url_is_used_and_migrated() {
    let (url, admin) = support::external_database("sanctum_test").await;
    drop(admin);

    let tmp = support::tempdir();
    let mut config = support::config(tmp.path());
    config.database_url = Some(url.clone());
    let ctx = Sanctum::open(config).await.unwrap();
    assert!(!ctx.db.is_embedded());
    assert!(!tmp.path().join("postgres").exists(), "no embedded cluster when database_url is set");
    let outcomes = sanctum::library::submit_bytes(&ctx, "tester", "note.txt", b"The pharmacy closes at nine.", &Default::default()).await.unwrap();
    assert!(matches!(outcomes[0], sanctum::library::Outcome::Accepted { .. }));
    let report = sanctum::library::run_until_idle(&ctx, &|_| {}).await.unwrap();
    assert_eq!(report.documents, 1);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM chunks").fetch_one(ctx.pool()).await.unwrap();
    assert!(n >= 1);
    ctx.close().await.unwrap();
    use sqlx::Connection;
    let name = url.rsplit('/').next().unwrap();
    let mut admin = sqlx::PgConnection::connect(&support::external_server_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&mut admin).await.unwrap();
}
