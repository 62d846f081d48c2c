//! The pipeline's cache stage: before execution, each `@cache` root field is looked up under the
//! generation of what it reads, taken now (before any statement runs); after execution, hits
//! take their fields' places and misses are stored.

use std::sync::Arc;

use fraiseql_plan::{Plan, RootKind};

use super::{CacheKey, Cached, ResultCache};
use crate::execution::{FieldResult, JsonText};
use crate::identity::RequestContext;
use crate::response::CacheHeaders;

/// A `@cache` field's look-up.
struct Lookup {
    index: usize,
    key: CacheKey,
    hit: Option<Cached>,
}

/// The look-ups of one request's `@cache` fields (none without a cache or for a mutation).
#[derive(Default)]
pub struct Lookups<'c> {
    cache: Option<&'c ResultCache>,
    lookups: Vec<Lookup>,
}

impl<'c> Lookups<'c> {
    /// Looks up every `@cache` field of `plan` for `ctx`.
    pub fn take(cache: Option<&'c ResultCache>, plan: &Plan, ctx: &RequestContext) -> Self {
        let Some(cache) = cache else {
            return Self::default();
        };
        let mut lookups = Vec::new();
        let tenant: Arc<str> = Arc::from(ctx.tenant.as_ref().map_or("", |t| t.key.as_str()));
        for (index, f) in plan.fields.iter().enumerate() {
            let (Some(policy), RootKind::Sql(p)) = (&f.cache, &f.kind) else {
                continue;
            };
            let key = CacheKey {
                generation: cache.generation(&tenant, &policy.reads),
                tenant: tenant.clone(),
                roles: ctx.identity.roles_text.as_deref().map(Arc::from),
                user: policy
                    .per_user
                    .then(|| ctx.identity.subject.as_deref().map(Arc::from))
                    .flatten(),
                sql: Arc::from(p.sql.as_str()),
                params: p.params.iter().cloned().collect(),
            };
            let hit = cache.get(&key);
            lookups.push(Lookup { index, key, hit });
        }
        Self {
            cache: Some(cache),
            lookups,
        }
    }

    /// Whether every root field is answered without the database (cache hits and constants).
    pub fn all_hit(&self, plan: &Plan) -> bool {
        !self.lookups.is_empty()
            && plan.fields.iter().enumerate().all(|(i, f)| {
                self.lookups.iter().any(|l| l.index == i && l.hit.is_some())
                    || matches!(
                        f.kind,
                        RootKind::Typename(_) | RootKind::Constant(_) | RootKind::Denied
                    )
            })
    }

    /// Puts the hits in their fields' places and stores the misses' answers; `storable` is false
    /// when the response carries errors (an answer with nulls for failed fields is never kept).
    pub fn fill(&self, results: &mut [Option<FieldResult>], plan: &Plan, storable: bool) {
        let Some(cache) = self.cache else { return };
        for l in &self.lookups {
            match (&l.hit, results.get_mut(l.index)) {
                (Some(hit), Some(slot)) => {
                    *slot = Some(Ok(Some(JsonText::Shared(hit.json.clone()))));
                }
                (None, Some(Some(Ok(Some(text))))) if storable => {
                    if let Some(policy) = &plan.fields[l.index].cache {
                        let json = bytes::Bytes::copy_from_slice(text.as_bytes());
                        cache.insert(l.key.clone(), json, policy);
                    }
                }
                _ => {}
            }
        }
    }

    /// `Cache-Control: private, max-age` and `Age` when every root field is a `@cache` field:
    /// the shortest freshness left and the oldest answer.
    pub fn headers(&self, plan: &Plan) -> Option<CacheHeaders> {
        let mut max_age = u64::MAX;
        let mut age = 0;
        for (i, f) in plan.fields.iter().enumerate() {
            if matches!(f.kind, RootKind::Typename(_)) {
                continue;
            }
            let l = self.lookups.iter().find(|l| l.index == i)?;
            match &l.hit {
                Some(hit) => {
                    max_age = max_age.min(hit.max_age_secs());
                    age = age.max(hit.age_secs());
                }
                None => max_age = max_age.min(u64::from(f.cache.as_ref()?.ttl_secs)),
            }
        }
        (max_age != u64::MAX).then_some(CacheHeaders { max_age, age })
    }
}
