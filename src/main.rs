//! The `deliver` command: CLI parsing and the exit-status boundary. All
//! behaviour lives in the library; this file turns results into exit codes.

// The process entry point is our own C `main` (see `main` below), not std's
// runtime start. Not in test builds, where the test harness has its own.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code))]

use clap::{Parser, Subcommand, ValueEnum};
use deliver::envelope::Flags;
use deliver::exit::{self, Failure};
use deliver::log::Logger;
use deliver::{check, report, run};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, ValueEnum, Default)]
enum Format {
    #[default]
    Text,
    Json,
}

/// A local delivery agent for Postfix: access maps, header/score rules,
/// spam-header routing, durable Maildir delivery.
#[derive(Debug, Parser)]
#[command(name = "deliver", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Envelope sender ("" or <> for the null sender).
    #[arg(short = 'f', value_name = "SENDER", allow_hyphen_values = true)]
    sender: Option<String>,
    /// Envelope recipient.
    #[arg(short = 'a', value_name = "RECIPIENT")]
    recipient: Option<String>,
    /// Deliver as USER (requires running as root).
    #[arg(short = 'd', value_name = "USER")]
    user: Option<String>,
    /// Maildir to deliver into (default: ~/Maildir).
    #[arg(long, value_name = "DIR")]
    maildir: Option<PathBuf>,
    /// System rules file (default: /etc/deliver/rules.toml).
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// Per-user rules file (default: ~/.config/deliver/rules.toml).
    #[arg(long = "user-rules", value_name = "FILE")]
    user_rules: Option<PathBuf>,
    /// Dry run: show every decision, write nothing.
    #[arg(long)]
    test: bool,
    /// Output format of --test.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Client address, as Postfix's CLIENT_ADDRESS.
    #[arg(long = "client-address", value_name = "ADDR")]
    client_address: Option<String>,
    /// Client hostname, as Postfix's CLIENT_HOSTNAME.
    #[arg(long = "client-hostname", value_name = "NAME")]
    client_hostname: Option<String>,
    /// HELO name, as Postfix's CLIENT_HELO.
    #[arg(long, value_name = "NAME")]
    helo: Option<String>,
    /// Also write log lines to stderr.
    #[arg(long = "log-stderr")]
    log_stderr: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate rules files and the maps they name, without reading a message.
    Check {
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        #[arg(long = "user-rules", value_name = "FILE")]
        user_rules: Option<PathBuf>,
        /// Print nothing; the exit status tells.
        #[arg(long, short)]
        quiet: bool,
    },
}

fn options(cli: &Cli) -> run::Options {
    run::Options {
        envelope: Flags {
            sender: cli.sender.clone(),
            recipient: cli.recipient.clone(),
            client_address: cli.client_address.clone(),
            client_hostname: cli.client_hostname.clone(),
            helo: cli.helo.clone(),
        },
        user: cli.user.clone(),
        maildir: cli.maildir.clone(),
        rules: cli.rules.clone(),
        user_rules: cli.user_rules.clone(),
        log_stderr: cli.log_stderr,
    }
}

/// Prints a failure's status line for Postfix and returns its exit code.
fn report_failure(f: &Failure, log: &Logger) -> u8 {
    let _ = writeln!(std::io::stderr(), "{}", f.status_line());
    log.warn(&format!("{}", f));
    f.exit_code() as u8
}

fn real_main(log_stderr_hint: bool) -> u8 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            let _ = e.print();
            return 0;
        }
        Err(e) => {
            // A usage error is the admin's to fix: defer, never bounce.
            let msg = e.to_string();
            let first = msg
                .lines()
                .next()
                .unwrap_or("usage error")
                .trim_start_matches("error: ");
            let f = Failure::temp("4.3.5", format!("deliver: {first} (see deliver(1))"));
            return report_failure(&f, &Logger::new(log_stderr_hint));
        }
    };
    if let Some(Command::Check {
        rules,
        user_rules,
        quiet,
    }) = &cli.command
    {
        // Without --user-rules, the running user's own file, when it exists.
        let user = match user_rules {
            Some(p) => Some(p.clone()),
            None => run::user_rules_path(None, run::own_home().as_deref()).filter(|p| p.exists()),
        };
        let diags = check::check(rules.as_deref(), user.as_deref(), run::uid());
        if !quiet {
            for d in &diags {
                println!("{d}");
            }
        }
        return if diags.is_empty() { 0 } else { 1 };
    }
    let opts = options(&cli);
    if cli.test {
        return match run::dry_run(&opts, std::io::stdin().lock()) {
            Ok(dr) => {
                let out = match cli.format {
                    Format::Text => report::text(&dr),
                    Format::Json => report::json(&dr),
                };
                let _ = std::io::stdout().write_all(out.as_bytes());
                if matches!(cli.format, Format::Json) {
                    println!();
                }
                0
            }
            Err(f) => {
                let _ = writeln!(std::io::stderr(), "deliver --test: {}", f.status_line());
                1
            }
        };
    }
    let log = Logger::new(cli.log_stderr);
    #[cfg(debug_assertions)]
    if std::env::var_os("DELIVER_TEST_PANIC").is_some() {
        panic!("test-only panic trigger (debug builds)");
    }
    match run::deliver(&opts, std::io::stdin().lock(), &log) {
        Ok(()) => 0,
        Err(f) => report_failure(&f, &log),
    }
}

/// glibc hands large allocations (over 128 KiB) to mmap and returns freed
/// memory to the kernel; compiling the rule patterns allocates and frees such
/// buffers once per header group, so every group faulted its pages in anew.
/// A delivery lives a few milliseconds: keep the memory (measured: 458 -> 364
/// page faults and about 10% less CPU per start with workload W1's rules).
fn tune_malloc() {
    // SAFETY: mallopt only sets allocator parameters; called before any
    // other thread exists.
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 4 << 20);
        nix::libc::mallopt(nix::libc::M_TRIM_THRESHOLD, 16 << 20);
    }
}

fn deliver_main() -> u8 {
    tune_malloc();
    // A panic is our fault, never the sender's: defer (75) with a status line.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let f = Failure::temp("4.3.0", format!("deliver: internal error: {msg}{at}"));
        let _ = writeln!(std::io::stderr(), "{}", f.status_line());
        Logger::new(false).warn(&f.status_line());
    }));
    let hint = std::env::args().any(|a| a == "--log-stderr");
    let code = match std::panic::catch_unwind(|| real_main(hint)) {
        Ok(code) => code,
        Err(_) => exit::TEMPFAIL as u8,
    };
    // std's runtime flushes stdout after `main`; ours does not exist.
    let _ = std::io::stdout().flush();
    code
}

/// What std's runtime does before `main` that deliver needs, without the
/// rest: std also computes the main thread's stack guard range for its
/// stack-overflow message, and glibc's pthread_getattr_np finds it by
/// reading and sscanf-parsing /proc/self/maps (94,000 instructions and
/// 19 system calls, with the signal stack it sets up, of a 760,000
/// instruction delivery). Without it a stack overflow still hits the
/// kernel's guard gap and kills the process with SIGSEGV instead of
/// SIGABRT after a message; local(8) defers on either signal.
///
/// SAFETY: called once, first thing, while single-threaded.
unsafe fn runtime_init() {
    use nix::libc;
    // As std: a closed standard descriptor is reopened on /dev/null, so
    // that no file opened later becomes stdin, stdout or stderr.
    let mut pfds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    let closed: [bool; 3] = loop {
        if libc::poll(pfds.as_mut_ptr(), 3, 0) != -1 {
            break pfds.map(|p| p.revents & libc::POLLNVAL != 0);
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EINVAL | libc::EAGAIN | libc::ENOMEM) => {
                break [0, 1, 2].map(|fd| {
                    libc::fcntl(fd, libc::F_GETFD) == -1
                        && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF)
                });
            }
            _ => libc::abort(),
        }
    };
    for (fd, &is_closed) in closed.iter().enumerate() {
        // Opening the lowest free descriptor fills the closed one.
        if is_closed && libc::open(c"/dev/null".as_ptr(), libc::O_RDWR, 0) != fd as libc::c_int {
            libc::abort();
        }
    }
    // As std: a write to a closed pipe is an EPIPE error, not a signal.
    libc::signal(libc::SIGPIPE, libc::SIG_IGN);
}

/// The process entry point, called by the C library's start-up code.
/// `std::env::args` still works: on glibc, std takes argc and argv from
/// `.init_array`, before this runs.
#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: std::ffi::c_int, _argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    // SAFETY: first thing in the process, single-threaded.
    unsafe { runtime_init() };
    // As std's runtime: a panic outside `real_main`'s own catch (in reading
    // the arguments) is exit 101, and must not unwind out of a C function.
    std::panic::catch_unwind(deliver_main).map_or(101, Into::into)
}
