//! The services' pool with more takers than connections, on real Postgres: checkouts are served
//! in turn, so every task keeps making progress and none waits out the checkout timeout.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use diesel_async::RunQueryDsl;
use tenantry_testing::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn more_takers_than_connections_are_served_in_turn() {
    let db = TestDb::new().await;
    let mut config = tenantry_db::PoolConfig::new(db.app_url.clone());
    config.max_size = 2;
    config.connect_timeout = Duration::from_secs(1);
    let pool = tenantry_db::connect(&config).await.unwrap();

    // 16 tasks on 2 connections, each checking out, running one statement and checking out
    // again at once, for 2 s. bb8 alone lets the two tasks that hold the connections keep them:
    // the others wait out the 1 s timeout (counted as errors) and barely progress.
    const TASKS: usize = 16;
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let (mut served, mut errors) = (0u64, Vec::new());
            while tokio::time::Instant::now() < until {
                match pool.get().await {
                    Ok(mut conn) => {
                        diesel::sql_query("SELECT 1")
                            .execute(&mut **conn)
                            .await
                            .unwrap();
                        served += 1;
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (served, errors)
        }));
    }
    let mut served = Vec::new();
    for task in tasks {
        let (n, errors) = task.await.unwrap();
        assert!(errors.is_empty(), "checkouts failed: {errors:?}");
        served.push(n);
    }
    let total: u64 = served.iter().sum();
    let least = *served.iter().min().unwrap();
    // First come, first served: each task gets about a sixteenth of the checkouts.
    assert!(
        least * 4 * TASKS as u64 >= total,
        "a task got {least} of {total} checkouts: {served:?}"
    );
    assert!(total >= TASKS as u64 * 10, "{served:?}");
    // The pool never opened more than its two connections.
    assert_eq!(pool.state().connections, 2);
}
