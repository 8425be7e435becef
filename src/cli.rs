//! The command line: `grantd serve | init | migrate | projections rebuild |
//! audit verify`. Every flag also reads `GRANTD_<NAME>` from the environment.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::admin;
use crate::app::{self, AppError, Application};
use crate::config::{self, ServeConfig};
use crate::domain::client::{ClientSettings, GrantType, SigningAlg};
use crate::domain::user::UserProfile;
use crate::eventstore::verify::{ChainReport, verify_chain};
use crate::keys::MasterKey;
use crate::projections::runner::ProjectionRunner;
use crate::setup::{self, InitOutcome};

#[derive(Debug, Parser)]
#[command(name = "grantd", version, about = "Event-sourced OAuth 2.1 / OpenID Connect authorization server")]
pub struct Cli {
    /// Database URL: sqlite://FILE (default sqlite://grantd.db) or postgres://…
    /// (also DATABASE_URL).
    #[arg(long, global = true, env = "GRANTD_DATABASE_URL")]
    pub database_url: Option<String>,

    /// File holding the 32-byte master key that seals signing keys
    /// (GRANTD_MASTER_KEY may hold the key itself).
    #[arg(long, global = true, env = "GRANTD_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (initialises an empty database first).
    Serve {
        #[arg(long, env = "GRANTD_BIND", default_value = config::DEFAULT_BIND)]
        bind: String,
        /// Issuer URL (default http://<bind>).
        #[arg(long, env = "GRANTD_ISSUER")]
        issuer: Option<String>,
        #[arg(long, env = "GRANTD_ADMIN_CLIENT_ID")]
        admin_client_id: Option<String>,
        #[arg(long, env = "GRANTD_ADMIN_CLIENT_SECRET", hide_env_values = true)]
        admin_client_secret: Option<String>,
        /// HTTP worker threads (default: one per core).
        #[arg(long, env = "GRANTD_WORKERS")]
        workers: Option<usize>,
        /// PostgreSQL: append batches committing at once. 1 suits a database
        /// on the same machine; 2 hides the round trip to a distant one.
        #[arg(long, env = "GRANTD_APPENDS_IN_FLIGHT", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=4))]
        appends_in_flight: u16,
        /// Access token lifetime in seconds.
        #[arg(long, env = "GRANTD_ACCESS_TOKEN_TTL", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..=86_400))]
        access_token_ttl: u32,
        /// Authorization code lifetime in seconds (RFC 9700: at most 10 minutes).
        #[arg(long, env = "GRANTD_CODE_TTL", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=600))]
        code_ttl: u32,
        /// Refresh token lifetime in seconds, absolute from the first issue.
        #[arg(long, env = "GRANTD_REFRESH_TOKEN_TTL", default_value_t = 1_209_600, value_parser = clap::value_parser!(u32).range(60..=31_536_000))]
        refresh_token_ttl: u32,
    },
    /// Create the database, the first signing key and the admin client.
    Init {
        #[arg(long, env = "GRANTD_ADMIN_CLIENT_ID")]
        admin_client_id: Option<String>,
        #[arg(long, env = "GRANTD_ADMIN_CLIENT_SECRET", hide_env_values = true)]
        admin_client_secret: Option<String>,
    },
    /// Apply database migrations (a no-op when up to date).
    Migrate,
    /// Register OAuth clients.
    Client {
        #[command(subcommand)]
        command: ClientCommandLine,
    },
    /// Register users (the password is read from standard input).
    User {
        #[command(subcommand)]
        command: UserCommandLine,
    },
    /// Print the admin API's GraphQL schema (SDL).
    GraphqlSchema,
    /// Read-model maintenance.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Audit-trail tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientCommandLine {
    /// Register a client; prints its client id and one-time secret as JSON.
    Create {
        #[arg(long)]
        name: String,
        /// Redirect URI (repeatable).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Grant type by its OAuth name (repeatable): authorization_code,
        /// refresh_token, client_credentials, password, implicit.
        #[arg(long = "grant-type", required = true)]
        grant_types: Vec<String>,
        /// Scope the client may ask for (repeatable, or space-separated).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A public client (no secret; PKCE only).
        #[arg(long)]
        public: bool,
        /// The operator's own client (may use the password grant).
        #[arg(long)]
        first_party: bool,
        /// The OAuth client_id (default: generated).
        #[arg(long)]
        client_id: Option<String>,
        /// ID token algorithm: EdDSA (default) or RS256.
        #[arg(long, default_value = "EdDSA")]
        id_token_alg: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommandLine {
    /// Register a user; the password is read from standard input.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Drop every read model and replay the whole log into it.
    Rebuild,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of the whole log.
    Verify,
    /// Write the audit trail to standard output (JSON lines or CSV).
    Export {
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// RFC 3339; inclusive.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339; inclusive.
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        user_id: Option<String>,
        #[arg(long)]
        client_id: Option<String>,
    },
}

/// Parses the arguments, runs the command, and turns errors into one line
/// on standard error and a non-zero exit.
pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("grantd: {e}");
            ExitCode::FAILURE
        }
    }
}

pub async fn execute(cli: Cli) -> Result<ExitCode, AppError> {
    let database_url = config::database_url(cli.database_url);
    let master_source = || config::master_key_source(cli.master_key_file.clone(), &database_url);
    let key_error = |e: String| AppError::Key(crate::keys::KeyError::Master(e));
    match cli.command {
        Command::Serve {
            bind,
            issuer,
            admin_client_id,
            admin_client_secret,
            workers,
            appends_in_flight,
            access_token_ttl,
            code_ttl,
            refresh_token_ttl,
        } => {
            let issuer = issuer.unwrap_or_else(|| format!("http://{bind}")).trim_end_matches('/').to_string();
            let config = ServeConfig {
                database_url: database_url.clone(),
                bind,
                issuer,
                master_key: master_source().map_err(key_error)?,
                admin_client_id,
                admin_client_secret,
                workers: workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
                appends_in_flight: usize::from(appends_in_flight),
                lifetimes: crate::issuance::Lifetimes {
                    access: chrono::Duration::seconds(access_token_ttl as i64),
                    code: chrono::Duration::seconds(code_ttl as i64),
                    refresh: chrono::Duration::seconds(refresh_token_ttl as i64),
                    ..Default::default()
                },
            };
            let app = Application::build(config.clone()).await?;
            if let Some(outcome) = &app.init {
                print_init(outcome);
            }
            tracing::info!(bind = %config.bind, issuer = %config.issuer, database = %crate::db::redact_url(&database_url), "grantd is serving");
            app.run_until_stopped().await.map_err(|e| AppError::Bind { addr: config.bind, reason: e.to_string() })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Init { admin_client_id, admin_client_secret } => {
            let (_db, store) = app::open(&database_url).await?;
            let master = MasterKey::load(&master_source().map_err(key_error)?)?;
            let outcome = setup::initialize(&store, &master, admin_client_id, admin_client_secret).await?;
            print_init(&outcome);
            Ok(ExitCode::SUCCESS)
        }
        Command::GraphqlSchema => {
            print!("{}", crate::graphql::sdl());
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command: AuditCommand::Export { format, from, to, user_id, client_id } } => {
            let query = crate::export::ExportQuery::parse(&format, from.as_deref(), to.as_deref(), user_id, client_id)
                .map_err(AppError::Invalid)?;
            let (db, store) = app::open(&database_url).await?;
            let runner = ProjectionRunner::new(db.clone(), store.clone());
            runner.catch_up(|_| {}).await?;
            let mut out = std::io::stdout().lock();
            crate::export::write_all(&db, &store, &query, &mut out).await.map_err(|e| AppError::Invalid(e.to_string()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let db = crate::db::Db::connect(&database_url).await?;
            db.migrate().await?;
            eprintln!("migrations applied to {}", db.url());
            Ok(ExitCode::SUCCESS)
        }
        Command::Client {
            command: ClientCommandLine::Create { name, redirect_uris, grant_types, scopes, public, first_party, client_id, id_token_alg },
        } => {
            let grant_types = grant_types
                .iter()
                .map(|g| GrantType::parse(g).ok_or_else(|| AppError::Invalid(format!("unknown grant type {g}"))))
                .collect::<Result<Vec<_>, _>>()?;
            let id_token_signed_response_alg = match id_token_alg.as_str() {
                "EdDSA" => SigningAlg::EdDSA,
                "RS256" => SigningAlg::RS256,
                other => return Err(AppError::Invalid(format!("unknown ID token algorithm {other} (EdDSA or RS256)"))),
            };
            let scopes = scopes.iter().flat_map(|s| s.split(' ')).filter(|s| !s.is_empty()).map(str::to_string).collect();
            let settings = ClientSettings { name, redirect_uris, grant_types, scopes, first_party, id_token_signed_response_alg };
            let (_db, store) = app::open(&database_url).await?;
            let registered = admin::register_client(&store, client_id, settings, !public, &operator())
                .await
                .map_err(|e| AppError::Invalid(e.to_string()))?;
            println!("{}", json!({"id": registered.id, "client_id": registered.client_id, "client_secret": registered.client_secret}));
            Ok(ExitCode::SUCCESS)
        }
        Command::User { command: UserCommandLine::Create { username, email, name } } => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .map_err(|e| AppError::Invalid(format!("cannot read the password from standard input: {e}")))?;
            let password = password.trim_end_matches(['\n', '\r']);
            let (_db, store) = app::open(&database_url).await?;
            let profile = UserProfile { username: username.clone(), email, name };
            let id = admin::register_user(&store, profile, password, &operator()).await.map_err(|e| AppError::Invalid(e.to_string()))?;
            println!("{}", json!({"id": id, "username": username}));
            Ok(ExitCode::SUCCESS)
        }
        Command::Projections { command: ProjectionsCommand::Rebuild } => {
            let (db, store) = app::open(&database_url).await?;
            let head = store.head().await?;
            let bar = progress(head, "replaying");
            let runner = ProjectionRunner::new(db, store);
            let reached = runner.rebuild(|p| bar.set_position(p as u64)).await?;
            bar.finish_and_clear();
            eprintln!("read models rebuilt from {reached} events");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command: AuditCommand::Verify } => {
            let (_db, store) = app::open(&database_url).await?;
            let head = store.head().await?;
            let bar = progress(head, "verifying");
            let report = verify_chain(&store, |p| bar.set_position(p as u64)).await?;
            bar.finish_and_clear();
            match report {
                ChainReport::Intact { events, head_hash } => {
                    println!("hash chain intact: {events} events, head {}", hex::encode(head_hash));
                    Ok(ExitCode::SUCCESS)
                }
                ChainReport::Broken { position, reason } => {
                    println!("hash chain broken at position {position}: {reason}");
                    Ok(ExitCode::from(3))
                }
            }
        }
    }
}

/// The actor recorded for commands typed by an operator.
fn operator() -> crate::eventstore::CommandContext {
    let who = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    crate::eventstore::CommandContext::by(crate::domain::Actor { kind: crate::domain::ActorKind::System, id: format!("cli:{who}") })
}

fn progress(len: i64, verb: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len.max(0) as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} events ({per_sec}, {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(verb);
    bar
}

fn print_init(outcome: &InitOutcome) {
    match outcome {
        InitOutcome::Initialized { admin_client_id, generated_secret: Some(secret), signing_key_id } => {
            println!("{}", json!({"admin_client_id": admin_client_id, "admin_client_secret": secret, "signing_key_id": signing_key_id}));
            eprintln!("grantd initialised; the admin client secret above is shown once and not stored");
        }
        InitOutcome::Initialized { admin_client_id, generated_secret: None, signing_key_id } => {
            eprintln!("grantd initialised: admin client {admin_client_id}, signing key {signing_key_id}");
        }
        InitOutcome::AlreadyInitialized { admin_client_id } => {
            eprintln!("grantd is already initialised (admin client {admin_client_id}); nothing changed");
        }
    }
}
