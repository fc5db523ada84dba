//! The active controller's address that a controller attaches to NOT_CONTROLLER answers (the
//! `chronik-leader` status metadata, `chronik_proto::LEADER_METADATA_KEY`), like the leader hints
//! Kafka's `NotControllerException` replies lack and KIP-951 added for partition leaders.
//!
//! What must stay true: `parse(&format(id, address))` is `address` for every valid `host:port`, and
//! whatever a peer sends, `parse` answers a usable `host:port` or nothing.

/// The hint for controller `node_id` serving at `address` (`host:port`): `id@host:port`.
pub fn format(node_id: u64, address: &str) -> String {
    format!("{node_id}@{address}")
}

/// The `host:port` of a hint (`id@host:port`, the id being optional), if it names a usable address:
/// a host without whitespace (IPv6 in brackets) and a port from 1 to 65535.
pub fn parse(hint: &str) -> Option<String> {
    let hint = hint.trim();
    let address = hint.rsplit_once('@').map_or(hint, |(_, address)| address);
    let (host, port) = address.rsplit_once(':')?;
    let bare = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
    let host_ok = !bare.is_empty() && !bare.chars().any(char::is_whitespace);
    (port_ok && host_ok).then(|| address.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_parse_with_or_without_an_id() {
        assert_eq!(parse("1@a:9093").as_deref(), Some("a:9093"));
        assert_eq!(parse("a:9093").as_deref(), Some("a:9093"));
        assert_eq!(
            parse(" 2@127.0.0.1:9094 ").as_deref(),
            Some("127.0.0.1:9094")
        );
        assert_eq!(parse("7@[::1]:9093").as_deref(), Some("[::1]:9093"));
        assert_eq!(parse(&format(3, "b:1")).as_deref(), Some("b:1"));
    }

    #[test]
    fn unusable_hints_are_nothing() {
        for bad in [
            "",
            "2@",
            "1@a:0",
            "a",
            "1@:9093",
            "::1:9093",
            "[::1:9093",
            "a b:1",
            "a:x",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
