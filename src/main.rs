//! The `palisade` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use palisade::cache::CacheStore;
use palisade::cli::{Cli, Command};
use palisade::config::{LoadError, Report};
use palisade::runtime::Carried;
use palisade::runtime::RuntimeHandle;
use palisade::server::binary_upgrade::UpgradePlan;
use palisade::server::reload::Reloader;
use tracing::{info, warn};

/// mimalloc instead of the system allocator: the request path allocates and
/// frees many small buffers per request (headers, bodies, futures), and
/// glibc's malloc/free took about 16 % of the CPU of a cache hit.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config, strict } => check(&config, strict),
        Command::Run {
            config,
            upgrade,
            daemon,
        } => run(&config, upgrade, daemon),
        Command::Reload { config } => reload(&config),
        Command::HashPassword { bcrypt } => hash_password(bcrypt),
        Command::GenerateApiKey { name } => generate_api_key(&name),
        Command::Completions { shell } => {
            palisade::cli::completions(shell, &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Manual { out_dir } => manual(out_dir.as_deref()),
    }
}

fn manual(out_dir: Option<&Path>) -> ExitCode {
    let written = match out_dir {
        Some(dir) => palisade::cli::write_manuals(dir).map(|files| {
            for file in files {
                println!("{}", file.display());
            }
        }),
        None => palisade::cli::manual(&mut std::io::stdout()),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("palisade: cannot write the manual: {e}");
            ExitCode::FAILURE
        }
    }
}

fn reload(path: &Path) -> ExitCode {
    // The file is checked here first, so that errors show in this terminal;
    // the running proxy checks it again before applying it.
    let loaded = match palisade::load(path, &Carried::default()) {
        Ok((loaded, _)) => loaded,
        Err(e) => {
            print_load_error(path, &e);
            return ExitCode::FAILURE;
        }
    };
    let Some(admin) = &loaded.config.admin else {
        eprintln!(
            "palisade: {} has no `admin:` section; send SIGHUP to the process instead (systemctl reload palisade)",
            path.display()
        );
        return ExitCode::FAILURE;
    };
    let token = match admin.resolve_token() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("palisade: {e}");
            return ExitCode::FAILURE;
        }
    };
    let file = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let request = serde_json::json!({ "config": file.display().to_string() }).to_string();
    match palisade::server::admin::client::post(admin.address, "/reload", &token, &request) {
        Ok((200, body)) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Ok((409, body)) => {
            let why = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or(body);
            eprintln!("palisade: reload refused: {why}");
            ExitCode::FAILURE
        }
        Ok((status, body)) => {
            eprintln!("palisade: reload refused ({status}):\n{body}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!(
                "palisade: cannot reach the admin API at {}: {e}",
                admin.address
            );
            ExitCode::FAILURE
        }
    }
}

fn hash_password(bcrypt: bool) -> ExitCode {
    use std::io::IsTerminal;
    let password = if std::io::stdin().is_terminal() {
        read_password_twice()
    } else {
        read_password_line()
    };
    let password = match password {
        Ok(p) => p,
        Err(why) => {
            eprintln!("palisade: {why}");
            return ExitCode::FAILURE;
        }
    };
    match palisade::auth::basic::hash_password(&password, bcrypt) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("palisade: {e}");
            ExitCode::FAILURE
        }
    }
}

/// At a terminal: a prompt, the password read without echo, and again.
fn read_password_twice() -> Result<String, String> {
    let read = |prompt: &str| {
        rpassword::prompt_password(prompt).map_err(|e| format!("cannot read the password: {e}"))
    };
    let password = read("Password: ")?;
    if password.is_empty() {
        return Err("empty password".into());
    }
    if read("Again: ")? != password {
        return Err("the passwords do not match".into());
    }
    Ok(password)
}

/// From a pipe or a file: one line.
fn read_password_line() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(
            "empty password (write it on standard input, e.g. `palisade hash-password < file`)"
                .into(),
        );
    }
    Ok(password.to_string())
}

fn generate_api_key(name: &str) -> ExitCode {
    let (key, digest) = palisade::auth::api_key::generate();
    println!("key: {key}");
    println!("entry: {{ name: {name}, sha256: {digest} }}");
    ExitCode::SUCCESS
}

fn print_load_error(path: &Path, e: &LoadError) {
    eprintln!("{e}");
    if let LoadError::Invalid { report } = e {
        eprintln!(
            "palisade: configuration file {} test failed ({})",
            path.display(),
            count(report.errors.len(), "error")
        );
    }
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn check(path: &Path, strict: bool) -> ExitCode {
    match palisade::load(path, &Carried::default()) {
        Ok((mut loaded, runtime)) => {
            // The running Palisade's own addresses are in use as expected.
            loaded.warnings.extend(
                palisade::server::listen_check::unbindable(&loaded.config, path)
                    .iter()
                    .filter(|u| !u.held_by_running)
                    .map(|u| u.to_config_error()),
            );
            let report: Report = loaded.report(Vec::new());
            if !report.warnings.is_empty() {
                eprintln!("{report}");
            }
            if strict && !report.warnings.is_empty() {
                eprintln!(
                    "palisade: configuration file {} test failed ({}, --strict)",
                    path.display(),
                    count(report.warnings.len(), "warning")
                );
                return ExitCode::FAILURE;
            }
            let c = &loaded.config;
            eprintln!(
                "palisade: configuration file {} test is successful ({}, {}, {}, {})",
                path.display(),
                count(c.listeners.len(), "listener"),
                count(c.upstreams.len(), "upstream"),
                count(
                    runtime.pools.iter().map(|p| p.backends().len()).sum(),
                    "backend"
                ),
                count(c.routes.len(), "route"),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_load_error(path, &e);
            ExitCode::FAILURE
        }
    }
}

fn run(path: &Path, upgrade: bool, daemon: bool) -> ExitCode {
    // A reload or reopen signal during start-up must not end the process.
    palisade::server::signals::catch_early();
    // Where to find the next version on SIGUSR2: this path, resolved now,
    // before a package upgrade replaces the file.
    let binary = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("palisade"));
    let carried = Arc::new(Carried::default());
    let (loaded, runtime) = match palisade::load(path, &carried) {
        Ok(ok) => ok,
        Err(e) => {
            print_load_error(path, &e);
            return ExitCode::FAILURE;
        }
    };
    let config = &loaded.config;
    // `--daemon` is a process option like `--upgrade`: the configuration
    // stays as written, so that a reload does not see `server` changed.
    let daemon = daemon || config.server.daemon;
    // During an upgrade the old process still holds the addresses.
    if !upgrade {
        let unbindable: Vec<_> = palisade::server::listen_check::unbindable(config, path)
            .iter()
            .map(|u| u.to_config_error())
            .collect();
        if !unbindable.is_empty() {
            eprintln!("{}", loaded.report(unbindable).without_warnings());
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = palisade::observe::access_log::init(&config.logging.access_log) {
        eprintln!("palisade: {e}");
        return ExitCode::FAILURE;
    }
    palisade::logging::init(config.logging.level);
    for w in loaded.report(Vec::new()).warnings {
        warn!("{w}");
    }
    for l in &config.listeners {
        info!(
            listener = %l.name,
            address = %l.address,
            h2c = l.h2c,
            tls = l.tls.is_some(),
            "listening"
        );
    }
    info!(
        config = %path.display(),
        routes = config.routes.len(),
        upstreams = config.upstreams.len(),
        version = env!("CARGO_PKG_VERSION"),
        pid = std::process::id(),
        upgrade,
        "palisade starting"
    );
    let runtime = Arc::new(RuntimeHandle::new(runtime));
    let cache = CacheStore::leak(&config.cache);
    let reloader = Arc::new(Reloader::new(
        path.to_path_buf(),
        config.clone(),
        loaded.sha256.clone(),
        runtime.clone(),
        carried.clone(),
    ));
    let plan = UpgradePlan {
        binary,
        config: path.to_path_buf(),
        upgrade_socket: config.server.upgrade_socket.clone(),
        daemon,
    };
    let services = palisade::server::Shared {
        runtime,
        cache,
        carried,
        reloader,
        upgrade: plan,
    };
    let server = match palisade::server::build(config, upgrade, daemon, services) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("palisade: {e}");
            return ExitCode::FAILURE;
        }
    };
    server.run_forever()
}
