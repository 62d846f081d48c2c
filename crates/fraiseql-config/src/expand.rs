//! `${VAR}` and `${VAR:-default}` expansion of one string value.

/// Why a string could not be expanded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ExpandError {
    /// `${NAME}` with no default and `NAME` unset.
    Missing(String),
    /// `${` without a closing `}` or with an invalid name.
    Malformed(String),
}

/// Expands every `${VAR}` / `${VAR:-default}` in `input`; `$$` is a literal `$`.
/// `lookup` answers a variable's value (the environment, or a map in tests).
pub(crate) fn expand(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body_start) = after.strip_prefix('{') {
            let end = body_start.find('}').ok_or_else(|| {
                ExpandError::Malformed(format!("`${{` without `}}` in {input:?}"))
            })?;
            let body = &body_start[..end];
            let (name, default) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (body, None),
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(ExpandError::Malformed(format!(
                    "`${{{body}}}` is not a valid variable reference (names are [A-Za-z_][A-Za-z0-9_]*)"
                )));
            }
            match (lookup(name), default) {
                (Some(v), _) if !v.is_empty() || default.is_none() => out.push_str(&v),
                (_, Some(d)) => out.push_str(d),
                (None, None) => return Err(ExpandError::Missing(name.to_owned())),
                (Some(v), None) => out.push_str(&v),
            }
            rest = &body_start[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_variable_and_keeps_text_around_it() {
        assert_eq!(expand("a-${SET}-b", &env).as_deref(), Ok("a-value-b"));
    }

    #[test]
    fn default_applies_when_unset_or_empty_like_a_shell() {
        assert_eq!(expand("${NOPE:-dflt}", &env).as_deref(), Ok("dflt"));
        assert_eq!(expand("${EMPTY:-dflt}", &env).as_deref(), Ok("dflt"));
        assert_eq!(expand("${SET:-dflt}", &env).as_deref(), Ok("value"));
        assert_eq!(expand("${NOPE:-}", &env).as_deref(), Ok(""));
    }

    #[test]
    fn missing_variable_is_named() {
        assert_eq!(
            expand("${NOPE}", &env),
            Err(ExpandError::Missing("NOPE".into()))
        );
    }

    #[test]
    fn dollar_escapes_and_lone_dollars_stay() {
        assert_eq!(
            expand("$$HOME costs $5", &env).as_deref(),
            Ok("$HOME costs $5")
        );
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(matches!(
            expand("${SET", &env),
            Err(ExpandError::Malformed(_))
        ));
        assert!(matches!(
            expand("${1X}", &env),
            Err(ExpandError::Malformed(_))
        ));
        assert!(matches!(
            expand("${A B}", &env),
            Err(ExpandError::Malformed(_))
        ));
    }
}
