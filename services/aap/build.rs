//! Builds the operators' console (console/, React + Vite) into OUT_DIR and writes
//! `console_assets.rs`, which compiles every built file into the `aap` binary: no Node at run
//! time. Node packages come from `npm ci` in console/ (deploy/local/install.sh runs it).
//!
//! Without console/node_modules the binary gets a placeholder page that says how to build the
//! console (and a cargo warning), so that Rust work never needs Node; `AAP_CONSOLE_REQUIRED=1`
//! (CI, the installer's build) turns that into an error.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let console = manifest_dir.join("../../console");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dist = out_dir.join("console-dist");
    for input in [
        "src",
        "index.html",
        "package.json",
        "package-lock.json",
        "vite.config.ts",
        "public",
        "node_modules/.package-lock.json",
    ] {
        println!("cargo:rerun-if-changed={}", console.join(input).display());
    }
    println!("cargo:rerun-if-env-changed=AAP_CONSOLE_REQUIRED");
    let required = std::env::var("AAP_CONSOLE_REQUIRED").is_ok_and(|v| v == "1");

    let built = if console.join("node_modules").is_dir() {
        build(&console, &dist);
        true
    } else if required {
        panic!("console/node_modules is missing: run `npm ci` in console/ (deploy/local/install.sh does)");
    } else {
        println!(
            "cargo:warning=console/node_modules is missing: the console is a placeholder (run `npm ci` in console/)"
        );
        placeholder(&dist);
        false
    };
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    let mut code = String::new();
    writeln!(code, "/// Whether the console was built from console/ (false: a placeholder).").ok();
    writeln!(code, "pub const BUILT: bool = {built};").ok();
    writeln!(code, "/// Every file of the built console: (URL path, bytes, content type).").ok();
    writeln!(code, "pub static ASSETS: &[(&str, &[u8], &str)] = &[").ok();
    for (url, path) in &files {
        let kind = content_type(path);
        writeln!(code, "    ({url:?}, include_bytes!({:?}), {kind:?}),", path.display().to_string()).ok();
    }
    writeln!(code, "];").ok();
    std::fs::write(out_dir.join("console_assets.rs"), code).expect("write console_assets.rs");
}

fn build(console: &Path, dist: &Path) {
    let _ = std::fs::remove_dir_all(dist);
    let status = Command::new("npx")
        .args(["--no-install", "vite", "build", "--emptyOutDir", "--logLevel", "warn", "--outDir"])
        .arg(dist)
        .current_dir(console)
        .status()
        .expect("run npx vite build (is Node installed?)");
    assert!(status.success(), "vite build of console/ failed: {status}");
}

fn placeholder(dist: &Path) {
    std::fs::create_dir_all(dist).expect("create the placeholder console dir");
    std::fs::write(
        dist.join("index.html"),
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>aap console</title></head><body>\
         <h1>The console was not built</h1><p>This aap binary was built without console/node_modules. \
         Run <code>npm ci</code> in console/ (or <code>bash deploy/local/install.sh</code>) and build again.</p>\
         </body></html>",
    )
    .expect("write the placeholder console");
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if let Ok(relative) = path.strip_prefix(root) {
            let url = format!("/{}", relative.to_string_lossy().replace('\\', "/"));
            files.push((url, path));
        }
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
