//! After a committed mutation: the cached answers it outdates, here and on every instance, before
//! its response is sent.

use fraiseql_plan::{Plan, RootKind};

use super::bus::CacheBus;
use super::ResultCache;

/// The entities `plan`'s mutations change: `None` when one of them declares none (then every
/// answer of the tenant is outdated).
pub fn changed_entities(plan: &Plan) -> Option<Vec<String>> {
    let mut entities = Vec::new();
    for f in &plan.fields {
        let change = match &f.kind {
            RootKind::Mutation(m) => m.change.as_ref(),
            RootKind::Resolver(r) => r.change.as_ref(),
            _ => continue,
        };
        match change {
            Some(c) if !entities.contains(&c.entity) => entities.push(c.entity.clone()),
            Some(_) => {}
            None => return None,
        }
    }
    Some(entities)
}

/// Moves the generations of what `plan` changed for `tenant`, locally and on the instances the
/// bus hears of.
pub async fn after_commit(cache: &ResultCache, bus: Option<&CacheBus>, tenant: &str, plan: &Plan) {
    let entities = changed_entities(plan);
    cache.invalidate(tenant, entities.as_deref());
    if let Some(bus) = bus {
        bus.publish(tenant, entities.as_deref()).await;
    }
}
