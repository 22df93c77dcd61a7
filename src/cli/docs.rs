//! `completions` and `man`: generated from the clap definitions that `--help`
//! shows, so they cannot drift from the command line.

use std::io::{self, Write};

use anyhow::Context as _;
use clap::{Arg, Command, CommandFactory, ValueEnum};

use super::{Cli, Exit};

/// The shells netctx writes completion scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

pub fn completions(shell: Shell) -> anyhow::Result<Exit> {
    let gen = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(gen, &mut Cli::command(), "netctx", &mut out);
    io::stdout()
        .write_all(&out)
        .context("writing the completion script")?;
    Ok(Exit::Ok)
}

pub fn man() -> anyhow::Result<Exit> {
    let mut out = Vec::new();
    render_man(&mut out).context("rendering the manual page")?;
    io::stdout()
        .write_all(&out)
        .context("writing the manual page")?;
    Ok(Exit::Ok)
}

/// Text for roff: backslashes and hyphens escaped, no line starting with a
/// control character.
fn roff(text: &str) -> String {
    let s = text.replace('\\', "\\e").replace('-', "\\-");
    s.lines()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn value_names(a: &Arg) -> String {
    a.get_value_names()
        .map(|v| v.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap_or_else(|| vec![a.get_id().as_str().to_uppercase()])
        .join(" ")
}

/// How an argument is written: `\fB\-c\fR, \fB\-\-config\fR \fIPATH\fR`.
fn arg_term(a: &Arg) -> String {
    if a.is_positional() {
        let dots = if a.get_num_args().is_some_and(|n| n.max_values() > 1) {
            "..."
        } else {
            ""
        };
        return format!("\\fI{}\\fR{dots}", value_names(a));
    }
    let mut names = Vec::new();
    if let Some(s) = a.get_short() {
        names.push(format!("\\fB\\-{s}\\fR"));
    }
    if let Some(l) = a.get_long() {
        names.push(format!("\\fB\\-\\-{}\\fR", roff(l)));
    }
    let mut t = names.join(", ");
    if a.get_action().takes_values() {
        t.push_str(&format!(" \\fI{}\\fR", value_names(a)));
    }
    t
}

fn arg_help(a: &Arg) -> String {
    let mut h = a
        .get_long_help()
        .or(a.get_help())
        .map(|s| s.to_string())
        .unwrap_or_default();
    let possible: Vec<String> = a
        .get_possible_values()
        .iter()
        .map(|v| v.get_name().to_string())
        .collect();
    if !possible.is_empty() && a.get_action().takes_values() && !a.is_hide_possible_values_set() {
        h.push_str(&format!(" (one of: {})", possible.join(", ")));
    }
    if let Some(env) = a.get_env() {
        h.push_str(&format!(" [env: {}]", env.to_string_lossy()));
    }
    let defaults: Vec<String> = a
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if !defaults.is_empty() && a.get_action().takes_values() {
        h.push_str(&format!(" [default: {}]", defaults.join(" ")));
    }
    roff(&h)
}

/// The arguments of a command; the global ones only where `globals`.
fn write_args<'a>(
    w: &mut dyn Write,
    args: impl Iterator<Item = &'a Arg>,
    globals: bool,
) -> io::Result<()> {
    // `--help` of each command is said once, with the global options.
    let skip = |a: &Arg| !globals && (a.is_global_set() || a.get_id() == "help");
    for a in args.filter(|a| !a.is_hide_set() && !skip(a)) {
        writeln!(w, ".TP\n{}\n{}", arg_term(a), arg_help(a))?;
    }
    Ok(())
}

/// The usage line of a subcommand, as `netctx NAME [OPTIONS] ARGS`.
fn synopsis(sub: &Command) -> String {
    let mut s = format!("\\fBnetctx {}\\fR", sub.get_name());
    if sub
        .get_arguments()
        .any(|a| !a.is_positional() && !a.is_global_set())
    {
        s.push_str(" [\\fIOPTIONS\\fR]");
    }
    for a in sub.get_positionals() {
        let term = arg_term(a);
        let last = if a.is_last_set() { "\\-\\- " } else { "" };
        if a.is_required_set() {
            s.push_str(&format!(" {last}{term}"));
        } else {
            s.push_str(&format!(" [{last}{term}]"));
        }
    }
    s
}

fn render_commands(w: &mut dyn Write, cmd: &Command) -> io::Result<()> {
    writeln!(w, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        writeln!(w, ".SS \"netctx {}\"", sub.get_name())?;
        writeln!(w, "{}", synopsis(sub))?;
        writeln!(w, ".PP")?;
        let about = sub.get_long_about().or(sub.get_about());
        writeln!(
            w,
            "{}",
            roff(&about.map(|s| s.to_string()).unwrap_or_default())
        )?;
        write_args(w, sub.get_arguments(), false)?;
    }
    Ok(())
}

const TRAILER: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success.
.TP
\fB1\fR
An error: a bad configuration, a context that failed, a refusal.
.TP
\fB2\fR
\fBstatus\fR found drift, a conflict or an orphaned context, or \fBaudit\fR found a violation.
.PP
\fBexec\fR exits with the status of its command.
.SH ENVIRONMENT
.TP
\fBNETCTX_CONFIG\fR
The configuration, when \fB\-c\fR is not given.
.TP
\fBNETCTX_THREADS\fR
Worker threads for work on many contexts (default 4).
.SH FILES
.TP
\fI/etc/netctx/contexts.d/\fR
The default configuration: every *.toml file, in lexical order.
.TP
\fI/run/netns/CONTEXT\fR
The network namespace of a context.
.TP
\fI/run/netctx/\fR
netctx's markers, guests' pid files and logs, and the lock.
.SH "SEE ALSO"
\fBip\-netns\fR(8), \fBnft\fR(8), \fBsystemd.service\fR(5)
"#;

/// netctx(1): clap_mangen's title, name, synopsis, description and global
/// options, then every command with its options, then exit status,
/// environment and files.
pub fn render_man(w: &mut dyn Write) -> io::Result<()> {
    let mut cmd = Cli::command();
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone()).section("1");
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    writeln!(w, ".SH OPTIONS")?;
    writeln!(w, "These options may stand before or after the command.")?;
    write_args(w, cmd.get_arguments(), true)?;
    render_commands(w, &cmd)?;
    w.write_all(TRAILER.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_names_every_command_and_option() {
        let mut out = Vec::new();
        render_man(&mut out).unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(
            page.starts_with(".ie") || page.contains(".TH netctx 1"),
            "{page}"
        );
        let mut cmd = Cli::command();
        cmd.build();
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            assert!(
                page.contains(&format!(".SS \"netctx {}\"", sub.get_name())),
                "{} missing",
                sub.get_name()
            );
            for a in sub
                .get_arguments()
                .filter(|a| !a.is_positional() && !a.is_global_set())
            {
                let long = a.get_long().unwrap().replace('-', "\\-");
                assert!(page.contains(&format!("\\-\\-{long}")), "--{long} missing");
            }
        }
        assert!(page.contains("\\fB\\-c\\fR, \\fB\\-\\-config\\fR \\fIPATH\\fR"));
        // Hidden commands (debugging doors) are not in the manual.
        assert!(!page.contains("debug\\-bpf"));
    }

    #[test]
    fn roff_text_is_escaped() {
        assert_eq!(roff(".hidden\n'quote"), "\\&.hidden\n\\&'quote");
        assert_eq!(roff("a-b \\ c"), "a\\-b \\e c");
    }
}
