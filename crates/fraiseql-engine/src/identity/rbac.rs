//! `[rbac]`: which roles may read which fields (and therefore filter or order on them).

use std::collections::{BTreeMap, HashMap};

use fraiseql_plan::Access;

/// `[rbac]` indexed by type then field, so a look-up builds no string.
#[derive(Debug, Clone, Default)]
pub struct RbacRules {
    by_type: HashMap<String, HashMap<String, Vec<String>>>,
}

impl RbacRules {
    /// Indexes `[rbac] "Type.field" = [roles]`.
    pub fn new(rules: &BTreeMap<String, Vec<String>>) -> Self {
        let mut by_type: HashMap<String, HashMap<String, Vec<String>>> = HashMap::new();
        for (coord, roles) in rules {
            if let Some((t, f)) = coord.split_once('.') {
                by_type
                    .entry(t.to_owned())
                    .or_default()
                    .insert(f.to_owned(), roles.clone());
            }
        }
        Self { by_type }
    }

    /// Whether any rule exists.
    pub fn is_empty(&self) -> bool {
        self.by_type.is_empty()
    }
}

/// `[rbac]` applied to one caller's roles.
pub struct Rbac<'a> {
    /// The rules.
    pub rules: &'a RbacRules,
    /// The caller's roles.
    pub roles: &'a [String],
}

impl Access for Rbac<'_> {
    fn allows(&self, type_name: &str, field: &str) -> bool {
        match self
            .rules
            .by_type
            .get(type_name)
            .and_then(|fields| fields.get(field))
        {
            None => true,
            Some(allowed) => self.roles.iter().any(|r| allowed.contains(r)),
        }
    }
}
