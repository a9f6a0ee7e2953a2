//! Agent vocabulary in chat terms: the agents (PowerShell and the simulator) word their errors
//! in spec fields ("pass delete_disks"), which a chat user never types. [`CHAT_TERMS`] is the
//! one table from those phrases to the chat grammar's flags; the bot rewrites a job failure
//! with [`in_chat_terms`] before it is shown. AMQP producers see the agent's own words (they
//! speak the spec's vocabulary).

/// (agent phrase, chat phrase), matched as written, longest first where one contains another.
pub const CHAT_TERMS: &[(&str, &str)] = &[
    ("pass delete_disks", "add --delete-disks"),
    ("pass force", "add --force"),
];

/// `message` with every agent phrase of [`CHAT_TERMS`] replaced by its chat phrase.
pub fn in_chat_terms(message: &str) -> String {
    CHAT_TERMS
        .iter()
        .fold(message.to_string(), |m, (agent, chat)| {
            m.replace(agent, chat)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_phrases_read_as_chat_flags() {
        assert_eq!(
            in_chat_terms("VM 'a' has 1 disk(s) attached; pass delete_disks to delete them"),
            "VM 'a' has 1 disk(s) attached; add --delete-disks to delete them"
        );
        assert_eq!(
            in_chat_terms("VM 'a' is Running; stop it first or pass force"),
            "VM 'a' is Running; stop it first or add --force"
        );
        assert_eq!(in_chat_terms("disk 'x' not found"), "disk 'x' not found");
    }

    /// Each chat phrase names a flag the grammar knows, so the advice can be followed.
    #[test]
    fn every_chat_phrase_names_a_flag_of_the_grammar() {
        let usages: Vec<&str> = crate::command::CommandName::ALL
            .iter()
            .map(|c| c.usage())
            .collect();
        for (_, chat) in CHAT_TERMS {
            let flag = chat.split_whitespace().find(|w| w.starts_with("--"));
            let flag = flag.unwrap_or_else(|| panic!("{chat} names no flag"));
            assert!(usages.iter().any(|u| u.contains(flag)), "{flag}");
        }
    }
}
