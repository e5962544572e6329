//! Links the system's libopus (Debian `libopus-dev`), found through pkg-config when it is there.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let found = Command::new("pkg-config").args(["--libs-only-L", "opus"]).output();
    if let Some(output) = found.ok().filter(|output| output.status.success()) {
        for flag in String::from_utf8_lossy(&output.stdout).split_whitespace() {
            if let Some(dir) = flag.strip_prefix("-L") {
                println!("cargo:rustc-link-search=native={dir}");
            }
        }
    }
    println!("cargo:rustc-link-lib=opus");
}
