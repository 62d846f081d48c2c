//! `fraiseql schema init`: reads the tables of a database and writes a starting point to edit:
//! a migration creating a `v_*` view per table (`sql.rs`), the SDL of a `@view` type per view
//! (`sdl.rs`), and a config when there is none, so `fraiseql migrate` then `fraiseql run` serve
//! a filterable API at once.
//!
//! `read.rs` is the only I/O on the database (the [`DatabaseModel`]); [`generate`] is pure:
//! `plan.rs` decides types, keys, relations and names (`names.rs`), the renderers write text.

mod model;
mod names;
mod plan;
mod read;
mod sdl;
mod sql;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use model::{Column, DatabaseModel, ForeignKey, Table};

use crate::error::{scaffold_read, ScaffoldError};

/// What `schema init` reads and where it writes.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The database holding the tables.
    pub database_url: String,
    /// The PostgreSQL schema to read (`public`).
    pub schema: String,
    /// The SDL file to write.
    pub sdl: PathBuf,
    /// The migrations folder to write the migration into.
    pub migrations: PathBuf,
    /// A config file to write too (there is none yet).
    pub config: Option<PathBuf>,
    /// Overwrite files that exist.
    pub force: bool,
}

/// What `schema init` wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The files, in the order written.
    pub files: Vec<PathBuf>,
    /// The types of the SDL.
    pub types: Vec<String>,
    /// What was left out or guessed (also at the top of the SDL).
    pub notes: Vec<String>,
}

/// The generated files of one database.
#[derive(Debug, Clone)]
pub struct Scaffold {
    /// The migration creating the views.
    pub migration: String,
    /// The SDL.
    pub sdl: String,
    /// The types, in order.
    pub types: Vec<String>,
    /// What was left out or guessed.
    pub notes: Vec<String>,
}

/// The files for the tables of `db` (pure).
pub fn generate(db: &DatabaseModel) -> Result<Scaffold, ScaffoldError> {
    let plan = plan::plan(db);
    if plan.entities.is_empty() {
        return Err(ScaffoldError::Nothing {
            schema: db.schema.clone(),
            notes: plan.notes,
        });
    }
    Ok(Scaffold {
        migration: sql::render(&plan),
        sdl: sdl::render(&plan),
        types: plan
            .entities
            .iter()
            .map(|e| e.type_names.graphql.clone())
            .collect(),
        notes: plan.notes,
    })
}

/// Reads the tables and writes the files; nothing is written when a file exists (unless
/// `force`) or anything fails before.
pub async fn init(o: &InitOptions) -> Result<Written, ScaffoldError> {
    if !fraiseql_schema::is_plain_ident(&o.schema) {
        return Err(ScaffoldError::SchemaName(o.schema.clone()));
    }
    let migration = migration_path(&o.migrations)?;
    let mut files = vec![o.sdl.clone(), migration];
    files.extend(o.config.clone());
    let existing: Vec<PathBuf> = files.iter().filter(|f| f.exists()).cloned().collect();
    if !existing.is_empty() && !o.force {
        return Err(ScaffoldError::Exists(existing));
    }
    let client = fraiseql_engine::connections::connect(&o.database_url, None, None)
        .await
        .map_err(|e| ScaffoldError::Connect(e.to_string()))?;
    let db = read::read(&client, &o.schema)
        .await
        .map_err(scaffold_read(&o.schema))?;
    let s = generate(&db)?;
    let mut texts = vec![s.sdl, s.migration];
    if let Some(c) = &o.config {
        let base = c.parent().unwrap_or(Path::new(""));
        texts.push(config_text(
            &o.database_url,
            &relative(base, &o.sdl),
            &relative(base, &o.migrations),
        ));
    }
    for (path, text) in files.iter().zip(&texts) {
        write(path, text)?;
    }
    Ok(Written {
        files,
        types: s.types,
        notes: s.notes,
    })
}

/// The migration file in `dir`: the one an earlier `schema init` wrote (found by its first
/// line), else `NNNN_views.sql` numbered after the folder's last migration.
fn migration_path(dir: &Path) -> Result<PathBuf, ScaffoldError> {
    let io = |source| ScaffoldError::Io {
        path: dir.display().to_string(),
        source,
    };
    if !dir.exists() {
        return Ok(dir.join("0001_views.sql"));
    }
    let files = fraiseql_engine::migrate::files(dir).map_err(|e| ScaffoldError::Io {
        path: dir.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let mut last = 0u64;
    for (name, path) in &files {
        let text = std::fs::read_to_string(path).map_err(io)?;
        if text.starts_with(sql::HEADER) {
            return Ok(path.clone());
        }
        let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
        last = last.max(digits.parse().unwrap_or(0));
    }
    Ok(dir.join(format!("{:04}_views.sql", last + 1)))
}

fn write(path: &Path, text: &str) -> Result<(), ScaffoldError> {
    let io = |source| ScaffoldError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)
}

/// `path` as the config beside `base` names it: relative when under `base`.
fn relative(base: &Path, path: &Path) -> String {
    let p = path.strip_prefix(base).unwrap_or(path);
    p.display().to_string()
}

/// A config serving one database without tenants or tokens: `url` is written unless it holds a
/// password, which is then read from `$DATABASE_URL` only.
pub(crate) fn config_text(url: &str, sdl: &str, migrations: &str) -> String {
    let url_line = if has_password(url) {
        "# The URL holds a password: it is read from $DATABASE_URL, never written here.\n\
         url = \"${DATABASE_URL}\""
            .to_owned()
    } else {
        format!("url = \"${{DATABASE_URL:-{}}}\"", toml_escape(url))
    };
    format!(
        "# Written by `fraiseql schema init`: one database, no tenants, no tokens (anyone who reaches\n\
         # the port reads every row). docs/configuration.md describes every key; add [auth] and\n\
         # [multi_tenancy] before serving anyone else.\n\
         [server]\n\
         host = \"${{HOST:-127.0.0.1}}\"\n\
         port = \"${{PORT:-8080}}\"\n\
         profile = \"${{FRAISEQL_PROFILE:-development}}\"\n\
         \n\
         [schema]\n\
         path = \"{}\"\n\
         \n\
         [databases.tenant]\n\
         type = \"postgresql\"\n\
         {url_line}\n\
         migrations = \"{}\"\n",
        toml_escape(sdl),
        toml_escape(migrations)
    )
}

/// A libpq URL (`postgres://user:secret@host/db`) or key-value string (`password=...`) with a
/// password in it.
fn has_password(url: &str) -> bool {
    let authority = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(""));
    let in_authority = authority
        .and_then(|a| a.rsplit_once('@'))
        .is_some_and(|(user, _)| user.contains(':'));
    in_authority || url.contains("password=")
}

fn toml_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
