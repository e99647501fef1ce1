//! The `waos` binary itself: help, settings from the environment, and the embedded default.

use std::process::{Command, Stdio};
use std::time::Duration;

const WAOS: &str = env!("CARGO_BIN_EXE_waos");

fn scratch() -> std::path::PathBuf {
    let folder = std::env::temp_dir().join(format!("waos-bin-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&folder).unwrap();
    folder
}

#[test]
fn help_names_every_subcommand() {
    let output = Command::new(WAOS).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for command in ["serve", "migrate"] {
        assert!(help.contains(command), "{help}");
    }
}

#[test]
fn unknown_setting_keys_are_rejected_by_name() {
    let folder = scratch();
    let output = Command::new(WAOS)
        .arg("migrate")
        .current_dir(&folder)
        .env("WAOS__SERVER__PROT", "1")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("prot"), "{error}");
    std::fs::remove_dir_all(folder).unwrap();
}

#[actix_web::test]
async fn serve_with_no_configuration_runs_on_the_embedded_default() {
    let folder = scratch();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(WAOS)
        .arg("serve")
        .current_dir(&folder)
        .env("WAOS__SERVER__PORT", port.to_string())
        .env("WAOS__META__APP_SECRET", "s3cret-never-logged")
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut healthy = false;
    for _ in 0..200 {
        if let Ok(response) = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            healthy = response.status() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let readyz = client
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .unwrap();
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(healthy, "{log}");
    assert_eq!(readyz.status(), 200);
    assert!(
        folder.join("data/waos.sqlite").exists(),
        "the SQLite file is created"
    );
    // The generated admin token is in a private file; the log names the file, never the token.
    let token_file = folder.join("data/admin-token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert!(log.contains("admin-token"));
    assert!(
        !log.contains(token.trim()),
        "the admin token leaked into the log"
    );
    assert!(
        !log.contains("s3cret-never-logged"),
        "the app secret leaked into the log"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the token file is readable by its owner only"
        );
    }
    std::fs::remove_dir_all(folder).unwrap();
}
