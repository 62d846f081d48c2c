//! The generator on table models written here (no database): the files it writes, and what
//! it leaves out and says.

use super::model::{Column, DatabaseModel, ForeignKey, Table};
use super::{config_text, generate, names};

fn col(name: &str, pg_type: &str, not_null: bool) -> Column {
    Column {
        name: name.to_owned(),
        pg_type: pg_type.to_owned(),
        not_null,
    }
}

/// A one-column foreign key to `table` (`schema.table`) in schema `public` (another one).
fn fk(name: &str, column: &str, table: &str, ref_column: &str) -> ForeignKey {
    let (schema, table) = table.split_once('.').unwrap_or(("public", table));
    ForeignKey {
        name: name.to_owned(),
        columns: vec![column.to_owned()],
        ref_schema: schema.to_owned(),
        ref_table: table.to_owned(),
        ref_columns: vec![ref_column.to_owned()],
    }
}

/// The example's convention: `tb_x` with `pk_x` + `id uuid`, `fk_y` foreign keys.
fn example() -> DatabaseModel {
    let org = Table {
        name: "tb_organization".into(),
        columns: vec![
            col("pk_organization", "integer", true),
            col("id", "uuid", true),
            col("name", "text", true),
            col("created_at", "timestamp with time zone", true),
            col("settings", "jsonb", false),
        ],
        primary_key: vec!["pk_organization".into()],
        unique: vec![vec!["pk_organization".into()], vec!["id".into()]],
        foreign_keys: vec![],
    };
    let project = Table {
        name: "tb_project".into(),
        columns: vec![
            col("pk_project", "integer", true),
            col("id", "uuid", true),
            col("fk_organization", "integer", true),
            col("name", "character varying", true),
            col("budget", "numeric", false),
            col("starts_on", "date", false),
        ],
        primary_key: vec!["pk_project".into()],
        unique: vec![vec!["pk_project".into()], vec!["id".into()]],
        foreign_keys: vec![fk(
            "tb_project_fk_organization_fkey",
            "fk_organization",
            "tb_organization",
            "pk_organization",
        )],
    };
    let task = Table {
        name: "tb_task".into(),
        columns: vec![
            col("pk_task", "integer", true),
            col("id", "uuid", true),
            col("fk_project", "integer", true),
            col("title", "text", true),
            col("done", "boolean", true),
            col("priority", "smallint", false),
            col("tags", "text[]", false),
        ],
        primary_key: vec!["pk_task".into()],
        unique: vec![vec!["pk_task".into()], vec!["id".into()]],
        foreign_keys: vec![fk(
            "tb_task_fk_project_fkey",
            "fk_project",
            "tb_project",
            "pk_project",
        )],
    };
    DatabaseModel {
        schema: "public".into(),
        tables: vec![org, project, task],
        relations: ["tb_organization", "tb_project", "tb_task"]
            .map(String::from)
            .into(),
    }
}

#[test]
fn the_example_convention_gives_views_with_data_and_columns() {
    let s = generate(&example()).expect("generated");
    insta::assert_snapshot!(s.migration, @r#"
        -- Written by `fraiseql schema init` from the tables of schema `public`: a starting point to edit.
        -- One view per table: its key, its fields as the JSON `data` the API reads, and as columns
        -- the keys relations join on and the fields `where` and `orderBy` use (index the table's
        -- column to serve a filter: docs/schema.md, "Indexing filtered fields"). The views run
        -- with the caller's rights, so row-level security on the tables applies through them.

        CREATE VIEW v_organization WITH (security_invoker = true) AS
        SELECT
            t.id,
            jsonb_build_object(
                'id', t.id::text,
                'name', t.name,
                'created_at', t.created_at,
                'settings', t.settings
            ) AS data,
            t.pk_organization,
            t.name,
            t.created_at
        FROM tb_organization t;

        CREATE VIEW v_project WITH (security_invoker = true) AS
        SELECT
            t.id,
            jsonb_build_object(
                'id', t.id::text,
                'name', t.name,
                'budget', t.budget,
                'starts_on', t.starts_on
            ) AS data,
            t.pk_project,
            t.fk_organization,
            t.name,
            t.budget,
            t.starts_on
        FROM tb_project t;

        CREATE VIEW v_task WITH (security_invoker = true) AS
        SELECT
            t.id,
            jsonb_build_object(
                'id', t.id::text,
                'title', t.title,
                'done', t.done,
                'priority', t.priority,
                'tags', t.tags::text
            ) AS data,
            t.pk_task,
            t.fk_project,
            t.title,
            t.done,
            t.priority
        FROM tb_task t;
        "#);
}

#[test]
fn the_example_convention_gives_types_relations_both_ways_and_root_fields() {
    let s = generate(&example()).expect("generated");
    insta::assert_snapshot!(s.sdl, @r#"
        # Written by `fraiseql schema init` from the tables of schema `public`: a starting point to edit.
        # Each type reads the view the migration beside it creates; docs/schema.md describes the
        # directives. Every list and connection also takes `where` (generated by the engine).
        # note: column `tb_task.tags` (text[]): no GraphQL type for it, read as text (a String)

        "An ISO-8601 timestamp, e.g. 2024-01-15T10:00:00.123456+00:00."
        scalar DateTime
        "An ISO-8601 date, e.g. 2024-01-15."
        scalar Date
        "Any JSON value."
        scalar JSON

        type Query {
          "Rows of table tb_organization."
          organizations(limit: Int = 100, offset: Int = 0, orderBy: [OrganizationOrder!] = [ID_ASC]): [Organization!]!
          "One row of table tb_organization by its key, or null."
          organization(id: ID!): Organization
          "Rows of table tb_organization as a Relay connection (keyset pages)."
          organizationsConnection(orderBy: [OrganizationOrder!] = [ID_ASC]): OrganizationConnection! @connection
          "Rows of table tb_project."
          projects(limit: Int = 100, offset: Int = 0, orderBy: [ProjectOrder!] = [ID_ASC]): [Project!]!
          "One row of table tb_project by its key, or null."
          project(id: ID!): Project
          "Rows of table tb_project as a Relay connection (keyset pages)."
          projectsConnection(orderBy: [ProjectOrder!] = [ID_ASC]): ProjectConnection! @connection
          "Rows of table tb_task."
          tasks(limit: Int = 100, offset: Int = 0, orderBy: [TaskOrder!] = [ID_ASC]): [Task!]!
          "One row of table tb_task by its key, or null."
          task(id: ID!): Task
          "Rows of table tb_task as a Relay connection (keyset pages)."
          tasksConnection(orderBy: [TaskOrder!] = [ID_ASC]): TaskConnection! @connection
        }

        "A row of table tb_organization."
        type Organization @view(name: "v_organization") {
          id: ID!
          name: String!
          createdAt: DateTime!
          settings: JSON
          projects(limit: Int = 100, orderBy: [ProjectOrder!] = [ID_ASC]): [Project!]! @relation(column: "pk_organization", references: "fk_organization")
          projectsConnection(orderBy: [ProjectOrder!] = [ID_ASC]): ProjectConnection! @connection @relation(column: "pk_organization", references: "fk_organization")
        }

        enum OrganizationOrder {
          ID_ASC @orderBy(column: "id")
          ID_DESC @orderBy(column: "id", desc: true)
          NAME_ASC @orderBy(column: "name")
          NAME_DESC @orderBy(column: "name", desc: true)
          CREATED_AT_ASC @orderBy(column: "created_at")
          CREATED_AT_DESC @orderBy(column: "created_at", desc: true)
        }

        "A row of table tb_project."
        type Project @view(name: "v_project") {
          id: ID!
          name: String!
          budget: Float
          startsOn: Date
          organization: Organization! @relation(column: "fk_organization", references: "pk_organization")
          tasks(limit: Int = 100, orderBy: [TaskOrder!] = [ID_ASC]): [Task!]! @relation(column: "pk_project", references: "fk_project")
          tasksConnection(orderBy: [TaskOrder!] = [ID_ASC]): TaskConnection! @connection @relation(column: "pk_project", references: "fk_project")
        }

        enum ProjectOrder {
          ID_ASC @orderBy(column: "id")
          ID_DESC @orderBy(column: "id", desc: true)
          NAME_ASC @orderBy(column: "name")
          NAME_DESC @orderBy(column: "name", desc: true)
          BUDGET_ASC @orderBy(column: "budget")
          BUDGET_DESC @orderBy(column: "budget", desc: true)
          STARTS_ON_ASC @orderBy(column: "starts_on")
          STARTS_ON_DESC @orderBy(column: "starts_on", desc: true)
        }

        "A row of table tb_task."
        type Task @view(name: "v_task") {
          id: ID!
          title: String!
          done: Boolean!
          priority: Int
          tags: String # text[]: no GraphQL type for it, read as text
          project: Project! @relation(column: "fk_project", references: "pk_project")
        }

        enum TaskOrder {
          ID_ASC @orderBy(column: "id")
          ID_DESC @orderBy(column: "id", desc: true)
          TITLE_ASC @orderBy(column: "title")
          TITLE_DESC @orderBy(column: "title", desc: true)
          DONE_ASC @orderBy(column: "done")
          DONE_DESC @orderBy(column: "done", desc: true)
          PRIORITY_ASC @orderBy(column: "priority")
          PRIORITY_DESC @orderBy(column: "priority", desc: true)
        }
        "#);
    assert_eq!(s.types, ["Organization", "Project", "Task"]);
    // The engine takes it as it is: `where` and the connection types are generated.
    let built = fraiseql_schema::build(&s.sdl, "schema.graphql").expect("the SDL builds");
    let api = built.api.to_string();
    assert!(api.contains("input TaskWhereInput"), "{api}");
    assert!(api.contains("type TaskConnection"), "{api}");
}

/// Plain tables: `id` primary keys, `<x>_id` foreign keys, two to one table, a self-reference,
/// names GraphQL cannot take as they are, a table without a key and one in another schema.
fn plain() -> DatabaseModel {
    let person = Table {
        name: "person".into(),
        columns: vec![
            col("id", "bigint", true),
            col("Full Name", "text", true),
            col("manager_id", "bigint", false),
            col("data", "jsonb", false),
            col("café", "text", false),
            col("home", "point", false),
        ],
        primary_key: vec!["id".into()],
        unique: vec![vec!["id".into()]],
        foreign_keys: vec![fk(
            "person_manager_id_fkey",
            "manager_id",
            "app.person",
            "id",
        )],
    };
    let ticket = Table {
        name: "ticket".into(),
        columns: vec![
            col("ticket_no", "integer", true),
            col("author_id", "bigint", true),
            col("assignee_id", "bigint", false),
            col("opened_at", "timestamp without time zone", true),
            col("region_code", "text", false),
        ],
        primary_key: vec!["ticket_no".into()],
        unique: vec![vec!["ticket_no".into()]],
        foreign_keys: vec![
            fk("ticket_assignee_id_fkey", "assignee_id", "app.person", "id"),
            fk("ticket_author_id_fkey", "author_id", "app.person", "id"),
            fk(
                "ticket_region_code_fkey",
                "region_code",
                "geo.region",
                "code",
            ),
        ],
    };
    let log = Table {
        name: "audit_log".into(),
        columns: vec![
            col("at", "timestamp with time zone", true),
            col("line", "text", true),
        ],
        ..Table::default()
    };
    let page = Table {
        name: "page_info".into(),
        columns: vec![col("id", "integer", true)],
        primary_key: vec!["id".into()],
        unique: vec![vec!["id".into()]],
        foreign_keys: vec![],
    };
    let migrations = Table {
        name: "fraiseql_migrations".into(),
        columns: vec![col("version", "text", true)],
        primary_key: vec!["version".into()],
        unique: vec![vec!["version".into()]],
        foreign_keys: vec![],
    };
    DatabaseModel {
        schema: "app".into(),
        tables: vec![log, migrations, page, person, ticket],
        relations: ["person", "ticket", "v_ticket"].map(String::from).into(),
    }
}

#[test]
fn plain_tables_are_keyed_named_and_reported() {
    let s = generate(&plain()).expect("generated");
    fraiseql_schema::build(&s.sdl, "schema.graphql").expect("the SDL builds");
    insta::assert_snapshot!(s.notes.join("\n"), @r#"
        table `audit_log` skipped: no single column identifies its rows (a one-column primary key, or a NOT NULL unique `id`)
        table `page_info` skipped: its GraphQL type would be `PageInfo`, a name the engine uses
        column `person.café` skipped: no GraphQL name can be made of "café" (ASCII letters and digits, starting with a letter)
        column `person.home` (point): no GraphQL type for it, read as text (a String)
        `v_ticket` already exists in schema `app`: the migration's CREATE VIEW fails until it is dropped or renamed
        foreign key `ticket_region_code_fkey` of `ticket`: `geo.region` is not in the API, no relation made
        "#);
    insta::assert_snapshot!(s.sdl, @r#"
        # Written by `fraiseql schema init` from the tables of schema `app`: a starting point to edit.
        # Each type reads the view the migration beside it creates; docs/schema.md describes the
        # directives. Every list and connection also takes `where` (generated by the engine).
        # note: table `audit_log` skipped: no single column identifies its rows (a one-column primary key, or a NOT NULL unique `id`)
        # note: table `page_info` skipped: its GraphQL type would be `PageInfo`, a name the engine uses
        # note: column `person.café` skipped: no GraphQL name can be made of "café" (ASCII letters and digits, starting with a letter)
        # note: column `person.home` (point): no GraphQL type for it, read as text (a String)
        # note: `v_ticket` already exists in schema `app`: the migration's CREATE VIEW fails until it is dropped or renamed
        # note: foreign key `ticket_region_code_fkey` of `ticket`: `geo.region` is not in the API, no relation made

        "An ISO-8601 timestamp, e.g. 2024-01-15T10:00:00.123456+00:00."
        scalar DateTime
        "Any JSON value."
        scalar JSON

        type Query {
          "Rows of table person."
          persons(limit: Int = 100, offset: Int = 0, orderBy: [PersonOrder!] = [ID_ASC]): [Person!]!
          "One row of table person by its key, or null."
          person(id: ID!): Person
          "Rows of table person as a Relay connection (keyset pages)."
          personsConnection(orderBy: [PersonOrder!] = [ID_ASC]): PersonConnection! @connection
          "Rows of table ticket."
          tickets(limit: Int = 100, offset: Int = 0, orderBy: [TicketOrder!] = [TICKET_NO_ASC]): [Ticket!]!
          "One row of table ticket by its key, or null."
          ticket(ticketNo: ID!): Ticket
          "Rows of table ticket as a Relay connection (keyset pages)."
          ticketsConnection(orderBy: [TicketOrder!] = [TICKET_NO_ASC]): TicketConnection! @connection
        }

        "A row of table person."
        type Person @view(name: "app.v_person") {
          id: ID!
          fullName: String!
          managerId: Int
          data: JSON
          home: String # point: no GraphQL type for it, read as text
          manager: Person @relation(column: "manager_id", references: "id")
          personsByManager(limit: Int = 100, orderBy: [PersonOrder!] = [ID_ASC]): [Person!]! @relation(column: "id", references: "manager_id")
          personsByManagerConnection(orderBy: [PersonOrder!] = [ID_ASC]): PersonConnection! @connection @relation(column: "id", references: "manager_id")
          ticketsByAssignee(limit: Int = 100, orderBy: [TicketOrder!] = [TICKET_NO_ASC]): [Ticket!]! @relation(column: "id", references: "assignee_id")
          ticketsByAssigneeConnection(orderBy: [TicketOrder!] = [TICKET_NO_ASC]): TicketConnection! @connection @relation(column: "id", references: "assignee_id")
          ticketsByAuthor(limit: Int = 100, orderBy: [TicketOrder!] = [TICKET_NO_ASC]): [Ticket!]! @relation(column: "id", references: "author_id")
          ticketsByAuthorConnection(orderBy: [TicketOrder!] = [TICKET_NO_ASC]): TicketConnection! @connection @relation(column: "id", references: "author_id")
        }

        enum PersonOrder {
          ID_ASC @orderBy(column: "id")
          ID_DESC @orderBy(column: "id", desc: true)
          FULL_NAME_ASC @orderBy(column: "full_name")
          FULL_NAME_DESC @orderBy(column: "full_name", desc: true)
          MANAGER_ID_ASC @orderBy(column: "manager_id")
          MANAGER_ID_DESC @orderBy(column: "manager_id", desc: true)
        }

        "A row of table ticket."
        type Ticket @view(name: "app.v_ticket", key: "ticket_no") {
          ticketNo: ID!
          authorId: Int!
          assigneeId: Int
          openedAt: DateTime!
          regionCode: String
          assignee: Person @relation(column: "assignee_id", references: "id")
          author: Person! @relation(column: "author_id", references: "id")
        }

        enum TicketOrder {
          TICKET_NO_ASC @orderBy(column: "ticket_no")
          TICKET_NO_DESC @orderBy(column: "ticket_no", desc: true)
          AUTHOR_ID_ASC @orderBy(column: "author_id")
          AUTHOR_ID_DESC @orderBy(column: "author_id", desc: true)
          ASSIGNEE_ID_ASC @orderBy(column: "assignee_id")
          ASSIGNEE_ID_DESC @orderBy(column: "assignee_id", desc: true)
          OPENED_AT_ASC @orderBy(column: "opened_at")
          OPENED_AT_DESC @orderBy(column: "opened_at", desc: true)
          REGION_CODE_ASC @orderBy(column: "region_code")
          REGION_CODE_DESC @orderBy(column: "region_code", desc: true)
        }
        "#);
    insta::assert_snapshot!(s.migration, @r#"
        -- Written by `fraiseql schema init` from the tables of schema `app`: a starting point to edit.
        -- One view per table: its key, its fields as the JSON `data` the API reads, and as columns
        -- the keys relations join on and the fields `where` and `orderBy` use (index the table's
        -- column to serve a filter: docs/schema.md, "Indexing filtered fields"). The views run
        -- with the caller's rights, so row-level security on the tables applies through them.

        CREATE VIEW app.v_person WITH (security_invoker = true) AS
        SELECT
            t.id,
            jsonb_build_object(
                'id', t.id::text,
                'full_name', t."Full Name",
                'manager_id', t.manager_id,
                'data', t.data,
                'home', t.home::text
            ) AS data,
            t."Full Name" AS full_name,
            t.manager_id
        FROM app.person t;

        CREATE VIEW app.v_ticket WITH (security_invoker = true) AS
        SELECT
            t.ticket_no,
            jsonb_build_object(
                'ticket_no', t.ticket_no::text,
                'author_id', t.author_id,
                'assignee_id', t.assignee_id,
                'opened_at', t.opened_at,
                'region_code', t.region_code
            ) AS data,
            t.author_id,
            t.assignee_id,
            t.opened_at,
            t.region_code
        FROM app.ticket t;
        "#);
}

#[test]
fn wide_tables_split_the_json_in_calls_of_fifty_keys() {
    let mut columns = vec![col("id", "integer", true)];
    columns.extend((1..=60).map(|n| col(&format!("c{n}"), "text", false)));
    let db = DatabaseModel {
        schema: "public".into(),
        tables: vec![Table {
            name: "wide".into(),
            columns,
            primary_key: vec!["id".into()],
            unique: vec![vec!["id".into()]],
            foreign_keys: vec![],
        }],
        relations: Default::default(),
    };
    let m = generate(&db).expect("generated").migration;
    assert_eq!(m.matches("jsonb_build_object(").count(), 2, "{m}");
    assert!(
        m.contains("'c49', t.c49\n    ) || jsonb_build_object(\n        'c50', t.c50,"),
        "{m}"
    );
}

#[test]
fn nothing_to_generate_is_an_error_saying_why() {
    let db = DatabaseModel {
        schema: "public".into(),
        tables: vec![Table {
            name: "events".into(),
            columns: vec![col("at", "timestamp with time zone", true)],
            ..Table::default()
        }],
        relations: Default::default(),
    };
    let err = generate(&db).expect_err("no key").to_string();
    insta::assert_snapshot!(err, @r#"
        schema `public` has no table to make an API of
          - table `events` skipped: no single column identifies its rows (a one-column primary key, or a NOT NULL unique `id`)
        "#);
}

#[test]
fn names_and_plurals() {
    let f = |c: &str| names::field(c).map(|n| (n.graphql, n.snake));
    assert_eq!(
        f("created_at"),
        Ok(("createdAt".into(), "created_at".into()))
    );
    assert_eq!(f("Full Name"), Ok(("fullName".into(), "full_name".into())));
    assert_eq!(f("userID"), Ok(("userId".into(), "user_id".into())));
    assert!(f("2fa").is_err());
    assert!(f("café").is_err());
    assert!(names::type_name("page_info").is_err());
    let p: Vec<String> = ["task", "category", "day", "status", "box", "orders"]
        .map(names::plural)
        .into();
    assert_eq!(
        p,
        ["tasks", "categories", "days", "statuses", "boxes", "orders"]
    );
}

#[test]
fn the_config_keeps_passwords_out() {
    insta::assert_snapshot!(config_text("postgres://app@db:5432/shop?sslmode=disable", "schema.graphql", "migrations"), @r#"
        # Written by `fraiseql schema init`: one database, no tenants, no tokens (anyone who reaches
        # the port reads every row). docs/configuration.md describes every key; add [auth] and
        # [multi_tenancy] before serving anyone else.
        [server]
        host = "${HOST:-127.0.0.1}"
        port = "${PORT:-8080}"
        profile = "${FRAISEQL_PROFILE:-development}"

        [schema]
        path = "schema.graphql"

        [databases.tenant]
        type = "postgresql"
        url = "${DATABASE_URL:-postgres://app@db:5432/shop?sslmode=disable}"
        migrations = "migrations"
        "#);
    let secret = config_text(
        "postgres://app:hunter2@db/shop",
        "schema.graphql",
        "migrations",
    );
    assert!(
        !secret.contains("hunter2") && secret.contains("url = \"${DATABASE_URL}\""),
        "{secret}"
    );
    let kv = config_text("host=db password=hunter2", "schema.graphql", "migrations");
    assert!(!kv.contains("hunter2"), "{kv}");
}
