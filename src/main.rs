//! The `tessera` command: serve the homeserver, or administer it.

mod allocator;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use tessera::{Config, Listeners};
use tracing_subscriber::EnvFilter;

/// Tessera, a Matrix homeserver.
///
/// With no command, serves the homeserver: by default as `localhost` on
/// 127.0.0.1:8008 with an embedded SQLite database under ./tessera-data.
/// Configuration comes from tessera.toml (see tessera.example.toml) and
/// TESSERA_* environment variables.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (default: $TESSERA_CONFIG, else ./tessera.toml if present).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the homeserver (the default).
    Serve,
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage registration tokens (for registration_requires_token).
    #[command(subcommand, name = "registration-token")]
    RegistrationToken(TokenCommand),
    /// Manage the content repository (uploaded and cached files).
    #[command(subcommand)]
    Media(MediaCommand),
}

#[derive(Subcommand)]
enum MediaCommand {
    /// Forget other servers' files not downloaded for a while, with
    /// their thumbnails (they are fetched again if asked for).
    PurgeRemote {
        /// How long unused: a number with d, h, m or s (30d, 12h).
        #[arg(long, value_parser = parse_age)]
        older_than: std::time::Duration,
    },
    /// Remove reserved media IDs that expired without their upload, and
    /// stored files that no media names any more.
    Cleanup,
}

/// `30d`, `12h`, `45m`, `10s`.
fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    let unit = text.chars().last().ok_or("empty duration")?;
    let seconds = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return Err(format!("{text:?}: end it with d, h, m or s")),
    };
    let number: u64 =
        text[..text.len() - 1].parse().map_err(|_| format!("{text:?} is not a number of {unit}"))?;
    Ok(std::time::Duration::from_secs(number.saturating_mul(seconds)))
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user. Prints the password if one was generated.
    Create {
        /// Localpart (alice) or full user ID (@alice:server).
        name: String,
        /// Make the user a server admin.
        #[arg(long)]
        admin: bool,
        /// Password; a random one is generated and printed when omitted.
        #[arg(long)]
        password: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a registration token and print it.
    Create {
        /// The token text (default: random).
        #[arg(long)]
        token: Option<String>,
        /// How many registrations it allows (default: unlimited).
        #[arg(long)]
        uses: Option<u32>,
        /// Days until it expires (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List registration tokens with their use counts.
    List,
    /// Delete a registration token.
    Delete { token: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("tessera: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut filter = EnvFilter::try_new(&config.log).unwrap_or_else(|e| {
        eprintln!("tessera: log filter {:?} is invalid ({e}); using info", config.log);
        EnvFilter::new("info")
    });
    // ruma's authorization checks log every event they pass at info (four
    // lines per message sent): kept to warnings unless the filter names
    // ruma itself.
    if !config.log.contains("ruma") {
        filter = filter.add_directive("ruma_state_res=warn".parse().expect("a valid directive"));
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi).init();
    // Panics are caught per request (and answered with a 500, or a 400 where
    // ruma's parser panics on malformed input); log them as one line
    // through tracing rather than a raw dump on stderr.
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(%location, "panic: {message}");
    }));

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tessera: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(config, cli.command.unwrap_or(Command::Serve)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("tessera: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, command: Command) -> Result<(), String> {
    match command {
        Command::Serve => {
            let listeners = Listeners::bind(&config).await.map_err(|e| e.to_string())?;
            tessera::serve(config, listeners, tessera::shutdown_signal()).await.map_err(|e| e.to_string())
        }
        Command::User(UserCommand::Create { name, admin, password }) => {
            let store = tessera::open_store(&config).await.map_err(|e| e.to_string())?;
            let accounts = tessera::admin_accounts(&config, &store).map_err(|e| e.to_string())?;
            let generated = password.is_none();
            let password = password.unwrap_or_else(|| tessera_service::secrets::new_token("pw"));
            let result = accounts.create_user(&name, Some(password.clone()), admin, false).await;
            store.close().await;
            let registered = result.map_err(|e| match e {
                tessera_service::Error::Matrix { message, .. } => message,
                other => other.to_string(),
            })?;
            println!("created {}{}", registered.user_id, if admin { " (admin)" } else { "" });
            if generated {
                println!("password: {password}");
            }
            Ok(())
        }
        Command::RegistrationToken(command) => registration_tokens(&config, command).await,
        Command::Media(command) => media(&config, command).await,
    }
}

async fn media(config: &Config, command: MediaCommand) -> Result<(), String> {
    use tessera_service::media::maintenance;
    let store = tessera::open_store(config).await.map_err(|e| e.to_string())?;
    let blobs = tessera::media_blobs(config).map_err(|e| e.to_string())?;
    let result = match command {
        MediaCommand::PurgeRemote { older_than } => {
            maintenance::purge_remote(&store, &blobs, &config.server_name, older_than).await
        }
        MediaCommand::Cleanup => maintenance::cleanup(&store, &blobs).await,
    };
    store.close().await;
    let removed = result.map_err(|e| e.to_string())?;
    println!(
        "removed {} remote media, {} expired reservations, {} unused files",
        removed.media, removed.reservations, removed.blobs
    );
    Ok(())
}

async fn registration_tokens(config: &Config, command: TokenCommand) -> Result<(), String> {
    let store = tessera::open_store(config).await.map_err(|e| e.to_string())?;
    let result = match command {
        TokenCommand::Create { token, uses, expires_in_days } => {
            let token = token.unwrap_or_else(|| tessera_service::secrets::new_token("reg"));
            let expiry = expires_in_days.map(|days| tessera_service::now_ms() + i64::from(days) * 86_400_000);
            store
                .create_registration_token(&token, uses.map(i64::from), expiry)
                .await
                .map(|()| println!("{token}"))
                .map_err(|e| e.to_string())
        }
        TokenCommand::List => {
            store.list_registration_tokens().await.map_err(|e| e.to_string()).map(|tokens| {
                for t in tokens {
                    let uses = t.uses_allowed.map_or_else(|| "unlimited".to_owned(), |u| u.to_string());
                    let expiry =
                        t.expiry_ts.map_or_else(|| "never".to_owned(), |e| format!("{e} (ms since epoch)"));
                    println!("{}\tused {} of {uses}\texpires {expiry}", t.token, t.completed);
                }
            })
        }
        TokenCommand::Delete { token } => match store.delete_registration_token(&token).await {
            Ok(true) => {
                println!("deleted {token}");
                Ok(())
            }
            Ok(false) => Err(format!("no registration token {token:?}")),
            Err(e) => Err(e.to_string()),
        },
    };
    store.close().await;
    result
}
