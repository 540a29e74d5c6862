//! The binary exits non-zero after a supervised part panicked (issue 14): with a debug-build hook
//! (`CALLGATE_DEBUG_PANIC_SIP_DRIVER`, `CALLGATE_DEBUG_PANIC_MEDIA_TASK`) that part panics once the
//! server runs; the process must log it, shut down and exit with code 70 (`supervise::EXIT_CODE`)
//! on its own, instead of running on with a dead SIP endpoint or media task.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the binary with `hook` set and returns its exit code and everything it logged.
fn run_until_exit(hook: &str, what: &str) -> (Option<i32>, String) {
    let dir = std::env::temp_dir().join(format!("callgate-exit-test-{hook}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("callgate.toml");
    std::fs::write(
        &cfg,
        "[server]\nws_bind = \"127.0.0.1:0\"\nhttp_bind = \"127.0.0.1:0\"\n[media]\nbind = \"127.0.0.1:0\"\n\
         [sip]\nbind = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .arg("--config")
        .arg(&cfg)
        .env(hook, "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the callgate binary starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("callgate kept running after its {what} panicked");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    child.stdout.take().unwrap().read_to_string(&mut log).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (status.code(), log)
}

#[test]
fn a_sip_driver_panic_makes_the_binary_exit_with_code_70() {
    let (code, log) = run_until_exit("CALLGATE_DEBUG_PANIC_SIP_DRIVER", "SIP driver");
    assert_eq!(code, Some(70), "{log}");
    assert!(log.contains("SIP driver panicked"), "{log}");
    assert!(log.contains("exiting with code 70"), "{log}");
}

#[test]
fn a_media_task_panic_makes_the_binary_exit_with_code_70() {
    let (code, log) = run_until_exit("CALLGATE_DEBUG_PANIC_MEDIA_TASK", "media task");
    assert_eq!(code, Some(70), "{log}");
    assert!(log.contains("media task panicked"), "{log}");
    assert!(log.contains("exiting with code 70"), "{log}");
}
