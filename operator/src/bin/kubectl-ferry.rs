//! `kubectl ferry`: rollout status, history and undo for Ferry Apps. Installed on the PATH as
//! `kubectl-ferry`, kubectl finds it as a plugin.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ferry_operator::plugin::{PluginError, Rollouts, parse_target};

#[derive(Parser)]
#[command(
    name = "kubectl-ferry",
    version,
    about = "Manage the rollouts of Ferry Apps"
)]
struct Cli {
    /// Namespace of the App; defaults to the kubeconfig context's namespace.
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch, list or undo an App's rollouts.
    #[command(subcommand)]
    Rollout(Rollout),
}

#[derive(Subcommand)]
enum Rollout {
    /// Wait for the App's rollout to finish, printing its progress.
    Status {
        /// The App: app/NAME or NAME.
        target: String,
        /// Keep watching until the rollout finishes; `--watch=false` prints the state once.
        #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set)]
        watch: bool,
        /// Give up after this many seconds.
        #[arg(long)]
        timeout_seconds: Option<u64>,
    },
    /// List the App's revisions, or show one revision's template.
    History {
        /// The App: app/NAME or NAME.
        target: String,
        /// Show the pod template of this revision.
        #[arg(long)]
        revision: Option<i64>,
    },
    /// Roll the App back to the previous revision, or to --to-revision.
    Undo {
        /// The App: app/NAME or NAME.
        target: String,
        /// The revision to go back to.
        #[arg(long)]
        to_revision: Option<i64>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<String, PluginError> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| PluginError::Usage(format!("cannot load the kubeconfig: {e}")))?;
    let namespace = cli
        .namespace
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config)?;
    let rollouts = Rollouts::new(client, &namespace);
    let Command::Rollout(rollout) = cli.command;
    match rollout {
        Rollout::Status {
            target,
            watch,
            timeout_seconds,
        } => {
            let timeout = timeout_seconds.map(Duration::from_secs);
            rollouts
                .status(&parse_target(&target)?, watch, timeout)
                .await
        }
        Rollout::History { target, revision } => {
            rollouts
                .show_history(&parse_target(&target)?, revision)
                .await
        }
        Rollout::Undo {
            target,
            to_revision,
        } => rollouts.undo(&parse_target(&target)?, to_revision).await,
    }
}
