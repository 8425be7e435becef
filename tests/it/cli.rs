//! The `grantd` binary as an operator runs it.

use std::process::{Command, Output};

use crate::helpers::{TestDb, backends};

const MASTER_KEY: &str = "0001020304050607080910111213141516171819202122232425262728293031";

fn grantd(db: &TestDb, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_grantd"));
    cmd.args(args).env("GRANTD_DATABASE_URL", &db.url).env_remove("DATABASE_URL").env("GRANTD_LOG", "warn");
    if db.backend == "postgres" {
        cmd.env("GRANTD_MASTER_KEY", MASTER_KEY);
    } else {
        cmd.env_remove("GRANTD_MASTER_KEY");
    }
    cmd.output().expect("run grantd")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[actix_web::test]
async fn init_is_idempotent_and_the_audit_tools_work() {
    for tdb in backends().await {
        let first = grantd(&tdb, &["init"]);
        assert!(first.status.success(), "{}: {}", tdb.backend, text(&first.stderr));
        let creds: serde_json::Value = serde_json::from_slice(&first.stdout).expect("init prints JSON credentials");
        assert_eq!(creds["admin_client_id"], "grantd-admin");
        assert!(creds["admin_client_secret"].as_str().is_some_and(|s| s.len() >= 43), "256-bit secret");

        let db = tdb.open().await;
        let store = grantd::eventstore::EventStore::open(&db).await.unwrap();
        let head = store.head().await.unwrap();
        assert_eq!(head, 7, "two keys generated + activated, admin client and its client_id claim, installation");

        let again = grantd(&tdb, &["init"]);
        assert!(again.status.success());
        assert!(again.stdout.is_empty(), "no new credentials");
        assert!(text(&again.stderr).contains("already initialised"), "{}", text(&again.stderr));
        assert_eq!(store.head().await.unwrap(), head, "a second init changes nothing");

        for args in [&["migrate"][..], &["migrate"], &["projections", "rebuild"], &["audit", "verify"]] {
            let out = grantd(&tdb, args);
            assert!(out.status.success(), "{} {args:?}: {}", tdb.backend, text(&out.stderr));
        }
        let verify = grantd(&tdb, &["audit", "verify"]);
        assert!(text(&verify.stdout).contains("intact: 7 events"), "{}", text(&verify.stdout));
        let rebuilt = grantd(&tdb, &["projections", "rebuild"]);
        assert!(text(&rebuilt.stderr).contains("rebuilt from 7 events"), "{}", text(&rebuilt.stderr));
    }
}

#[actix_web::test]
async fn init_with_given_admin_credentials_prints_no_secret() {
    let tdb = TestDb::sqlite().await;
    let out = grantd(&tdb, &["init", "--admin-client-id", "ops", "--admin-client-secret", "a-long-enough-secret-value"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert!(!text(&out.stderr).contains("a-long-enough-secret-value"), "secrets never reach the logs");
    assert!(text(&out.stderr).contains("admin client ops"));
}

#[actix_web::test]
async fn sqlite_master_key_file_is_created_private_beside_the_database() {
    let tdb = TestDb::sqlite().await;
    let out = grantd(&tdb, &["init"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("master key"), "a warning names the generated key file: {}", text(&out.stderr));
    let db_path = tdb.url.trim_start_matches("sqlite://");
    let key = std::path::PathBuf::from(format!("{db_path}.master-key"));
    let meta = std::fs::metadata(&key).expect("master key file exists");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

#[actix_web::test]
async fn audit_verify_fails_naming_the_broken_position() {
    let tdb = TestDb::sqlite().await;
    assert!(grantd(&tdb, &["init"]).status.success());
    let db = tdb.open().await;
    let grantd::db::Db::Sqlite { pool, .. } = &db else { unreachable!() };
    sqlx::raw_sql("DROP TRIGGER events_are_immutable_update; UPDATE events SET metadata = replace(metadata, 'grantd init', 'someone else') WHERE position = 3")
        .execute(pool)
        .await
        .unwrap();
    let out = grantd(&tdb, &["audit", "verify"]);
    assert!(!out.status.success());
    assert!(text(&out.stdout).contains("broken at position 3"), "{}", text(&out.stdout));
}

#[actix_web::test]
async fn unreachable_database_is_one_clear_line_without_the_password() {
    let out = Command::new(env!("CARGO_BIN_EXE_grantd"))
        .args(["audit", "verify", "--database-url", "postgres://grantd:hunter2@127.0.0.1:1/grantd"])
        .env("GRANTD_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("127.0.0.1:1") && !err.contains("hunter2") && !err.contains("panicked"), "{err}");
}

#[actix_web::test]
async fn serve_on_an_empty_database_initialises_and_answers_health_checks() {
    let tdb = TestDb::sqlite().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_grantd"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("GRANTD_DATABASE_URL", &tdb.url)
        .env("GRANTD_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let healthy = crate::helpers::eventually("serve to answer", std::time::Duration::from_secs(20), || {
        let client = client.clone();
        let url = url.clone();
        async move { client.get(&url).send().await.ok().filter(|r| r.status().is_success()) }
    })
    .await;
    assert_eq!(healthy.text().await.unwrap(), "ok");
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let creds: serde_json::Value = serde_json::from_slice(&out.stdout).expect("serve printed the generated admin credentials");
    assert_eq!(creds["admin_client_id"], "grantd-admin");
}
