//! `cfg(postgres_tests)` when the tests run against PostgreSQL (`DATACUBE_TEST_POSTGRES`, set
//! by `scripts/test`): tests that need PostgreSQL are reported as ignored without it.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(postgres_tests)");
    println!("cargo::rerun-if-env-changed=DATACUBE_TEST_POSTGRES");
    if std::env::var("DATACUBE_TEST_POSTGRES").is_ok_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=postgres_tests");
    }
}
