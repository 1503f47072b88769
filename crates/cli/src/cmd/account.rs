//! `datacube account` and `datacube component`: the accounts and third-party platforms in the
//! database.

use std::io::Write;

use anyhow::{bail, Result};
use clap::Subcommand;
use datacube_api::{Appid, Secret};
use datacube_protocol::crypto::check_component_keys;
use datacube_store::{AccountRecord, DatabaseUrl, StoreError};

use crate::args::DatabaseArg;
use crate::{open, Code, Exit};

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Add an Official Account. The secret is stored hashed and never shown again.
    Add {
        /// AppID (`wx` + 16 hex digits for real accounts).
        #[arg(long)]
        appid: String,
        /// AppSecret.
        #[arg(long, env = "DATACUBE_SECRET", hide_env_values = true)]
        secret: String,
        /// Make the account unverified: every datacube endpoint answers it 48001.
        #[arg(long)]
        unverified: bool,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// List accounts (never their secrets).
    List {
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Remove an account and everything of it: events, statistics, tokens, quotas, sync
    /// records, the grants it gave. Running servers forget it within a second.
    Remove {
        /// The account's AppID.
        #[arg(long)]
        appid: String,
        #[command(flatten)]
        db: DatabaseArg,
    },
}

#[derive(Subcommand)]
pub enum ComponentCommand {
    /// Add a third-party platform. `serve` pushes its component_verify_ticket to the event URL
    /// every 10 minutes (and on `POST /admin/components/<appid>/ticket`).
    Add {
        /// The component's AppID.
        #[arg(long)]
        appid: String,
        /// Its AppSecret (stored hashed).
        #[arg(long, env = "DATACUBE_COMPONENT_SECRET", hide_env_values = true)]
        secret: String,
        /// The Token of its pushes (3–32 letters and digits).
        #[arg(long)]
        token: String,
        /// Its EncodingAESKey (43 characters).
        #[arg(long)]
        aes_key: String,
        /// 授权事件接收URL: where tickets and authorization events are pushed.
        #[arg(long)]
        event_url: Option<String>,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// List components (never their secrets).
    List {
        #[command(flatten)]
        db: DatabaseArg,
    },
}

/// `datacube account …`.
pub async fn account(command: AccountCommand) -> Result<()> {
    match command {
        AccountCommand::Add {
            appid,
            secret,
            unverified,
            db,
        } => account_add(&db.database, appid, secret, !unverified).await,
        AccountCommand::List { db } => account_list(&db.database).await,
        AccountCommand::Remove { appid, db } => {
            let store = open(&db.database)?;
            if !store.remove_account(&appid).await? {
                return Err(Exit::code(Code::Failure, format!("no account {appid}")));
            }
            println!("removed account {appid} and its data");
            Ok(())
        }
    }
}

/// `datacube component …`.
pub async fn component(command: ComponentCommand) -> Result<()> {
    match command {
        ComponentCommand::Add {
            appid,
            secret,
            token,
            aes_key,
            event_url,
            db,
        } => component_add(&db.database, appid, secret, token, aes_key, event_url).await,
        ComponentCommand::List { db } => {
            let store = open(&db.database)?;
            for c in store.components().await? {
                println!(
                    "{}\t{}",
                    c.appid,
                    c.event_url.as_deref().unwrap_or("(no event URL)")
                );
            }
            Ok(())
        }
    }
}

async fn account_add(
    url: &DatabaseUrl,
    appid: String,
    secret: String,
    verified: bool,
) -> Result<()> {
    match Appid::parse(&appid).and(Secret::parse(&secret)) {
        Err(msg) => return Err(Exit::usage(msg)),
        Ok(parsed) if parsed.is_short() => eprintln!(
            "warning: a secret shorter than 32 characters can be guessed (sign-ins are not \
             slowed down): use 32 random characters, as WeChat's are"
        ),
        Ok(_) => {}
    }
    let store = open(url)?;
    let hash =
        tokio::task::spawn_blocking(move || datacube_api::account::hash_secret(&secret)).await?;
    let record = AccountRecord {
        appid: appid.clone(),
        secret_hash: hash,
        verified,
        created_at: jiff::Timestamp::now().as_second(),
        incarnation: 0, // drawn by the store
    };
    match store.add_account(record).await {
        Ok(()) => {
            println!(
                "added account {appid} ({})",
                if verified {
                    "verified"
                } else {
                    "unverified: datacube endpoints answer 48001"
                }
            );
            Ok(())
        }
        Err(StoreError::AccountExists(_)) => bail!("account {appid} already exists in {url}"),
        Err(e) => Err(e.into()),
    }
}

async fn component_add(
    url: &DatabaseUrl,
    appid: String,
    secret: String,
    token: String,
    aes_key: String,
    event_url: Option<String>,
) -> Result<()> {
    if let Err(msg) = Appid::parse(&appid)
        .and(Secret::parse(&secret))
        .and(check_component_keys(&token, &aes_key, event_url.as_deref()))
    {
        return Err(Exit::usage(msg));
    }
    let store = open(url)?;
    let hash =
        tokio::task::spawn_blocking(move || datacube_api::account::hash_secret(&secret)).await?;
    let record = datacube_store::ComponentRecord {
        appid: appid.clone(),
        secret_hash: hash,
        token: token.into(),
        aes_key: aes_key.into(),
        event_url,
        created_at: jiff::Timestamp::now().as_second(),
    };
    match store.add_component(record).await {
        Ok(()) => {
            println!("added component {appid}");
            Ok(())
        }
        Err(StoreError::AccountExists(_)) => bail!("component {appid} already exists in {url}"),
        Err(e) => Err(e.into()),
    }
}

async fn account_list(url: &DatabaseUrl) -> Result<()> {
    let store = open(url)?;
    let accounts = store.accounts().await?;
    let mut out = std::io::stdout().lock();
    let mut write = || -> std::io::Result<()> {
        writeln!(out, "{:<24} {:<10} CREATED", "APPID", "VERIFIED")?;
        for a in &accounts {
            let created = jiff::Timestamp::from_second(a.created_at)
                .map(|t| t.to_string())
                .unwrap_or_default();
            writeln!(
                out,
                "{:<24} {:<10} {created}",
                a.appid,
                if a.verified { "yes" } else { "no" }
            )?;
        }
        out.flush()
    };
    Ok(super::reader_gone_is_fine(write())?)
}
