//! The command line's definition (`clap`), and what is generated from it:
//! the manual pages `palisade(1)`, `palisade-<command>(1)` and the shell
//! completions, so the packaged documentation never drifts from the binary.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::{Command as ClapCommand, CommandFactory, Parser, Subcommand};
use clap_mangen::roff::{roman, Roff};
use clap_mangen::Man;

use crate::config::DEFAULT_FILE;

/// `palisade`'s arguments.
#[derive(Parser, Debug)]
#[command(
    name = "palisade",
    version = concat!(env!("CARGO_PKG_VERSION"), " (pingora 0.9.1)"),
    about = "A caching reverse proxy built on Pingora",
    long_about = "Palisade is a caching reverse proxy built on Cloudflare's Pingora: it \
                  terminates HTTP and HTTPS, caches responses in memory with HTTP caching \
                  semantics, authenticates and rate-limits clients and balances requests \
                  over pools of origin servers. One YAML file (palisade.yaml(5)) drives it.",
    propagate_version = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the proxy.
    ///
    /// In the foreground, or as a daemon with `--daemon` or `server.daemon`.
    /// SIGHUP reloads the configuration, SIGUSR2 starts a graceful binary
    /// upgrade, SIGUSR1 reopens the access log, SIGTERM drains and stops.
    Run {
        /// The configuration file.
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_FILE)]
        config: PathBuf,
        /// Take the listening sockets over from a running process (graceful
        /// upgrade): wait on `server.upgrade_socket` until the old process
        /// gets SIGQUIT. `kill -USR2 <pid>` does both steps for you.
        #[arg(short, long)]
        upgrade: bool,
        /// Run in the background (as `server.daemon: true`).
        #[arg(short, long)]
        daemon: bool,
    },
    /// Check the configuration file.
    ///
    /// Exits 0 when the file is valid, 1 otherwise, printing every problem as
    /// file:line:column. Listen addresses that cannot be bound (in use by another process,
    /// a privileged port) are warnings; the running Palisade's own are not.
    Check {
        /// The configuration file.
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_FILE)]
        config: PathBuf,
        /// Treat warnings as errors (exit 1).
        #[arg(long)]
        strict: bool,
    },
    /// Reload the running proxy's configuration.
    ///
    /// Checks FILE, then asks the running proxy (through the admin API that
    /// FILE configures) to reload it and prints what changed, or why not.
    /// FILE must be the file the proxy runs: a reload re-reads that file
    /// and cannot switch to another (the proxy refuses, naming its file).
    Reload {
        /// The configuration file the proxy runs with.
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_FILE)]
        config: PathBuf,
    },
    /// Hash a password for basic authentication.
    ///
    /// For a basic auth policy's `users:` or an htpasswd file: at a terminal, prompted for twice without echo; otherwise one
    /// line read from standard input.
    HashPassword {
        /// Print a bcrypt hash (cost 12) instead of argon2id.
        #[arg(long)]
        bcrypt: bool,
    },
    /// Make a new random API key.
    ///
    /// Prints the key (give it to the client) and the `keys:` entry with its SHA-256 (put it in the configuration).
    GenerateApiKey {
        /// The key's name (the identity of requests using it).
        name: String,
    },
    /// Print the shell completion script for SHELL.
    ///
    /// For example `palisade completions bash > /etc/bash_completion.d/palisade`
    /// (the Debian package installs those of bash, zsh and fish).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page palisade(1).
    ///
    /// In roff (`palisade manual | man -l -`), or with `--out-dir` write it
    /// and one page per command (palisade-run(1), …) into a directory.
    Manual {
        /// Write palisade.1 and palisade-<command>.1 into DIR instead.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut Cli::command(), "palisade", out);
}

/// Writes `palisade(1)` to `out`: the generated name, synopsis, description,
/// options and commands, then the files, signals and related pages an
/// operator looks for.
pub fn manual(out: &mut dyn Write) -> io::Result<()> {
    // `help` is a flag on every page, not a command with a page of its own.
    let command = Cli::command().disable_help_subcommand(true);
    let man = Man::new(command.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    out.write_all(operator_sections(&command).render().as_bytes())?;
    man.render_version_section(out)
}

/// Writes `palisade.1` and `palisade-<command>.1` for every command into
/// `dir` (created if missing); returns the files written.
pub fn write_manuals(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let main = dir.join("palisade.1");
    let mut file = io::BufWriter::new(std::fs::File::create(&main)?);
    manual(&mut file)?;
    file.flush()?;
    written.push(main);
    // Building names the subcommands as their pages are named
    // (`palisade-run`, synopsis `palisade run`) and gives them the version.
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    for sub in command.get_subcommands() {
        written.push(Man::new(sub.clone()).generate_to(dir)?);
    }
    Ok(written)
}

/// FILES, SIGNALS, EXIT STATUS and SEE ALSO of `palisade(1)`.
fn operator_sections(command: &ClapCommand) -> Roff {
    let mut roff = Roff::new();
    let item = |roff: &mut Roff, term: &str, text: &str| {
        roff.control("TP", [])
            .text([roman(term)])
            .text([roman(text)]);
    };
    roff.control("SH", ["FILES"]);
    item(
        &mut roff,
        "/etc/palisade/palisade.yaml",
        "The configuration file of the packaged service (see palisade.yaml(5)). \
         Without -c, palisade reads conf/palisade.yaml under the current directory.",
    );
    item(
        &mut roff,
        "/run/palisade/palisade.pid, /run/palisade/upgrade.sock",
        "PID file and graceful-upgrade socket (server.pid_file, server.upgrade_socket).",
    );
    item(
        &mut roff,
        "/var/log/palisade/",
        "Access log files when logging.access_log.output names a file; rotated by \
         /etc/logrotate.d/palisade.",
    );
    roff.control("SH", ["SIGNALS"]);
    for (signal, text) in [
        (
            "SIGHUP",
            "Reload the configuration file in place (systemctl reload palisade). A file \
             with errors is refused and the running configuration stays.",
        ),
        (
            "SIGUSR2",
            "Graceful binary upgrade: start the binary now installed, hand it the \
             listening sockets, drain this process.",
        ),
        ("SIGUSR1", "Reopen the access log file (after rotation)."),
        (
            "SIGTERM",
            "Stop accepting, let requests in flight finish for server.grace_period, stop.",
        ),
        (
            "SIGQUIT",
            "As SIGTERM, after handing the listening sockets to a process started with --upgrade.",
        ),
    ] {
        item(&mut roff, signal, text);
    }
    roff.control("SH", ["EXIT STATUS"]);
    roff.text([roman(
        "0 on success; 1 when the configuration is invalid (check, run, reload) or the \
         command failed; 2 on a command-line error.",
    )]);
    roff.control("SH", ["SEE ALSO"]);
    let pages: Vec<String> = command
        .get_subcommands()
        .map(|s| format!("palisade-{}(1)", s.get_name()))
        .chain(["palisade.yaml(5)".to_owned(), "systemctl(1)".to_owned()])
        .collect();
    roff.text([roman(format!(
        "{}. The full documentation is in /usr/share/doc/palisade/.",
        pages.join(", ")
    ))]);
    roff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_manual_names_every_command_and_the_signals() {
        let mut page = Vec::new();
        manual(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        for expected in [
            ".TH palisade 1",
            "generate\\-api\\-key",
            "SIGUSR2",
            "palisade.yaml(5)",
        ] {
            assert!(page.contains(expected), "{expected} missing from:\n{page}");
        }
    }

    #[test]
    fn completions_cover_the_commands() {
        let mut script = Vec::new();
        completions(clap_complete::Shell::Bash, &mut script);
        let script = String::from_utf8(script).unwrap();
        assert!(script.contains("hash-password") && script.contains("--config"));
    }

    #[test]
    fn every_command_gets_its_own_page() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_manuals(dir.path()).unwrap();
        let names: Vec<_> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.contains(&"palisade.1".to_owned()));
        assert!(names.contains(&"palisade-check.1".to_owned()));
        let check = std::fs::read_to_string(dir.path().join("palisade-check.1")).unwrap();
        assert!(check.contains("\\-\\-strict"), "{check}");
    }
}
