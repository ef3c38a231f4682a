//! `tenantctl create-super-admin`: the real binary against a test database, as the services'
//! role (DATABASE_URL), with the password on stdin or generated.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::process::{Output, Stdio};

use tenantry_db::diesel;
use tenantry_db::diesel::sql_types::Text;
use tenantry_db::diesel_async::RunQueryDsl as _;
use tenantry_testing::TestDb;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

/// Runs `tenantctl create-super-admin --email <email> [extra]` with `stdin` written to it.
async fn create(db: &TestDb, email: &str, extra: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenantctl"))
        .args(["create-super-admin", "--email", email])
        .args(extra)
        .env("DATABASE_URL", &db.app_url)
        .env_remove("DATABASE_ADMIN_URL")
        .env("TENANTRY_BCRYPT_COST", "4")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    child.wait_with_output().await.unwrap()
}

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    email: String,
    #[diesel(sql_type = Text)]
    password_hash: String,
}

/// The platform admins, read as the superuser (past RLS).
async fn admins(db: &TestDb) -> Vec<Row> {
    let mut conn = db.admin_conn().await;
    diesel::sql_query("SELECT email, password_hash FROM platform_admins ORDER BY created_at")
        .load(&mut conn)
        .await
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn creates_a_super_admin_with_the_password_from_stdin_once() {
    let db = TestDb::new().await;
    let out = create(
        &db,
        "root@example.test",
        &["--password-stdin"],
        "a long enough password\nignored second line\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("created super admin root@example.test"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("password"),
        "a given password is not echoed: {stdout}"
    );
    let rows = admins(&db).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].email, "root@example.test");
    assert!(
        rows[0].password_hash.starts_with("$2b$04$"),
        "TENANTRY_BCRYPT_COST honoured"
    );
    assert!(bcrypt::verify("a long enough password", &rows[0].password_hash).unwrap());

    // The same e-mail again (in another case) fails and writes nothing.
    let again = create(
        &db,
        "ROOT@example.test",
        &["--password-stdin"],
        "another password\n",
    )
    .await;
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(admins(&db).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn generates_a_password_or_refuses_a_short_one() {
    let db = TestDb::new().await;
    let short = create(&db, "short@example.test", &["--password-stdin"], "short\n").await;
    assert!(!short.status.success());
    assert!(
        text(&short.stderr).contains("at least 8 characters"),
        "{}",
        text(&short.stderr)
    );
    assert!(admins(&db).await.is_empty());

    let out = create(&db, "gen@example.test", &[], "").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let password = stdout
        .lines()
        .find_map(|l| {
            l.rsplit_once("store it now): ")
                .map(|(_, p)| p.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no password printed: {stdout}"));
    assert_eq!(password.len(), 22, "16 random bytes, URL-safe base64");
    let rows = admins(&db).await;
    assert_eq!(rows.len(), 1);
    assert!(bcrypt::verify(&password, &rows[0].password_hash).unwrap());
}
