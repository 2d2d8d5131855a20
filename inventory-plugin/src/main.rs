//! `matrix_inventory`: Ansible script inventory (`--list`, `--host NAME`) and the `plan` and
//! `hosts` sheets, for one site file or a directory of them. See the crate's README.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::Value;

use matrix_inventory::error::SiteError;
use matrix_inventory::planned::PlannedSite;
use matrix_inventory::{inventory, load, sheet};

#[derive(Parser)]
#[command(
    name = "matrix_inventory",
    version,
    about = "Dynamic inventory for matrix-ha: one site file → groups, sizes, IP plan, MDAD variables"
)]
struct Cli {
    /// Site file, or a directory of site files (default: $MATRIX_HA_SITE).
    #[arg(long, global = true, value_name = "PATH")]
    site: Option<PathBuf>,
    /// Print the whole inventory as Ansible script-inventory JSON.
    #[arg(long, conflicts_with = "host")]
    list: bool,
    /// Print one host's variables as JSON.
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
    /// Indent the JSON.
    #[arg(long)]
    pretty: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the architecture sheet: servers, groups, addresses, sizes, ports to open.
    Plan {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// The site to print when the directory holds several.
        #[arg(long, value_name = "SITE")]
        name: Option<String>,
    },
    /// Print the intranet /etc/hosts entries, usable as the etc_hosts module's `entries`.
    Hosts {
        #[arg(long, value_enum, default_value_t = Format::Yaml)]
        format: Format,
        /// The site to print when the directory holds several.
        #[arg(long, value_name = "SITE")]
        name: Option<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
    Yaml,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let result = run(cli, &mut stdout).and_then(|()| {
        stdout
            .flush()
            .map_err(|e| format!("cannot write the output: {e}"))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("matrix_inventory: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command, writing its output to `out`; nothing is written when the site is invalid.
fn run(cli: Cli, out: &mut impl Write) -> Result<(), String> {
    let write_err = |e: std::io::Error| format!("cannot write the output: {e}");
    if cli.list && cli.command.is_none() && cli.host.is_none() {
        // The whole inventory is streamed: it can be megabytes for a provider's sites.
        let sites = load_sites(cli.site.as_deref())?;
        inventory::write_list(&sites, &mut *out, cli.pretty)
            .map_err(|e| format!("cannot write the output: {e}"))?;
        return out.write_all(b"\n").map_err(write_err);
    }
    let text = render(cli)?;
    out.write_all(text.as_bytes()).map_err(write_err)
}

fn load_sites(site: Option<&std::path::Path>) -> Result<Vec<PlannedSite>, String> {
    let path = site
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("MATRIX_HA_SITE").map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| SiteError::NoSite.to_string())?;
    load::load(&path).map_err(|e| e.to_string())
}

fn render(cli: Cli) -> Result<String, String> {
    if cli.command.is_some() && (cli.list || cli.host.is_some()) {
        return Err("--list and --host cannot be combined with a subcommand".into());
    }
    let sites = load_sites(cli.site.as_deref())?;

    match cli.command {
        Some(Command::Plan { format, name }) => {
            let site = pick(&sites, name.as_deref())?;
            let s = sheet::sheet(site);
            match format {
                Format::Text => Ok(sheet::render_text(&s)),
                Format::Json => to_json(&s, true),
                Format::Yaml => serde_yaml_ng::to_string(&s).map_err(|e| e.to_string()),
            }
        }
        Some(Command::Hosts { format, name }) => {
            let site = pick(&sites, name.as_deref())?;
            let entries = Value::Array(site.etc_hosts());
            match format {
                Format::Json => to_json(&entries, true),
                Format::Yaml | Format::Text => {
                    serde_yaml_ng::to_string(&entries).map_err(|e| e.to_string())
                }
            }
        }
        None => {
            if let Some(name) = cli.host {
                let vars = inventory::host(&sites, &name).map_err(|e| e.to_string())?;
                to_json(&vars, cli.pretty)
            } else {
                Err("nothing to do: pass --list, --host NAME, or a subcommand (plan, hosts); see --help".into())
            }
        }
    }
}

fn pick<'a>(sites: &'a [PlannedSite], name: Option<&str>) -> Result<&'a PlannedSite, String> {
    let names = || {
        sites
            .iter()
            .map(|s| s.topology.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(n) => sites
            .iter()
            .find(|s| s.topology.name == n || s.topology.domain == n)
            .ok_or_else(|| format!("--name {n:?}: no such site (sites: {})", names())),
        None if sites.len() == 1 => Ok(&sites[0]),
        None => Err(format!(
            "the directory holds {} sites: choose one with --name (sites: {})",
            sites.len(),
            names()
        )),
    }
}

fn to_json<T: serde::Serialize>(value: &T, pretty: bool) -> Result<String, String> {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    text.map(|mut t| {
        t.push('\n');
        t
    })
    .map_err(|e| e.to_string())
}
