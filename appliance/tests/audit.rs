//! The audit chain on real PostgreSQL: parallel writers leave one chain; a modified, a
//! deleted and two reordered records are found and named. (Truncation and a recomputed
//! whole-table rewrite need the signed checkpoints outside the database: issue 5.)

mod support;

use sanctum::audit::{self, Entry};
use sanctum::Sanctum;

fn entry(i: usize) -> Entry<'static> {
    Entry { actor: "tester", action: "search", object: None, decision: Some("allow"), details: serde_json::json!({ "n": i, "passages": ["a", "b"] }) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_writers_leave_one_chain_and_tampering_is_found() {
    let tmp = support::tempdir();
    let ctx = std::sync::Arc::new(Sanctum::open(support::config(tmp.path())).await.unwrap());
    let mut tasks = Vec::new();
    for w in 0..8 {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let mut tx = ctx.pool().begin().await.unwrap();
                audit::append(&mut tx, &entry(w * 100 + i)).await.unwrap();
                tx.commit().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let v = audit::verify(ctx.pool()).await.unwrap();
    assert_eq!((v.records, v.broken.clone()), (80, None), "{v:?}");

    // the application cannot change or remove a record
    for sql in ["UPDATE audit SET actor = 'x' WHERE seq = 3", "DELETE FROM audit WHERE seq = 3", "TRUNCATE audit"] {
        let err = sqlx::query(sql).execute(ctx.pool()).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }

    // someone with the power to disable the trigger: each change inside a transaction that
    // is rolled back afterwards
    let tampered = [
        ("UPDATE audit SET details = '{\"n\": 999}' WHERE seq = 5", 5, "modified"),
        ("DELETE FROM audit WHERE seq = 7", 8, "expected record 7"),
        (
            "UPDATE audit a SET actor = b.actor, action = b.action, details = b.details, at = b.at, hash = b.hash, prev_hash = b.prev_hash
             FROM audit b WHERE (a.seq, b.seq) IN ((10, 11), (11, 10))",
            10,
            "prev_hash",
        ),
        ("UPDATE audit SET actor = 'mallory' WHERE seq = 20", 20, "modified"),
        // the last record removed: only a checkpoint outside the database can show it (next step)
    ];
    for (sql, seq, why) in tampered {
        let mut tx = ctx.pool().begin().await.unwrap();
        sqlx::query("ALTER TABLE audit DISABLE TRIGGER USER").execute(&mut *tx).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await.unwrap();
        let v = audit::verify_on(&mut tx).await.unwrap();
        let (at, reason) = v.broken.clone().unwrap_or_else(|| panic!("{sql}: not detected"));
        assert_eq!(at, seq, "{sql}: {reason}");
        assert!(reason.contains(why), "{sql}: {reason}");
        tx.rollback().await.unwrap();
    }
    assert_eq!(audit::verify(ctx.pool()).await.unwrap().broken, None);
    match std::sync::Arc::try_unwrap(ctx) {
        Ok(ctx) => ctx.close().await.unwrap(),
        Err(_) => panic!("still shared"),
    }
}
