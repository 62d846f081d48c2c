//! `fraiseql schema init` on an empty project against a database that has tables and rows:
//! the files it writes, then `fraiseql migrate`, then `fraiseql run` serving a filtered,
//! paged API with no line written by hand; and files it refuses to overwrite.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use fraiseql_testing::{ServerProcess, TestDatabase};

/// Three related tables in the example's convention, with rows: two teams, a board each, and
/// 30 cards (`card n` has n points, status `done` when n is a multiple of 3, on the core board
/// when n is odd).
const TABLES: &str = "
CREATE TABLE tb_team (
    pk_team SERIAL PRIMARY KEY,
    id UUID DEFAULT gen_random_uuid() NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE tb_board (
    pk_board SERIAL PRIMARY KEY,
    id UUID DEFAULT gen_random_uuid() NOT NULL UNIQUE,
    fk_team INTEGER NOT NULL REFERENCES tb_team (pk_team),
    title TEXT NOT NULL
);
CREATE TABLE tb_card (
    pk_card SERIAL PRIMARY KEY,
    id UUID DEFAULT gen_random_uuid() NOT NULL UNIQUE,
    fk_board INTEGER NOT NULL REFERENCES tb_board (pk_board),
    title TEXT NOT NULL,
    points INTEGER NOT NULL,
    status TEXT NOT NULL,
    due DATE,
    meta JSONB
);
INSERT INTO tb_team (pk_team, name) VALUES (1, 'core'), (2, 'ops');
INSERT INTO tb_board (pk_board, fk_team, title) VALUES (1, 1, 'core board'), (2, 2, 'ops board');
INSERT INTO tb_card (fk_board, title, points, status)
SELECT CASE WHEN n % 2 = 1 THEN 1 ELSE 2 END, 'card ' || n, n,
       CASE WHEN n % 3 = 0 THEN 'done' ELSE 'todo' END
FROM generate_series(1, 30) n;
";

fn project() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "fraiseql-schema-init-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("project folder");
    dir
}

/// A database holding [`TABLES`] and an empty project folder.
async fn tables_and_project() -> (TestDatabase, PathBuf) {
    let db = TestDatabase::empty().await.expect("database");
    db.connect()
        .await
        .expect("connect")
        .batch_execute(TABLES)
        .await
        .expect("tables");
    (db, project())
}

fn fraiseql(project: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fraiseql"));
    c.current_dir(project)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("FRAISEQL_CONFIG")
        .env_remove("TENANT_ID")
        .env("RUST_LOG", "error");
    c
}

fn run(project: &Path, args: &[&str]) -> Output {
    fraiseql(project, args).output().expect("run fraiseql")
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The `title`s of a connection's edges, its `pageInfo` and `totalCount`.
fn page(answer: &serde_json::Value) -> (Vec<String>, bool, String, i64) {
    let c = &answer["data"]["cardsConnection"];
    let titles = c["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("no edges: {answer}"))
        .iter()
        .map(|e| e["node"]["title"].as_str().unwrap_or_default().to_owned())
        .collect();
    (
        titles,
        c["pageInfo"]["hasNextPage"].as_bool().unwrap_or_default(),
        c["pageInfo"]["endCursor"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        c["totalCount"].as_i64().unwrap_or(-1),
    )
}

#[tokio::test]
async fn schema_init_then_migrate_then_run_serves_a_filtered_connection() {
    let (db, dir) = tables_and_project().await;

    let o = run(&dir, &["schema", "init", "--database-url", &db.url]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "wrote schema.graphql, migrations/0001_views.sql, fraiseql.toml (3 types: Board, Card, Team); next: fraiseql migrate, then fraiseql run"
    );
    let sdl = std::fs::read_to_string(dir.join("schema.graphql")).expect("sdl");
    assert!(
        sdl.contains("board: Board! @relation(column: \"fk_board\", references: \"pk_board\")"),
        "{sdl}"
    );
    assert!(
        sdl.contains("cards(limit: Int = 100, orderBy: [CardOrder!] = [ID_ASC]): [Card!]! @relation(column: \"pk_board\", references: \"fk_board\")"),
        "{sdl}"
    );

    let o = run(&dir, &["migrate"]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "database `tenant`: applied 0001_views.sql"
    );

    let port = ServerProcess::free_port().expect("port");
    let mut serve = fraiseql(&dir, &["run"]);
    serve
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let server = ServerProcess::start(serve, port)
        .await
        .expect("fraiseql run");

    // Cards done with at least 4 points, by points, three to a page: 6, 9, 12 then 15, 18, 21.
    let query = "query($after: String) {
      cardsConnection(first: 3, after: $after, orderBy: [POINTS_ASC],
                      where: {status: {eq: \"done\"}, points: {gte: 4}}) {
        totalCount
        edges { cursor node { title points board { title team { name } } } }
        pageInfo { hasNextPage endCursor }
      }
    }";
    let first = server
        .graphql(&[], query, serde_json::json!({}))
        .await
        .expect("answer")
        .json();
    let (titles, more, cursor, total) = page(&first);
    assert_eq!(titles, ["card 6", "card 9", "card 12"], "{first}");
    assert!(more, "{first}");
    assert_eq!(total, 9, "{first}");
    let node = &first["data"]["cardsConnection"]["edges"][1]["node"];
    assert_eq!(
        node["board"],
        serde_json::json!({"title": "core board", "team": {"name": "core"}})
    );
    let second = server
        .graphql(&[], query, serde_json::json!({ "after": cursor }))
        .await
        .expect("answer")
        .json();
    let (titles, more, _, total) = page(&second);
    assert_eq!(titles, ["card 15", "card 18", "card 21"], "{second}");
    assert!(more, "{second}");
    assert_eq!(total, 9, "{second}");

    // A filter through both relations (team -> boards -> cards), and the look-up by id.
    let teams = server
        .graphql(
            &[],
            "{ teams(where: {boards: {cards: {points: {eq: 8}}}}) { name boards { title } } }",
            serde_json::json!({}),
        )
        .await
        .expect("answer")
        .json();
    assert_eq!(
        teams,
        serde_json::json!({"data": {"teams": [{"name": "ops", "boards": [{"title": "ops board"}]}]}})
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn schema_init_refuses_to_overwrite_without_force() {
    let (db, dir) = tables_and_project().await;
    std::fs::write(dir.join("schema.graphql"), "# mine\n").expect("an SDL of the user's");
    let url = db.url.as_str();

    let o = run(&dir, &["schema", "init", "--database-url", url]);
    assert!(!o.status.success());
    assert_eq!(
        out(&o).trim(),
        "error: schema.graphql already exists: pass --force to overwrite"
    );
    assert!(!dir.join("migrations").exists() && !dir.join("fraiseql.toml").exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("schema.graphql")).expect("sdl"),
        "# mine\n"
    );

    let o = run(&dir, &["schema", "init", "--database-url", url, "--force"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(std::fs::read_to_string(dir.join("schema.graphql"))
        .expect("sdl")
        .starts_with("# Written by `fraiseql schema init`"));

    // Run again: the config now exists (its database is the default) and so do both files.
    let o = run(&dir, &["schema", "init"]);
    assert!(!o.status.success());
    assert_eq!(
        out(&o).trim(),
        "error: schema.graphql and migrations/0001_views.sql already exist: pass --force to overwrite"
    );
    // With --force the migration an earlier run wrote is rewritten, not a second one added.
    let o = run(&dir, &["schema", "init", "--force"]);
    assert!(o.status.success(), "{}", out(&o));
    let files: Vec<_> = std::fs::read_dir(dir.join("migrations"))
        .expect("migrations")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert_eq!(files, ["0001_views.sql"]);

    // A database without a table to serve says so, and writes nothing.
    let empty = TestDatabase::empty().await.expect("database");
    let bare = project();
    let o = run(&bare, &["schema", "init", "--database-url", &empty.url]);
    assert!(!o.status.success());
    assert_eq!(
        out(&o).trim(),
        "error: schema `public` has no table to make an API of"
    );
    assert_eq!(std::fs::read_dir(&bare).expect("dir").count(), 0);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&bare);
}
