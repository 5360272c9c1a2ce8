//! The server side of the SASL mechanisms AMQP clients use (amq-protocol has only the
//! client side): PLAIN and AMQPLAIN responses to a user name and password.

use amq_protocol::types::{AMQPValue, FieldTable};

/// SASL PLAIN: `[authzid] NUL user NUL password`.
pub fn parse_plain(resp: &[u8]) -> Option<(String, String)> {
    let mut parts = resp.split(|&b| b == 0);
    let _authzid = parts.next()?;
    let user = parts.next()?;
    let pass = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    Some((
        String::from_utf8(user.to_vec()).ok()?,
        String::from_utf8(pass.to_vec()).ok()?,
    ))
}

fn text<'a>(t: &'a FieldTable, key: &str) -> Option<&'a [u8]> {
    match t.inner().get(key)? {
        AMQPValue::LongString(s) => Some(s.as_bytes()),
        AMQPValue::ShortString(s) => Some(s.as_str().as_bytes()),
        _ => None,
    }
}

/// AMQPLAIN: a field table without its length prefix, holding LOGIN and PASSWORD. The
/// table is bounds-checked (see `table`) before it is parsed.
pub fn parse_amqplain(resp: &[u8]) -> Option<(String, String)> {
    let mut with_len = Vec::with_capacity(resp.len() + 4);
    with_len.extend_from_slice(&u32::try_from(resp.len()).ok()?.to_be_bytes());
    with_len.extend_from_slice(resp);
    if crate::table::check_table(&with_len).ok()? != with_len.len() {
        return None;
    }
    let (_, table) = amq_protocol::types::parsing::parse_field_table(&with_len[..]).ok()?;
    Some((
        String::from_utf8(text(&table, "LOGIN")?.to_vec()).ok()?,
        String::from_utf8(text(&table, "PASSWORD")?.to_vec()).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::LongString;

    #[test]
    fn plain_and_amqplain() {
        assert_eq!(
            parse_plain(b"\0guest\0guest"),
            Some(("guest".into(), "guest".into()))
        );
        assert_eq!(parse_plain(b"guest"), None);
        assert_eq!(parse_plain(b"\0a\0b\0c"), None);
        let mut t = FieldTable::default();
        t.insert("LOGIN".into(), AMQPValue::LongString(LongString::from("u")));
        t.insert(
            "PASSWORD".into(),
            AMQPValue::LongString(LongString::from("p")),
        );
        let ctx = amq_protocol::frame::WriteContext::from(Vec::new());
        let (buf, _) = amq_protocol::types::generation::gen_field_table(&t)(ctx)
            .unwrap()
            .into_inner();
        assert_eq!(parse_amqplain(&buf[4..]), Some(("u".into(), "p".into())));
        assert_eq!(parse_amqplain(&buf[4..buf.len() - 1]), None);
    }
}
