use super::*;

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn manifest(strategy: &str) -> Manifest {
    let tables = if strategy == "row_level" {
        vec![ArchivedTable {
            schema: "public".into(),
            name: "tb_organization".into(),
            rows: 2,
            columns: names(&["pk_org", "tenant_id", "name"]),
            tenant_type: Some("uuid".into()),
            checksum: Some("2:12345".into()),
        }]
    } else {
        vec![ArchivedTable {
            schema: "public".into(),
            name: "tb_organization".into(),
            rows: 2,
            columns: vec![],
            tenant_type: None,
            checksum: None,
        }]
    };
    let sections = if strategy == "row_level" {
        vec![
            Section {
                name: rows_section("public", "tb_organization"),
                bytes: 10,
                sha256: "aa".into(),
            },
            Section {
                name: OUTBOX_SECTION.into(),
                bytes: 0,
                sha256: "bb".into(),
            },
        ]
    } else {
        vec![Section {
            name: DUMP_SECTION.into(),
            bytes: 5,
            sha256: "cc".into(),
        }]
    };
    Manifest {
        format: "fraiseql-tenant-archive".into(),
        version: FORMAT_VERSION,
        created_at: "2026-01-01T00:00:00Z".into(),
        strategy: strategy.into(),
        tenant: ArchivedTenant {
            key: "acme".into(),
            id: "5f0c3a52-8b1e-4c4e-9d1a-0b8e6f2a9c11".into(),
            tier: "pro".into(),
            status: "active".into(),
            database: "tenant_acme".into(),
            schema: "public".into(),
            role: "tenant_acme".into(),
            login_role: "tenant_acme".into(),
        },
        source: ArchivedSource {
            server: "127.0.0.1:5432".into(),
            database: "tenant_acme".into(),
            version: "15.2".into(),
        },
        tables,
        outbox_unsent: 0,
        sections,
        tool: None,
    }
}

async fn decode(bytes: Vec<u8>) -> Result<Header, String> {
    let mut r = tokio::io::BufReader::new(std::io::Cursor::new(bytes));
    decode_header(&mut r).await
}

#[tokio::test]
async fn the_header_round_trips_and_locates_sections() {
    let key = ArchiveKey::new(&[1u8; 32]);
    for strategy in ["row_level", "database_per_tenant"] {
        let m = manifest(strategy);
        for k in [None, Some(&key)] {
            let mut bytes = encode_header(&m, k).expect("encode");
            let header_len = bytes.len() as u64;
            bytes.extend_from_slice(b"payload bytes");
            let h = decode(bytes).await.expect("decode");
            assert_eq!(h.manifest, m);
            assert_eq!(h.data_at, header_len);
            let want = if k.is_some() {
                Trust::Verified
            } else {
                h.seal.check(Some(&key))
            };
            assert_eq!(h.seal.check(Some(&key)), want);
        }
    }
    let m = manifest("row_level");
    assert_eq!(m.section(OUTBOX_SECTION), Some((10, 0)));
    assert_eq!(
        m.section(&rows_section("public", "tb_organization")),
        Some((0, 10))
    );
    assert_eq!(m.section("nope"), None);
    let text = String::from_utf8(encode_header(&m, Some(&key)).expect("encode")).expect("utf8");
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text
        .lines()
        .nth(2)
        .is_some_and(|l| l.starts_with("hmac-sha256 ")));
    assert!(!text.contains("password"), "no password field");
}

#[tokio::test]
async fn a_seal_tells_signed_unsigned_altered_and_another_key_apart() {
    let key = ArchiveKey::new(&[1u8; 32]);
    let other = ArchiveKey::new(&[2u8; 32]);
    let m = manifest("database_per_tenant");
    let signed = encode_header(&m, Some(&key)).expect("encode");
    let h = decode(signed.clone()).await.expect("decode");
    assert_eq!(h.seal.check(Some(&key)), Trust::Verified);
    let Trust::Unverified(why) = h.seal.check(Some(&other)) else {
        panic!("another key verified")
    };
    assert!(
        why.contains("made with another key") && why.contains(key.id()),
        "{why}"
    );
    let Trust::Unverified(why) = h.seal.check(None) else {
        panic!("verified without a key")
    };
    assert!(why.contains("no [transfer] archive_key"), "{why}");

    // The tier changed by hand, the seal kept: altered.
    let text = String::from_utf8(signed).expect("utf8");
    let forged = text.replace("\"tier\":\"pro\"", "\"tier\":\"enterprise\"");
    assert_ne!(forged, text);
    let h = decode(forged.into_bytes()).await.expect("decode");
    let Trust::Unverified(why) = h.seal.check(Some(&key)) else {
        panic!("a forged manifest verified")
    };
    assert!(why.contains("altered"), "{why}");

    let h = decode(encode_header(&m, None).expect("encode"))
        .await
        .expect("decode");
    assert_eq!(h.seal, Seal::Unsigned);
    assert!(
        matches!(h.seal.check(Some(&key)), Trust::Unverified(w) if w.contains("--insecure-unsigned"))
    );

    // A version 1 archive: two lines, no seal.
    let mut v1 = m.clone();
    v1.version = 1;
    let mut old = format!("{MAGIC} 1\n").into_bytes();
    old.extend_from_slice(serde_json::to_string(&v1).expect("json").as_bytes());
    old.push(b'\n');
    let len = old.len() as u64;
    let h = decode(old).await.expect("decode v1");
    assert_eq!((h.seal, h.data_at), (Seal::Legacy, len));

    let mut bad = encode_header(&m, None).expect("encode");
    let n = bad.len();
    bad.truncate(n - "unsigned\n".len());
    bad.extend_from_slice(b"hmac-sha256 abc\n");
    assert!(decode(bad).await.expect_err("seal").contains("seal line"));
}

#[tokio::test]
async fn bad_archives_are_named() {
    async fn read(b: Vec<u8>) -> String {
        decode(b).await.expect_err("refused")
    }
    assert!(read(b"PGDMP\x01\x0e".to_vec())
        .await
        .contains("not a fraiseql tenant archive"));
    assert!(read(format!("{MAGIC} 9\n{{}}\n").into_bytes())
        .await
        .contains("version 9"));
    let mut truncated = format!("{MAGIC} 1\n").into_bytes();
    truncated.extend_from_slice(br#"{"format":"fraiseql-tenant-archive""#);
    assert!(read(truncated).await.contains("truncated"));

    let mut m = manifest("row_level");
    m.sections.pop();
    assert_eq!(m.validate(), Err("no outbox section".into()));
    let mut m = manifest("row_level");
    m.tenant.key = "Bad Key".into();
    assert!(m.validate().expect_err("key").contains("tenant key"));
    let mut m = manifest("schema_per_tenant");
    m.sections[0].name = "other".into();
    assert_eq!(m.validate(), Err("no dump section".into()));
    let mut m = manifest("database_per_tenant");
    m.version = FORMAT_VERSION + 1;
    assert!(m
        .validate()
        .expect_err("version")
        .contains("newer fraiseql"));
    let mut m = manifest("database_per_tenant");
    m.tenant.id = "x".into();
    assert!(m.validate().is_err());
    let mut m = manifest("database_per_tenant");
    m.strategy = "rows".into();
    assert_eq!(m.validate(), Err("unknown strategy `rows`".into()));
}
