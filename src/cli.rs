//! Operator commands, run against the configured database (also while the server runs).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::service::accounts::Accounts;
use crate::service::auth::Authenticator;
use crate::service::e2ee::E2ee;
use crate::service::media::MediaService;
use crate::service::notifier::Notifier;
use crate::storage;

#[derive(Parser)]
#[command(name = "kith", version, about = "Kith, a Matrix homeserver")]
pub struct Cli {
    /// Path of the TOML configuration file (default: none; defaults and KITH_* variables apply).
    #[arg(long, short, env = "KITH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print a commented example configuration with every option, and exit.
    #[arg(long)]
    pub generate_config: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the media repository.
    #[command(subcommand)]
    Media(MediaCommand),
}

#[derive(Subcommand)]
pub enum MediaCommand {
    /// Delete media by mxc:// URI (or media id), with its thumbnails; content
    /// no other media holds is removed from disk.
    Delete {
        #[arg(required = true)]
        media: Vec<String>,
    },
    /// Delete every media file a user uploaded.
    DeleteUserMedia {
        /// The localpart or full user id.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create an account. The password is read from --password-file, or from standard input.
    Create {
        /// The localpart of the new user (the "alice" of @alice:server).
        name: String,
        /// Make the user a server admin.
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Set a new password and log the user out everywhere.
    ResetPassword {
        name: String,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Deactivate an account for good: it cannot log in again and its name is never reused.
    Deactivate { name: String },
}

fn read_password(file: Option<&PathBuf>) -> anyhow::Result<String> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
        None => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).context("cannot read the password from standard input")?;
            line
        }
    };
    let password = text.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}

pub async fn run_user_command(config: Config, command: UserCommand) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)?;
    let config = Arc::new(config);
    let storage = storage::open(&config.database_url(), 2).await?;
    let accounts = cli_accounts(&config, &storage).await?;
    let result = async {
        match command {
            UserCommand::Create { name, admin, password_file } => {
                let password = read_password(password_file.as_ref())?;
                let user_id = accounts.create(&name, Some(password), admin, false).await?;
                println!("created {user_id}{}", if admin { " (admin)" } else { "" });
            }
            UserCommand::ResetPassword { name, password_file } => {
                let password = read_password(password_file.as_ref())?;
                let user_id = accounts.user_id(&name);
                accounts.set_password(&user_id, password).await?;
                accounts.revoke_sessions_except(&user_id, None).await?;
                println!("password of {user_id} reset; all its sessions were logged out");
            }
            UserCommand::Deactivate { name } => {
                let user_id = accounts.user_id(&name);
                accounts.deactivate(&user_id).await?;
                println!("deactivated {user_id}");
            }
        }
        anyhow::Ok(())
    }
    .await;
    storage.close().await;
    result
}

/// The media id of `mxc://server/id` (which must name this server) or of a bare id.
fn media_id_of(config: &Config, text: &str) -> anyhow::Result<String> {
    match text.strip_prefix("mxc://") {
        Some(rest) => {
            let (server, id) = rest.split_once('/').context("an mxc:// URI is mxc://SERVER/MEDIA_ID")?;
            if server != config.server_name {
                bail!("{text} is not media of this server ({})", config.server_name);
            }
            Ok(id.to_owned())
        }
        None => Ok(text.to_owned()),
    }
}

/// The accounts service outside a running server.
async fn cli_accounts(config: &Arc<Config>, storage: &Arc<dyn storage::Storage>) -> anyhow::Result<Accounts> {
    // No server runs here: the notifier has no one to wake; device-list changes are still recorded.
    let notifier = Arc::new(Notifier::new(storage.clone()));
    let e2ee = Arc::new(E2ee::new(config.clone(), storage.clone(), notifier).await?);
    Ok(Accounts::new(config.clone(), storage.clone(), Arc::new(Authenticator::new(storage.clone())), e2ee))
}

pub async fn run_media_command(config: Config, command: MediaCommand) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)?;
    let config = Arc::new(config);
    let storage = storage::open(&config.database_url(), 2).await?;
    let result = async {
        let media = MediaService::new(config.clone(), storage.clone())?;
        match command {
            MediaCommand::Delete { media: names } => {
                let mut missing = 0;
                for name in names {
                    let id = media_id_of(&config, &name)?;
                    if media.delete(&id).await? {
                        println!("deleted {name}");
                    } else {
                        eprintln!("no such media: {name}");
                        missing += 1;
                    }
                }
                if missing > 0 {
                    bail!("{missing} media not found");
                }
            }
            MediaCommand::DeleteUserMedia { name } => {
                let accounts = cli_accounts(&config, &storage).await?;
                let user_id = if name.starts_with('@') { name } else { accounts.user_id(&name) };
                let n = media.delete_user_media(&user_id).await?;
                println!("deleted {n} media of {user_id}");
            }
        }
        anyhow::Ok(())
    }
    .await;
    storage.close().await;
    result
}
