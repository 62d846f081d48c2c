//! Root fields answered by a mutation statement or a Rust resolver: what runs, with which
//! parameters, and how its result becomes the client's selection.

use apollo_compiler::executable::Field;
use apollo_compiler::Node;
use fraiseql_schema::{Catalog, MutationAction, MutationField, Output, ParamSource};

use crate::collect::Cx;
use crate::error::PlanError;
use crate::sql::Builder;
use crate::values::param_text;
use crate::{Access, BoundParam, MutationPlan, OutputPlan, PlanLimits, ResolverPlan, RootKind};

type Planned = (RootKind, Vec<Vec<String>>);

/// The output plan: a read-back statement for view types, a (projected) value otherwise.
fn output<'a>(
    mut b: Builder<'_, 'a>,
    catalog: &Catalog,
    output: &Output,
    group: &[&'a Node<Field>],
) -> Result<(OutputPlan, Vec<Vec<String>>), PlanError> {
    match output {
        Output::Entity {
            target,
            list,
            non_null,
        } => {
            let ty = catalog
                .type_mapping(target)
                .ok_or_else(|| PlanError::unsupported(format!("type `{target}` has no view")))?;
            let (plan, denied) = b.readback(ty, *list, *non_null, group)?;
            Ok((OutputPlan::Readback { plan, list: *list }, denied))
        }
        Output::Value { list, non_null } => {
            let inner = group[0].definition.ty.inner_named_type().as_str();
            let projection = b.projection(inner, group)?;
            Ok((
                OutputPlan::Value {
                    list: *list,
                    nullable: !non_null,
                    projection,
                },
                b.into_denied(),
            ))
        }
    }
}

/// Plans one root `Mutation` field.
#[allow(clippy::too_many_arguments)]
pub(crate) fn mutation<'a>(
    cx: &Cx<'a>,
    catalog: &Catalog,
    limits: PlanLimits,
    access: &dyn Access,
    key: &str,
    root_type: &str,
    m: &MutationField,
    group: &[&'a Node<Field>],
) -> Result<Planned, PlanError> {
    let (database, sql, params) = match &m.action {
        MutationAction::Resolver => {
            return resolver(
                cx,
                catalog,
                limits,
                access,
                key,
                root_type,
                &m.output,
                m.change.clone(),
                group,
            )
        }
        MutationAction::Sql {
            database,
            sql,
            params,
        } => (database, sql, params),
    };
    let b = Builder::new(cx, catalog, limits, access, vec![key.to_owned()]);
    let args = b.args_json(group[0])?;
    {
        {
            let bound = params
                .iter()
                .map(|p| match p {
                    ParamSource::Arg(name) => {
                        BoundParam::Value(args.get(name).and_then(param_text))
                    }
                    ParamSource::Context(c) => BoundParam::Context(*c),
                })
                .collect();
            let (output, denied) = output(b, catalog, &m.output, group)?;
            Ok((
                RootKind::Mutation(MutationPlan {
                    database: database.clone(),
                    sql: sql.clone(),
                    params: bound,
                    output,
                    change: m.change.clone(),
                }),
                denied,
            ))
        }
    }
}

/// Plans one root field answered by a Rust query or mutation resolver.
#[allow(clippy::too_many_arguments)]
pub(crate) fn resolver<'a>(
    cx: &Cx<'a>,
    catalog: &Catalog,
    limits: PlanLimits,
    access: &dyn Access,
    key: &str,
    root_type: &str,
    out: &Output,
    change: Option<fraiseql_schema::Change>,
    group: &[&'a Node<Field>],
) -> Result<Planned, PlanError> {
    let b = Builder::new(cx, catalog, limits, access, vec![key.to_owned()]);
    let args = b.args_json(group[0])?;
    let (output, denied) = output(b, catalog, out, group)?;
    Ok((
        RootKind::Resolver(ResolverPlan {
            coordinate: format!("{root_type}.{}", group[0].name),
            args,
            output,
            change,
        }),
        denied,
    ))
}
