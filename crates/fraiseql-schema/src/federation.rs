//! Apollo Federation v2: a schema that links the federation spec
//! (`extend schema @link(url: "https://specs.apollo.dev/federation/v2.3", import: [...])`) is a
//! subgraph. This module reads the link (which names the directives go by), supplies their
//! definitions so the SDL validates, adds `_Any`, `_Entity`, `_Service`, `Query._entities` and
//! `Query._service`, and prints the SDL `_service { sdl }` returns: the document as written,
//! minus the engine's own directives (view names and SQL stay private).

use std::collections::BTreeMap;

use apollo_compiler::ast::{Definition, Directive, DirectiveList, Document, Value};
use apollo_compiler::Node;

use crate::error::SchemaError;

/// The federation spec's URL prefix.
const SPEC: &str = "https://specs.apollo.dev/federation/v";

/// The directives of federation v2.0–v2.3 (what the suite and gateways of that line know).
const DIRECTIVES: [&str; 11] = [
    "key",
    "shareable",
    "external",
    "requires",
    "provides",
    "override",
    "inaccessible",
    "tag",
    "extends",
    "interfaceObject",
    "composeDirective",
];

/// A linked federation spec: its version and the name each of its directives goes by in this
/// document (`key`, or `federation__key` when not imported, or an `as:` rename).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// `2.3`
    pub version: String,
    names: BTreeMap<&'static str, String>,
    field_set: String,
}

impl Link {
    /// The name directive `canonical` (`key`, `external`, ...) goes by in this document.
    pub fn name<'a>(&'a self, canonical: &'a str) -> &'a str {
        self.names.get(canonical).map_or(canonical, String::as_str)
    }
}

fn string(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s.as_str()),
        _ => None,
    }
}

/// Finds the federation `@link` on the schema definition or its extensions. `None`: not a
/// subgraph. Two federation links, a version outside 2.0–2.9, or an import that is not a
/// federation directive are errors.
pub fn detect(doc: &Document) -> Result<Option<Link>, SchemaError> {
    let mut found: Option<Link> = None;
    for def in &doc.definitions {
        let directives: &DirectiveList = match def {
            Definition::SchemaDefinition(s) => &s.directives,
            Definition::SchemaExtension(s) => &s.directives,
            _ => continue,
        };
        for d in directives.get_all("link") {
            let Some(url) = d.specified_argument_by_name("url").and_then(|v| string(v)) else {
                continue;
            };
            let Some(version) = url.strip_prefix(SPEC) else {
                continue;
            };
            if found.is_some() {
                return Err(SchemaError::mapping(
                    "schema",
                    "the federation spec is linked twice; keep one @link(url: \"https://specs.apollo.dev/federation/v2.x\")",
                ));
            }
            let major_minor: Vec<&str> = version.split('.').collect();
            let ok =
                matches!(major_minor.as_slice(), ["2", m] if m.parse::<u8>().is_ok_and(|m| m <= 9));
            if !ok {
                return Err(SchemaError::mapping(
                    "schema",
                    format!("@link to federation v{version}: this engine serves Federation v2.0 to v2.9 (v2.3 is what gateways and the compatibility suite expect)"),
                ));
            }
            found = Some(link(d, version)?);
        }
    }
    Ok(found)
}

fn link(d: &Directive, version: &str) -> Result<Link, SchemaError> {
    let prefix = d
        .specified_argument_by_name("as")
        .and_then(|v| string(v))
        .unwrap_or("federation")
        .to_owned();
    let mut names: BTreeMap<&'static str, String> = DIRECTIVES
        .iter()
        .map(|c| (*c, format!("{prefix}__{c}")))
        .collect();
    let mut field_set = format!("{prefix}__FieldSet");
    let imports = match d.specified_argument_by_name("import").map(|v| v.as_ref()) {
        None => Vec::new(),
        Some(Value::List(items)) => items.iter().map(|i| (**i).clone()).collect(),
        Some(_) => {
            return Err(SchemaError::mapping(
                "schema",
                "@link(import:) must be a list of names (\"@key\") or {name, as} objects",
            ))
        }
    };
    for item in imports {
        let (name, alias) = match &item {
            Value::String(s) => (s.to_string(), None),
            Value::Object(fields) => {
                let get = |k: &str| {
                    fields
                        .iter()
                        .find(|(n, _)| n == k)
                        .and_then(|(_, v)| string(v))
                        .map(str::to_owned)
                };
                match get("name") {
                    Some(n) => (n, get("as")),
                    None => {
                        return Err(SchemaError::mapping(
                            "schema",
                            "an @link import object needs `name`",
                        ))
                    }
                }
            }
            _ => {
                return Err(SchemaError::mapping(
                    "schema",
                    "@link(import:) must be a list of names (\"@key\") or {name, as} objects",
                ))
            }
        };
        if name == "FieldSet" {
            field_set = alias.unwrap_or(name);
            continue;
        }
        let bare = name.strip_prefix('@').unwrap_or(&name);
        let Some(canonical) = DIRECTIVES.iter().find(|c| **c == bare) else {
            return Err(SchemaError::mapping(
                "schema",
                format!("@link imports {name:?}, which is not a federation v2.0–v2.3 directive this engine knows ({})", DIRECTIVES.map(|d| format!("@{d}")).join(", ")),
            ));
        };
        let used = alias.map_or_else(
            || bare.to_owned(),
            |a| a.strip_prefix('@').unwrap_or(&a).to_owned(),
        );
        names.insert(canonical, used);
    }
    Ok(Link {
        version: version.to_owned(),
        names,
        field_set,
    })
}

/// The definitions the linked directives need, under their names in this document, plus
/// `@link` itself and the subgraph types (`_Any`, `_Service`).
pub fn prelude(link: &Link) -> String {
    let n = |c: &str| link.name(c).to_owned();
    let fs = &link.field_set;
    let everywhere = "FIELD_DEFINITION | OBJECT | INTERFACE | UNION | ARGUMENT_DEFINITION | SCALAR | ENUM | ENUM_VALUE | INPUT_OBJECT | INPUT_FIELD_DEFINITION";
    format!(
        r#"directive @link(url: String!, as: String, import: [link__Import], for: link__Purpose) repeatable on SCHEMA
scalar link__Import
enum link__Purpose {{ SECURITY EXECUTION }}
scalar {fs}
directive @{key}(fields: {fs}!, resolvable: Boolean = true) repeatable on OBJECT | INTERFACE
directive @{requires}(fields: {fs}!) on FIELD_DEFINITION
directive @{provides}(fields: {fs}!) on FIELD_DEFINITION
directive @{external}(reason: String) on OBJECT | FIELD_DEFINITION
directive @{shareable} repeatable on OBJECT | FIELD_DEFINITION
directive @{override}(from: String!, label: String) on FIELD_DEFINITION
directive @{inaccessible} on {everywhere}
directive @{tag}(name: String!) repeatable on {everywhere} | SCHEMA
directive @{extends} on OBJECT | INTERFACE
directive @{interface_object} on OBJECT
directive @{compose}(name: String!) repeatable on SCHEMA
"A representation of an entity: its `__typename` and key fields (and `@requires` fields)."
scalar _Any
"The subgraph's SDL, for composition."
type _Service {{ sdl: String }}
"#,
        key = n("key"),
        requires = n("requires"),
        provides = n("provides"),
        external = n("external"),
        shareable = n("shareable"),
        override = n("override"),
        inaccessible = n("inaccessible"),
        tag = n("tag"),
        extends = n("extends"),
        interface_object = n("interfaceObject"),
        compose = n("composeDirective"),
    )
}

/// The object types of `doc` with a resolvable `@key` (on their definition or an extension),
/// in document order: the members of `_Entity`.
pub fn entity_types(doc: &Document, link: &Link) -> Vec<String> {
    let key = link.name("key");
    let mut out: Vec<String> = Vec::new();
    for def in &doc.definitions {
        let (name, directives) = match def {
            Definition::ObjectTypeDefinition(o) => (&o.name, &o.directives),
            Definition::ObjectTypeExtension(o) => (&o.name, &o.directives),
            _ => continue,
        };
        let resolvable = directives.get_all(key).any(|d| {
            !matches!(
                d.specified_argument_by_name("resolvable")
                    .map(|v| v.as_ref()),
                Some(Value::Boolean(false))
            )
        });
        if resolvable && !out.iter().any(|n| n == name.as_str()) {
            out.push(name.to_string());
        }
    }
    out
}

/// The SDL added to a subgraph: the `_Entity` union and the two federation root fields.
pub fn root_fields(query_type: &str, entities: &[String]) -> String {
    let mut s = String::new();
    if !entities.is_empty() {
        s.push_str("\"Every type with a @key.\"\nunion _Entity = ");
        s.push_str(&entities.join(" | "));
        s.push('\n');
    }
    s.push_str(&format!("extend type {query_type} {{\n"));
    if !entities.is_empty() {
        s.push_str("  \"The entities these representations stand for, in order (null where there is none).\"\n  _entities(representations: [_Any!]!): [_Entity]!\n");
    }
    s.push_str("  \"This subgraph's SDL, for composition.\"\n  _service: _Service!\n}\n");
    s
}

/// `_service { sdl }`: `doc` as written, without the directives named in `ours` (their uses
/// and definitions).
pub fn subgraph_sdl(doc: &Document, ours: &[&str]) -> String {
    let mut doc = doc.clone();
    let strip = |list: &mut DirectiveList| list.retain(|d| !ours.contains(&d.name.as_str()));
    doc.definitions.retain(|d| match d {
        Definition::DirectiveDefinition(dd) => !ours.contains(&dd.name.as_str()),
        _ => true,
    });
    for def in &mut doc.definitions {
        match def {
            Definition::ObjectTypeDefinition(o) => {
                let o = o.make_mut();
                strip(&mut o.directives);
                for f in &mut o.fields {
                    strip_field(f, &strip);
                }
            }
            Definition::ObjectTypeExtension(o) => {
                let o = o.make_mut();
                strip(&mut o.directives);
                for f in &mut o.fields {
                    strip_field(f, &strip);
                }
            }
            Definition::InterfaceTypeDefinition(o) => {
                let o = o.make_mut();
                strip(&mut o.directives);
                for f in &mut o.fields {
                    strip_field(f, &strip);
                }
            }
            Definition::InterfaceTypeExtension(o) => {
                let o = o.make_mut();
                strip(&mut o.directives);
                for f in &mut o.fields {
                    strip_field(f, &strip);
                }
            }
            Definition::EnumTypeDefinition(e) => {
                let e = e.make_mut();
                strip(&mut e.directives);
                for v in &mut e.values {
                    strip(&mut v.make_mut().directives);
                }
            }
            Definition::EnumTypeExtension(e) => {
                let e = e.make_mut();
                strip(&mut e.directives);
                for v in &mut e.values {
                    strip(&mut v.make_mut().directives);
                }
            }
            _ => {}
        }
    }
    doc.to_string()
}

fn strip_field(
    f: &mut Node<apollo_compiler::ast::FieldDefinition>,
    strip: &impl Fn(&mut DirectiveList),
) {
    let f = f.make_mut();
    strip(&mut f.directives);
    for a in &mut f.arguments {
        strip(&mut a.make_mut().directives);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sdl: &str) -> Document {
        Document::parse(sdl, "t.graphql").expect("parses")
    }

    #[test]
    fn imports_keep_their_names_and_the_rest_is_prefixed() {
        let doc = parse(
            r#"extend schema @link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key", {name: "@shareable", as: "@share"}])
            type Query { a: Int }"#,
        );
        let l = detect(&doc).expect("ok").expect("linked");
        assert_eq!(l.version, "2.3");
        assert_eq!(l.name("key"), "key");
        assert_eq!(l.name("shareable"), "share");
        assert_eq!(l.name("tag"), "federation__tag");
        assert!(prelude(&l).contains("directive @federation__tag(name: String!) repeatable"));
    }

    #[test]
    fn bad_links_are_refused() {
        let two = parse(
            r#"extend schema @link(url: "https://specs.apollo.dev/federation/v2.3") @link(url: "https://specs.apollo.dev/federation/v2.0")
            type Query { a: Int }"#,
        );
        assert!(detect(&two)
            .expect_err("refused")
            .to_string()
            .contains("twice"));
        let v3 = parse(
            r#"extend schema @link(url: "https://specs.apollo.dev/federation/v3.0") type Query { a: Int }"#,
        );
        assert!(detect(&v3)
            .expect_err("refused")
            .to_string()
            .contains("v2.0 to v2.9"));
        let unknown = parse(
            r#"extend schema @link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@context"]) type Query { a: Int }"#,
        );
        assert!(detect(&unknown)
            .expect_err("refused")
            .to_string()
            .contains("@context"));
        assert_eq!(detect(&parse("type Query { a: Int }")).expect("ok"), None);
    }

    #[test]
    fn the_subgraph_sdl_keeps_the_document_and_drops_our_directives() {
        let doc = parse(
            r#"extend schema @link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key"])
type Product @view(name: "v_product") @key(fields: "sku variation { id }") {
  id: ID! @column(name: "id")
  n: Int @sql(expr: "1")
}
extend type User @key(fields: "email") { email: ID! }"#,
        );
        let l = detect(&doc).expect("ok").expect("linked");
        assert_eq!(entity_types(&doc, &l), ["Product", "User"]);
        let sdl = subgraph_sdl(&doc, &["view", "column", "sql"]);
        assert!(
            sdl.contains(r#"type Product @key(fields: "sku variation { id }") {"#),
            "{sdl}"
        );
        assert!(sdl.contains("extend type User @key"), "{sdl}");
        assert!(!sdl.contains("v_product") && !sdl.contains("@sql"), "{sdl}");
    }
}
