//! The client commands: `deploy`, `apps`, `modules`, `calls`, over the admin HTTP API.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::config::default_data_dir;

/// Where the server is and how to authenticate.
#[derive(Args, Debug)]
pub(crate) struct ServerArgs {
    /// The admin API's base URL.
    #[arg(long, env = "CALLWRIGHT_SERVER", default_value = "http://127.0.0.1:8080", global = true)]
    server: String,
    /// Admin token; defaults to the `admin-token` file of `--data` (or of `./callwright-data`).
    #[arg(long, env = "CALLWRIGHT_ADMIN_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// The server's data directory, to read a generated admin token from.
    #[arg(long, env = "CALLWRIGHT_DATA", global = true)]
    data: Option<PathBuf>,
}

/// `callwright deploy`.
#[derive(Args, Debug)]
pub(crate) struct DeployArgs {
    /// The component file (.wasm).
    file: PathBuf,
    /// The module name; defaults to the file name without extension.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

/// `callwright apps`.
#[derive(Args, Debug)]
pub(crate) struct AppsArgs {
    #[command(subcommand)]
    command: AppsCommand,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Subcommand, Debug)]
enum AppsCommand {
    /// List apps.
    List,
    /// Show one app.
    Get { name: String },
    /// Create or replace an app.
    Put {
        name: String,
        /// The call-flow module to run.
        #[arg(long)]
        module: String,
        /// Take calls to this user (To URI); omitted: catch-all.
        #[arg(long)]
        to_user: Option<String>,
        /// JSON handed to the module as its config.
        #[arg(long)]
        config: Option<String>,
    },
    /// Delete an app.
    Delete { name: String },
}

/// `callwright modules`.
#[derive(Args, Debug)]
pub(crate) struct ModulesArgs {
    #[command(subcommand)]
    command: ModulesCommand,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Subcommand, Debug)]
enum ModulesCommand {
    /// List modules.
    List,
    /// Show one module.
    Get { name: String },
    /// Delete a module.
    Delete { name: String },
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    fn new(args: &ServerArgs) -> anyhow::Result<Client> {
        let token = match &args.token {
            Some(token) => token.clone(),
            None => {
                let path = args.data.clone().unwrap_or_else(default_data_dir).join("admin-token");
                std::fs::read_to_string(&path)
                    .with_context(|| format!("no --token given and no token file at {}", path.display()))?
                    .trim()
                    .to_string()
            }
        };
        Ok(Client { http: reqwest::Client::new(), base: args.server.trim_end_matches('/').to_string(), token })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request.bearer_auth(&self.token).send().await.context("cannot reach the server")?;
        let status = response.status();
        let text = response.text().await?;
        let body: Value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        if !status.is_success() {
            let message =
                body.get("error").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| body.to_string());
            bail!("{status}: {message}");
        }
        Ok(body)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn print(value: &Value) {
    if !value.is_null() {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
    }
}

pub(crate) async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    let name = match args.name {
        Some(name) => name,
        None => args
            .file
            .file_stem()
            .and_then(|s| s.to_str())
            .map(|s| s.replace('_', "-"))
            .context("cannot derive a module name from the file; pass --name")?,
    };
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let url = client.url(&format!("/v1/modules/{name}"));
    print(&client.send(client.http.put(url).body(bytes)).await?);
    Ok(())
}

pub(crate) async fn apps(args: AppsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    let value = match args.command {
        AppsCommand::List => client.send(client.http.get(client.url("/v1/apps"))).await?,
        AppsCommand::Get { name } => client.send(client.http.get(client.url(&format!("/v1/apps/{name}")))).await?,
        AppsCommand::Delete { name } => {
            client.send(client.http.delete(client.url(&format!("/v1/apps/{name}")))).await?
        }
        AppsCommand::Put { name, module, to_user, config } => {
            let config: Value = match config {
                Some(text) => serde_json::from_str(&text).context("--config is not valid JSON")?,
                None => Value::Null,
            };
            let mut app = json!({ "flow": { "module": module, "config": config } });
            if let Some(user) = to_user {
                app["route"] = json!({ "to_user": user });
            }
            client.send(client.http.put(client.url(&format!("/v1/apps/{name}"))).json(&app)).await?
        }
    };
    print(&value);
    Ok(())
}

pub(crate) async fn modules(args: ModulesArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    let value = match args.command {
        ModulesCommand::List => client.send(client.http.get(client.url("/v1/modules"))).await?,
        ModulesCommand::Get { name } => {
            client.send(client.http.get(client.url(&format!("/v1/modules/{name}")))).await?
        }
        ModulesCommand::Delete { name } => {
            client.send(client.http.delete(client.url(&format!("/v1/modules/{name}")))).await?
        }
    };
    print(&value);
    Ok(())
}

pub(crate) async fn calls(args: ServerArgs) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    print(&client.send(client.http.get(client.url("/v1/calls"))).await?);
    Ok(())
}
