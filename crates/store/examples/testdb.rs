//! Test databases on a PostgreSQL server, for `scripts/test`:
//!
//! - `testdb probe URL`: exits 0 if the server answers, else prints why and exits 1;
//! - `testdb clean URL`: drops the databases earlier test runs created;
//! - `testdb create URL`: creates a fresh database and prints its URL.

use std::process::ExitCode;

use datacube_store::testing::{fresh_database, DATABASE_PREFIX, POSTGRES_ENV};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [command, url] = &args[..] else {
        eprintln!("usage: testdb probe|clean|create POSTGRES_URL");
        return ExitCode::FAILURE;
    };
    let mut client = match postgres::Client::connect(url, postgres::NoTls) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("no PostgreSQL at {url}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let done = match command.as_str() {
        "probe" => client.simple_query("SELECT 1").map(|_| ()),
        "clean" => (|| {
            let pattern = format!("{DATABASE_PREFIX}%");
            let names: Vec<String> = client
                .query(
                    "SELECT datname FROM pg_database WHERE datname LIKE $1",
                    &[&pattern],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for name in &names {
                client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
            }
            println!("dropped {} test databases", names.len());
            Ok(())
        })(),
        "create" => {
            drop(client);
            std::env::set_var(POSTGRES_ENV, url);
            println!("{}", fresh_database(std::path::Path::new("."), "unused"));
            Ok(())
        }
        other => {
            eprintln!("unknown command {other:?}: probe, clean or create");
            return ExitCode::FAILURE;
        }
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{command}: {e}");
            ExitCode::FAILURE
        }
    }
}
