//! The `deliver` command: CLI parsing and the exit-status boundary. All
//! behaviour lives in the library; this file turns results into exit codes.

// The process entry point is our own C `main` (see `main` below), not std's
// runtime start. Not in test builds, where the test harness has its own.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code))]

use clap::{Parser, Subcommand, ValueEnum};
use deliver::engine::inflight;
use deliver::engine::load;
use deliver::engine::privs::{self, EnvIdentity};
use deliver::engine::{Engine, Outcome};
use deliver::input::envelope::Flags;
use deliver::output::exit::{self, Failure};
use deliver::output::log::Logger;
use deliver::output::report;
use deliver::policy::check;
use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

/// The system allocator, and one test more: an allocation that fails ends
/// the delivery as a 75 with a status line, its tmp/ file removed
/// (`deliver::engine::inflight::out_of_memory`), where std would print a message
/// and abort (SIGABRT, 134). A fallible allocation (`try_reserve`, which
/// std's `read_to_end` uses) ends the same way.
struct Allocator;

// SAFETY: every call is System's; a null result never returns.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if p.is_null() {
            deliver::engine::inflight::out_of_memory(layout.size());
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if p.is_null() {
            deliver::engine::inflight::out_of_memory(layout.size());
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if p.is_null() {
            deliver::engine::inflight::out_of_memory(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
enum Format {
    #[default]
    Text,
    Json,
}

/// A local delivery agent for Postfix: access maps, header/score rules,
/// spam-header routing, durable Maildir delivery.
#[derive(Debug, PartialEq, Eq, Parser)]
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
    /// With --test: run the filters the rules name (they are not run otherwise).
    #[arg(long = "run-filters", requires = "test")]
    run_filters: bool,
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
    /// The LMTP session a delivery belongs to (given by `deliver lmtp` to
    /// the process that delivers as a system user; logged as `session=`).
    #[arg(long, value_name = "ID", hide = true)]
    session: Option<String>,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
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
    /// Print the shell completion script for SHELL (the package installs
    /// this output for bash, zsh and fish).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Run the rules over stored mail (Maildir folders, mboxes, message
    /// files) as --test does, and show where each message would go.
    /// Writes nothing.
    Replay {
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        #[arg(long = "user-rules", value_name = "FILE")]
        user_rules: Option<PathBuf>,
        /// Evaluate as USER (requires running as root).
        #[arg(short = 'd', value_name = "USER")]
        user: Option<String>,
        /// The Maildir replayed without PATH (default: ~/Maildir).
        #[arg(long, value_name = "DIR")]
        maildir: Option<PathBuf>,
        /// Also show the folder each message is in now, and what would move.
        #[arg(long)]
        compare: bool,
        /// With a Maildir, also its subfolders (.NAME).
        #[arg(long, short)]
        recursive: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Maildir folders, mbox files or message files (default: the
        /// Maildir, with its subfolders).
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Run the LMTP service (RFC 2033) for Postfix's lmtp(8) client.
    Lmtp {
        /// unix:PATH or inet:HOST:PORT (default: the socket systemd passes).
        #[arg(long, value_name = "ADDRESS")]
        listen: Option<String>,
        /// System rules file (default: /etc/deliver/rules.toml).
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        /// Also write log lines to stderr.
        #[arg(long = "log-stderr")]
        log_stderr: bool,
    },
    /// Summarise deliver's log lines, as pflogsumm does Postfix's.
    Report {
        /// Mail logs, plain or gzipped; none, or `-`, for standard input
        /// (`journalctl -t deliver -o cat | deliver report`).
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Count the lines from TIME on: YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS],
        /// today, yesterday, now, or -N followed by m, h, d or w (ago).
        #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
        since: Option<String>,
        /// Count the lines before TIME (same forms as --since).
        #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
        until: Option<String>,
        /// Format on standard output [default: text, or none with --html].
        #[arg(long, value_enum)]
        format: Option<ReportFormat>,
        /// Write the report as one self-contained HTML page to FILE.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Rows of the top lists in text and HTML.
        #[arg(long, value_name = "N", default_value_t = 10)]
        top: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
    Prometheus,
}

/// The plain command lines that Postfix and scripts give, parsed without
/// clap: building clap's command and matching against it is a large part of
/// a delivery's start (BENCHMARKS.md, "Hand-written parts against crates"),
/// and its code pages are faulted in at every start.
///
/// Accepted: the options of a delivery or `--test` (`-f`, `-a`, `-d`, the
/// `--long` ones), each at most once, with its value as the next argument,
/// a value that does not start with `-` (and is not empty, for paths and
/// `--format`), all UTF-8.
/// Anything else (`check`, `--help`, `--version`, `--opt=value`, `-fVALUE`,
/// repeated or unknown options, a value such as `-x`, invalid UTF-8, ...)
/// is `None`, and clap parses it, with its errors. For what this accepts,
/// clap gives the same `Cli` (`tests::plain_parser_agrees_with_clap`).
fn parse_plain(args: &[OsString]) -> Option<Cli> {
    let mut cli = Cli {
        command: None,
        sender: None,
        recipient: None,
        user: None,
        maildir: None,
        rules: None,
        user_rules: None,
        test: false,
        format: Format::Text,
        client_address: None,
        client_hostname: None,
        helo: None,
        log_stderr: false,
        run_filters: false,
        session: None,
    };
    let mut format_seen = false;
    let mut it = args.iter().skip(1);
    while let Some(arg) = it.next() {
        let arg = arg.to_str()?;
        if let Some(flag) = match arg {
            "--test" => Some(&mut cli.test),
            "--log-stderr" => Some(&mut cli.log_stderr),
            _ => None,
        } {
            if std::mem::replace(flag, true) {
                return None;
            }
            continue;
        }
        let text = match arg {
            "-f" => Some(&mut cli.sender),
            "-a" => Some(&mut cli.recipient),
            "-d" => Some(&mut cli.user),
            "--client-address" => Some(&mut cli.client_address),
            "--client-hostname" => Some(&mut cli.client_hostname),
            "--helo" => Some(&mut cli.helo),
            _ => None,
        };
        let path = match arg {
            "--maildir" => Some(&mut cli.maildir),
            "--rules" => Some(&mut cli.rules),
            "--user-rules" => Some(&mut cli.user_rules),
            _ => None,
        };
        if text.is_none() && path.is_none() && arg != "--format" {
            return None;
        }
        let value = it.next()?.to_str()?;
        // An empty value is taken for the envelope options (Postfix gives
        // `-f ""` for the null sender), not for paths, which clap refuses.
        let ok = match value.bytes().next() {
            None => text.is_some(),
            Some(b) => b != b'-',
        };
        if !ok {
            return None;
        }
        if let Some(slot) = text {
            if slot.replace(value.to_string()).is_some() {
                return None;
            }
        } else if let Some(slot) = path {
            if slot.replace(PathBuf::from(value)).is_some() {
                return None;
            }
        } else {
            if std::mem::replace(&mut format_seen, true) {
                return None;
            }
            cli.format = match value {
                "text" => Format::Text,
                "json" => Format::Json,
                _ => return None,
            };
        }
    }
    Some(cli)
}

fn options(cli: &Cli) -> load::Options {
    load::Options {
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
        session: cli.session.clone(),
    }
}

/// The one line a usage error becomes (it ends up in Postfix's log and
/// DSN): clap's first line, and the nearest option, subcommand or value
/// clap found for a mistyped one.
fn usage_text(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let msg = e.to_string();
    let first = msg
        .lines()
        .next()
        .unwrap_or("usage error")
        .trim_start_matches("error: ");
    let mut similar = Vec::new();
    for kind in [
        ContextKind::SuggestedArg,
        ContextKind::SuggestedSubcommand,
        ContextKind::SuggestedValue,
    ] {
        match e.get(kind) {
            Some(ContextValue::String(s)) => similar.push(format!("'{s}'")),
            Some(ContextValue::Strings(v)) => similar.extend(v.iter().map(|s| format!("'{s}'"))),
            _ => {}
        }
    }
    match similar.is_empty() {
        true => format!("deliver: {first} (see deliver(1))"),
        false => format!(
            "deliver: {first}; did you mean {}? (see deliver(1))",
            similar.join(" or ")
        ),
    }
}

/// Prints a failure's status line for Postfix and returns its exit code.
fn report_failure(f: &Failure, log: &Logger) -> u8 {
    let _ = writeln!(std::io::stderr(), "{}", f.status_line());
    log.warn(&format!("{}", f));
    f.exit_code() as u8
}

fn real_main(log_stderr_hint: bool) -> u8 {
    let args: Vec<OsString> = std::env::args_os().collect();
    let parsed = match parse_plain(&args) {
        Some(c) => Ok(c),
        None => Cli::try_parse_from(&args),
    };
    let cli = match parsed {
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
        // `replay` is a person's command, never Postfix's: clap's usage
        // message, and exit 2.
        Err(e) if args.get(1).is_some_and(|a| a == "replay") => {
            let _ = e.print();
            return deliver::replay::EXIT_TROUBLE;
        }
        // Postfix never runs `report`: its usage errors are an ordinary
        // command's (clap's message and usage, exit 2).
        Err(e) if args.get(1).is_some_and(|a| a == "report") => {
            let _ = e.print();
            return 2;
        }
        Err(e) => {
            // A usage error is the admin's to fix: defer, never bounce.
            let f = Failure::usage(usage_text(&e));
            return report_failure(&f, &Logger::new(log_stderr_hint));
        }
    };
    if let Some(Command::Completions { shell }) = cli.command {
        use clap::CommandFactory;
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "deliver", &mut script);
        return match std::io::stdout().write_all(&script) {
            Ok(()) => 0,
            Err(_) => 1,
        };
    }
    if let Some(Command::Check {
        rules,
        user_rules,
        quiet,
    }) = &cli.command
    {
        // Without --user-rules, the running user's own file, when it exists.
        let user = match user_rules {
            Some(p) => Some(p.clone()),
            None => load::user_rules_path(None, load::own_home().as_deref()).filter(|p| p.exists()),
        };
        let report = check::check_report(rules.as_deref(), user.as_deref(), load::uid());
        if !quiet {
            for d in &report.problems {
                println!("{d}");
            }
            // The index cache's notes: information, not problems.
            for n in &report.notes {
                println!("{n}");
            }
            // On stderr, as `nginx -t` does: stdout stays empty when all
            // is well, for scripts that read it for problems.
            if report.problems.is_empty() {
                eprintln!("{}", report.summary());
            }
        }
        return if report.problems.is_empty() { 0 } else { 1 };
    }
    if let Some(Command::Lmtp {
        listen,
        rules,
        log_stderr,
    }) = &cli.command
    {
        let opts = deliver::lmtp::ServeOptions {
            listen: listen.clone(),
            rules: rules.clone(),
            log_stderr: *log_stderr,
        };
        return match deliver::lmtp::serve(opts) {
            Ok(()) => 0,
            Err(f) => {
                let _ = writeln!(std::io::stderr(), "{f}");
                Logger::new(false).warn(&f.to_string());
                1
            }
        };
    }
    if let Some(Command::Replay {
        rules,
        user_rules,
        user,
        maildir,
        compare,
        recursive,
        format,
        paths,
    }) = cli.command
    {
        let opts = deliver::replay::Options {
            load: load::Options {
                user,
                maildir,
                rules,
                user_rules,
                ..load::Options::default()
            },
            paths,
            compare,
            recursive,
            json: format == Format::Json,
        };
        return deliver::replay::run(opts, std::io::stdout().lock(), &mut std::io::stderr());
    }
    if let Some(Command::Report {
        files,
        since,
        until,
        format,
        html,
        top,
    }) = &cli.command
    {
        return report_main(
            files,
            since.as_deref(),
            until.as_deref(),
            *format,
            html.as_deref(),
            *top,
        );
    }
    let opts = options(&cli);
    if cli.test {
        return test_mode(opts, cli.format, cli.run_filters);
    }
    let log = Logger::new(cli.log_stderr);
    #[cfg(debug_assertions)]
    if std::env::var_os("DELIVER_TEST_PANIC").is_some() {
        panic!("test-only panic trigger (debug builds)");
    }
    match deliver_once(opts, log) {
        Ok(()) => 0,
        Err((f, log)) => report_failure(&f, &log),
    }
}

/// One delivery of stdin, as the recipient (exec mode). Its time limit
/// runs from here, with the default until the system rules set theirs
/// (reading them, or stdin, can hang too); see `deliver::engine::inflight`.
fn deliver_once(opts: load::Options, log: Logger) -> Result<(), (Failure, Logger)> {
    // First: dropped last, after everything that uses the tmp/ file.
    let flight = inflight::begin(deliver::policy::rules::DEFAULT_TIME_LIMIT);
    let who = match privs::become_recipient(opts.user.as_deref(), &EnvIdentity::current(), false) {
        Ok(w) => w,
        Err(f) => return Err((f, log)),
    };
    let envelope = opts.envelope.clone();
    let mut engine = match Engine::load(opts, &who, log, true) {
        Ok(e) => e,
        Err((f, log)) => return Err((f, log)),
    };
    match engine.deliver(std::io::stdin().lock(), &envelope, &who, &flight) {
        Outcome::Done => Ok(()),
        Outcome::Failed(f) => Err((f, engine.into_logger())),
    }
}

/// `--test`: the same loading and decision as a delivery, printed.
fn test_mode(opts: load::Options, format: Format, run_filters: bool) -> u8 {
    let fail = |f: &Failure| {
        let _ = writeln!(std::io::stderr(), "deliver --test: {}", f.status_line());
        1
    };
    // As root without -d it evaluates as root (nothing is written anyway).
    let who = match privs::become_recipient(opts.user.as_deref(), &EnvIdentity::current(), true) {
        Ok(w) => w,
        Err(f) => return fail(&f),
    };
    let envelope = opts.envelope.clone();
    // The whole files, so that --test can show every rule.
    let mut engine = match Engine::load(opts, &who, Logger::silent(), false) {
        Ok(e) => e,
        Err((f, _)) => return fail(&f),
    };
    match engine.dry_run(std::io::stdin().lock(), &envelope, &who, run_filters) {
        Ok(dr) => {
            let out = match format {
                Format::Text => report::text(&dr),
                Format::Json => report::json(&dr),
            };
            let _ = std::io::stdout().write_all(out.as_bytes());
            if matches!(format, Format::Json) {
                println!();
            }
            0
        }
        Err(f) => fail(&f),
    }
}

/// `deliver report`: 0, or 1 with a message when a time is not one or a
/// file cannot be read or written.
fn report_main(
    files: &[PathBuf],
    since: Option<&str>,
    until: Option<&str>,
    format: Option<ReportFormat>,
    html: Option<&std::path::Path>,
    top: usize,
) -> u8 {
    use deliver::report::{self as r, time};
    let fail = |m: String| {
        let _ = writeln!(std::io::stderr(), "deliver report: {m}");
        1
    };
    let now = time::now_local();
    let parse = |t: Option<&str>| t.map(|t| time::parse_arg(t, now)).transpose();
    let period = match (parse(since), parse(until)) {
        (Ok(since), Ok(until)) => r::Period { since, until, now },
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    let summary = match r::read_all(files, period) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if summary.lines.without_timestamp > 0 && (since.is_some() || until.is_some()) {
        let _ = writeln!(
            std::io::stderr(),
            "deliver report: {} lines have no timestamp (journalctl -o cat?): --since and --until cannot filter them, they are all counted; use journalctl's own --since, or -o short-iso",
            summary.lines.without_timestamp
        );
    }
    if let Some(path) = html {
        if let Err(e) = r::write_atomically(path, r::html::render(&summary, top).as_bytes()) {
            return fail(format!("{}: {e}", path.display()));
        }
    }
    let out = match format.or(html.is_none().then_some(ReportFormat::Text)) {
        None => return 0,
        Some(ReportFormat::Text) => r::text::render(&summary, top),
        Some(ReportFormat::Json) => r::json::render(&summary),
        Some(ReportFormat::Prometheus) => r::prom::render(&summary),
    };
    match std::io::stdout().write_all(out.as_bytes()) {
        Ok(()) => 0,
        Err(e) => fail(format!("standard output: {e}")),
    }
}

/// glibc hands large allocations (over 128 KiB) to mmap and returns freed
/// memory to the kernel; compiling the rule patterns allocates and frees such
/// buffers once per header group, so every group faulted its pages in anew.
/// A delivery lives a few milliseconds: keep the memory (fewer page faults
/// and less CPU per start: BENCHMARKS.md, History, the `mallopt` change).
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
        let f = Failure::internal(format!("deliver: internal error: {msg}{at}"));
        let _ = writeln!(std::io::stderr(), "{}", f.status_line());
        Logger::new(false).warn(&f.status_line());
    }));
    // args_os: an argument that is not UTF-8 is clap's usage error (75),
    // not a panic here.
    let hint = std::env::args_os().any(|a| a == "--log-stderr");
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
/// reading and sscanf-parsing /proc/self/maps, a large part of a delivery's
/// instructions and system calls (BENCHMARKS.md, "Hand-written parts
/// against crates"). Without it a stack overflow still hits the
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
    // A write past RLIMIT_FSIZE (`ulimit -f`) is an EFBIG error, which
    // defers and removes the tmp/ file, not a signal that kills the process
    // with the file half written.
    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
}

/// The process entry point, called by the C library's start-up code.
/// `std::env::args` still works: on glibc, std takes argc and argv from
/// `.init_array`, before this runs.
#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    // SAFETY: first thing in the process, single-threaded.
    unsafe { runtime_init() };
    // A panic outside `real_main`'s own catch (in setting up the hook, or
    // in the hook itself) must not unwind out of a C function: it defers.
    std::panic::catch_unwind(deliver_main).map_or(exit::TEMPFAIL, Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every argument list of up to three words from `words`, and of four
    /// from a smaller set: wherever the plain parser accepts one, clap must
    /// accept it too and give the same `Cli`.
    #[test]
    fn plain_parser_agrees_with_clap() {
        let words = [
            "-f",
            "-a",
            "-d",
            "--maildir",
            "--rules",
            "--user-rules",
            "--test",
            "--format",
            "--client-address",
            "--client-hostname",
            "--helo",
            "--log-stderr",
            "a@b.example",
            "",
            "-",
            "-x",
            "--",
            "text",
            "json",
            "JSON",
            "check",
            "/tmp/M dir",
            "--rules=x",
            "-fa@b",
            "--help",
            "-V",
            "x\ny",
        ];
        let mut lists: Vec<Vec<&str>> = vec![vec![]];
        for _ in 0..3 {
            let longer: Vec<Vec<&str>> = lists
                .iter()
                .filter(|l| l.len() == lists.last().unwrap().len())
                .flat_map(|l| {
                    words.iter().map(move |w| {
                        let mut l = l.clone();
                        l.push(w);
                        l
                    })
                })
                .collect();
            lists.extend(longer);
        }
        let few = [
            "-f", "-a", "--test", "--format", "json", "", "x@y", "--", "-y",
        ];
        for a in few {
            for b in few {
                for c in few {
                    for d in few {
                        lists.push(vec![a, b, c, d]);
                    }
                }
            }
        }
        let mut accepted = 0;
        for l in &lists {
            let args: Vec<OsString> = std::iter::once("deliver")
                .chain(l.iter().copied())
                .map(OsString::from)
                .collect();
            if let Some(plain) = parse_plain(&args) {
                accepted += 1;
                match Cli::try_parse_from(&args) {
                    Ok(c) => assert_eq!(plain, c, "{l:?}"),
                    Err(e) => panic!("{l:?}: plain parser accepts, clap says {e}"),
                }
            }
        }
        assert!(accepted > 300, "{accepted}");
    }

    /// Subcommands are clap's: the delivery's fast path takes none of them.
    #[test]
    fn subcommands_go_to_clap() {
        for l in [
            &["report"][..],
            &["report", "--format", "json", "/var/log/mail.log"],
            &["check", "--rules", "/r"],
        ] {
            let args: Vec<OsString> = std::iter::once("deliver")
                .chain(l.iter().copied())
                .map(OsString::from)
                .collect();
            assert!(parse_plain(&args).is_none(), "{l:?}");
            assert!(
                Cli::try_parse_from(&args).unwrap().command.is_some(),
                "{l:?}"
            );
        }
        let args = [
            "deliver", "report", "--since", "-7d", "--top", "3", "a", "b.gz",
        ];
        match Cli::try_parse_from(args).unwrap().command {
            Some(Command::Report {
                files,
                since,
                top,
                format: None,
                ..
            }) => {
                assert_eq!(files, [PathBuf::from("a"), PathBuf::from("b.gz")]);
                assert_eq!((since.as_deref(), top), (Some("-7d"), 3));
            }
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn plain_parser_takes_the_usual_command_lines() {
        for l in [
            &["-f", "s@x", "-a", "r@y"][..],
            &["-f", "s@x", "-a", "r@y", "-d", "alice"],
            &[
                "--rules",
                "/r",
                "--user-rules",
                "/u",
                "--maildir",
                "/m",
                "-f",
                "s@x",
                "-a",
                "r@y",
            ],
            &[
                "--test",
                "--format",
                "json",
                "-f",
                "s@x",
                "-a",
                "r@y",
                "--log-stderr",
            ],
            &[
                "--client-address",
                "192.0.2.1",
                "--client-hostname",
                "h",
                "--helo",
                "h",
            ],
        ] {
            let args: Vec<OsString> = std::iter::once("deliver")
                .chain(l.iter().copied())
                .map(OsString::from)
                .collect();
            assert!(parse_plain(&args).is_some(), "{l:?}");
        }
        use std::os::unix::ffi::OsStringExt;
        let bad = [
            "deliver".into(),
            "-f".into(),
            OsString::from_vec(vec![0xff]),
        ];
        assert!(parse_plain(&bad).is_none());
    }
}
