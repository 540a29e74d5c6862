//! The binary exits non-zero after a supervised part panicked (issue 14): with the debug-build
//! hook `CALLGATE_DEBUG_PANIC_SIP_DRIVER` the SIP user agent panics once the server runs; the
//! process must log it, shut down and exit with code 70 (`supervise::EXIT_CODE`) on its own,
//! instead of running on with a dead SIP endpoint.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_sip_driver_panic_makes_the_binary_exit_with_code_70() {
    let dir = std::env::temp_dir().join(format!("callgate-exit-test-{}", std::process::id()));
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
        .env("CALLGATE_DEBUG_PANIC_SIP_DRIVER", "1")
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
            panic!("callgate kept running after its SIP driver panicked");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    child.stdout.take().unwrap().read_to_string(&mut log).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(status.code(), Some(70), "{log}");
    assert!(log.contains("SIP driver panicked"), "{log}");
    assert!(log.contains("exiting with code 70"), "{log}");
}
