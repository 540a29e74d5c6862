//! Embeds the official SDK's browser bundle for the console (`GET /console/sdk/flashphoner.js`,
//! crates/server/src/console.rs) when `console/node_modules` has it: `npm ci --prefix console`
//! (run by `make run` and `make test`) fetches `@flashphoner/websdk` at the version
//! `console/package-lock.json` pins. Without it callgate still builds; the console page then says
//! how to get the SDK. Sets `cfg(console_sdk)` and `CALLGATE_CONSOLE_SDK` (the bundle's path).

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(console_sdk)");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../console");
    let bundle = root.join("node_modules/@flashphoner/websdk/flashphoner.js");
    if bundle.is_file() {
        println!("cargo::rustc-cfg=console_sdk");
        println!("cargo::rustc-env=CALLGATE_CONSOLE_SDK={}", bundle.display());
        println!("cargo::rerun-if-changed={}", bundle.display());
        println!("cargo::rerun-if-changed={}", root.join("package-lock.json").display());
    } else if root.is_dir() {
        // Watches the folder: `npm ci` adding node_modules makes the next build embed the SDK.
        println!("cargo::rerun-if-changed={}", root.display());
    } else {
        println!("cargo::rerun-if-changed=build.rs");
    }
}
