//! `@mutation(sql:)` templates: `$argName` and `$ctx.value` become `$1..$n` bind parameters.
//!
//! The scanner skips string literals, quoted identifiers, comments and dollar-quoted bodies, so a
//! `$` inside them is left alone.

use crate::catalog::{ContextValue, ParamSource};

/// A template turned into SQL with positional placeholders.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Compiled {
    pub sql: String,
    pub params: Vec<ParamSource>,
}

fn ident_len(bytes: &[u8]) -> usize {
    let mut n = 0;
    while n < bytes.len() && (bytes[n].is_ascii_alphanumeric() || bytes[n] == b'_') {
        if n == 0 && bytes[n].is_ascii_digit() {
            return 0;
        }
        n += 1;
    }
    n
}

/// Finds the end of a quoted run starting at `start` (the opening quote), doubling escapes it.
fn skip_quoted(bytes: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// Compiles `template`; `args` are the field's argument names. Errors say what to fix.
pub(crate) fn compile(template: &str, args: &[&str]) -> Result<Compiled, String> {
    compile_with(template, Some(args))
}

/// Compiles a template where any `$name` is allowed (message fields, known only at run time);
/// `$ctx.*` is not. Returns the SQL and the names in placeholder order.
pub fn compile_open(template: &str) -> Result<(String, Vec<String>), String> {
    let c = compile_with(template, None)?;
    let names = c
        .params
        .into_iter()
        .map(|p| match p {
            ParamSource::Arg(n) => Ok(n),
            ParamSource::Context(c) => Err(format!(
                "`$ctx.{}` is not available here; use the message's fields",
                c.name()
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((c.sql, names))
}

fn compile_with(template: &str, args: Option<&[&str]>) -> Result<Compiled, String> {
    let bytes = template.as_bytes();
    let mut out = String::with_capacity(template.len());
    let mut params: Vec<ParamSource> = Vec::new();
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => i = skip_quoted(bytes, i, b'\''),
            b'"' => i = skip_quoted(bytes, i, b'"'),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = template[i..].find('\n').map_or(bytes.len(), |n| i + n);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = template[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |n| i + n + 4);
            }
            b';' => return Err("must be one statement (no `;`)".to_owned()),
            // `$` inside an identifier (`foo$bar`) is part of it.
            b'$' if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_') => {
                i += 1;
            }
            b'$' => {
                let rest = &bytes[i + 1..];
                if rest.first().is_some_and(u8::is_ascii_digit) {
                    return Err(format!(
                        "positional parameter at byte {i}: name arguments as `$argName` and context as `$ctx.tenant_id`"
                    ));
                }
                let n = ident_len(rest);
                // `$tag$` or `$$` opens a dollar-quoted body: skip to its closing tag.
                if rest.get(n) == Some(&b'$') {
                    let tag = &template[i..i + n + 2];
                    let body = i + n + 2;
                    i = template[body..]
                        .find(tag)
                        .map_or(bytes.len(), |m| body + m + tag.len());
                    continue;
                }
                if n == 0 {
                    return Err(format!("a lone `$` at byte {i}"));
                }
                let name = &template[i + 1..i + 1 + n];
                let (source, len) = if name == "ctx" && rest.get(n) == Some(&b'.') {
                    let m = ident_len(&rest[n + 1..]);
                    let cname = &template[i + n + 2..i + n + 2 + m];
                    let value = ContextValue::ALL
                        .into_iter()
                        .find(|c| c.name() == cname)
                        .ok_or_else(|| {
                            format!(
                                "`$ctx.{cname}` is not a context value (tenant_id, tenant_key, user_id, roles)"
                            )
                        })?;
                    (ParamSource::Context(value), n + 1 + m)
                } else if args.is_none_or(|a| a.contains(&name)) {
                    (ParamSource::Arg(name.to_owned()), n)
                } else {
                    return Err(format!(
                        "`${name}` is not an argument of the field (arguments: {})",
                        match args {
                            Some(a) if !a.is_empty() => a.join(", "),
                            _ => "none".to_owned(),
                        }
                    ));
                };
                let index = match params.iter().position(|p| *p == source) {
                    Some(p) => p + 1,
                    None => {
                        params.push(source);
                        params.len()
                    }
                };
                out.push_str(&template[copied..i]);
                out.push('$');
                out.push_str(&index.to_string());
                i += 1 + len;
                copied = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&template[copied..]);
    if out.trim().is_empty() {
        return Err("cannot be empty".to_owned());
    }
    Ok(Compiled { sql: out, params })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_positions_and_repeats_share_one() {
        let c = compile(
            "INSERT INTO t (tenant_id, name, slug) VALUES ($ctx.tenant_id, $name, lower($name)) RETURNING id",
            &["name"],
        )
        .expect("compiles");
        assert_eq!(
            c.sql,
            "INSERT INTO t (tenant_id, name, slug) VALUES ($1, $2, lower($2)) RETURNING id"
        );
        assert_eq!(
            c.params,
            vec![
                ParamSource::Context(ContextValue::TenantId),
                ParamSource::Arg("name".into())
            ]
        );
    }

    #[test]
    fn dollars_inside_literals_comments_and_dollar_quotes_are_text() {
        let c = compile(
            "SELECT '$x', \"$y\", $q$ $z $q$, $$ $w $$ -- $v\n, $a /* $b */, foo$bar",
            &["a"],
        )
        .expect("compiles");
        assert_eq!(
            c.sql,
            "SELECT '$x', \"$y\", $q$ $z $q$, $$ $w $$ -- $v\n, $1 /* $b */, foo$bar"
        );
    }

    #[test]
    fn mistakes_are_explained() {
        assert!(compile("SELECT $1", &[])
            .expect_err("refused")
            .contains("positional"));
        assert!(compile("SELECT $nope", &["name"])
            .expect_err("refused")
            .contains("arguments: name"));
        assert!(compile("SELECT $ctx.password", &[])
            .expect_err("refused")
            .contains("not a context value"));
        assert!(compile("SELECT 1; DROP TABLE t", &[])
            .expect_err("refused")
            .contains("one statement"));
        assert!(compile("  ", &[]).expect_err("refused").contains("empty"));
    }
}
