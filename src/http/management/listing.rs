//! The list endpoints' query string, as RabbitMQ's management API reads it: `name` (a
//! case-insensitive substring, or with `use_regex=true` a case-insensitive regex), `sort`
//! (a dotted path; default vhost then name) and `sort_reverse`, `columns` (comma-separated
//! dotted paths: only those fields are kept), and `page`/`page_size` (at most 500; a page
//! answers `{filtered_count, item_count, items, page, page_count, page_size, total_count}`
//! instead of a plain list).
//!
//! Rows are typed (`Serialize`) and written straight into the body; only a sort on another
//! field or a column selection turns the rows concerned into `serde_json::Value`s, so the
//! common unfiltered list of 10,000 queues costs one pass of serialisation.

use std::cmp::Ordering;
use std::collections::HashMap;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{ApiError, ApiResult};

const MAX_PAGE_SIZE: usize = 500;
const DEFAULT_PAGE_SIZE: usize = 100;
/// A `name` regex compiles to at most this much (the regex crate matches in linear time).
const REGEX_SIZE_LIMIT: usize = 1 << 16;

/// A row of a list: what the name filter and the default sort read.
pub trait Listed: Serialize {
    fn name(&self) -> &str;
    fn vhost(&self) -> &str;
}

enum NameFilter {
    Substring(String),
    Regex(regex::Regex),
}

impl NameFilter {
    fn matches(&self, name: &str) -> bool {
        match self {
            NameFilter::Substring(s) => name.to_lowercase().contains(s.as_str()),
            NameFilter::Regex(r) => r.is_match(name),
        }
    }
}

/// A list request's query string.
#[derive(Default)]
pub struct ListQuery {
    page: Option<usize>,
    page_size: usize,
    name: Option<NameFilter>,
    sort: Option<Vec<String>>,
    sort_reverse: bool,
    columns: Option<Vec<Vec<String>>>,
}

/// The query string's parameters, decoded.
pub fn params(raw: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn invalid() -> ApiError {
    ApiError::bad_request("Pagination parameters are invalid")
}

fn dotted(s: &str) -> Vec<String> {
    s.split('.').map(str::to_string).collect()
}

impl ListQuery {
    pub fn parse(raw: Option<&str>) -> ApiResult<ListQuery> {
        let p = params(raw);
        let number = |k: &str| -> ApiResult<Option<usize>> {
            p.get(k)
                .map(|v| v.parse::<usize>().map_err(|_| invalid()))
                .transpose()
        };
        let page = number("page")?;
        let page_size = number("page_size")?;
        if let Some(n) = page {
            let size = page_size.unwrap_or(DEFAULT_PAGE_SIZE);
            if n == 0 || size == 0 || size > MAX_PAGE_SIZE {
                let shown = page_size.map_or("undefined".to_string(), |s| s.to_string());
                return Err(ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "invalid_pagination_parameters",
                    format!("Invalid pagination parameters: page number {n}, page size {shown}"),
                ));
            }
        }
        let flag = |k: &str| p.get(k).is_some_and(|v| v == "true");
        let name = match p.get("name").filter(|n| !n.is_empty()) {
            None => None,
            Some(n) if flag("use_regex") => Some(NameFilter::Regex(
                regex::RegexBuilder::new(n)
                    .case_insensitive(true)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|_| invalid())?,
            )),
            Some(n) => Some(NameFilter::Substring(n.to_lowercase())),
        };
        let columns = p
            .get("columns")
            .filter(|c| !c.is_empty())
            .map(|c| c.split(',').map(dotted).collect());
        Ok(ListQuery {
            page,
            page_size: page_size.unwrap_or(DEFAULT_PAGE_SIZE),
            name,
            sort: p.get("sort").filter(|s| !s.is_empty()).map(|s| dotted(s)),
            sort_reverse: flag("sort_reverse"),
            columns,
        })
    }

    /// Filters, sorts, pages and writes `rows` as the answer.
    pub fn respond<T: Listed>(&self, mut rows: Vec<T>) -> ApiResult<Response> {
        let total = rows.len();
        if let Some(f) = &self.name {
            rows.retain(|r| f.matches(r.name()));
        }
        let filtered = rows.len();
        self.sort(&mut rows);
        let Some(page) = self.page else {
            return json(&self.select(&rows));
        };
        let size = self.page_size;
        let page_count = filtered.div_ceil(size);
        if page > page_count.max(1) {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "page_out_of_range",
                format!("Page out of range, page: {page} page size: {size}, len: {filtered}"),
            ));
        }
        let from = (page - 1) * size;
        let items = &rows[from.min(filtered)..(from + size).min(filtered)];
        json(&Paged {
            filtered_count: filtered,
            item_count: items.len(),
            items: self.select(items),
            page,
            page_count,
            page_size: size,
            total_count: total,
        })
    }

    fn sort<T: Listed>(&self, rows: &mut Vec<T>) {
        match self.sort.as_deref() {
            None => rows.sort_by(|a, b| (a.vhost(), a.name()).cmp(&(b.vhost(), b.name()))),
            Some([k]) if k == "name" => rows.sort_by(|a, b| a.name().cmp(b.name())),
            Some([k]) if k == "vhost" => rows.sort_by(|a, b| a.vhost().cmp(b.vhost())),
            Some(path) => {
                let mut keyed: Vec<(Value, T)> = std::mem::take(rows)
                    .into_iter()
                    .map(|r| {
                        let v = serde_json::to_value(&r).unwrap_or(Value::Null);
                        (at(&v, path).cloned().unwrap_or(Value::Null), r)
                    })
                    .collect();
                keyed.sort_by(|a, b| compare(&a.0, &b.0));
                rows.extend(keyed.into_iter().map(|(_, r)| r));
            }
        }
        if self.sort_reverse {
            rows.reverse();
        }
    }

    /// The rows, or with `columns` only the fields named.
    fn select<'a, T: Serialize>(&self, rows: &'a [T]) -> Rows<'a, T> {
        match &self.columns {
            None => Rows::Typed(rows),
            Some(cols) => Rows::Values(
                rows.iter()
                    .map(|r| {
                        let v = serde_json::to_value(r).unwrap_or(Value::Null);
                        let mut out = Map::new();
                        for c in cols {
                            keep(&v, c, &mut out);
                        }
                        Value::Object(out)
                    })
                    .collect(),
            ),
        }
    }
}

/// One list, serialised.
fn json<T: Serialize>(v: &T) -> ApiResult<Response> {
    let body = serde_json::to_vec(v).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[derive(Serialize)]
#[serde(untagged)]
enum Rows<'a, T: Serialize> {
    Typed(&'a [T]),
    Values(Vec<Value>),
}

#[derive(Serialize)]
struct Paged<'a, T: Serialize> {
    filtered_count: usize,
    item_count: usize,
    items: Rows<'a, T>,
    page: usize,
    page_count: usize,
    page_size: usize,
    total_count: usize,
}

fn at<'v>(v: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

/// Copies the field at `path` of `v` into `out`, keeping its parents (RabbitMQ's dotted
/// columns: `message_stats.publish` keeps `{"message_stats": {"publish": n}}`).
fn keep(v: &Value, path: &[String], out: &mut Map<String, Value>) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Some(field) = v.get(first) else { return };
    if rest.is_empty() {
        out.insert(first.clone(), field.clone());
        return;
    }
    let slot = out
        .entry(first.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(inner) = slot {
        keep(field, rest, inner);
    }
}

/// Erlang's term order as RabbitMQ sorts by it: numbers before strings, missing first.
fn compare(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) => 4,
            Value::Object(_) => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}
