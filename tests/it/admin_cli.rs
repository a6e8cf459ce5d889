//! The `tessera` command's admin subcommands, run as an operator would.

use std::process::Command;

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(user_create_then_login, registration_token_commands, serve_stops_cleanly_on_sigterm);

fn tessera(server: &TestServer, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TESSERA_SERVER_NAME", "tessera.test")
        .env("TESSERA_DATA_DIR", server.data_dir())
        .env("TESSERA_DATABASE_URL", server.database_url())
        .env("TESSERA_LOG", "warn")
        .output()
        .expect("run tessera")
}

async fn user_create_then_login(backend: Backend) {
    let server = TestServer::start(backend).await;
    let out = tessera(&server, &["user", "create", "root", "--admin", "--password", "correct horse"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("@root:tessera.test"));

    let mut client = server.client();
    client.login("root", "correct horse").await.ok();
    assert_eq!(client.get("/_matrix/client/v3/account/whoami").await.ok()["user_id"], "@root:tessera.test");

    // A generated password is printed once and works.
    let out = tessera(&server, &["user", "create", "second"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let password = stdout.lines().find_map(|l| l.strip_prefix("password: ")).expect("printed password");
    server.client().login("second", password).await.ok();

    // Taken names fail with a message, not a panic.
    let out = tessera(&server, &["user", "create", "root", "--password", "x"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("taken"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn registration_token_commands(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.allow_registration = false;
        c.registration_requires_token = true;
    })
    .await;
    let out = tessera(&server, &["registration-token", "create", "--uses", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let validity = format!("/_matrix/client/v1/register/m.login.registration_token/validity?token={token}");
    assert_eq!(server.client().get(&validity).await.ok()["valid"], true);

    let listed = tessera(&server, &["registration-token", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&format!("{token}\tused 0 of 2")));

    let out = tessera(&server, &["registration-token", "delete", &token]);
    assert!(out.status.success());
    assert_eq!(server.client().get(&validity).await.ok()["valid"], false);
}

#[test]
fn help_explains_every_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera")).arg("--help").output().expect("run tessera --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["serve", "user", "registration-token", "--config"] {
        assert!(help.contains(command), "--help does not mention {command}:\n{help}");
    }
}

async fn serve_stops_cleanly_on_sigterm(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    server.stop().await.expect("stop the in-process server; the binary takes over its database");
    let (child, _) = server.spawn_binary().await;
    let pid = child.id().expect("pid").to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(killed.success());
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("tessera exits after SIGTERM")
        .expect("wait");
    assert!(output.status.success(), "exit status {:?}", output.status);
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(log.contains("shutting down") && log.contains("database closed"), "{log}");
}
