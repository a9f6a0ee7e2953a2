//! The chat command grammar: one pure parser from a line of text to a typed [`Command`].
//!
//! The grammar is data: [`COMMANDS`] is an ordered table of (words, parser) pairs, and
//! [`parse`] picks the longest matching entry. Errors are a `PartialEq` enum; turning them into
//! user text happens in one place in the bot. This module does no I/O and knows nothing of
//! roles (see [`crate::rbac`]) or chat platforms.

use std::collections::BTreeMap;

/// A power action on a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerAction {
    /// Start the VM.
    Start,
    /// Ask the guest to shut down.
    Shutdown,
    /// Turn the VM off.
    Stop,
    /// Hard reset.
    Reset,
}

impl PowerAction {
    /// The action's word, as typed and as sent to the agent.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::Start => "start",
            PowerAction::Shutdown => "shutdown",
            PowerAction::Stop => "stop",
            PowerAction::Reset => "reset",
        }
    }
}

/// The deploy forms the chat offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeployForm {
    /// A bare VM (`vm` form, job kind `vm.create`).
    Vm,
    /// A managed deployment (`managed-deployment` form, job kind `deployment.managed`).
    Managed,
}

impl DeployForm {
    /// The form schema id.
    pub fn form_id(self) -> &'static str {
        match self {
            DeployForm::Vm => "vm",
            DeployForm::Managed => "managed-deployment",
        }
    }
}

/// One chat command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `deploy [managed|vm] [key=value…]`: request a deployment from a form (managed by default).
    Deploy {
        /// Which form.
        form: DeployForm,
        /// The fields given, as typed (validated later against the form).
        fields: BTreeMap<String, String>,
    },
    /// `vm list [--host H]`.
    VmList {
        /// Only this host.
        host: Option<String>,
    },
    /// `vm show NAME`.
    VmShow {
        /// VM name.
        name: String,
    },
    /// `vm update NAME [gb_ram=N] [cpu_cores=N]`: change a VM's memory or processors.
    VmUpdate {
        /// VM name.
        name: String,
        /// New startup memory in GB.
        gb_ram: Option<u32>,
        /// New number of virtual processors.
        cpu_cores: Option<u32>,
    },
    /// `vm start|shutdown|stop|reset NAME`.
    VmPower {
        /// VM name.
        name: String,
        /// What to do.
        action: PowerAction,
    },
    /// `vm delete NAME [--delete-disks] [--force]`.
    VmDelete {
        /// VM name.
        name: String,
        /// Delete the VM's disks too.
        delete_disks: bool,
        /// Turn the VM off first when it runs.
        force: bool,
    },
    /// `disk add VM SIZE_GB`.
    DiskAdd {
        /// VM name.
        vm: String,
        /// Size in GB.
        size_gb: u32,
    },
    /// `disk resize VM DISK SIZE_GB`.
    DiskResize {
        /// VM name.
        vm: String,
        /// Disk id or name.
        disk: String,
        /// New size in GB.
        size_gb: u32,
    },
    /// `disk remove VM DISK [--boot-disk]`.
    DiskRemove {
        /// VM name.
        vm: String,
        /// Disk id, path or file name.
        disk: String,
        /// Allow removing the VM's boot (first) or only disk.
        boot_disk: bool,
    },
    /// `nic add VM NETWORK`.
    NicAdd {
        /// VM name.
        vm: String,
        /// Virtual switch / network name.
        network: String,
    },
    /// `nic remove VM [NIC]`: without NIC, the VM's only adapter.
    NicRemove {
        /// VM name.
        vm: String,
        /// Adapter name or id.
        nic: Option<String>,
    },
    /// `retry ID`: a failed or cancelled job again, as a new request.
    Retry {
        /// Job id (a prefix is enough).
        id: String,
    },
    /// `job ID`: one job's status.
    Job {
        /// Job id (a prefix is enough).
        id: String,
    },
    /// `jobs [--mine] [--host H] [--limit N] [--all]`: newest first.
    Jobs {
        /// Only the caller's jobs.
        mine: bool,
        /// Only this host.
        host: Option<String>,
        /// At most this many (`--limit N`); `None` for the default.
        limit: Option<u32>,
        /// Every job (`--all`): no limit.
        all: bool,
    },
    /// `cancel ID`.
    Cancel {
        /// Job id (a prefix is enough).
        id: String,
    },
    /// `approve [ID]`: vote for a pending request (the console's approval button). Without an
    /// id it means the only request awaiting approval.
    Approve {
        /// Job id (a prefix is enough).
        id: Option<String>,
    },
    /// `reject ID [REASON…]`: veto a pending request.
    Reject {
        /// Job id (a prefix is enough).
        id: String,
        /// Free text.
        reason: Option<String>,
    },
    /// `hosts`.
    Hosts,
    /// `help`.
    Help,
}

/// Which command a [`Command`] is, without its arguments (used for permissions and help).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CommandName {
    /// `deploy`
    Deploy,
    /// `vm list`
    VmList,
    /// `vm show`
    VmShow,
    /// `vm update`
    VmUpdate,
    /// `vm start|shutdown|stop|reset`
    VmPower,
    /// `vm delete`
    VmDelete,
    /// `disk add`
    DiskAdd,
    /// `disk resize`
    DiskResize,
    /// `disk remove`
    DiskRemove,
    /// `nic add`
    NicAdd,
    /// `nic remove`
    NicRemove,
    /// `retry`
    Retry,
    /// `job`
    Job,
    /// `jobs`
    Jobs,
    /// `cancel`
    Cancel,
    /// `approve`
    Approve,
    /// `reject`
    Reject,
    /// `hosts`
    Hosts,
    /// `help`
    Help,
}

impl CommandName {
    /// Every command, in help order.
    pub const ALL: [CommandName; 19] = [
        CommandName::Deploy,
        CommandName::VmList,
        CommandName::VmShow,
        CommandName::VmUpdate,
        CommandName::VmPower,
        CommandName::VmDelete,
        CommandName::DiskAdd,
        CommandName::DiskResize,
        CommandName::DiskRemove,
        CommandName::NicAdd,
        CommandName::NicRemove,
        CommandName::Job,
        CommandName::Jobs,
        CommandName::Cancel,
        CommandName::Retry,
        CommandName::Approve,
        CommandName::Reject,
        CommandName::Hosts,
        CommandName::Help,
    ];

    /// The usage line shown in help and in syntax errors. Exhaustive, so a new command cannot
    /// ship without help.
    pub fn usage(self) -> &'static str {
        match self {
            CommandName::Deploy => "deploy [managed|vm] [key=value…]",
            CommandName::VmList => "vm list [--host H]",
            CommandName::VmShow => "vm show NAME",
            CommandName::VmUpdate => "vm update NAME [gb_ram=N] [cpu_cores=N]",
            CommandName::VmPower => "vm start|shutdown|stop|reset NAME",
            CommandName::VmDelete => "vm delete NAME [--delete-disks] [--force]",
            CommandName::DiskAdd => "disk add VM SIZE_GB",
            CommandName::DiskResize => "disk resize VM DISK SIZE_GB",
            CommandName::DiskRemove => "disk remove VM DISK [--boot-disk]",
            CommandName::NicAdd => "nic add VM NETWORK",
            CommandName::NicRemove => "nic remove VM [NIC]",
            CommandName::Retry => "retry ID",
            CommandName::Job => "job ID",
            CommandName::Jobs => "jobs [--mine] [--host H] [--limit N] [--all]",
            CommandName::Cancel => "cancel ID",
            CommandName::Approve => "approve [ID]",
            CommandName::Reject => "reject ID [REASON]",
            CommandName::Hosts => "hosts",
            CommandName::Help => "help",
        }
    }
}

impl Command {
    /// The command's name.
    pub fn name(&self) -> CommandName {
        match self {
            Command::Deploy { .. } => CommandName::Deploy,
            Command::VmList { .. } => CommandName::VmList,
            Command::VmShow { .. } => CommandName::VmShow,
            Command::VmUpdate { .. } => CommandName::VmUpdate,
            Command::VmPower { .. } => CommandName::VmPower,
            Command::VmDelete { .. } => CommandName::VmDelete,
            Command::DiskAdd { .. } => CommandName::DiskAdd,
            Command::DiskResize { .. } => CommandName::DiskResize,
            Command::DiskRemove { .. } => CommandName::DiskRemove,
            Command::NicAdd { .. } => CommandName::NicAdd,
            Command::NicRemove { .. } => CommandName::NicRemove,
            Command::Retry { .. } => CommandName::Retry,
            Command::Job { .. } => CommandName::Job,
            Command::Jobs { .. } => CommandName::Jobs,
            Command::Cancel { .. } => CommandName::Cancel,
            Command::Approve { .. } => CommandName::Approve,
            Command::Reject { .. } => CommandName::Reject,
            Command::Hosts => CommandName::Hosts,
            Command::Help => CommandName::Help,
        }
    }
}

/// Why a line is not a valid command. No variant carries a word of the line that is not part
/// of the grammar: a line that does not parse may hold a secret (`guest_la_pw=…`), so errors
/// name words by their position, never by their text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandParseError {
    /// Nothing but whitespace.
    #[error("empty command")]
    Empty,
    /// An unterminated double quote.
    #[error("unterminated quote")]
    UnterminatedQuote,
    /// No command starts with these words; `family` is the first word when the grammar knows it
    /// (`vm` in `vm frobnicate`).
    #[error("unknown command")]
    Unknown {
        /// The known first word, if any.
        family: Option<&'static str>,
    },
    /// A required argument is missing.
    #[error("missing argument {arg} for {command:?}")]
    MissingArgument {
        /// The command.
        command: CommandName,
        /// The argument's name as in the usage line.
        arg: &'static str,
    },
    /// More positional arguments than the command takes.
    #[error("unexpected argument (word {position}) for {command:?}")]
    UnexpectedArgument {
        /// The command.
        command: CommandName,
        /// The extra word's position among the command's arguments (1-based).
        position: usize,
    },
    /// A flag the command does not know.
    #[error("unknown flag (word {position}) for {command:?}")]
    UnknownFlag {
        /// The command.
        command: CommandName,
        /// The flag's position among the command's arguments (1-based).
        position: usize,
    },
    /// A number that is not a positive integer.
    #[error("invalid number for {arg}")]
    InvalidNumber {
        /// The argument's name.
        arg: &'static str,
    },
    /// A deploy field without `=` or without a name.
    #[error("invalid field (word {position})")]
    InvalidField {
        /// The word's position among the command's arguments (1-based).
        position: usize,
    },
    /// A word that is not one of the command's `name=value` fields (`vm update` takes
    /// `gb_ram` and `cpu_cores`).
    #[error("unknown field (word {position}) for {command:?}")]
    UnknownField {
        /// The command.
        command: CommandName,
        /// The field's position among the command's arguments (1-based).
        position: usize,
    },
}

type Parser = fn(&mut Args) -> Result<Command, CommandParseError>;

/// The grammar: the words that select a command and its argument parser. Longest match wins.
pub const COMMANDS: &[(&[&str], Parser)] = &[
    (&["deploy"], parse_deploy),
    (&["vm", "list"], parse_vm_list),
    (&["vm", "show"], parse_vm_show),
    (&["vm", "start"], |a| parse_vm_power(a, PowerAction::Start)),
    (&["vm", "shutdown"], |a| {
        parse_vm_power(a, PowerAction::Shutdown)
    }),
    (&["vm", "stop"], |a| parse_vm_power(a, PowerAction::Stop)),
    (&["vm", "reset"], |a| parse_vm_power(a, PowerAction::Reset)),
    (&["vm", "delete"], parse_vm_delete),
    (&["vm", "update"], parse_vm_update),
    (&["disk", "add"], parse_disk_add),
    (&["disk", "resize"], parse_disk_resize),
    (&["disk", "remove"], parse_disk_remove),
    (&["nic", "add"], parse_nic_add),
    (&["nic", "remove"], parse_nic_remove),
    (&["retry"], parse_retry),
    (&["job"], parse_job),
    (&["jobs"], parse_jobs),
    (&["cancel"], parse_cancel),
    (&["approve"], parse_approve),
    (&["reject"], parse_reject),
    (&["hosts"], |a| {
        a.done(CommandName::Hosts).map(|()| Command::Hosts)
    }),
    (&["help"], |_| Ok(Command::Help)),
];

/// Parses one line (an optional leading `/` or `!` is ignored).
pub fn parse(line: &str) -> Result<Command, CommandParseError> {
    let line = line.trim();
    let line = line
        .strip_prefix('/')
        .or_else(|| line.strip_prefix('!'))
        .unwrap_or(line);
    let words = tokenize(line)?;
    if words.is_empty() {
        return Err(CommandParseError::Empty);
    }
    let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let best = COMMANDS
        .iter()
        .filter(|(prefix, _)| {
            prefix.len() <= lower.len() && prefix.iter().zip(&lower).all(|(p, w)| p == w)
        })
        .max_by_key(|(prefix, _)| prefix.len());
    let Some((prefix, parser)) = best else {
        let family = COMMANDS
            .iter()
            .map(|(prefix, _)| prefix[0])
            .find(|w| *w == lower[0]);
        return Err(CommandParseError::Unknown { family });
    };
    let mut args = Args {
        words: words[prefix.len()..].to_vec(),
        pos: 0,
    };
    parser(&mut args)
}

/// Splits on whitespace; double quotes group words (`notes="two words"`).
fn tokenize(line: &str) -> Result<Vec<String>, CommandParseError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err(CommandParseError::UnterminatedQuote);
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// The words after the command's own words.
#[derive(Debug)]
pub struct Args {
    words: Vec<String>,
    pos: usize,
}

impl Args {
    fn positional(
        &mut self,
        command: CommandName,
        arg: &'static str,
    ) -> Result<String, CommandParseError> {
        if let Some(w) = self.words.get(self.pos) {
            if w.starts_with("--") {
                return Err(CommandParseError::UnknownFlag {
                    command,
                    position: self.pos + 1,
                });
            }
            self.pos += 1;
            return Ok(w.clone());
        }
        Err(CommandParseError::MissingArgument { command, arg })
    }

    fn number(
        &mut self,
        command: CommandName,
        arg: &'static str,
    ) -> Result<u32, CommandParseError> {
        let w = self.positional(command, arg)?;
        w.trim_end_matches("GB")
            .trim_end_matches("gb")
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(CommandParseError::InvalidNumber { arg })
    }

    /// Takes `--flag` and `--opt VALUE` words in any order; nothing else may remain.
    fn flags(
        &mut self,
        command: CommandName,
        switches: &[&str],
        options: &[&str],
    ) -> Result<BTreeMap<String, String>, CommandParseError> {
        let mut out = BTreeMap::new();
        while let Some(w) = self.words.get(self.pos).cloned() {
            self.pos += 1;
            let name = w.to_ascii_lowercase();
            if switches.contains(&name.as_str()) {
                out.insert(name, String::new());
            } else if options.contains(&name.as_str()) {
                let arg: &'static str = "VALUE";
                let v = self
                    .words
                    .get(self.pos)
                    .cloned()
                    .ok_or(CommandParseError::MissingArgument { command, arg })?;
                self.pos += 1;
                out.insert(name, v);
            } else if w.starts_with("--") {
                return Err(CommandParseError::UnknownFlag {
                    command,
                    position: self.pos,
                });
            } else {
                return Err(CommandParseError::UnexpectedArgument {
                    command,
                    position: self.pos,
                });
            }
        }
        Ok(out)
    }

    fn done(&mut self, command: CommandName) -> Result<(), CommandParseError> {
        self.flags(command, &[], &[]).map(|_| ())
    }

    fn rest(&mut self) -> Option<String> {
        let rest = self.words[self.pos.min(self.words.len())..].join(" ");
        self.pos = self.words.len();
        (!rest.is_empty()).then_some(rest)
    }
}

fn parse_deploy(a: &mut Args) -> Result<Command, CommandParseError> {
    // The product's main job is the default; `deploy vm` asks for a bare VM.
    let mut form = DeployForm::Managed;
    let mut fields = BTreeMap::new();
    for (i, w) in a.words.iter().enumerate() {
        if i == 0 && !w.contains('=') {
            form = match w.to_ascii_lowercase().as_str() {
                "vm" => DeployForm::Vm,
                "managed" => DeployForm::Managed,
                _ => {
                    return Err(CommandParseError::UnexpectedArgument {
                        command: CommandName::Deploy,
                        position: 1,
                    })
                }
            };
            continue;
        }
        let invalid = CommandParseError::InvalidField { position: i + 1 };
        let Some((k, v)) = w.split_once('=') else {
            return Err(invalid);
        };
        if k.is_empty() {
            return Err(invalid);
        }
        fields.insert(k.to_string(), v.to_string());
    }
    Ok(Command::Deploy { form, fields })
}

fn parse_vm_list(a: &mut Args) -> Result<Command, CommandParseError> {
    let mut f = a.flags(CommandName::VmList, &[], &["--host"])?;
    Ok(Command::VmList {
        host: f.remove("--host"),
    })
}

fn parse_vm_show(a: &mut Args) -> Result<Command, CommandParseError> {
    let name = a.positional(CommandName::VmShow, "NAME")?;
    a.done(CommandName::VmShow)?;
    Ok(Command::VmShow { name })
}

fn parse_vm_power(a: &mut Args, action: PowerAction) -> Result<Command, CommandParseError> {
    let name = a.positional(CommandName::VmPower, "NAME")?;
    a.done(CommandName::VmPower)?;
    Ok(Command::VmPower { name, action })
}

fn parse_vm_delete(a: &mut Args) -> Result<Command, CommandParseError> {
    let name = a.positional(CommandName::VmDelete, "NAME")?;
    let f = a.flags(CommandName::VmDelete, &["--delete-disks", "--force"], &[])?;
    Ok(Command::VmDelete {
        name,
        delete_disks: f.contains_key("--delete-disks"),
        force: f.contains_key("--force"),
    })
}

fn parse_vm_update(a: &mut Args) -> Result<Command, CommandParseError> {
    const COMMAND: CommandName = CommandName::VmUpdate;
    let name = a.positional(COMMAND, "NAME")?;
    let (mut gb_ram, mut cpu_cores) = (None, None);
    while let Some(w) = a.words.get(a.pos).cloned() {
        a.pos += 1;
        let position = a.pos;
        if w.starts_with("--") {
            return Err(CommandParseError::UnknownFlag {
                command: COMMAND,
                position,
            });
        }
        let unknown = CommandParseError::UnknownField {
            command: COMMAND,
            position,
        };
        let Some((k, v)) = w.split_once('=') else {
            return Err(unknown);
        };
        let (slot, arg) = match k.to_ascii_lowercase().as_str() {
            "gb_ram" => (&mut gb_ram, "gb_ram"),
            "cpu_cores" => (&mut cpu_cores, "cpu_cores"),
            _ => return Err(unknown),
        };
        let n = v
            .trim_end_matches("GB")
            .trim_end_matches("gb")
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(CommandParseError::InvalidNumber { arg })?;
        *slot = Some(n);
    }
    if gb_ram.is_none() && cpu_cores.is_none() {
        return Err(CommandParseError::MissingArgument {
            command: COMMAND,
            arg: "gb_ram=N or cpu_cores=N",
        });
    }
    Ok(Command::VmUpdate {
        name,
        gb_ram,
        cpu_cores,
    })
}

fn parse_disk_remove(a: &mut Args) -> Result<Command, CommandParseError> {
    let vm = a.positional(CommandName::DiskRemove, "VM")?;
    let disk = a.positional(CommandName::DiskRemove, "DISK")?;
    let f = a.flags(CommandName::DiskRemove, &["--boot-disk"], &[])?;
    Ok(Command::DiskRemove {
        vm,
        disk,
        boot_disk: f.contains_key("--boot-disk"),
    })
}

fn parse_nic_remove(a: &mut Args) -> Result<Command, CommandParseError> {
    let vm = a.positional(CommandName::NicRemove, "VM")?;
    let nic = match a.words.get(a.pos) {
        Some(_) => Some(a.positional(CommandName::NicRemove, "NIC")?),
        None => None,
    };
    a.done(CommandName::NicRemove)?;
    Ok(Command::NicRemove { vm, nic })
}

fn parse_retry(a: &mut Args) -> Result<Command, CommandParseError> {
    let id = a.positional(CommandName::Retry, "ID")?;
    a.done(CommandName::Retry)?;
    Ok(Command::Retry { id })
}

fn parse_disk_add(a: &mut Args) -> Result<Command, CommandParseError> {
    let vm = a.positional(CommandName::DiskAdd, "VM")?;
    let size_gb = a.number(CommandName::DiskAdd, "SIZE_GB")?;
    a.done(CommandName::DiskAdd)?;
    Ok(Command::DiskAdd { vm, size_gb })
}

fn parse_disk_resize(a: &mut Args) -> Result<Command, CommandParseError> {
    let vm = a.positional(CommandName::DiskResize, "VM")?;
    let disk = a.positional(CommandName::DiskResize, "DISK")?;
    let size_gb = a.number(CommandName::DiskResize, "SIZE_GB")?;
    a.done(CommandName::DiskResize)?;
    Ok(Command::DiskResize { vm, disk, size_gb })
}

fn parse_nic_add(a: &mut Args) -> Result<Command, CommandParseError> {
    let vm = a.positional(CommandName::NicAdd, "VM")?;
    let network = a.positional(CommandName::NicAdd, "NETWORK")?;
    a.done(CommandName::NicAdd)?;
    Ok(Command::NicAdd { vm, network })
}

fn parse_job(a: &mut Args) -> Result<Command, CommandParseError> {
    let id = a.positional(CommandName::Job, "ID")?;
    a.done(CommandName::Job)?;
    Ok(Command::Job { id })
}

fn parse_jobs(a: &mut Args) -> Result<Command, CommandParseError> {
    let mut f = a.flags(
        CommandName::Jobs,
        &["--mine", "--all"],
        &["--host", "--limit"],
    )?;
    let limit = match f.remove("--limit") {
        None => None,
        Some(w) => Some(
            w.parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(CommandParseError::InvalidNumber { arg: "--limit" })?,
        ),
    };
    Ok(Command::Jobs {
        mine: f.contains_key("--mine"),
        host: f.remove("--host"),
        limit,
        all: f.contains_key("--all"),
    })
}

fn parse_cancel(a: &mut Args) -> Result<Command, CommandParseError> {
    let id = a.positional(CommandName::Cancel, "ID")?;
    a.done(CommandName::Cancel)?;
    Ok(Command::Cancel { id })
}

fn parse_approve(a: &mut Args) -> Result<Command, CommandParseError> {
    let id = a.positional(CommandName::Approve, "ID").ok();
    a.done(CommandName::Approve)?;
    Ok(Command::Approve { id })
}

fn parse_reject(a: &mut Args) -> Result<Command, CommandParseError> {
    let id = a.positional(CommandName::Reject, "ID")?;
    let reason = a.rest();
    Ok(Command::Reject { id, reason })
}

#[cfg(test)]
mod tests;
