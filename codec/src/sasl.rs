//! The server side of the SASL mechanisms AMQP clients use (amq-protocol has only the
//! client side): PLAIN and AMQPLAIN responses to a user name and password.

use amq_protocol::types::AMQPValue;

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

/// AMQPLAIN: a field table without its length prefix, holding LOGIN and PASSWORD. The
/// table is bounds-checked (see `table`) before it is parsed. A key given twice counts as
/// its first occurrence, as RabbitMQ reads it (a table parsed into a map keeps the last).
pub fn parse_amqplain(resp: &[u8]) -> Option<(String, String)> {
    use amq_protocol::types::parsing::{parse_short_string, parse_value};
    let mut with_len = Vec::with_capacity(resp.len() + 4);
    with_len.extend_from_slice(&u32::try_from(resp.len()).ok()?.to_be_bytes());
    with_len.extend_from_slice(resp);
    if crate::table::check_table(&with_len).ok()? != with_len.len() {
        return None;
    }
    let (mut login, mut password) = (None, None);
    let mut rest = resp;
    while !rest.is_empty() {
        let (r, key) = parse_short_string(rest).ok()?;
        let (r, value) = parse_value(r).ok()?;
        rest = r;
        let slot = match key.as_str() {
            "LOGIN" => &mut login,
            "PASSWORD" => &mut password,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }
    let text = |v: &AMQPValue| -> Option<String> {
        let bytes = match v {
            AMQPValue::LongString(s) => s.as_bytes(),
            AMQPValue::ShortString(s) => s.as_str().as_bytes(),
            _ => return None,
        };
        String::from_utf8(bytes.to_vec()).ok()
    };
    Some((text(login.as_ref()?)?, text(password.as_ref()?)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{FieldTable, LongString};

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

    /// A LOGIN (or PASSWORD) given twice: the first one counts, as RabbitMQ reads it.
    #[test]
    fn amqplain_takes_the_first_of_a_repeated_key() {
        let entry = |key: &str, value: &str| {
            let mut e = vec![key.len() as u8];
            e.extend_from_slice(key.as_bytes());
            e.push(b'S');
            e.extend_from_slice(&(value.len() as u32).to_be_bytes());
            e.extend_from_slice(value.as_bytes());
            e
        };
        let resp = [
            entry("LOGIN", "first"),
            entry("PASSWORD", "p1"),
            entry("LOGIN", "second"),
            entry("PASSWORD", "p2"),
        ]
        .concat();
        assert_eq!(parse_amqplain(&resp), Some(("first".into(), "p1".into())));
        assert_eq!(parse_amqplain(&entry("LOGIN", "only")), None);
    }
}
