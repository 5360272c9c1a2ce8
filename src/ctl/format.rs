//! rabbitmqctl-style output: a tab-separated header line and one tab-separated line per row,
//! lists as `[a, b]`, maps as compact JSON.

use serde_json::Value;

/// The table as rabbitmqctl prints it (`user\ttags` then `alice\t[monitoring]`), each line
/// ending in `\n`; no header line when `headers` is false (`--no-table-headers`).
pub fn table(header: &[&str], rows: &[Vec<String>], headers: bool) -> String {
    let mut out = String::new();
    if headers {
        out.push_str(&header.join("\t"));
        out.push('\n');
    }
    for row in rows {
        out.push_str(&row.join("\t"));
        out.push('\n');
    }
    out
}

/// Tags as rabbitmqctl 3.10 lists them: `[monitoring, policymaker]`. The API gives a JSON
/// list (RabbitMQ 3.9+) or a comma-separated string (older, and vhosts' empty `""`).
pub fn tag_list(tags: Option<&Value>) -> String {
    format!("[{}]", tags_of(tags).join(", "))
}

/// The tags of a user or vhost as a plain list, whichever form the API used.
pub fn tags_of(tags: Option<&Value>) -> Vec<String> {
    match tags {
        Some(Value::Array(items)) => items.iter().map(cell).collect(),
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// One value as a table cell: strings as they are, `null` empty, lists as `[a, b]`, numbers,
/// booleans and maps as JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(cell).collect();
            format!("[{}]", parts.join(", "))
        }
        other => other.to_string(),
    }
}

/// A cell of a named column: `arguments` as rabbitmqctl prints an AMQP table
/// (`[{"x-max-priority",3}]`), anything else as [`cell`].
pub fn column_cell(column: &str, value: &Value) -> String {
    match (column, value) {
        ("arguments" | "client_properties", Value::Object(m)) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{{{},{v}}}", Value::String(k.clone())))
                .collect();
            format!("[{}]", parts.join(", "))
        }
        _ => cell(value),
    }
}

/// The field `key` of an API object as a cell (empty when absent).
pub fn field(object: &Value, key: &str) -> String {
    object.get(key).map(cell).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn users_table_as_rabbitmqctl_prints_it() {
        let users = json!([
            {"name": "alice", "tags": ["monitoring", "policymaker"]},
            {"name": "guest", "tags": ["administrator"]},
            {"name": "old", "tags": "a,b"},
            {"name": "none", "tags": []}
        ]);
        let rows: Vec<Vec<String>> = users
            .as_array()
            .unwrap()
            .iter()
            .map(|u| vec![field(u, "name"), tag_list(u.get("tags"))])
            .collect();
        assert_eq!(
            table(&["user", "tags"], &rows, true),
            "user\ttags\nalice\t[monitoring, policymaker]\nguest\t[administrator]\nold\t[a, b]\nnone\t[]\n"
        );
        assert_eq!(
            table(&["user", "tags"], &rows[..1], false),
            "alice\t[monitoring, policymaker]\n"
        );
        assert_eq!(table(&["user", "tags"], &[], true), "user\ttags\n");
    }

    #[test]
    fn cells() {
        assert_eq!(cell(&json!("x")), "x");
        assert_eq!(cell(&json!(null)), "");
        assert_eq!(cell(&json!(false)), "false");
        assert_eq!(cell(&json!(10)), "10");
        assert_eq!(
            cell(&json!({"max-connections": 10})),
            r#"{"max-connections":10}"#
        );
        assert_eq!(cell(&json!([])), "[]");
        assert_eq!(tag_list(Some(&json!(""))), "[]");
        assert_eq!(tag_list(None), "[]");
        assert_eq!(tags_of(Some(&json!(" a , ,b"))), ["a", "b"]);
        assert_eq!(field(&json!({"a": 1}), "b"), "");
        assert_eq!(
            column_cell(
                "arguments",
                &json!({"x-max-priority": 3, "x-queue-type": "classic"})
            ),
            r#"[{"x-max-priority",3}, {"x-queue-type","classic"}]"#
        );
        assert_eq!(column_cell("arguments", &json!({})), "[]");
        assert_eq!(column_cell("name", &json!({"a": 1})), r#"{"a":1}"#);
    }
}
