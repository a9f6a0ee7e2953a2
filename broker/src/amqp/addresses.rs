//! The broker's addresses: one AMQP URL, or several (the nodes of a cluster), comma-separated.
//!
//! `amqp://u:p@rmq1:5672/%2f,amqp://u:p@rmq2:5672/%2f` lists two nodes; the supervisor connects
//! to the first that answers and, when that connection fails or drops, moves on to the next one
//! (`supervisor.rs`). A comma inside a URL (a password may hold one unencoded) does not split
//! it: every address starts with `amqp://` or `amqps://`, so a piece that does not is part of
//! the previous address.

use crate::BrokerError;
use lapin::uri::AMQPUri;

/// One broker node: the URL to connect to and how logs name it (no credentials).
#[derive(Clone)]
pub(crate) struct Address {
    url: String,
    shown: String,
}

impl Address {
    /// The URL lapin connects to (carries the password: never log it).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// `host:port`, for logs.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }
}

fn is_url_start(piece: &str) -> bool {
    let p = piece.trim_start().to_ascii_lowercase();
    p.starts_with("amqp://") || p.starts_with("amqps://")
}

/// Splits and checks a comma-separated list of AMQP URLs. An error names the position of the
/// address that is wrong, never its text (it holds a password).
pub(crate) fn parse(list: &str) -> Result<Vec<Address>, BrokerError> {
    let mut urls: Vec<String> = Vec::new();
    for piece in list.split(',') {
        if piece.trim().is_empty() {
            continue;
        }
        match urls.last_mut() {
            Some(last) if !is_url_start(piece) => {
                last.push(',');
                last.push_str(piece);
            }
            _ => urls.push(piece.to_owned()),
        }
    }
    let urls: Vec<String> = urls
        .into_iter()
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        return Err(BrokerError::InvalidAddress(
            "no broker address given".to_owned(),
        ));
    }
    let count = urls.len();
    urls.into_iter()
        .enumerate()
        .map(|(i, url)| {
            let position = format!("broker address {} of {count}", i + 1);
            if !is_url_start(&url) {
                return Err(BrokerError::InvalidAddress(format!(
                    "{position} is not an amqp:// or amqps:// URL"
                )));
            }
            let uri: AMQPUri = url.parse().map_err(|_| {
                BrokerError::InvalidAddress(format!("{position} is not a valid AMQP URL"))
            })?;
            let shown = format!("{}:{}", uri.authority.host, uri.authority.port);
            Ok(Address { url, shown })
        })
        .collect()
}

/// The URLs of a comma-separated list of AMQP URLs, checked as [`crate::Broker::connect`]
/// checks them: for clients that connect with lapin themselves (a producer that must not
/// declare the topology) and fail over the same way.
pub fn broker_urls(list: &str) -> Result<Vec<String>, BrokerError> {
    Ok(parse(list)?.into_iter().map(|a| a.url).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(list: &str) -> Vec<String> {
        parse(list)
            .expect("valid list")
            .iter()
            .map(|a| a.shown().to_owned())
            .collect()
    }

    #[test]
    fn one_url_is_one_address() {
        assert_eq!(
            shown("amqp://guest:guest@127.0.0.1:5672/%2f"),
            vec!["127.0.0.1:5672"]
        );
        assert_eq!(shown("amqp://rmq"), vec!["rmq:5672"]);
    }

    #[test]
    fn a_list_keeps_its_order_and_spaces_do_not_matter() {
        assert_eq!(
            shown("amqp://u:p@a:1/%2f, amqp://u:p@b:2/%2f ,amqps://u:p@c/%2f,"),
            vec!["a:1", "b:2", "c:5671"]
        );
    }

    #[test]
    fn a_comma_in_a_password_does_not_split_the_url() {
        let list = parse("amqp://u:pa,ss@a:1/%2f,amqp://u:p@b:2/%2f").expect("valid");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].url(), "amqp://u:pa,ss@a:1/%2f");
        assert_eq!(list[1].shown(), "b:2");
    }

    #[test]
    fn errors_name_the_position_and_never_the_text() {
        for (list, want) in [
            ("", "no broker address given"),
            (" , ", "no broker address given"),
            (
                "http://u:hunter2@a:1/",
                "broker address 1 of 1 is not an amqp:// or amqps:// URL",
            ),
            (
                "amqp://u:p@a:1/%2f,amqp://u:hunter2@b:notaport/%2f",
                "broker address 2 of 2 is not a valid AMQP URL",
            ),
        ] {
            let e = parse(list).err().expect("refused");
            let text = e.to_string();
            assert!(text.contains(want), "{list:?}: {text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
    }
}
