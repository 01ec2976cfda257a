//! The command line of SPEC §1, black-box with the real binary: every command has help with
//! an example, `--version` works, and usage errors exit 2 (0 success, 1 error, 2 usage).
//! The commands themselves: `gatehouse check` in `cli_check.rs`, `authz` in `cli_authz.rs`,
//! `cert` in `cert_files.rs`, `cert_trust.rs` and `cert_pkcs12.rs`, `demo` in `demo.rs`.

mod common;

use common::binary::{gh, s};

#[test]
fn help_of_every_command_exits_0_and_shows_an_example() {
    let mut missing = Vec::new();
    for command in [
        "",
        "run",
        "check",
        "authz",
        "demo",
        "echo",
        "bench",
        "verify",
        "cert",
        "cert ca",
        "cert server",
        "cert client",
    ] {
        let run = gh(&format!("{command} --help"));
        run.ok();
        if !run.stdout.contains("Example") {
            missing.push(format!("gatehouse {command} --help").replace("  ", " "));
        }
    }
    assert!(missing.is_empty(), "no `Example` in: {missing:?}");
    // The echo routes are printed whole: clap's help template eats `{n}`-like words.
    let root = gh("--help");
    let echo_line = root
        .stdout
        .lines()
        .find(|l| l.contains("/bytes/"))
        .unwrap_or_default();
    assert!(echo_line.contains("/delay/"), "{}", root.stdout);
}

#[test]
fn version_exits_0() {
    let run = gh("--version");
    run.ok();
    assert!(
        run.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{}",
        run.stdout
    );
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = s(dir.path());
    let authz = "authz -c gatehouse.toml";
    for line in [
        String::new(),
        "frobnicate".into(),
        "check".into(),
        "check -c".into(),
        "check -c gatehouse.toml --bogus".into(),
        "run".into(),
        format!("{authz} --host test.com --path /"),
        format!("{authz} --method GET --path /"),
        format!("{authz} --method GET --host test.com"),
        format!("{authz} --method GET --host h --path / --cert c.crt --principal test.client"),
        "cert".into(),
        format!("cert ca --out {d} --key-type dsa"),
        format!("cert ca --out {d} --days soon"),
        format!("cert server --ca {d} --out {d}"),
        format!("cert server --ca {d} --out {d} --dns a.com --ip not-an-ip"),
        "echo --listen not-an-address".into(),
    ] {
        let run = gh(&line);
        run.expect_code(2);
        assert!(
            !run.stderr.is_empty(),
            "gatehouse {line}: no message on stderr"
        );
    }
    // The refused cert commands wrote nothing.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
