//! Keyset cursors of connections. A connection's rows are ordered by the ordering the client
//! chose and then by the type's `@view(key:)` column, so the order is total; a cursor is that
//! ordering's values for one row: the hex of the JSON array `[fingerprint, value, ..., key]`,
//! made by PostgreSQL with the page (`json_build_array` writes timestamps as ISO 8601 and
//! numerics with all their digits; values of `data` keys as their JSON text). Hex is cheap for
//! PostgreSQL to write (base64 with its URL-safe translation cost the page statement a fifth of
//! its time) and needs no escaping in a URL. The fingerprint names the ordering, so a cursor of
//! another ordering (or another type) is refused. A cursor is decoded and checked here (length,
//! shape, fingerprint, NULLs, the values' types against the view's columns when known); its
//! values are only ever bind parameters of a keyset predicate, so a forged one only moves where
//! a page starts, within what the caller may read.

use fraiseql_schema::{quote_ident, quote_literal, SortKey, Target, TypeMapping, ViewColumns};

/// The longest cursor accepted, in bytes of its text.
pub(crate) const MAX_CURSOR_BYTES: usize = 4096;

/// The rows' order: the chosen sort keys, then the key column.
#[derive(Debug, Clone)]
pub(crate) struct Ordering<'t> {
    ty: &'t TypeMapping,
    terms: Vec<SortKey>,
}

/// A term's cursor value bound as a parameter (`None`: the row's value was NULL).
pub(crate) type Bound = Vec<Option<String>>;

impl<'t> Ordering<'t> {
    /// `keys` (the client's `orderBy`, or the default) and the key column as the tiebreak, in
    /// the direction of the last key so one index serves both.
    pub(crate) fn new(ty: &'t TypeMapping, keys: &[SortKey]) -> Self {
        let mut terms = keys.to_vec();
        let key = Target::Column(ty.key_column.clone());
        if !terms.iter().any(|k| k.target == key) {
            terms.push(SortKey {
                target: key,
                desc: keys.last().is_some_and(|k| k.desc),
                nullable: false,
            });
        }
        Self { ty, terms }
    }

    /// The same terms, every direction flipped (NULLs too: ASC puts them last, DESC first).
    pub(crate) fn reversed(&self) -> Self {
        let mut r = self.clone();
        for t in &mut r.terms {
            t.desc = !t.desc;
        }
        r
    }

    /// A term's SQL on row `alias`: a column, or a key of `data` (as jsonb, compared as such).
    fn expr(&self, alias: &str, t: &SortKey) -> String {
        match &t.target {
            Target::Column(c) => format!("{alias}.{}", quote_ident(c)),
            Target::Key(k) => format!(
                "{alias}.{}->{}",
                quote_ident(&self.ty.data_column),
                quote_literal(k)
            ),
        }
    }

    /// `ORDER BY` terms on row `alias`.
    pub(crate) fn order_by(&self, alias: &str) -> String {
        let terms: Vec<String> = self
            .terms
            .iter()
            .map(|t| {
                format!(
                    "{}{}",
                    self.expr(alias, t),
                    if t.desc { " DESC" } else { "" }
                )
            })
            .collect();
        terms.join(", ")
    }

    /// What the ordering is, as a short stable hash: a cursor carries it and must match.
    pub(crate) fn fingerprint(&self) -> String {
        // FNV-1a: stable across processes and versions (a std hasher is not).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |s: &str| {
            for b in s.bytes().chain(std::iter::once(0)) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        feed(&self.ty.name);
        for t in &self.terms {
            match &t.target {
                Target::Column(c) => feed(&format!("c:{c}")),
                Target::Key(k) => feed(&format!("k:{k}")),
            }
            feed(if t.desc { "d" } else { "a" });
        }
        format!("{:012x}", h >> 16)
    }

    /// SQL of the cursor of row `alias`.
    pub(crate) fn cursor_sql(&self, alias: &str) -> String {
        let values: Vec<String> = self
            .terms
            .iter()
            .map(|t| match &t.target {
                Target::Column(_) => self.expr(alias, t),
                // As text: a `data` key's JSON `null` and a missing key (SQL NULL) differ.
                Target::Key(_) => format!("({})::text", self.expr(alias, t)),
            })
            .collect();
        format!(
            "encode(convert_to(json_build_array({}, {})::text, 'UTF8'), 'hex')",
            quote_literal(&self.fingerprint()),
            values.join(", ")
        )
    }

    /// The values of cursor `text`, one per term; `Err` says why it is not one of this
    /// ordering's cursors. `columns`: the view's column types, when known, to check values.
    pub(crate) fn decode(
        &self,
        text: &str,
        columns: Option<&ViewColumns>,
    ) -> Result<Vec<Option<String>>, String> {
        if text.len() > MAX_CURSOR_BYTES {
            return Err("it is too long".to_owned());
        }
        let invalid = || "it is not one this server made".to_owned();
        let bytes = hex(text).ok_or_else(invalid)?;
        let items: Vec<&serde_json::value::RawValue> =
            serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if items.len() != self.terms.len() + 1
            || serde_json::from_str::<String>(items[0].get())
                .ok()
                .as_deref()
                != Some(self.fingerprint().as_str())
        {
            return Err("it was not made for this field and ordering".to_owned());
        }
        let wrong = || "it holds a value of the wrong type".to_owned();
        let mut out = Vec::with_capacity(self.terms.len());
        for (t, raw) in self.terms.iter().zip(&items[1..]) {
            let raw = raw.get();
            let value = match raw.as_bytes().first() {
                Some(b'n') if raw == "null" => None,
                // Strings unescaped; numbers and booleans as written (every digit kept).
                Some(b'"') => Some(serde_json::from_str::<String>(raw).map_err(|_| wrong())?),
                Some(b't' | b'f' | b'-' | b'0'..=b'9') if matches!(t.target, Target::Column(_)) => {
                    Some(raw.to_owned())
                }
                _ => return Err(wrong()),
            };
            let Some(s) = value else {
                if !t.nullable {
                    return Err(wrong());
                }
                out.push(None);
                continue;
            };
            let fits = match &t.target {
                Target::Key(_) => serde_json::from_str::<serde_json::Value>(&s).is_ok(),
                Target::Column(c) => columns
                    .and_then(|cols| cols.types.get(c))
                    .is_none_or(|ty| text_fits(ty, &s)),
            };
            if !fits {
                return Err(wrong());
            }
            out.push(Some(s));
        }
        Ok(out)
    }

    /// Binds decoded values: each non-null one becomes a placeholder (`$3`, `$4::jsonb`).
    pub(crate) fn bind(
        &self,
        values: Vec<Option<String>>,
        param: &mut dyn FnMut(String) -> String,
    ) -> Bound {
        self.terms
            .iter()
            .zip(values)
            .map(|(t, v)| {
                v.map(|v| {
                    let p = param(v);
                    match t.target {
                        Target::Key(_) => format!("{p}::jsonb"),
                        Target::Column(_) => p,
                    }
                })
            })
            .collect()
    }

    /// Rows of `alias` after the cursor row `bound` in this ordering (`strict: false`: at or
    /// after). Non-null terms in one direction: one row comparison (an index range); otherwise
    /// the expanded form, NULLs placed as `ORDER BY` places them (last ascending, first
    /// descending).
    pub(crate) fn after(&self, alias: &str, bound: &Bound, strict: bool) -> String {
        let same = self.terms.iter().all(|t| t.desc == self.terms[0].desc);
        let non_null = self.terms.iter().all(|t| !t.nullable);
        if same && non_null && bound.iter().all(Option::is_some) {
            let exprs: Vec<String> = self.terms.iter().map(|t| self.expr(alias, t)).collect();
            let values: Vec<&str> = bound.iter().flatten().map(String::as_str).collect();
            let op = match (self.terms[0].desc, strict) {
                (false, true) => ">",
                (false, false) => ">=",
                (true, true) => "<",
                (true, false) => "<=",
            };
            if exprs.len() == 1 {
                return format!("{} {op} {}", exprs[0], values[0]);
            }
            return format!("({}) {op} ({})", exprs.join(", "), values.join(", "));
        }
        self.expanded(alias, bound, 0, strict)
    }

    fn expanded(&self, alias: &str, bound: &Bound, i: usize, strict: bool) -> String {
        let t = &self.terms[i];
        let e = self.expr(alias, t);
        let v = bound[i].as_deref();
        // Strictly after in this term's direction (NULL is the greatest value).
        let after = match (t.desc, v, t.nullable) {
            (false, Some(v), true) => Some(format!("({e} > {v} OR {e} IS NULL)")),
            (false, Some(v), false) => Some(format!("{e} > {v}")),
            (false, None, _) => None,
            (true, Some(v), _) => Some(format!("{e} < {v}")),
            (true, None, _) => Some(format!("{e} IS NOT NULL")),
        };
        let equal = match v {
            Some(v) => format!("{e} = {v}"),
            None => format!("{e} IS NULL"),
        };
        if i + 1 == self.terms.len() {
            return match (after, strict) {
                (Some(a), true) => a,
                (Some(a), false) => format!("({a} OR {equal})"),
                (None, true) => "FALSE".to_owned(),
                (None, false) => equal,
            };
        }
        let rest = self.expanded(alias, bound, i + 1, strict);
        match after {
            Some(a) => format!("({a} OR ({equal} AND {rest}))"),
            None => format!("({equal} AND {rest})"),
        }
    }
}

/// The bytes of lowercase or uppercase hex `text` (`None` if it is not hex).
fn hex(text: &str) -> Option<Vec<u8>> {
    let digit = |b: u8| (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let b = text.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2)
        .map(|p| Some(digit(p[0])? * 16 + digit(p[1])?))
        .collect()
}

/// Whether `s` can be a value of PostgreSQL type `ty` (by family; unknown types pass and are
/// left to PostgreSQL).
fn text_fits(ty: &str, s: &str) -> bool {
    let base = ty.split('(').next().unwrap_or(ty).trim();
    match base {
        "smallint" | "integer" | "bigint" => s.parse::<i64>().is_ok(),
        "numeric" | "real" | "double precision" => {
            s.parse::<f64>().is_ok() || matches!(s, "NaN" | "Infinity" | "-Infinity")
        }
        "boolean" => matches!(s, "true" | "false"),
        "uuid" => {
            s.len() == 36
                && s.chars().enumerate().all(|(i, c)| match i {
                    8 | 13 | 18 | 23 => c == '-',
                    _ => c.is_ascii_hexdigit(),
                })
        }
        "timestamp with time zone" | "timestamp without time zone" | "date" => {
            !s.is_empty()
                && s.len() <= 64
                && s.starts_with(|c: char| c.is_ascii_digit())
                && s.chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '-' | ':' | '.' | '+' | 'T' | ' '))
        }
        _ => true,
    }
}
