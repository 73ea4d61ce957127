//! Routes: from command-line flags (one route) or a TOML file (several).
//!
//! ```toml
//! server = "nats://127.0.0.1:4222"   # optional, default nats://127.0.0.1:4222
//! host = "feed-a"                     # optional, default the machine's host name
//! status_file = "/run/shmq-bridge.status"   # optional
//!
//! [[route]]
//! name = "quotes"          # the cursor is bridge.quotes
//! direction = "out"        # a local log or queue to a subject
//! local = "quotes"         # a shmq target (as for `shmq stat`)
//! subject = "feed.quotes"
//! mode = "jetstream"       # or "core"
//! stream = "FEED"          # JetStream: the stream (created if missing)
//!
//! [[route]]
//! name = "quotes-in"
//! direction = "in"         # a subject to a local log or queue
//! local = "quotes-remote"
//! subject = "feed.quotes"
//! mode = "jetstream"
//! stream = "FEED"
//! state = "/var/lib/shmq-bridge/quotes-in.state"
//!
//! [[route]]
//! name = "ticks"
//! direction = "out"
//! local = "ticks"
//! subject = "feed.ticks"
//! pack = true              # core mode, a log: a read batch per NATS message
//! ```

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// Where messages flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A local log or queue to a NATS subject.
    Out,
    /// A NATS subject to a local log or queue.
    In,
}

/// Which NATS delivery a route uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Core NATS: at most once; loss is detected by sequence gaps and reported.
    #[default]
    Core,
    /// JetStream: stored, acknowledged, deduplicated: exactly once end to end.
    Jetstream,
}

/// One route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The route's name: its cursor is `bridge.<name>`, its JetStream
    /// consumer `shmq-bridge-<name>`.
    pub name: String,
    /// `out` or `in`.
    pub direction: Direction,
    /// The local target (a SysV key, a POSIX name, a file path).
    pub local: String,
    /// The NATS subject.
    pub subject: String,
    /// `core` (default) or `jetstream`.
    #[serde(default)]
    pub mode: Mode,
    /// JetStream: the stream holding `subject` (created if missing); default
    /// `SHMQ_` and the subject with its dots as underscores.
    pub stream: Option<String>,
    /// In routes: the state file (default `shmq-bridge-<name>.state` in the
    /// working directory).
    pub state: Option<PathBuf>,
    /// Out routes of a log, core mode: send the messages of a read batch
    /// in one NATS message (see `crate::pack`; in routes unpack by
    /// themselves).
    #[serde(default)]
    pub pack: bool,
}

impl Route {
    /// The log cursor an out route holds.
    pub fn cursor(&self) -> String {
        format!("bridge.{}", self.name)
    }

    /// The JetStream stream of the route.
    pub fn stream(&self) -> String {
        self.stream.clone().unwrap_or_else(|| {
            let s: String = self
                .subject
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("SHMQ_{s}")
        })
    }

    /// The durable consumer of a JetStream in route.
    pub fn consumer(&self) -> String {
        format!("shmq-bridge-{}", self.name)
    }

    /// The state file of an in route.
    pub fn state_path(&self) -> PathBuf {
        self.state
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("shmq-bridge-{}.state", self.name)))
    }

    /// Checks what the types cannot.
    pub fn check(&self) -> Result<()> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            bail!(
                "route name {:?}: use letters, digits, '-', '_' and '.'",
                self.name
            );
        }
        if self.subject.is_empty() || self.subject.contains(char::is_whitespace) {
            bail!("route {}: invalid subject {:?}", self.name, self.subject);
        }
        if self.direction == Direction::Out
            && (self.subject.contains('*') || self.subject.contains('>'))
        {
            bail!(
                "route {}: an out route publishes to one subject, not a wildcard",
                self.name
            );
        }
        if self.pack && self.direction == Direction::In {
            bail!(
                "route {}: pack is an out route's choice (in routes unpack whatever comes)",
                self.name
            );
        }
        if self.pack && self.mode == Mode::Jetstream {
            bail!(
                "route {}: pack is for core mode (JetStream deduplicates whole NATS messages)",
                self.name
            );
        }
        self.local
            .parse::<shmq::Target>()
            .with_context(|| format!("route {}: local target {:?}", self.name, self.local))?;
        Ok(())
    }
}

/// A routes file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// The NATS server URL(s), comma-separated.
    pub server: Option<String>,
    /// The value of the `Shmq-Host` header.
    pub host: Option<String>,
    /// Where to write the status (see `shmq-bridge status`).
    pub status_file: Option<PathBuf>,
    /// The routes.
    #[serde(rename = "route")]
    pub routes: Vec<Route>,
}

impl File {
    /// Reads and checks a routes file.
    pub fn load(path: &std::path::Path) -> Result<File> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: File =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if file.routes.is_empty() {
            bail!("{}: no [[route]]", path.display());
        }
        let mut names = std::collections::HashSet::new();
        for r in &file.routes {
            r.check()?;
            if !names.insert(&r.name) {
                bail!("{}: two routes named {:?}", path.display(), r.name);
            }
        }
        Ok(file)
    }
}

/// The machine's host name (the default `Shmq-Host`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let doc = include_str!("config.rs");
        let toml: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start()))
            .collect();
        let f: File = toml::from_str(&toml).unwrap();
        assert_eq!(f.routes.len(), 3);
        assert_eq!(f.routes[0].cursor(), "bridge.quotes");
        assert_eq!(f.routes[1].direction, Direction::In);
        assert_eq!(f.routes[1].mode, Mode::Jetstream);
        assert!(f.routes[2].pack && !f.routes[0].pack);
        for r in &f.routes {
            r.check().unwrap();
        }
    }

    #[test]
    fn default_stream_name() {
        let r = Route {
            name: "a".into(),
            direction: Direction::Out,
            local: "x".into(),
            subject: "feed.quotes".into(),
            mode: Mode::Core,
            stream: None,
            state: None,
            pack: false,
        };
        assert_eq!(r.stream(), "SHMQ_feed_quotes");
    }

    #[test]
    fn only_core_out_routes_pack() {
        let r = |direction, mode| Route {
            name: "a".into(),
            direction,
            local: "x".into(),
            subject: "s".into(),
            mode,
            stream: None,
            state: None,
            pack: true,
        };
        r(Direction::Out, Mode::Core).check().unwrap();
        assert!(r(Direction::In, Mode::Core).check().is_err());
        assert!(r(Direction::Out, Mode::Jetstream).check().is_err());
    }
}
