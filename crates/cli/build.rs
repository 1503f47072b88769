//! - `cfg(postgres_tests)` when the tests run against PostgreSQL (`DATACUBE_TEST_POSTGRES`,
//!   set by `scripts/test`): tests that need PostgreSQL are reported as ignored without it.
//! - `DATACUBE_COMMIT` for `datacube --version`: the environment's (a container build
//!   without `.git` passes it as a build argument), else `git rev-parse`, else `unknown`.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(postgres_tests)");
    println!("cargo::rerun-if-env-changed=DATACUBE_TEST_POSTGRES");
    if std::env::var("DATACUBE_TEST_POSTGRES").is_ok_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=postgres_tests");
    }

    println!("cargo::rerun-if-env-changed=DATACUBE_COMMIT");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for watched in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        let path = root.join(watched);
        if path.exists() {
            println!("cargo::rerun-if-changed={}", path.display());
        }
    }
    let commit = std::env::var("DATACUBE_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| {
            let out = std::process::Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .current_dir(&root)
                .output()
                .ok()?;
            let commit = String::from_utf8(out.stdout).ok()?.trim().to_owned();
            (out.status.success() && !commit.is_empty()).then_some(commit)
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo::rustc-env=DATACUBE_COMMIT={commit}");
}
