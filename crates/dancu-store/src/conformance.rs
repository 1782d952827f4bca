//! The conformance suite of the storage port: every adapter must pass it unchanged.
//! Adapters instantiate it with [`conformance_tests!`](crate::conformance_tests).

use std::sync::Arc;

use crate::registry::{Registry, RegistryError};
use crate::{ChangeKind, ChangeMeta, PersonRef, SearchQuery, Store, StoreError};
use dancu_core::{LegacyIdNumber, PartialDate, Person, PersonInput, PersonStatus, PersonalId, Sex};

/// A new folder under the temp dir (`dancu-TAG-<uuid>`, not created) that is removed, with
/// everything in it, when this process exits: the test harness ends through the C library's
/// `exit`, which runs the handlers registered with `atexit`. Test runs leave no stores behind.
pub fn scratch_dir(tag: &str) -> std::path::PathBuf {
    static DIRS: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());
    static REGISTER: std::sync::Once = std::sync::Once::new();
    extern "C" fn remove_all() {
        // Never waits at exit: a thread that still holds the list leaves its folders.
        if let Ok(dirs) = DIRS.try_lock() {
            for d in dirs.iter() {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
    unsafe extern "C" {
        fn atexit(handler: extern "C" fn()) -> std::ffi::c_int;
    }
    // SAFETY: registers a plain function without arguments, as atexit(3) expects.
    REGISTER.call_once(|| unsafe {
        atexit(remove_all);
    });
    let dir = std::env::temp_dir().join(format!("dancu-{tag}-{}", uuid::Uuid::new_v4()));
    DIRS.lock().unwrap_or_else(|p| p.into_inner()).push(dir.clone());
    dir
}

/// Generates one `#[tokio::test]` per conformance case. `$make` is an async fn returning
/// `Option<Arc<dyn Store>>` (a fresh, migrated, empty store; `None` skips, outside CI only).
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@each $make;
            migrations_are_idempotent, create_then_read, activation_assigns_a_lawful_id,
            stale_versions_conflict, history_keeps_every_version, issued_ids_are_never_reused,
            concurrent_activations_never_collide, one_person_is_activated_once, search_filters_and_pages,
            lookup_by_legacy_id, failed_batches_leave_nothing, invalid_changes_leave_nothing,
            bulk_load_assigns_distinct_ids, changes_and_their_audit_entries_land_together,
            officers_are_stored_once, officers_update_and_list, sessions_expire_revoke_and_touch,
            search_is_scoped_to_an_area, change_requests_apply_only_when_approved,
            audit_queries_are_exact_at_any_index_lag, audit_time_queries_are_exact_across_blocks,
            imports_resume_by_line_and_reserve_ids,
            review_pairs_merge_or_keep_both,
            residence_registration_moving_and_history, residence_one_permanent_at_a_time,
            residence_joining_needs_the_heads_consent, residence_head_must_be_a_member,
            residence_separation_rules, residence_temporary_rules_and_expiry, residence_death_ends_residence,
            residence_concurrent_moves_one_wins, residence_workflow_overdue_and_stays,
            addresses_migrate_whole_and_review, address_review_of_a_changed_address_is_refused,
            partners_are_stored_once_and_updated,
            webhook_queue_is_ordered_deduplicated_and_marked_once,
            client_assertions_are_used_once, consents_expire_and_revoke, change_feed_gives_each_change_once,
            change_feed_marks_registered_births,
            citizen_codes_are_limited_and_single_use, oidc_codes_redeem_once,
            cards_intake_rules_and_workflow, cards_production_stock_and_states,
            population_counts_by_commune_year_and_sex);
    };
    (@each $make:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some(store) = $make().await {
                    $crate::conformance::$case(store).await;
                }
            }
        )*
    };
}

fn meta(reason: &str) -> ChangeMeta {
    ChangeMeta::new("officer-test", reason, Some("Luật Căn cước 2023".into()))
}

/// A valid record; `i` varies the given name and birth year.
pub fn sample(i: u32) -> PersonInput {
    let given = ["An", "Bình", "Hòa", "Hoà", "Dũng", "Thủy"][i as usize % 6];
    serde_json::from_value(serde_json::json!({
        "name": {"surname": "Nguyễn", "middle": if i.is_multiple_of(2) { "Văn" } else { "Thị" }, "given": given},
        "birth_date": format!("{}-0{}-1{}", 1950 + (i % 60), 1 + i % 9, i % 10),
        "sex": if i.is_multiple_of(2) { "male" } else { "female" },
        "birth_registration_place": {"province_code": if i.is_multiple_of(3) { "79" } else { "01" }},
        "ethnicity": "01",
        "religion": "00",
        "nationalities": ["VNM"],
        "permanent_residence": {"scheme": "2025", "commune_code": if i.is_multiple_of(3) { "26506" } else { "00004" }, "detail": format!("Số {i}")}
    }))
    .expect("sample record")
}

pub async fn migrations_are_idempotent(store: Arc<dyn Store>) {
    assert_eq!(store.migrate().await.unwrap(), 0, "a second migrate applies nothing");
    store.ping().await.unwrap();
}

pub async fn create_then_read(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    let rec = reg.create(sample(1), &meta("thu thập")).await.unwrap();
    assert_eq!(rec.version, 1);
    assert_eq!(rec.person.status, PersonStatus::Pending);
    assert!(rec.person.personal_id.is_none());
    let back = reg.get(&PersonRef::Key(rec.key)).await.unwrap();
    assert_eq!(back, rec);
    // the raw read path says exactly the same
    let raw = reg.get_raw(&PersonRef::Key(rec.key)).await.unwrap();
    assert_eq!(serde_json::to_value(&raw).unwrap(), serde_json::to_value(&rec).unwrap());
    assert!(store.get_person_raw(&PersonRef::Key(uuid::Uuid::new_v4())).await.unwrap().is_none());
    assert_eq!(back.person.record.name.given, "Bình");
    assert!(matches!(reg.get(&PersonRef::Key(uuid::Uuid::new_v4())).await, Err(RegistryError::NotFound)));
    assert_eq!(store.count_persons().await.unwrap(), 1);
}

pub async fn activation_assigns_a_lawful_id(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    let rec = reg.create(sample(3), &meta("thu thập")).await.unwrap();
    let active = reg.activate(rec.key, Some(1), &meta("cấp số định danh")).await.unwrap();
    let id = active.person.personal_id.expect("an ID");
    assert_eq!(active.person.status, PersonStatus::Active);
    assert_eq!(active.version, 2);
    assert_eq!(id.province_code(), "079");
    assert_eq!(id.sex(), Sex::Female);
    assert_eq!(id.birth_year(), 1953);
    let by_id = reg.get(&PersonRef::PersonalId(id)).await.unwrap();
    assert_eq!(by_id.key, rec.key);
    let raw = reg.get_raw(&PersonRef::PersonalId(id)).await.unwrap();
    assert_eq!(serde_json::to_value(&raw).unwrap(), serde_json::to_value(&by_id).unwrap());
    assert!(
        matches!(reg.activate(rec.key, None, &meta("again")).await, Err(RegistryError::AlreadyActive(x)) if x == id)
    );
}

pub async fn stale_versions_conflict(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    let rec = reg.create(sample(2), &meta("thu thập")).await.unwrap();
    let mut changed = sample(2);
    changed.occupation = Some("Giáo viên".into());
    let v2 = reg.update(rec.key, 1, changed.clone(), None, &meta("cập nhật nghề nghiệp")).await.unwrap();
    assert_eq!(v2.version, 2);
    let err = reg.update(rec.key, 1, changed.clone(), None, &meta("stale")).await.unwrap_err();
    assert!(matches!(err, RegistryError::Conflict { expected: 1, actual: 2 }), "{err:?}");
    // the port itself refuses too
    let err = store.update_person(rec.key, 1, &v2.person, ChangeKind::Update, &meta("stale")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { expected: 1, actual: 2 }), "{err:?}");
    assert_eq!(reg.get(&PersonRef::Key(rec.key)).await.unwrap().version, 2);
}

pub async fn history_keeps_every_version(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    let rec = reg.create(sample(4), &meta("thu thập")).await.unwrap();
    let act = reg.activate(rec.key, None, &meta("cấp số")).await.unwrap();
    let mut died = act.person.record.clone();
    died.marital_status = Some(dancu_core::person::MaritalStatus::Widowed);
    reg.update(rec.key, 2, died, Some((PersonStatus::Dead, Some(PartialDate::Year(2020)))), &meta("khai tử"))
        .await
        .unwrap();
    let h = reg.history(rec.key).await.unwrap();
    assert_eq!(h.iter().map(|v| v.version).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(
        h.iter().map(|v| v.change).collect::<Vec<_>>(),
        vec![ChangeKind::Create, ChangeKind::Activate, ChangeKind::Update]
    );
    assert_eq!(h[2].meta.reason, "khai tử");
    assert_eq!(h[2].meta.actor, "officer-test");
    assert_eq!(h[2].meta.legal_basis.as_deref(), Some("Luật Căn cước 2023"));
    assert_eq!(h[0].person.status, PersonStatus::Pending);
    assert_eq!(h[2].person.status, PersonStatus::Dead);
    assert!(h[0].recorded_at <= h[1].recorded_at && h[1].recorded_at <= h[2].recorded_at);
    assert!(matches!(reg.history(uuid::Uuid::new_v4()).await, Err(RegistryError::NotFound)));
}

pub async fn issued_ids_are_never_reused(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    let a = reg.create(sample(6), &meta("a")).await.unwrap();
    let a = reg.activate(a.key, None, &meta("a")).await.unwrap();
    let id = a.person.personal_id.unwrap();
    // Another person may not take the same number.
    let b = reg.create(sample(6), &meta("b")).await.unwrap();
    let mut taken = b.person.clone();
    taken.personal_id = Some(id);
    taken.status = PersonStatus::Active;
    let err = store.update_person(b.key, 1, &taken, ChangeKind::Activate, &meta("b")).await.unwrap_err();
    assert!(matches!(err, StoreError::IdTaken(x) if x == id), "{err:?}");
    assert_eq!(store.get_person(&PersonRef::Key(b.key)).await.unwrap().unwrap().version, 1);
    // Nor through a bulk load.
    let taken_idx = store.insert_batch(&[taken.clone()], &meta("bulk")).await.unwrap();
    assert_eq!(taken_idx, vec![0]);
    // A number once issued stays reserved even after the holder's number is re-established.
    let mut re = a.person.clone();
    re.personal_id = Some(PersonalId::from_parts("079", Sex::Male, 1956, (id.serial() + 1) % 1_000_000).unwrap());
    store.update_person(a.key, a.version, &re, ChangeKind::Update, &meta("re-establish")).await.unwrap();
    let err = store.update_person(b.key, 1, &taken, ChangeKind::Activate, &meta("b")).await.unwrap_err();
    assert!(matches!(err, StoreError::IdTaken(_)), "{err:?}");
}

pub async fn concurrent_activations_never_collide(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    let mut keys = Vec::new();
    for i in 0..60 {
        keys.push(reg.create(sample(i), &meta("thu thập")).await.unwrap().key);
    }
    let tasks: Vec<_> = keys
        .iter()
        .map(|&k| {
            let reg = reg.clone();
            tokio::spawn(async move { reg.activate(k, None, &meta("cấp số")).await })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let rec = t.await.unwrap().unwrap();
        assert!(ids.insert(rec.person.personal_id.unwrap()));
    }
    assert_eq!(ids.len(), 60);
    // Random parts are not issued in order: consecutive activations are not consecutive serials.
    let serials: Vec<u32> = ids.iter().map(|i| i.serial()).collect();
    let sorted_adjacent = serials.windows(2).filter(|w| w[1] == w[0] + 1).count();
    assert!(sorted_adjacent < 5, "serials look sequential: {serials:?}");
}

pub async fn one_person_is_activated_once(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    let key = reg.create(sample(7), &meta("thu thập")).await.unwrap().key;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let reg = reg.clone();
            tokio::spawn(async move { reg.activate(key, None, &meta("cấp số")).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(RegistryError::AlreadyActive(_)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 1);
    let h = reg.history(key).await.unwrap();
    assert_eq!(h.len(), 2, "exactly one activation recorded");
}

pub async fn search_filters_and_pages(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    for i in 0..30 {
        reg.create(sample(i), &meta("thu thập")).await.unwrap();
    }
    let q =
        |name: &str| SearchQuery { name_prefix: Some(dancu_core::text::fold(name)), limit: 50, ..Default::default() };
    // accent-insensitive, both tone placements
    let hoa = reg.search(&q("nguyen van hoa")).await.unwrap();
    let hoa2 = reg.search(&q("Nguyễn Văn Hòa")).await.unwrap();
    assert_eq!(hoa.items.len(), 5, "i = 2, 8, 14, 20, 26 and 3, 9.. are Thị");
    assert_eq!(hoa.items, hoa2.items);
    assert!(hoa.items.iter().all(|r| r.person.record.name.given == "Hòa"));
    // stored as "Hoà" (the other tone placement), found by either spelling
    let thi_hoa = reg.search(&q("Nguyễn Thị Hòa")).await.unwrap();
    assert_eq!(thi_hoa.items.len(), 5);
    assert!(thi_hoa.items.iter().all(|r| r.person.record.name.given == "Hoà"));
    // prefix
    assert_eq!(reg.search(&q("nguyen")).await.unwrap().items.len(), 30);
    assert_eq!(reg.search(&q("nguyen thi")).await.unwrap().items.len(), 15);
    // birth year
    let mut by_year = q("nguyen");
    by_year.birth_year = Some(1953);
    let r = reg.search(&by_year).await.unwrap();
    assert_eq!(r.items.len(), 1);
    assert_eq!(r.items[0].person.record.birth_date.year(), 1953);
    // commune and province
    let mut in_commune = q("nguyen");
    in_commune.commune_key = Some("2025:26506".into());
    assert_eq!(reg.search(&in_commune).await.unwrap().items.len(), 10);
    let mut in_province = q("");
    in_province.province_2025 = Some("01".into());
    assert_eq!(reg.search(&in_province).await.unwrap().items.len(), 20);
    // paging: no item twice, none lost
    let mut seen = std::collections::HashSet::new();
    let mut page = SearchQuery { limit: 7, ..Default::default() };
    loop {
        let p = reg.search(&page).await.unwrap();
        for r in &p.items {
            assert!(seen.insert(r.key));
        }
        if !p.has_more {
            break;
        }
        page.offset += 7;
    }
    assert_eq!(seen.len(), 30);
    assert!(reg.search(&q("tran")).await.unwrap().items.is_empty());
}

pub async fn lookup_by_legacy_id(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    let mut p = sample(8);
    p.legacy_id = Some(LegacyIdNumber::parse("012345678").unwrap());
    let rec = reg.create(p, &meta("thu thập")).await.unwrap();
    let found = reg.get(&PersonRef::LegacyId(LegacyIdNumber::parse("012345678").unwrap())).await.unwrap();
    assert_eq!(found.key, rec.key);
    assert!(
        store.get_person(&PersonRef::LegacyId(LegacyIdNumber::parse("012345679").unwrap())).await.unwrap().is_none()
    );
}

pub async fn failed_batches_leave_nothing(store: Arc<dyn Store>) {
    let mut a = Person::new_pending(sample(9));
    a.personal_id = Some(PersonalId::from_parts("001", Sex::Female, 1959, 1).unwrap());
    a.status = PersonStatus::Active;
    let mut b = Person::new_pending(sample(10));
    b.status = PersonStatus::Active; // active without a personal ID: the batch must fail as a whole
    let before = store.count_persons().await.unwrap();
    assert!(store.insert_batch(&[a.clone(), b], &meta("bulk")).await.is_err());
    assert_eq!(store.count_persons().await.unwrap(), before);
    assert!(store.get_person(&PersonRef::PersonalId(a.personal_id.unwrap())).await.unwrap().is_none());
    // and the number it would have used is still free
    assert_eq!(store.insert_batch(&[a.clone()], &meta("bulk")).await.unwrap(), Vec::<usize>::new());
}

pub async fn invalid_changes_leave_nothing(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    let rec = reg.create(sample(11), &meta("thu thập")).await.unwrap();
    let mut bad = sample(11);
    bad.ethnicity = "99".into();
    assert!(matches!(reg.update(rec.key, 1, bad.clone(), None, &meta("x")).await, Err(RegistryError::Invalid(_))));
    assert!(matches!(reg.create(bad, &meta("x")).await, Err(RegistryError::Invalid(_))));
    let no_reason = ChangeMeta::new("o", " ", None);
    assert!(matches!(reg.update(rec.key, 1, sample(11), None, &no_reason).await, Err(RegistryError::Invalid(_))));
    // an activated person's sex cannot be changed by an ordinary update
    let act = reg.activate(rec.key, None, &meta("cấp số")).await.unwrap();
    let mut flipped = act.person.record.clone();
    flipped.sex = Sex::Male;
    let err = reg.update(rec.key, 2, flipped, None, &meta("x")).await.unwrap_err();
    assert!(matches!(&err, RegistryError::Invalid(e) if e.0[0].field == "sex"), "{err:?}");
    assert_eq!(store.count_persons().await.unwrap(), 1);
    assert_eq!(reg.history(rec.key).await.unwrap().len(), 2);
}

pub async fn bulk_load_assigns_distinct_ids(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    assert_eq!(reg.load_pending((500..520).map(sample).collect(), &meta("thu thập")).await.unwrap(), 20);
    let mut bad: Vec<_> = (0..3).map(sample).collect();
    bad[2].religion = "99".into();
    let err = reg.load_pending(bad, &meta("thu thập")).await.unwrap_err();
    assert!(matches!(&err, RegistryError::Invalid(e) if e.0[0].field == "[2].religion"), "{err:?}");
    let n = reg.load_active((0..500).map(sample).collect(), &meta("nạp dữ liệu")).await.unwrap();
    assert_eq!(n, 500);
    assert_eq!(store.count_persons().await.unwrap(), 520);
    let ids = store.sample_personal_ids(1000).await.unwrap();
    assert_eq!(ids.len(), 500);
    assert_eq!(ids.iter().collect::<std::collections::HashSet<_>>().len(), 500);
    for id in ids.iter().take(50) {
        let rec = store.get_person(&PersonRef::PersonalId(*id)).await.unwrap().unwrap();
        id.check_matches(rec.person.record.sex, rec.person.record.birth_date.year()).unwrap();
        assert_eq!(rec.person.status, PersonStatus::Active);
    }
}

pub async fn changes_and_their_audit_entries_land_together(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    let audited = |action: &str, target: Option<String>| {
        let mut m = meta("thu thập");
        m.audit = Some(dancu_core::audit::AuditEntry { action: action.into(), target, ..audit_entry(1) });
        m
    };
    let rec = reg.create(sample(1), &audited("person.create", None)).await.unwrap();
    let log = store.audit_read(0, 10).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].entry.target.as_deref(), Some(rec.key.to_string().as_str()), "a create names the new record");
    let key = Some(rec.key.to_string());
    let rec = reg.activate(rec.key, None, &audited("person.activate", key.clone())).await.unwrap();
    assert_eq!(store.audit_read(0, 10).await.unwrap().len(), 2);
    // a refused change writes neither the change nor its entry
    let stale = reg.update(rec.key, 1, sample(1), None, &audited("person.update", key.clone())).await;
    assert!(matches!(stale, Err(RegistryError::Conflict { .. })));
    let err = store.update_person(rec.key, 1, &rec.person, ChangeKind::Update, &audited("person.update", key)).await;
    assert!(matches!(err, Err(StoreError::Conflict { .. })));
    let log = store.audit_read(0, 10).await.unwrap();
    assert_eq!(
        log.iter().map(|e| e.entry.action.as_str()).collect::<Vec<_>>(),
        vec!["person.create", "person.activate"]
    );
    assert_eq!(reg.history(rec.key).await.unwrap().len(), 2);
}

pub async fn officers_are_stored_once(store: Arc<dyn Store>) {
    use dancu_core::auth::{Officer, Role, Unit};
    let officer = Officer {
        username: "ca.hoankiem.01".into(),
        display_name: "Trần Văn Bình".into(),
        unit: Unit::parse("commune:00070").unwrap(),
        roles: vec![Role::Collector, Role::Verifier],
        permissions: vec![],
        password_hash: dancu_core::auth::hash_password("mật khẩu thật dài", &[3u8; 16]),
        totp_secret: None,
        totp_last_step: None,
        totp_pending: None,
        failed_logins: 0,
        locked_until: None,
        active: true,
    };
    store.officer_insert(&officer).await.unwrap();
    let back = store.officer_get("ca.hoankiem.01").await.unwrap().unwrap();
    assert_eq!(back, officer);
    assert!(dancu_core::auth::verify_password("mật khẩu thật dài", &back.password_hash));
    let again = Officer { display_name: "someone else".into(), ..officer };
    assert!(matches!(store.officer_insert(&again).await, Err(StoreError::Duplicate(_))));
    assert_eq!(store.officer_get("ca.hoankiem.01").await.unwrap().unwrap().display_name, "Trần Văn Bình");
    assert!(store.officer_get("nobody").await.unwrap().is_none());
}

fn officer(username: &str, unit: &str, roles: Vec<dancu_core::auth::Role>) -> dancu_core::auth::Officer {
    dancu_core::auth::Officer {
        username: username.into(),
        display_name: format!("Cán bộ {username}"),
        unit: dancu_core::auth::Unit::parse(unit).unwrap(),
        roles,
        permissions: vec![],
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        totp_secret: None,
        totp_last_step: None,
        totp_pending: None,
        failed_logins: 0,
        locked_until: None,
        active: true,
    }
}

pub async fn officers_update_and_list(store: Arc<dyn Store>) {
    use dancu_core::access::Permission;
    use dancu_core::auth::Role;
    let mut a = officer("b.officer", "province:01", vec![Role::Approver]);
    store.officer_insert(&a).await.unwrap();
    store.officer_insert(&officer("a.officer", "ministry", vec![Role::Auditor])).await.unwrap();
    a.permissions = vec![Permission::SensitiveData];
    a.totp_pending = Some("JBSWY3DPEHPK3PXP".into());
    a.totp_last_step = Some(12345);
    a.failed_logins = 3;
    a.locked_until = Some("2026-01-01T00:00:00Z".into());
    a.roles.push(Role::Verifier);
    store.officer_update(&a).await.unwrap();
    assert_eq!(store.officer_get("b.officer").await.unwrap().unwrap(), a, "every field is kept");
    let list = store.officer_list().await.unwrap();
    assert_eq!(list.iter().map(|o| o.username.as_str()).collect::<Vec<_>>(), ["a.officer", "b.officer"]);
    let ghost = officer("ghost", "ministry", vec![]);
    assert!(matches!(store.officer_update(&ghost).await, Err(StoreError::NotFound)));
}

pub async fn sessions_expire_revoke_and_touch(store: Arc<dyn Store>) {
    use crate::Session;
    use dancu_core::auth::{Role, SessionKind, SessionStage};
    store.officer_insert(&officer("s.officer", "ministry", vec![Role::Collector])).await.unwrap();
    let t0 = crate::now();
    let mk = |hash: &str| Session {
        token_hash: hash.into(),
        username: "s.officer".into(),
        kind: SessionKind::Bearer,
        stage: SessionStage::MfaRequired,
        created_at: t0,
        last_seen_at: t0,
        expires_at: t0 + time::Duration::hours(8),
        revoked: false,
    };
    store.session_insert(&mk("h1")).await.unwrap();
    store.session_insert(&mk("h2")).await.unwrap();
    assert_eq!(store.session_get("h1").await.unwrap().unwrap(), mk("h1"));
    assert!(store.session_get("nope").await.unwrap().is_none());
    let later = t0 + time::Duration::minutes(5);
    store.session_touch("h1", later).await.unwrap();
    store.session_touch("h1", t0).await.unwrap(); // never moves back
    assert_eq!(store.session_get("h1").await.unwrap().unwrap().last_seen_at, later);
    assert!(store.session_revoke("h1").await.unwrap());
    assert!(!store.session_revoke("h1").await.unwrap(), "revoking twice reports nothing new");
    assert!(store.session_get("h1").await.unwrap().unwrap().revoked);
    assert_eq!(store.session_revoke_all("s.officer").await.unwrap(), 1);
    assert!(store.session_get("h2").await.unwrap().unwrap().revoked);
}

pub async fn search_is_scoped_to_an_area(store: Arc<dyn Store>) {
    use dancu_core::access::residence_areas;
    let reg = Registry::new(store.clone());
    let mut keys = Vec::new();
    for i in 0..6 {
        keys.push(reg.create(sample(i), &meta("thu thập")).await.unwrap().key);
    }
    // sample(i): multiples of 3 live in commune 26506, the others in 00004
    let hcm = residence_areas(sample(0).permanent_residence.as_ref());
    let hanoi = residence_areas(sample(1).permanent_residence.as_ref());
    let page = |area: Option<String>| SearchQuery { area, limit: 50, ..Default::default() };
    let all = reg.search(&page(None)).await.unwrap().items;
    assert_eq!(all.len(), 6);
    let in_commune = reg.search(&page(Some("c:2025:00004".into()))).await.unwrap().items;
    assert_eq!(in_commune.len(), 4);
    assert!(in_commune.iter().all(|r| r.person.areas() == hanoi));
    let province = hcm.iter().find(|a| a.starts_with("p:")).unwrap().clone();
    let in_province = reg.search(&page(Some(province.clone()))).await.unwrap().items;
    assert_eq!(in_province.len(), 2);
    // a temporary residence elsewhere brings a person into that area too; moving out takes them out
    let rec = reg.get(&PersonRef::Key(keys[1])).await.unwrap();
    let mut input = rec.person.record.clone();
    input.temporary_residence = sample(0).permanent_residence;
    let rec = reg.update(rec.key, rec.version, input, None, &meta("đăng ký tạm trú")).await.unwrap();
    assert_eq!(reg.search(&page(Some(province.clone()))).await.unwrap().items.len(), 3);
    let mut input = rec.person.record.clone();
    input.temporary_residence = None;
    reg.update(rec.key, rec.version, input, None, &meta("xóa tạm trú")).await.unwrap();
    assert_eq!(reg.search(&page(Some(province))).await.unwrap().items.len(), 2);
    assert!(reg.search(&page(Some("c:2025:99999".into()))).await.unwrap().items.is_empty());
}

pub async fn population_counts_by_commune_year_and_sex(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    assert!(store.population(None).await.unwrap().is_empty());
    let mut keys = Vec::new();
    for i in 0..7 {
        keys.push(reg.create(sample(i), &meta("thu thập")).await.unwrap().key);
    }
    // a dead person is not counted
    let rec = reg.activate(keys[6], None, &meta("cấp số")).await.unwrap();
    let died = Some((PersonStatus::Dead, Some(PartialDate::Year(2020))));
    reg.update(rec.key, rec.version, rec.person.record.clone(), died, &meta("khai tử")).await.unwrap();
    let total = |cells: &[crate::PopulationCell]| cells.iter().map(|c| c.count).sum::<u64>();
    let all = store.population(None).await.unwrap();
    assert_eq!(total(&all), 6);
    // sample(i): born 1950 + i, male when i is even, commune 26506 when i is a multiple of 3
    let c = all.iter().find(|c| c.birth_year == 1954).unwrap();
    assert_eq!((c.commune_key.as_deref(), c.sex.as_str(), c.count), (Some("2025:00004"), "male", 1));
    assert_eq!(c.province_2025.as_deref(), Some("01"));
    let c = all.iter().find(|c| c.birth_year == 1953).unwrap();
    assert_eq!((c.commune_key.as_deref(), c.sex.as_str()), (Some("2025:26506"), "female"));
    let commune = store.population(Some("c:2025:00004")).await.unwrap();
    assert_eq!(total(&commune), 4);
    assert!(commune.iter().all(|c| c.commune_key.as_deref() == Some("2025:00004")));
    assert!(store.population(Some("c:2025:99999")).await.unwrap().is_empty());
    // the sex column follows every write path: a batch, an import chunk, an update
    let cell = |cells: &[crate::PopulationCell], year: i32| {
        cells.iter().filter(|c| c.birth_year == year).map(|c| (c.sex.clone(), c.count)).collect::<Vec<_>>()
    };
    store.insert_batch(&[Person::new_pending(sample(11))], &meta("lô")).await.unwrap();
    store.import_begin(&batch("batch-pop"), &audit_entry(1)).await.unwrap();
    store.import_chunk("batch-pop", &[imported(2, 12, None)], &meta("nhập")).await.unwrap();
    let all = store.population(None).await.unwrap();
    assert_eq!(cell(&all, 1961), vec![("female".to_string(), 1)]);
    assert_eq!(cell(&all, 1962), vec![("male".to_string(), 1)]);
    let rec = reg.get(&PersonRef::Key(keys[0])).await.unwrap();
    let mut record = rec.person.record.clone();
    record.sex = Sex::Female;
    reg.update(rec.key, rec.version, record, None, &meta("sửa")).await.unwrap();
    assert_eq!(cell(&store.population(None).await.unwrap(), 1950), vec![("female".to_string(), 1)]);
}

pub async fn change_requests_apply_only_when_approved(store: Arc<dyn Store>) {
    use crate::{ApprovedChange, ChangeRequest, Decision, ProposedChange, RequestQuery, RequestState};
    use dancu_core::access::Guarded;
    let reg = Registry::new(store.clone());
    let rec = reg.create(sample(1), &meta("thu thập")).await.unwrap();
    let rec = reg.activate(rec.key, None, &meta("cấp số")).await.unwrap();
    let mut renamed = rec.person.record.clone();
    renamed.name.given = "Minh".into();
    let at = crate::now();
    let request = |id| ChangeRequest {
        id,
        person_key: rec.key,
        base_version: rec.version,
        guarded: vec![Guarded::Name],
        proposed: ProposedChange { person: renamed.clone(), status: None, status_date: None, reestablish_id: false },
        requested_by: "maker".into(),
        requested_unit: "commune:00004".into(),
        requested_at: at,
        reason: "cải chính hộ tịch".into(),
        legal_basis: Some("Trích lục cải chính hộ tịch".into()),
        state: RequestState::Pending,
        decided_by: None,
        decided_at: None,
        decision_note: None,
        result_version: None,
    };
    let (a, b) = (crate::new_key(), crate::new_key());
    store.change_request_insert(&request(a), None).await.unwrap();
    store.change_request_insert(&request(b), None).await.unwrap();
    assert_eq!(store.change_request_get(a).await.unwrap().unwrap(), request(a));
    let pending = RequestQuery { state: Some(RequestState::Pending), limit: 10, ..Default::default() };
    assert_eq!(store.change_requests(&pending).await.unwrap().len(), 2);
    let elsewhere = RequestQuery { area: Some("c:2025:26506".into()), limit: 10, ..Default::default() };
    assert!(store.change_requests(&elsewhere).await.unwrap().is_empty(), "scoped by the person's area");
    // rejection changes nothing of the person
    let no = Decision {
        state: RequestState::Rejected,
        by: "checker".into(),
        note: Some("thiếu giấy tờ".into()),
        audit: None,
    };
    let decided = store.change_request_decide(b, &no, None).await.unwrap();
    assert_eq!((decided.state, decided.decided_by.as_deref()), (RequestState::Rejected, Some("checker")));
    assert_eq!(reg.get(&PersonRef::Key(rec.key)).await.unwrap().version, rec.version);
    // approval applies the change, in the same transaction, recording both officers
    let mut person = rec.person.clone();
    person.record = renamed.clone();
    let mut m = meta("cải chính hộ tịch");
    m.actor = "maker".into();
    m.approved_by = Some("checker".into());
    let change = ApprovedChange { person, kind: ChangeKind::Update, meta: m };
    let yes = Decision { state: RequestState::Approved, by: "checker".into(), note: None, audit: None };
    let decided = store.change_request_decide(a, &yes, Some(&change)).await.unwrap();
    assert_eq!(decided.result_version, Some(rec.version + 1));
    let now = reg.get(&PersonRef::Key(rec.key)).await.unwrap();
    assert_eq!(now.person.record.name.given, "Minh");
    let last = reg.history(rec.key).await.unwrap().pop().unwrap();
    assert_eq!((last.meta.actor.as_str(), last.meta.approved_by.as_deref()), ("maker", Some("checker")));
    // a decided request cannot be decided again
    assert!(matches!(store.change_request_decide(a, &yes, Some(&change)).await, Err(StoreError::State(_))));
    // a request against a version that has moved on conflicts, and stays pending
    let c = crate::new_key();
    store.change_request_insert(&request(c), None).await.unwrap();
    assert!(matches!(store.change_request_decide(c, &yes, Some(&change)).await, Err(StoreError::Conflict { .. })));
    assert_eq!(store.change_request_get(c).await.unwrap().unwrap().state, RequestState::Pending);
}

/// The SQL dialect of a raw connection handed to the tamper tests.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// Direct access to the database, as an intruder or a careless administrator has it.
pub type RawSql = Arc<dyn Fn(String) -> futures_like::BoxFuture<std::result::Result<(), String>> + Send + Sync>;

/// A boxed future without pulling in a futures crate.
pub mod futures_like {
    pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
}

/// Generates one `#[tokio::test]` per audit tampering case. `$make` returns
/// `Option<(Arc<dyn Store>, RawSql, Dialect)>`.
#[macro_export]
macro_rules! audit_tamper_tests {
    ($make:path) => {
        $crate::audit_tamper_tests!(@each $make;
            audit_trail_verifies_when_intact, audit_rows_refuse_update_and_delete, audit_detects_a_modified_entry,
            audit_detects_a_deleted_entry, audit_detects_an_inserted_entry, audit_detects_reordered_entries,
            audit_detects_a_rewritten_chain, audit_detects_truncation, audit_rejects_a_foreign_key,
            audit_queries_by_officer_person_and_time);
    };
    (@each $make:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some((store, raw, dialect)) = $make().await {
                    $crate::conformance::$case(store, raw, dialect).await;
                }
            }
        )*
    };
}

/// Generates the cases that look at the database's own structure. `$make` returns
/// `Option<(Arc<dyn Store>, RawSql, Dialect)>`.
#[macro_export]
macro_rules! raw_schema_tests {
    ($make:path) => {
        $crate::raw_schema_tests!(@each $make; imports_set_search_indexes_aside_and_build_them_again);
    };
    (@each $make:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some((store, raw, _)) = $make().await {
                    $crate::conformance::$case(store, raw).await;
                }
            }
        )*
    };
}

/// Which of the deferrable indexes exist (a drop rolled back fails for a missing one).
async fn person_indexes(raw: &RawSql) -> Vec<&'static str> {
    let mut present = Vec::new();
    for name in crate::DEFERRABLE_PERSON_INDEXES {
        if raw(format!("BEGIN; DROP INDEX {name}; ROLLBACK;")).await.is_ok() {
            present.push(*name);
        }
    }
    present
}

/// A bulk import sets the people's search indexes aside only when that pays, or when told;
/// people are stored and found meanwhile; the indexes come back when the import ends, or at the
/// next opening of the store after an interrupted one.
pub async fn imports_set_search_indexes_aside_and_build_them_again(store: Arc<dyn Store>, raw: RawSql) {
    let all = crate::DEFERRABLE_PERSON_INDEXES.to_vec();
    assert_eq!(person_indexes(&raw).await, all, "a new store has them all");
    assert!(crate::index_deferral_pays(100_000, 0));
    assert!(crate::index_deferral_pays(100_000, 200_000));
    assert!(!crate::index_deferral_pays(99_999, 0), "a small import keeps them");
    assert!(!crate::index_deferral_pays(100_000, 200_001), "an import small against the store keeps them");
    assert!(!store.defer_person_indexes(10, false).await.unwrap());
    assert_eq!(person_indexes(&raw).await, all);

    assert!(store.defer_person_indexes(100_000, false).await.unwrap());
    assert!(person_indexes(&raw).await.is_empty(), "set aside");
    // Stored and found meanwhile (by reading the table).
    store.import_begin(&batch("bulk"), &audit_entry(1)).await.unwrap();
    let rows = vec![imported(2, 0, None), imported(3, 1, None)];
    store.import_chunk("bulk", &rows, &meta("nhập")).await.unwrap();
    let facts = rows[0].person.search_facts();
    let q = SearchQuery { name_prefix: Some(facts.name_key.clone()), limit: 10, ..Default::default() };
    let found = || async { store.search(&q).await.unwrap().items.iter().map(|r| r.key).collect::<Vec<_>>() };
    assert_eq!(found().await, vec![rows[0].key]);
    // A resumed import sets them aside again: the definitions kept are not lost.
    assert!(store.defer_person_indexes(0, true).await.unwrap());
    // The import dies here; the next opening of the store builds them.
    assert_eq!(store.migrate().await.unwrap(), 0);
    assert_eq!(person_indexes(&raw).await, all, "built again when the store is opened");
    assert_eq!(store.restore_person_indexes().await.unwrap(), 0, "nothing left to build");
    assert_eq!(found().await, vec![rows[0].key]);

    // An import that ends builds them itself.
    assert!(store.defer_person_indexes(0, true).await.unwrap());
    assert_eq!(store.restore_person_indexes().await.unwrap(), all.len());
    assert_eq!(person_indexes(&raw).await, all);
    assert_eq!(found().await, vec![rows[0].key]);
}

fn batch(id: &str) -> crate::ImportBatch {
    crate::ImportBatch {
        id: id.into(),
        unit: "commune:00004".into(),
        officer: "collector-1".into(),
        file_sha256: "ab".repeat(32),
        started_at: crate::now(),
        finished_at: None,
        summary: None,
    }
}

fn imported(line: u64, i: u32, id: Option<PersonalId>) -> crate::ImportedRow {
    let mut person = Person::new_pending(sample(i));
    if let Some(id) = id {
        person.personal_id = Some(id);
        person.status = PersonStatus::Active;
    }
    crate::ImportedRow { line, key: crate::new_key(), person }
}

pub async fn imports_resume_by_line_and_reserve_ids(store: Arc<dyn Store>) {
    let b = batch("batch-1");
    let begun = store.import_begin(&b, &audit_entry(1)).await.unwrap();
    assert_eq!(begun.id, "batch-1");
    // a re-run gets the stored batch back, and writes no second start entry
    let again = store.import_begin(&batch("batch-1"), &audit_entry(2)).await.unwrap();
    assert_eq!(again.started_at, begun.started_at);
    assert_eq!(store.audit_read(0, 10).await.unwrap().len(), 1);
    let id = PersonalId::from_parts("001", Sex::Male, 1950, 77).unwrap();
    let rows = vec![imported(2, 0, Some(id)), imported(3, 1, None)];
    store.import_chunk("batch-1", &rows, &meta("nhập")).await.unwrap();
    assert_eq!(store.import_rows("batch-1").await.unwrap(), vec![(2, rows[0].key), (3, rows[1].key)]);
    assert_eq!(
        store.ids_issued(&[id, PersonalId::from_parts("001", Sex::Male, 1950, 78).unwrap()]).await.unwrap(),
        vec![id]
    );
    // a chunk of a batch never begun stores nothing at all
    assert!(store.import_chunk("no-such-batch", &[imported(9, 5, None)], &meta("nhập")).await.is_err());
    assert_eq!(store.count_persons().await.unwrap(), 2);
    // a chunk reusing an issued number stores nothing at all
    let clash = vec![imported(4, 2, None), imported(5, 4, Some(id))];
    assert!(
        matches!(store.import_chunk("batch-1", &clash, &meta("nhập")).await, Err(StoreError::IdTaken(x)) if x == id)
    );
    assert_eq!(store.import_rows("batch-1").await.unwrap().len(), 2);
    assert_eq!(store.count_persons().await.unwrap(), 2);
    // candidates by folded name + year and by legacy number
    let p0 = &rows[0].person;
    let facts = p0.search_facts();
    let found = store
        .link_candidates(&[crate::CandidateKey::NameYear(facts.name_key.clone(), facts.birth_year)])
        .await
        .unwrap();
    assert_eq!(found.iter().map(|r| r.key).collect::<Vec<_>>(), vec![rows[0].key]);
    assert!(store.link_candidates(&[crate::CandidateKey::LegacyId("012345678".into())]).await.unwrap().is_empty());
    // a duplicate stored merged is kept, but neither found as a candidate nor by search
    let mut dup = imported(6, 0, None);
    dup.person.merged_into = Some(rows[0].key.to_string());
    store.import_chunk("batch-1", std::slice::from_ref(&dup), &meta("nhập")).await.unwrap();
    let found = store
        .link_candidates(&[crate::CandidateKey::NameYear(facts.name_key.clone(), facts.birth_year)])
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    let q = SearchQuery { name_prefix: Some(facts.name_key.clone()), limit: 10, ..Default::default() };
    assert_eq!(store.search(&q).await.unwrap().items.len(), 1);
    let area = SearchQuery { area: Some("c:2025:26506".into()), ..q };
    assert!(store.search(&area).await.unwrap().items.iter().all(|r| r.key != dup.key));
    assert!(store.get_person(&PersonRef::Key(dup.key)).await.unwrap().is_some());
    store.import_finish("batch-1", "{\"rows\":3}", &audit_entry(3)).await.unwrap();
    assert!(matches!(store.import_finish("batch-1", "{}", &audit_entry(4)).await, Err(StoreError::State(_))));
    let done = store.import_begin(&batch("batch-1"), &audit_entry(5)).await.unwrap();
    assert_eq!(done.summary.as_deref(), Some("{\"rows\":3}"));
    assert_eq!(store.audit_read(0, 10).await.unwrap().len(), 2);
    // batches are read back one by one and listed newest first
    let got = store.import_batch_get("batch-1").await.unwrap().unwrap();
    assert_eq!((got.summary.as_deref(), got.finished_at.is_some()), (Some("{\"rows\":3}"), true));
    assert!(store.import_batch_get("no-such-batch").await.unwrap().is_none());
    let mut later = batch("batch-2");
    later.started_at = got.started_at + time::Duration::seconds(5);
    store.import_begin(&later, &audit_entry(6)).await.unwrap();
    let listed: Vec<String> = store.import_batches(10).await.unwrap().into_iter().map(|b| b.id).collect();
    assert_eq!(listed, ["batch-2", "batch-1"]);
    assert_eq!(store.import_batches(1).await.unwrap().len(), 1);
    assert!(store.import_batch_get("batch-2").await.unwrap().unwrap().finished_at.is_none());
    store.import_begin(&batch("batch-3"), &audit_entry(7)).await.unwrap();
    let stored = store.count_persons().await.unwrap();
    // two rows of one chunk given the same new number: nothing stored either
    let twice = PersonalId::from_parts("001", Sex::Male, 1950, 79).unwrap();
    let clash = vec![imported(4, 2, Some(twice)), imported(5, 4, Some(twice))];
    assert!(
        matches!(store.import_chunk("batch-3", &clash, &meta("nhập")).await, Err(StoreError::IdTaken(x)) if x == twice)
    );
    assert_eq!((store.import_rows("batch-3").await.unwrap().len(), store.count_persons().await.unwrap()), (0, stored));
    assert!(store.ids_issued(&[twice]).await.unwrap().is_empty());
    // a chunk's numbers out of order are all issued; each row is found by its number, in its
    // area, with its first version holding the record as stored
    let ids: Vec<PersonalId> =
        [90u32, 80, 85].iter().map(|&n| PersonalId::from_parts("001", Sex::Male, 1950, n).unwrap()).collect();
    let more: Vec<crate::ImportedRow> =
        ids.iter().enumerate().map(|(i, id)| imported(10 + i as u64, 21 + 3 * i as u32, Some(*id))).collect();
    store.import_chunk("batch-3", &more, &meta("nhập")).await.unwrap();
    let mut issued = store.ids_issued(&ids).await.unwrap();
    issued.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(issued, want);
    for r in &more {
        let got = store.get_person(&PersonRef::PersonalId(r.person.personal_id.unwrap())).await.unwrap().unwrap();
        assert_eq!((got.key, &got.person), (r.key, &r.person));
        let h = store.history(r.key).await.unwrap();
        assert_eq!(h.iter().map(|v| (v.version, v.change)).collect::<Vec<_>>(), vec![(1, ChangeKind::Create)]);
        assert_eq!(h[0].person, r.person);
    }
    let q = SearchQuery { area: Some("c:2025:26506".into()), limit: 50, ..Default::default() };
    let found: Vec<uuid::Uuid> = store.search(&q).await.unwrap().items.iter().map(|r| r.key).collect();
    assert!(more.iter().chain(&rows[..1]).all(|r| found.contains(&r.key)), "{found:?}");
    assert!(!found.contains(&rows[1].key)); // lives in commune 00004
    assert_eq!(
        store.import_rows("batch-3").await.unwrap().iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        vec![10, 11, 12]
    );
}

pub async fn review_pairs_merge_or_keep_both(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    store.import_begin(&batch("b2"), &audit_entry(1)).await.unwrap();
    let id_a = PersonalId::from_parts("001", Sex::Male, 1950, 5).unwrap();
    let id_c = PersonalId::from_parts("001", Sex::Male, 1950, 6).unwrap();
    let rows = vec![imported(2, 0, None), imported(3, 0, Some(id_a)), imported(4, 6, Some(id_c)), imported(5, 6, None)];
    store.import_chunk("b2", &rows, &meta("nhập")).await.unwrap();
    let pair = |a: usize, b: usize| crate::ReviewPair {
        id: crate::new_key(),
        batch_id: "b2".into(),
        a: rows[a].key,
        b: rows[b].key,
        weight: 3.5,
        probability: 0.9,
        explanation: serde_json::json!({"fields": [{"field": "name", "level": "exact", "weight": 4.0}]}),
        state: crate::ReviewState::Pending,
        created_at: crate::now(),
        decided_by: None,
        decided_at: None,
        note: None,
        survivor: None,
    };
    let (p1, p2) = (pair(0, 1), pair(2, 3));
    store.review_pairs_insert(&[p1.clone(), p2.clone()]).await.unwrap();
    store.review_pairs_insert(&[pair(0, 1)]).await.unwrap(); // same two records: kept once
    store.review_pairs_insert(&[pair(0, 1), pair(0, 1)]).await.unwrap(); // also twice in one call
    let q = crate::ReviewQuery { state: Some(crate::ReviewState::Pending), limit: 10, ..Default::default() };
    assert_eq!(store.review_pairs(&q).await.unwrap().len(), 2);
    let elsewhere = crate::ReviewQuery { area: Some("c:2025:00004".into()), ..q.clone() };
    assert!(store.review_pairs(&elsewhere).await.unwrap().is_empty());
    let here = crate::ReviewQuery { area: Some("c:2025:26506".into()), ..q.clone() };
    assert_eq!(store.review_pairs(&here).await.unwrap().len(), 2);
    assert_eq!(store.review_pair_get(p1.id).await.unwrap().unwrap().explanation, p1.explanation);
    // same: the record holding an ID survives, the other is merged into it with its history kept
    let audit = dancu_core::audit::AuditEntry { action: "review_pair.decide".into(), ..audit_entry(9) };
    let before = store.audit_read(0, 100).await.unwrap().len();
    let d = reg.decide_review(p1.id, true, "verifier-1", Some("cùng người".into()), Some(audit)).await.unwrap();
    assert_eq!((d.state, d.survivor), (crate::ReviewState::Same, Some(rows[1].key)));
    assert_eq!(store.audit_read(0, 100).await.unwrap().len(), before + 1);
    let merged = reg.get(&PersonRef::Key(rows[0].key)).await.unwrap();
    assert_eq!(merged.person.merged_into, Some(rows[1].key.to_string()));
    let h = reg.history(rows[0].key).await.unwrap();
    assert_eq!(h.iter().map(|v| v.change).collect::<Vec<_>>(), vec![ChangeKind::Create, ChangeKind::Merge]);
    assert_eq!(reg.survivor_of(rows[0].key).await.unwrap().key, rows[1].key);
    assert!(matches!(
        reg.decide_review(p1.id, false, "v", None, None).await,
        Err(RegistryError::Store(StoreError::State(_)))
    ));
    // different: both kept, nothing changes
    let d = reg.decide_review(p2.id, false, "verifier-1", None, None).await.unwrap();
    assert_eq!((d.state, d.survivor), (crate::ReviewState::Different, None));
    assert!(reg.get(&PersonRef::Key(rows[3].key)).await.unwrap().person.merged_into.is_none());
    assert_eq!(store.review_pairs(&q).await.unwrap().len(), 0);
}

/// A sample entry: officer `officer-{i % 3}`, person `person-{i % 5}`.
pub fn audit_entry(i: i64) -> dancu_core::audit::AuditEntry {
    dancu_core::audit::AuditEntry {
        at: format!("2026-11-29T08:{:02}:{:02}Z", i / 60, i % 60),
        officer: format!("officer-{}", i % 3),
        role: "collector".into(),
        unit: "00004".into(),
        action: if i % 2 == 0 { "person.read" } else { "person.update" }.into(),
        target: Some(format!("person-{}", i % 5)),
        purpose: Some("xác minh".into()),
        request_id: Some(format!("req-{i}")),
        client: Some("127.0.0.1".into()),
        outcome: "200".into(),
    }
}

/// 30 entries in three appends, a checkpoint at 20; returns the auditor and its key.
async fn audited(store: &Arc<dyn Store>) -> (crate::audit::Auditor, Arc<dancu_keys::SoftwareKey>) {
    let key = Arc::new(dancu_keys::SoftwareKey::generate().unwrap());
    let auditor = crate::audit::Auditor::new(store.clone(), key.clone());
    assert_eq!(auditor.append((1..=10).map(audit_entry).collect::<Vec<_>>()).await.unwrap(), 10);
    assert_eq!(auditor.append((11..=20).map(audit_entry).collect::<Vec<_>>()).await.unwrap(), 20);
    assert_eq!(auditor.checkpoint().await.unwrap().unwrap().seq, 20);
    assert!(auditor.checkpoint().await.unwrap().is_none(), "nothing new to sign");
    assert_eq!(auditor.append((21..=30).map(audit_entry).collect::<Vec<_>>()).await.unwrap(), 30);
    (auditor, key)
}

async fn verdict(
    store: &Arc<dyn Store>,
    key: &dancu_keys::SoftwareKey,
) -> std::result::Result<dancu_core::audit::VerifyReport, dancu_core::audit::Tamper> {
    use dancu_keys::Signer;
    crate::audit::verify(store.as_ref(), key.public_key_der()).await.unwrap()
}

fn blob(d: Dialect, b: &[u8]) -> String {
    let hex = dancu_core::audit::to_hex(b);
    match d {
        Dialect::Sqlite => format!("X'{hex}'"),
        Dialect::Postgres => format!("'\\x{hex}'::bytea"),
    }
}

/// What an intruder with database access does first.
async fn drop_guards(raw: &RawSql, d: Dialect) {
    let sql = match d {
        Dialect::Sqlite => {
            "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; \
                            DROP TRIGGER audit_checkpoints_no_update; DROP TRIGGER audit_checkpoints_no_delete"
        }
        Dialect::Postgres => {
            "DROP TRIGGER audit_log_append_only ON audit_log; \
                              DROP TRIGGER audit_checkpoints_append_only ON audit_checkpoints"
        }
    };
    raw(sql.into()).await.unwrap();
}

pub async fn audit_trail_verifies_when_intact(store: Arc<dyn Store>, _: RawSql, _: Dialect) {
    let (_, key) = audited(&store).await;
    let report = verdict(&store, &key).await.unwrap();
    assert_eq!((report.entries, report.last_seq, report.checkpoints, report.unanchored), (30, 30, 1, 10));
}

pub async fn audit_rows_refuse_update_and_delete(store: Arc<dyn Store>, raw: RawSql, _: Dialect) {
    let (_, key) = audited(&store).await;
    assert!(raw("UPDATE audit_log SET purpose = 'x' WHERE seq = 3".into()).await.is_err());
    assert!(raw("DELETE FROM audit_log WHERE seq = 3".into()).await.is_err());
    assert!(raw("DELETE FROM audit_checkpoints".into()).await.is_err());
    assert!(verdict(&store, &key).await.is_ok());
}

pub async fn audit_detects_a_modified_entry(store: Arc<dyn Store>, raw: RawSql, d: Dialect) {
    let (_, key) = audited(&store).await;
    drop_guards(&raw, d).await;
    raw("UPDATE audit_log SET officer = 'someone-else' WHERE seq = 7".into()).await.unwrap();
    assert_eq!(verdict(&store, &key).await, Err(dancu_core::audit::Tamper::Modified { seq: 7 }));
}

pub async fn audit_detects_a_deleted_entry(store: Arc<dyn Store>, raw: RawSql, d: Dialect) {
    let (_, key) = audited(&store).await;
    drop_guards(&raw, d).await;
    raw("DELETE FROM audit_log WHERE seq = 7".into()).await.unwrap();
    assert_eq!(verdict(&store, &key).await, Err(dancu_core::audit::Tamper::Deleted { seq: 8 }));
}

pub async fn audit_detects_an_inserted_entry(store: Arc<dyn Store>, raw: RawSql, d: Dialect) {
    let (_, key) = audited(&store).await;
    drop_guards(&raw, d).await;
    // make room at 7 and insert a well-formed entry that links to entry 6
    raw("UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 7".into()).await.unwrap();
    raw("UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1007".into()).await.unwrap();
    let six = store.audit_read(5, 1).await.unwrap().remove(0);
    let planted = dancu_core::audit::AuditEntry {
        target: None,
        purpose: None,
        request_id: None,
        client: None,
        ..audit_entry(99)
    };
    let forged = dancu_core::audit::chain(six.hash, 7, &[planted]).remove(0);
    let e = &forged.entry;
    raw(format!(
        "INSERT INTO audit_log (seq, at, officer, role, unit, action, target, purpose, request_id, client, outcome, prev_hash, hash)
         VALUES (7, '{}', '{}', '{}', '{}', '{}', NULL, NULL, NULL, NULL, '{}', {}, {})",
        e.at, e.officer, e.role, e.unit, e.action, e.outcome, blob(d, &forged.prev_hash), blob(d, &forged.hash)
    ))
    .await
    .unwrap();
    assert_eq!(verdict(&store, &key).await, Err(dancu_core::audit::Tamper::Inserted { seq: 7 }));
}

pub async fn audit_detects_reordered_entries(store: Arc<dyn Store>, raw: RawSql, d: Dialect) {
    let (_, key) = audited(&store).await;
    drop_guards(&raw, d).await;
    raw("UPDATE audit_log SET seq = -1 WHERE seq = 7".into()).await.unwrap();
    raw("UPDATE audit_log SET seq = 7 WHERE seq = 8".into()).await.unwrap();
    raw("UPDATE audit_log SET seq = 8 WHERE seq = -1".into()).await.unwrap();
    assert_eq!(verdict(&store, &key).await, Err(dancu_core::audit::Tamper::Reordered { seq: 7, links_to: 8 }));
}

pub async fn audit_detects_a_rewritten_chain(store: Arc<dyn Store>, raw: RawSql, d: Dialect) {
    let (_, key) = audited(&store).await;
    drop_guards(&raw, d).await;
    // change entry 5 and recompute every later hash, so the chain alone is consistent again
    let mut rows = store.audit_read(0, 100).await.unwrap();
    rows[4].entry.officer = "someone-else".into();
    let rechained =
        dancu_core::audit::chain(rows[3].hash, 5, &rows[4..].iter().map(|r| r.entry.clone()).collect::<Vec<_>>());
    raw("UPDATE audit_log SET officer = 'someone-else' WHERE seq = 5".into()).await.unwrap();
    for r in &rechained {
        raw(format!(
            "UPDATE audit_log SET prev_hash = {}, hash = {} WHERE seq = {}",
            blob(d, &r.prev_hash),
            blob(d, &r.hash),
            r.seq
        ))
        .await
        .unwrap();
    }
    assert_eq!(verdict(&store, &key).await, Err(dancu_core::audit::Tamper::Rewritten { seq: 20 }));
}

pub async fn audit_detects_truncation(store: Arc<dyn Store>, raw: RawSql, d: Dialect) {
    let (auditor, key) = audited(&store).await;
    assert_eq!(auditor.checkpoint().await.unwrap().unwrap().seq, 30);
    drop_guards(&raw, d).await;
    raw("DELETE FROM audit_log WHERE seq > 25".into()).await.unwrap();
    assert_eq!(verdict(&store, &key).await, Err(dancu_core::audit::Tamper::Truncated { last: 25, seq: 30 }));
}

pub async fn audit_rejects_a_foreign_key(store: Arc<dyn Store>, _: RawSql, _: Dialect) {
    let (_, _) = audited(&store).await;
    let other = dancu_keys::SoftwareKey::generate().unwrap();
    assert_eq!(verdict(&store, &other).await, Err(dancu_core::audit::Tamper::BadCheckpoint { seq: 20 }));
}

pub async fn audit_queries_by_officer_person_and_time(store: Arc<dyn Store>, _: RawSql, _: Dialect) {
    let (_, _) = audited(&store).await;
    let q = |officer: Option<&str>, target: Option<&str>, from: Option<&str>, to: Option<&str>| crate::AuditQuery {
        officer: officer.map(str::to_string),
        target: target.map(str::to_string),
        from: from.map(str::to_string),
        to: to.map(str::to_string),
        offset: 0,
        limit: 100,
    };
    let by_officer = store.audit_query(&q(Some("officer-1"), None, None, None)).await.unwrap();
    assert_eq!(by_officer.len(), 10);
    assert!(by_officer.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");
    let by_person = store.audit_query(&q(None, Some("person-2"), None, None)).await.unwrap();
    assert_eq!(by_person.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![27, 22, 17, 12, 7, 2]);
    let by_time =
        store.audit_query(&q(None, None, Some("2026-11-29T08:00:10Z"), Some("2026-11-29T08:00:20Z"))).await.unwrap();
    assert_eq!(by_time.len(), 10);
    let both = store.audit_query(&q(Some("officer-2"), Some("person-2"), None, None)).await.unwrap();
    assert_eq!(both.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![17, 2]);
}

/// Every audit query, whatever the indexer has done so far, answers exactly what a scan of the
/// chain would: entries past the high-water mark are read from the chain itself.
pub async fn audit_queries_are_exact_at_any_index_lag(store: Arc<dyn Store>) {
    let entries: Vec<_> = (1..=30).map(audit_entry).collect();
    for chunk in entries.chunks(10) {
        store.audit_append(chunk.to_vec()).await.unwrap();
    }
    let q = |officer: Option<&str>, target: Option<&str>, from: Option<&str>, to: Option<&str>, offset, limit| {
        crate::AuditQuery {
            officer: officer.map(str::to_string),
            target: target.map(str::to_string),
            from: from.map(str::to_string),
            to: to.map(str::to_string),
            offset,
            limit,
        }
    };
    let queries = [
        q(None, None, None, None, 0, 100),
        q(None, None, None, None, 5, 7),
        q(Some("officer-1"), None, None, None, 0, 100),
        q(None, Some("person-2"), None, None, 0, 100),
        q(None, Some("person-2"), None, None, 1, 2),
        q(None, Some("nobody"), None, None, 0, 100),
        q(None, None, Some("2026-11-29T08:00:10Z"), Some("2026-11-29T08:00:20Z"), 0, 100),
        q(None, None, Some("2026-11-29T08:00:25Z"), None, 0, 100),
        q(None, None, None, Some("2026-11-29T08:00:03Z"), 0, 100),
        q(Some("officer-2"), Some("person-2"), None, None, 0, 100),
        q(Some("officer-0"), None, Some("2026-11-29T08:00:12Z"), None, 0, 3),
        q(None, Some("person-4"), Some("2026-11-29T08:00:12Z"), Some("2026-11-29T08:00:29Z"), 0, 100),
    ];
    let expected = |q: &crate::AuditQuery| -> Vec<i64> {
        let mut seqs: Vec<i64> = entries
            .iter()
            .zip(1..)
            .filter(|(e, _)| q.officer.as_ref().is_none_or(|o| &e.officer == o))
            .filter(|(e, _)| q.target.is_none() || e.target == q.target)
            .filter(|(e, _)| q.from.as_ref().is_none_or(|f| &e.at >= f))
            .filter(|(e, _)| q.to.as_ref().is_none_or(|t| &e.at < t))
            .map(|(_, seq)| seq)
            .collect();
        seqs.reverse();
        seqs.into_iter().skip(q.offset as usize).take(q.limit as usize).collect()
    };
    assert_eq!(store.audit_indexed_seq().await.unwrap(), 0);
    let mut mark = 0;
    for step in [0u32, 7, 6, 100, 0] {
        mark += store.audit_index(step).await.unwrap() as i64;
        assert_eq!(store.audit_indexed_seq().await.unwrap(), mark);
        for q in &queries {
            let got: Vec<i64> = store.audit_query(q).await.unwrap().iter().map(|e| e.seq).collect();
            assert_eq!(got, expected(q), "{q:?} with entries up to {mark} indexed");
        }
    }
    assert_eq!(mark, 30);
    // an entry appended is found by a query about its person at once, before any indexing
    store.audit_append(vec![audit_entry(31)]).await.unwrap();
    let latest = store.audit_query(&q(None, Some("person-1"), None, None, 0, 1)).await.unwrap();
    assert_eq!(latest.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![31]);
}

/// Time ranges stay exact over many entries whose times are not in the order of the chain (a
/// request recorded after a later one): SQLite indexes time per block of entries.
pub async fn audit_time_queries_are_exact_across_blocks(store: Arc<dyn Store>) {
    // Every seventh entry is 5 minutes older than its neighbours.
    let at = |i: i64| fmt_secs(if i % 7 == 0 { i + 3_000 - 300 } else { i + 3_000 });
    let entries: Vec<_> = (1..=700).map(|i| dancu_core::audit::AuditEntry { at: at(i), ..audit_entry(i) }).collect();
    for chunk in entries.chunks(100) {
        store.audit_append(chunk.to_vec()).await.unwrap();
    }
    let ranges = [(2_750, 2_760), (2_900, 3_000), (3_000, 3_100), (3_250, 3_520), (3_695, 3_705), (0, 2_800)];
    let mut mark = 0;
    for step in [0u32, 300, 1, 255, 1_000] {
        mark += store.audit_index(step).await.unwrap() as i64;
        for (from, to) in ranges {
            let (lo, hi) = (fmt_secs(from), fmt_secs(to));
            let q = crate::AuditQuery {
                officer: None,
                target: None,
                from: Some(lo.clone()),
                to: Some(hi.clone()),
                offset: 0,
                limit: 1_000,
            };
            let got: Vec<i64> = store.audit_query(&q).await.unwrap().iter().map(|e| e.seq).collect();
            let want: Vec<i64> = (1..=700i64).rev().filter(|&i| at(i) >= lo && at(i) < hi).collect();
            assert!(!want.is_empty(), "the range {lo}..{hi} holds entries");
            assert_eq!(got, want, "{lo}..{hi} with entries up to {mark} indexed");
        }
    }
    assert_eq!(mark, 700);
}

fn fmt_secs(s: i64) -> String {
    format!("2026-11-29T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

/// Opens the same database again (a restart).
pub type Reopen = Arc<dyn Fn() -> futures_like::BoxFuture<Arc<dyn Store>> + Send + Sync>;

/// Generates the audit index cases that restart the store. `$make` returns
/// `Option<(Arc<dyn Store>, Reopen)>`.
#[macro_export]
macro_rules! audit_index_tests {
    ($make:path) => {
        $crate::audit_index_tests!(@each $make; audit_index_catches_up_after_restart);
    };
    (@each $make:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some((store, reopen)) = $make().await {
                    $crate::conformance::$case(store, reopen).await;
                }
            }
        )*
    };
}

/// The index's high-water mark is stored with the index: after a restart the indexer goes on
/// from it, over more than one segment of the by-person index, and nothing is missed or doubled.
pub async fn audit_index_catches_up_after_restart(store: Arc<dyn Store>, reopen: Reopen) {
    let n = (1i64 << crate::AUDIT_SEGMENT_BITS) + 5_000;
    let entries: Vec<_> = (1..=n).map(audit_entry).collect();
    for chunk in entries.chunks(10_000) {
        store.audit_append(chunk.to_vec()).await.unwrap();
    }
    assert_eq!(store.audit_index(20_000).await.unwrap(), 20_000);
    drop(store);
    let store = reopen().await;
    assert_eq!(store.audit_indexed_seq().await.unwrap(), 20_000);
    let indexer = crate::audit::AuditIndexer::spawn(store.clone(), std::time::Duration::from_millis(10));
    let started = std::time::Instant::now();
    while store.audit_indexed_seq().await.unwrap() < n {
        assert!(started.elapsed() < std::time::Duration::from_secs(120), "the indexer caught up");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    indexer.abort();
    let q = crate::AuditQuery { target: Some("person-2".into()), limit: 500, ..Default::default() };
    let mut expected: Vec<i64> = (1..=n).filter(|i| i % 5 == 2).rev().collect();
    let mut got = Vec::new();
    loop {
        let page = store.audit_query(&crate::AuditQuery { offset: got.len() as u32, ..q.clone() }).await.unwrap();
        if page.is_empty() {
            break;
        }
        got.extend(page.iter().map(|e| e.seq));
    }
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, std::mem::take(&mut expected));
    let by_officer = crate::AuditQuery { officer: Some("officer-1".into()), limit: 3, ..Default::default() };
    let got: Vec<i64> = store.audit_query(&by_officer).await.unwrap().iter().map(|e| e.seq).collect();
    let top: Vec<i64> = (1..=n).rev().filter(|i| i % 3 == 1).take(3).collect();
    assert_eq!(got, top);
}

// ---------------------------------------------------------------------------------------------
// Residence procedures (run on both adapters through `conformance_tests!`).

mod residence_cases {
    use super::*;
    use crate::Application;
    use crate::residence::Verdict;
    use dancu_core::person::Address;
    use dancu_core::reference::Scheme;
    use dancu_core::residence::Procedure;
    use serde_json::json;

    pub(super) fn addr(code: &str, detail: &str) -> Address {
        Address { scheme: Scheme::Y2025, commune_code: code.into(), detail: Some(detail.into()) }
    }

    /// An active person; `permanent`: the permanent residence in the record (collected data).
    pub(super) async fn person(reg: &Registry, i: u32, permanent: Option<Address>) -> crate::PersonRecord {
        let mut input = sample(i);
        input.permanent_residence = permanent;
        if input.permanent_residence.is_none() {
            input.current_residence = Some(addr("00004", "Tạm ở 1"));
        }
        let rec = reg.create(input, &meta("thu thập")).await.unwrap();
        reg.activate(rec.key, None, &meta("cấp số")).await.unwrap()
    }

    pub(super) fn pid(r: &crate::PersonRecord) -> String {
        r.person.personal_id.unwrap().to_string()
    }

    pub(super) fn procedure(v: serde_json::Value) -> Procedure {
        serde_json::from_value(v).expect("procedure")
    }

    pub(super) fn code(e: RegistryError) -> (String, &'static str) {
        match e {
            RegistryError::Invalid(v) => (v.0[0].field.clone(), v.0[0].code),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    /// Submits, receives and approves.
    pub(super) async fn through(reg: &Registry, p: Procedure) -> Application {
        let app = reg.submit(p, "officer-test", |_| true, None).await.unwrap();
        reg.receive(app.id, "officer-test", None).await.unwrap();
        reg.decide_application(app.id, Verdict::Approve, None, "officer-test", None).await.unwrap()
    }

    pub(super) fn consent(head: &crate::PersonRecord) -> serde_json::Value {
        json!({"given_by": head.person.record.name.full(), "personal_id": pid(head), "given_on": "2025-01-02", "document": "Văn bản đồng ý số 1"})
    }

    pub(super) async fn new_household(reg: &Registry, head: &crate::PersonRecord, at: &Address) -> Application {
        through(
            reg,
            procedure(json!({"kind": "permanent_registration", "person": pid(head), "address": at,
                             "household": {"mode": "new", "own_home": true}})),
        )
        .await
    }
}

use crate::{ApplicationQuery, ApplicationState, ResidenceKind};
use dancu_core::person::HeadRelationship;
use dancu_core::residence::ProcedureKind;
use residence_cases::*;

pub async fn residence_registration_moving_and_history(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    let a = person(&reg, 40, None).await;
    let home = addr("00004", "12 Phố Đội Cấn");
    let app = reg
        .submit(
            procedure(serde_json::json!({"kind": "permanent_registration", "person": pid(&a), "address": home,
                                          "household": {"mode": "new", "own_home": true}})),
            "officer-test",
            |_| true,
            None,
        )
        .await
        .unwrap();
    assert_eq!(app.state, crate::ApplicationState::Submitted);
    assert_eq!(app.deadline, reg.calendar().deadline(crate::registry::today(), 7));
    assert!(app.areas.contains(&"c:2025:00004".to_string()));
    // decided only once received
    assert!(reg.decide_application(app.id, crate::residence::Verdict::Approve, None, "o", None).await.is_err());
    reg.receive(app.id, "o", None).await.unwrap();
    let done = reg.decide_application(app.id, crate::residence::Verdict::Approve, None, "o", None).await.unwrap();
    assert_eq!(done.state, crate::ApplicationState::Approved);
    let hh = reg.household(done.created_household.unwrap()).await.unwrap();
    assert_eq!(hh.head, Some(a.key));
    let now = reg.get(&PersonRef::Key(a.key)).await.unwrap();
    assert_eq!(now.person.record.permanent_residence.as_ref(), Some(&home));
    assert_eq!(now.person.record.residence_file_number.as_deref(), Some(hh.number.as_str()));
    assert_eq!(
        now.person.record.household.as_ref().unwrap().relationship_to_head,
        dancu_core::person::HeadRelationship::Head
    );
    assert!(now.person.areas().contains(&"c:2025:00004".to_string()));
    let before_move = crate::now();
    // moving: the new permanent residence ends the old one in the same transaction
    let away = addr("26506", "5 Đường Số 3");
    through(
        &reg,
        procedure(serde_json::json!({"kind": "permanent_registration", "person": pid(&a), "address": away,
                                      "household": {"mode": "new", "own_home": true}, "moving": true})),
    )
    .await;
    let today = crate::registry::today();
    let on = reg.residence_on(a.key, today, None).await.unwrap();
    assert_eq!(on.residences.len(), 1);
    assert_eq!(on.residences[0].address, away);
    let history = reg.residence_history(a.key, None).await.unwrap();
    let ended = history.iter().find(|r| r.address == home).unwrap();
    assert_eq!(ended.end_cause.as_deref(), Some("moved"));
    assert_eq!(ended.valid_to, Some(today));
    // as recorded before the move, the old residence was open (bitemporal)
    let then = reg.residence_history(a.key, Some(before_move)).await.unwrap();
    assert_eq!(then.len(), 1);
    assert_eq!((then[0].address.clone(), then[0].valid_to), (home.clone(), None));
    assert!(reg.residence_on(a.key, today - time::Duration::days(1), None).await.unwrap().residences.is_empty());
    // who lived at the address today
    let at = reg.residents_at(&away, today).await.unwrap();
    assert_eq!(at.iter().map(|r| r.person_key).collect::<Vec<_>>(), vec![a.key]);
    assert!(reg.residents_at(&home, today).await.unwrap().is_empty());
    // the person left the first household, which is left without a head
    let old = reg.household(hh.id).await.unwrap();
    assert_eq!(old.head, None);
    assert!(!old.is_member(a.key));
    // area scoping follows the residence
    let moved = reg.get(&PersonRef::Key(a.key)).await.unwrap();
    assert!(
        !moved.person.areas().contains(&"c:2025:00004".to_string()) || moved.person.record.current_residence.is_some()
    );
    assert!(moved.person.areas().contains(&"c:2025:26506".to_string()));
    assert_eq!(history.iter().filter(|r| r.kind == ResidenceKind::Permanent && r.valid_to.is_none()).count(), 1);
}

pub async fn residence_one_permanent_at_a_time(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    let a = person(&reg, 41, Some(addr("00004", "Số 9"))).await;
    let p = procedure(serde_json::json!({"kind": "permanent_registration", "person": pid(&a),
        "address": addr("26506", "Số 1"), "household": {"mode": "new", "own_home": true}}));
    let e = reg.submit(p, "o", |_| true, None).await.unwrap_err();
    assert_eq!(code(e), ("procedure.moving".into(), "permanent_residence_exists"));
    // a registration into a household that does not exist
    let p = procedure(serde_json::json!({"kind": "permanent_registration", "person": pid(&a), "moving": true,
        "address": addr("26506", "Số 1"),
        "household": {"mode": "join", "household": uuid::Uuid::new_v4().to_string(), "relationship_to_head": "child"},
        "consent": {"given_by": "Nguyễn Văn B", "given_on": "2025-01-01", "document": "VB 1"}}));
    assert_eq!(code(reg.submit(p, "o", |_| true, None).await.unwrap_err()).1, "unknown_household");
    let p = procedure(serde_json::json!({"kind": "permanent_registration", "person": "001090999999",
        "address": addr("26506", "Số 1"), "household": {"mode": "new", "own_home": true}}));
    assert_eq!(code(reg.submit(p, "o", |_| true, None).await.unwrap_err()).1, "unknown_person");
    // two pending registrations of one person: the second is refused
    let p = procedure(serde_json::json!({"kind": "permanent_registration", "person": pid(&a), "moving": true,
        "address": addr("26506", "Số 1"), "household": {"mode": "new", "own_home": true}}));
    reg.submit(p.clone(), "o", |_| true, None).await.unwrap();
    assert_eq!(code(reg.submit(p, "o", |_| true, None).await.unwrap_err()).1, "application_pending");
    // outside the officer's area: not found
    let b = person(&reg, 43, None).await;
    let p = procedure(serde_json::json!({"kind": "permanent_registration", "person": pid(&b),
        "address": addr("26506", "Số 1"), "household": {"mode": "new", "own_home": true}}));
    assert!(matches!(
        reg.submit(p, "o", |areas| areas.contains(&"c:2025:00004".to_string()), None).await,
        Err(RegistryError::NotFound)
    ));
}

pub async fn residence_joining_needs_the_heads_consent(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    let head = person(&reg, 44, None).await;
    let other = person(&reg, 46, None).await;
    let child = person(&reg, 47, None).await;
    let home = addr("00004", "7 Ngõ Núi Trúc");
    let hh = new_household(&reg, &head, &home).await.created_household.unwrap().to_string();
    let join = |c: serde_json::Value| {
        procedure(serde_json::json!({"kind": "permanent_registration", "person": pid(&child), "address": home,
            "household": {"mode": "join", "household": hh, "relationship_to_head": "child"}, "consent": c}))
    };
    // missing consent: refused by the core with a named field
    let mut no_consent = serde_json::to_value(join(consent(&head))).unwrap();
    no_consent.as_object_mut().unwrap().remove("consent");
    let e = reg.submit(procedure(no_consent), "o", |_| true, None).await.unwrap_err();
    assert_eq!(code(e), ("procedure.consent".into(), "consent_required"));
    // consent of someone who is not the head
    let e = reg.submit(join(consent(&other)), "o", |_| true, None).await.unwrap_err();
    assert_eq!(code(e), ("procedure.consent.personal_id".into(), "not_the_head"));
    through(&reg, join(consent(&head))).await;
    let h = reg.household(hh.parse().unwrap()).await.unwrap();
    assert!(h.is_member(child.key));
    let c = reg.get(&PersonRef::Key(child.key)).await.unwrap();
    let link = c.person.record.household.unwrap();
    assert_eq!(link.head_personal_id, head.person.personal_id);
    assert_eq!(link.relationship_to_head, HeadRelationship::Child);
    // no one in two households: joining another one without moving is refused
    let hh2 = new_household(&reg, &other, &addr("00004", "9 Ngõ Núi Trúc")).await.created_household.unwrap();
    let p = procedure(serde_json::json!({"kind": "permanent_registration", "person": pid(&child),
        "address": addr("00004", "9 Ngõ Núi Trúc"),
        "household": {"mode": "join", "household": hh2.to_string(), "relationship_to_head": "other_relative"},
        "consent": consent(&other)}));
    assert_eq!(code(reg.submit(p, "o", |_| true, None).await.unwrap_err()).1, "permanent_residence_exists");
    // and the database refuses a second open membership even if asked directly
    let plan = crate::ResidencePlan {
        open_memberships: vec![crate::MembershipOpen {
            household: hh2,
            person_key: child.key,
            relationship: HeadRelationship::Child,
            joined_on: crate::registry::today(),
        }],
        ..Default::default()
    };
    assert!(matches!(store.residence_apply(&plan).await, Err(StoreError::Duplicate(_))));
}

pub async fn residence_head_must_be_a_member(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    let head = person(&reg, 48, None).await;
    let spouse = person(&reg, 49, None).await;
    let stranger = person(&reg, 50, None).await;
    let home = addr("00004", "3 Phố Liễu Giai");
    let hh = new_household(&reg, &head, &home).await.created_household.unwrap().to_string();
    through(
        &reg,
        procedure(serde_json::json!({"kind": "permanent_registration", "person": pid(&spouse), "address": home,
            "household": {"mode": "join", "household": hh, "relationship_to_head": "spouse"}, "consent": consent(&head)})),
    )
    .await;
    let p = procedure(
        serde_json::json!({"kind": "head_change", "household": hh, "new_head": pid(&stranger), "relationships": []}),
    );
    assert_eq!(
        code(reg.submit(p, "o", |_| true, None).await.unwrap_err()),
        ("procedure.new_head".into(), "not_a_member")
    );
    let p = procedure(
        serde_json::json!({"kind": "head_change", "household": hh, "new_head": pid(&spouse), "relationships": []}),
    );
    assert_eq!(code(reg.submit(p, "o", |_| true, None).await.unwrap_err()).1, "missing_member");
    let p = procedure(serde_json::json!({"kind": "head_change", "household": hh, "new_head": pid(&spouse),
        "relationships": [{"person": pid(&head), "relationship": "spouse"}]}));
    let app = through(&reg, p).await;
    assert_eq!(app.deadline, reg.calendar().deadline(crate::registry::today(), 3));
    let h = reg.household(hh.parse().unwrap()).await.unwrap();
    assert_eq!(h.head, Some(spouse.key));
    let old_head = reg.get(&PersonRef::Key(head.key)).await.unwrap();
    assert_eq!(old_head.person.record.household.unwrap().relationship_to_head, HeadRelationship::Spouse);
}

pub async fn residence_separation_rules(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    let head = person(&reg, 51, None).await;
    let spouse = person(&reg, 52, None).await;
    let mut minor_input = sample(53);
    minor_input.birth_date = PartialDate::Year(crate::registry::today().year() - 10);
    minor_input.permanent_residence = None;
    minor_input.current_residence = Some(addr("00004", "x"));
    let minor = reg.create(minor_input, &meta("thu thập")).await.unwrap();
    let minor = reg.activate(minor.key, None, &meta("cấp số")).await.unwrap();
    let home = addr("00004", "20 Phố Kim Mã");
    let hh = new_household(&reg, &head, &home).await.created_household.unwrap().to_string();
    for (p, rel) in [(&spouse, "spouse"), (&minor, "child")] {
        through(
            &reg,
            procedure(serde_json::json!({"kind": "permanent_registration", "person": pid(p), "address": home,
                "household": {"mode": "join", "household": hh, "relationship_to_head": rel}, "consent": consent(&head)})),
        )
        .await;
    }
    // a minor cannot head the separated household
    let p = procedure(serde_json::json!({"kind": "household_separation", "household": hh, "members": [pid(&minor)],
        "new_head": pid(&minor), "consent": consent(&head)}));
    assert_eq!(code(reg.submit(p, "o", |_| true, None).await.unwrap_err()), ("procedure.new_head".into(), "not_adult"));
    // consent is needed...
    let p = procedure(serde_json::json!({"kind": "household_separation", "household": hh, "members": [pid(&spouse)],
        "new_head": pid(&spouse)}));
    assert_eq!(code(reg.submit(p, "o", |_| true, None).await.unwrap_err()).1, "consent_required");
    // ...except for a divorced spouse
    let p = procedure(serde_json::json!({"kind": "household_separation", "household": hh,
        "members": [pid(&spouse), pid(&minor)], "new_head": pid(&spouse), "divorced_spouse": true,
        "relationships": [{"person": pid(&minor), "relationship": "child"}]}));
    let app = through(&reg, p).await;
    let new = reg.household(app.created_household.unwrap()).await.unwrap();
    assert_eq!(new.head, Some(spouse.key));
    assert!(new.is_member(minor.key));
    let old = reg.household(hh.parse().unwrap()).await.unwrap();
    assert!(!old.is_member(spouse.key) && old.is_member(head.key));
    let s = reg.get(&PersonRef::Key(spouse.key)).await.unwrap();
    assert_eq!(s.person.record.residence_file_number.as_deref(), Some(new.number.as_str()));
}

pub async fn residence_temporary_rules_and_expiry(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    let a = person(&reg, 54, Some(addr("00004", "Số 54"))).await;
    let today = crate::registry::today();
    let until = |d: time::Date| dancu_core::date::iso_date::format(d);
    // in the commune of permanent residence: refused
    let p = procedure(serde_json::json!({"kind": "temporary_registration", "person": pid(&a),
        "address": addr("00004", "Phòng trọ 2"), "until": until(today + time::Duration::days(200))}));
    assert_eq!(
        code(reg.submit(p, "o", |_| true, None).await.unwrap_err()),
        ("procedure.address".into(), "in_permanent_commune")
    );
    // expiry in the past: refused
    let p = procedure(serde_json::json!({"kind": "temporary_registration", "person": pid(&a),
        "address": addr("26506", "Phòng trọ 2"), "until": until(today - time::Duration::days(1))}));
    assert_eq!(code(reg.submit(p, "o", |_| true, None).await.unwrap_err()), ("procedure.until".into(), "past_date"));
    let p = procedure(serde_json::json!({"kind": "temporary_registration", "person": pid(&a),
        "address": addr("26506", "Phòng trọ 2"), "until": until(today + time::Duration::days(100))}));
    let app = through(&reg, p).await;
    assert_eq!(app.deadline, reg.calendar().deadline(today, 3));
    let rec = reg.get(&PersonRef::Key(a.key)).await.unwrap();
    assert_eq!(rec.person.record.temporary_residence, Some(addr("26506", "Phòng trọ 2")));
    assert!(rec.person.areas().contains(&"c:2025:26506".to_string()));
    // renewal to a later day
    let p = procedure(
        serde_json::json!({"kind": "temporary_renewal", "person": pid(&a), "until": until(today + time::Duration::days(50))}),
    );
    assert_eq!(code(reg.submit(p, "o", |_| true, None).await.unwrap_err()).1, "not_later");
    let p = procedure(
        serde_json::json!({"kind": "temporary_renewal", "person": pid(&a), "until": until(today + time::Duration::days(300))}),
    );
    through(&reg, p).await;
    let rows = reg.residence_history(a.key, None).await.unwrap();
    let t = rows.iter().find(|r| r.kind == ResidenceKind::Temporary).unwrap();
    assert_eq!((t.valid_from, t.expires_on), (today, Some(today + time::Duration::days(300))));
    // automatic expiry
    assert_eq!(reg.expire_temporary(today, "system").await.unwrap(), 0);
    assert_eq!(reg.expire_temporary(today + time::Duration::days(301), "system").await.unwrap(), 1);
    let rec = reg.get(&PersonRef::Key(a.key)).await.unwrap();
    assert_eq!(rec.person.record.temporary_residence, None);
    assert!(!rec.person.areas().contains(&"c:2025:26506".to_string()));
    let rows = reg.residence_history(a.key, None).await.unwrap();
    let t = rows.iter().find(|r| r.kind == ResidenceKind::Temporary).unwrap();
    assert_eq!(t.end_cause.as_deref(), Some("expired"));
    assert_eq!(t.valid_to, Some(today + time::Duration::days(301)));
}

pub async fn residence_death_ends_residence(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    let a = person(&reg, 55, None).await;
    let b = person(&reg, 57, None).await;
    let home = addr("00004", "1 Phố Vạn Bảo");
    let hh = new_household(&reg, &a, &home).await.created_household.unwrap();
    through(
        &reg,
        procedure(serde_json::json!({"kind": "permanent_registration", "person": pid(&b), "address": home,
            "household": {"mode": "join", "household": hh.to_string(), "relationship_to_head": "child"}, "consent": consent(&a)})),
    )
    .await;
    let today = crate::registry::today();
    let t = procedure(serde_json::json!({"kind": "temporary_registration", "person": pid(&a),
        "address": addr("26506", "Nhà trọ"), "until": dancu_core::date::iso_date::format(today + time::Duration::days(30))}));
    through(&reg, t).await;
    let del = procedure(serde_json::json!({"kind": "permanent_deletion", "person": pid(&a), "cause": "death",
        "effective": dancu_core::date::iso_date::format(today)}));
    let e = reg.submit(del.clone(), "o", |_| true, None).await.unwrap_err();
    assert_eq!(code(e), ("procedure.cause".into(), "death_not_recorded"));
    let cur = reg.get(&PersonRef::Key(a.key)).await.unwrap();
    reg.update(
        a.key,
        cur.version,
        cur.person.record.clone(),
        Some((PersonStatus::Dead, Some(PartialDate::Full(today)))),
        &meta("khai tử"),
    )
    .await
    .unwrap();
    // a registration for a dead person is refused
    let p = procedure(serde_json::json!({"kind": "temporary_renewal", "person": pid(&a),
        "until": dancu_core::date::iso_date::format(today + time::Duration::days(60))}));
    assert_eq!(code(reg.submit(p, "o", |_| true, None).await.unwrap_err()).1, "not_living");
    through(&reg, del).await;
    let rec = reg.get(&PersonRef::Key(a.key)).await.unwrap();
    assert_eq!(rec.person.record.permanent_residence, None);
    assert_eq!(rec.person.record.temporary_residence, None);
    assert_eq!(rec.person.record.household, None);
    let rows = reg.residence_history(a.key, None).await.unwrap();
    assert!(
        rows.iter()
            .all(|r| r.valid_to == Some(today + time::Duration::days(1)) && r.end_cause.as_deref() == Some("death"))
    );
    assert_eq!(rows.len(), 2);
    let h = reg.household(hh).await.unwrap();
    assert_eq!(h.head, None);
    assert!(h.is_member(b.key) && !h.is_member(a.key));
    assert_eq!(store.household_of(a.key).await.unwrap(), None);
}

pub async fn residence_concurrent_moves_one_wins(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    let a = person(&reg, 58, None).await;
    new_household(&reg, &a, &addr("00004", "Số 58")).await;
    let p = procedure(serde_json::json!({"kind": "permanent_registration", "person": pid(&a), "moving": true,
        "address": addr("26506", "Nhà mới"), "household": {"mode": "new", "own_home": true}}));
    let first = reg.submit(p, "o", |_| true, None).await.unwrap();
    reg.receive(first.id, "o", None).await.unwrap();
    let mut ids = vec![first.id];
    // the second move is filed directly in the store (as a second server would have accepted it)
    let mut second = reg.application(ids[0]).await.unwrap();
    second.id = crate::new_key();
    second.procedure =
        procedure(serde_json::json!({"kind": "permanent_registration", "person": pid(&a), "moving": true,
        "address": addr("00007", "Nhà mới"), "household": {"mode": "new", "own_home": true}}));
    store
        .residence_apply(&crate::ResidencePlan { application: Some(second.clone()), ..Default::default() })
        .await
        .unwrap();
    ids.push(second.id);
    let (r1, r2) = tokio::join!(
        reg.decide_application(ids[0], crate::residence::Verdict::Approve, None, "o1", None),
        reg.decide_application(ids[1], crate::residence::Verdict::Approve, None, "o2", None)
    );
    let wins = [r1.is_ok(), r2.is_ok()].iter().filter(|x| **x).count();
    assert_eq!(wins, 1, "exactly one move wins: {r1:?} {r2:?}");
    let loser = if r1.is_ok() { r2 } else { r1 };
    assert!(
        matches!(
            loser,
            Err(RegistryError::Conflict { .. })
                | Err(RegistryError::Store(StoreError::Duplicate(_)))
                | Err(RegistryError::Store(StoreError::State(_)))
        ),
        "{loser:?}"
    );
    let rows = reg.residence_history(a.key, None).await.unwrap();
    assert_eq!(rows.iter().filter(|r| r.kind == ResidenceKind::Permanent && r.valid_to.is_none()).count(), 1);
    // the loser stays received (to be rejected): deciding it again is refused against the new state
    let again = reg
        .decide_application(
            if wins_first(&ids, &rows) { ids[1] } else { ids[0] },
            crate::residence::Verdict::Approve,
            None,
            "o",
            None,
        )
        .await;
    assert!(matches!(again, Err(RegistryError::Store(StoreError::State(_)))), "{again:?}");
    assert_eq!(
        store
            .applications(&ApplicationQuery {
                state: Some(ApplicationState::Received),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
        1
    );
}

fn wins_first(ids: &[uuid::Uuid], rows: &[crate::ResidenceRow]) -> bool {
    rows.iter().any(|r| r.valid_to.is_none() && r.application == Some(ids[0]))
}

pub async fn residence_workflow_overdue_and_stays(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    let a = person(&reg, 59, Some(addr("00004", "Số 59"))).await;
    let today = crate::registry::today();
    let p = procedure(serde_json::json!({"kind": "temporary_absence", "person": pid(&a), "case": "long_absence",
        "from": dancu_core::date::iso_date::format(today), "destination": "Đà Nẵng"}));
    let app = reg.submit(p, "o", |_| true, None).await.unwrap();
    assert_eq!(app.deadline, reg.calendar().deadline(today, 1));
    // rejection needs a reason
    reg.receive(app.id, "o", None).await.unwrap();
    assert_eq!(
        code(reg.decide_application(app.id, crate::residence::Verdict::Reject, None, "o", None).await.unwrap_err()).0,
        "reason"
    );
    // overdue: open applications past their deadline
    let later = app.deadline + time::Duration::days(1);
    let overdue =
        reg.applications(&ApplicationQuery { overdue_on: Some(later), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(overdue.iter().map(|x| x.id).collect::<Vec<_>>(), vec![app.id]);
    assert!(
        reg.applications(&ApplicationQuery { overdue_on: Some(app.deadline), limit: 10, ..Default::default() })
            .await
            .unwrap()
            .is_empty()
    );
    let r = reg
        .decide_application(app.id, crate::residence::Verdict::Reject, Some("thiếu giấy tờ".into()), "o", None)
        .await
        .unwrap();
    assert_eq!((r.state, r.decision_reason.as_deref()), (ApplicationState::Rejected, Some("thiếu giấy tờ")));
    assert!(reg.decide_application(app.id, crate::residence::Verdict::Approve, None, "o", None).await.is_err());
    assert!(
        reg.applications(&ApplicationQuery { overdue_on: Some(later), limit: 10, ..Default::default() })
            .await
            .unwrap()
            .is_empty()
    );
    // military-age case: someone born in 1950+ is not of military-service age
    let p = procedure(serde_json::json!({"kind": "temporary_absence", "person": pid(&a), "case": "military_age",
        "from": dancu_core::date::iso_date::format(today), "destination": "Đà Nẵng"}));
    assert_eq!(code(reg.submit(p, "o", |_| true, None).await.unwrap_err()).1, "not_military_age");
    // approved absence lands on the record
    let p = procedure(serde_json::json!({"kind": "temporary_absence", "person": pid(&a), "case": "long_absence",
        "from": dancu_core::date::iso_date::format(today), "destination": "Đà Nẵng"}));
    through(&reg, p).await;
    assert!(reg.get(&PersonRef::Key(a.key)).await.unwrap().person.record.temporary_absence.is_some());
    // stays: recorded at once; late after 23:00 of the arrival day (08:00 next day after 23:00)
    let vn = crate::registry::VIETNAM_OFFSET;
    let stay = |arrived: time::OffsetDateTime| {
        procedure(
            serde_json::json!({"kind": "stay_notification", "person": pid(&a), "address": addr("26506", "Khách sạn A"),
            "arrived_at": arrived.to_offset(vn).format(&time::format_description::well_known::Rfc3339).unwrap(),
            "until": dancu_core::date::iso_date::format(arrived.to_offset(vn).date() + time::Duration::days(3))}),
        )
    };
    let late = reg.submit(stay(crate::now() - time::Duration::days(2)), "o", |_| true, None).await.unwrap();
    assert_eq!((late.state, late.late, late.kind), (ApplicationState::Approved, true, ProcedureKind::StayNotification));
    let on_time = reg.submit(stay(crate::now() - time::Duration::minutes(1)), "o", |_| true, None).await.unwrap();
    assert!(!on_time.late);
}

pub async fn addresses_migrate_whole_and_review(store: Arc<dyn Store>) {
    use dancu_core::reference::{self, MergeKind, Scheme};
    let reg = Registry::new(store.clone());
    let whole = reference::conversions()
        .iter()
        .find(|c| {
            let rows = reference::conversions_from(&c.old_commune_code);
            rows.len() == 1 && rows[0].kind == MergeKind::Whole
        })
        .unwrap();
    let part = reference::conversions().iter().find(|c| c.kind == MergeKind::Part).unwrap();
    let legacy = |code: &str| dancu_core::person::Address {
        scheme: Scheme::Legacy,
        commune_code: code.to_string(),
        detail: Some("Thôn 3".into()),
    };
    let a = person(&reg, 60, Some(legacy(&whole.old_commune_code))).await;
    let b = person(&reg, 61, Some(legacy(&part.old_commune_code))).await;
    let c = person(&reg, 62, Some(addr("00004", "Số 62"))).await;
    let report = reg.migrate_addresses(1, "officer-test", |_| {}).await.unwrap();
    assert_eq!(report.people_scanned, 2);
    assert_eq!((report.moved_automatically, report.queued_for_review, report.people_updated), (1, 1, 1));
    let now = reg.get(&PersonRef::Key(a.key)).await.unwrap();
    let p = now.person.record.permanent_residence.unwrap();
    assert_eq!(
        (p.scheme, p.commune_code.as_str(), p.detail.as_deref()),
        (Scheme::Y2025, whole.new_commune_code.as_str(), Some("Thôn 3"))
    );
    // history keeps the old code
    let h = reg.history(a.key).await.unwrap();
    assert_eq!(h[h.len() - 2].person.record.permanent_residence.as_ref().unwrap().scheme, Scheme::Legacy);
    assert!(h.last().unwrap().meta.reason.contains("2025"));
    // the part merge waits for a person; the 2025 address is untouched
    assert_eq!(reg.get(&PersonRef::Key(b.key)).await.unwrap().version, b.version);
    assert_eq!(reg.get(&PersonRef::Key(c.key)).await.unwrap().version, c.version);
    // a second run moves nothing more and queues nothing twice
    let again = reg.migrate_addresses(500, "officer-test", |_| {}).await.unwrap();
    assert_eq!((again.people_scanned, again.moved_automatically, again.people_updated), (1, 0, 0));

    // the queue, and its resolution by an officer
    let pending = crate::AddressReviewQuery { pending: Some(true), limit: 50, ..Default::default() };
    let queued = reg.address_reviews(&pending).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!((queued[0].person_key, queued[0].field.as_str()), (b.key, "permanent_residence"));
    assert!(queued[0].queued_at.is_some() && queued[0].resolved_at.is_none());
    let candidates = queued[0].candidates.clone();
    let area = |code: &str| crate::AddressReviewQuery {
        area: Some(format!("c:2025:{code}")),
        limit: 50,
        ..Default::default()
    };
    assert_eq!(reg.address_reviews(&area(&candidates[0])).await.unwrap().len(), 1, "listed in a candidate's area");
    assert_eq!(reg.address_reviews(&area("26506")).await.unwrap().len(), 0);
    let yes = |_: &[String]| true;
    let err = reg.resolve_address_review(b.key, "permanent_residence", "99999", "o2", yes, None).await.unwrap_err();
    assert!(matches!(err, RegistryError::Invalid(ref v) if v.0[0].code == "not_a_candidate"), "{err:?}");
    let err = reg.resolve_address_review(b.key, "permanent_residence", &candidates[0], "o2", |_| false, None).await;
    assert!(matches!(err, Err(RegistryError::Invalid(ref v)) if v.0[0].code == "outside_area"), "{err:?}");
    let err = reg.resolve_address_review(a.key, "permanent_residence", &candidates[0], "o2", yes, None).await;
    assert!(matches!(err, Err(RegistryError::NotFound)), "no review for this person: {err:?}");
    let done = reg.resolve_address_review(b.key, "permanent_residence", &candidates[0], "o2", yes, None).await.unwrap();
    assert_eq!(
        (done.resolved_by.as_deref(), done.resolved_commune_code.as_deref()),
        (Some("o2"), Some(&candidates[0][..]))
    );
    assert!(done.resolved_at.is_some());
    let now = reg.get(&PersonRef::Key(b.key)).await.unwrap();
    assert_eq!(now.version, b.version + 1);
    let p = now.person.record.permanent_residence.unwrap();
    assert_eq!(
        (p.scheme, p.commune_code.as_str(), p.detail.as_deref()),
        (Scheme::Y2025, &candidates[0][..], Some("Thôn 3"))
    );
    let h = reg.history(b.key).await.unwrap();
    assert_eq!(h[h.len() - 2].person.record.permanent_residence.as_ref().unwrap().scheme, Scheme::Legacy);
    assert_eq!(h.last().unwrap().meta.actor, "o2");
    // decided once
    let again = reg.resolve_address_review(b.key, "permanent_residence", &candidates[0], "o3", yes, None).await;
    assert!(matches!(again, Err(RegistryError::Store(StoreError::State(_)))), "{again:?}");
    assert!(reg.address_reviews(&pending).await.unwrap().is_empty());
    let resolved = crate::AddressReviewQuery { pending: Some(false), limit: 50, ..Default::default() };
    assert_eq!(reg.address_reviews(&resolved).await.unwrap(), vec![done]);
}

/// A review whose address was changed after it was queued no longer applies, and a record
/// changed between the read and the write is a conflict: nothing is written.
pub async fn address_review_of_a_changed_address_is_refused(store: Arc<dyn Store>) {
    use dancu_core::reference::{self, MergeKind, Scheme};
    let reg = Registry::new(store.clone());
    let part = reference::conversions().iter().find(|c| c.kind == MergeKind::Part).unwrap();
    let legacy = dancu_core::person::Address {
        scheme: Scheme::Legacy,
        commune_code: part.old_commune_code.clone(),
        detail: None,
    };
    let b = person(&reg, 63, Some(legacy)).await;
    reg.migrate_addresses(500, "officer-test", |_| {}).await.unwrap();
    let review = store.address_review_get(b.key, "permanent_residence").await.unwrap().unwrap();
    // a stale version: Conflict, the review stays pending
    let mut moved = b.person.clone();
    moved.record.permanent_residence = Some(addr("00004", "Số 1"));
    let mut chosen = review.clone();
    chosen.resolved_commune_code = Some(review.candidates[0].clone());
    let stale = store.address_review_resolve(&chosen, b.version + 5, &moved, &ChangeMeta::new("o", "r", None)).await;
    assert!(matches!(stale, Err(StoreError::Conflict { .. })), "{stale:?}");
    assert!(store.address_review_get(b.key, "permanent_residence").await.unwrap().unwrap().resolved_at.is_none());
    // the address changed meanwhile (an officer's correction): the review no longer applies
    store
        .update_person(b.key, b.version, &moved, ChangeKind::Update, &ChangeMeta::new("o", "sửa địa chỉ", None))
        .await
        .unwrap();
    let r = reg.resolve_address_review(b.key, "permanent_residence", &review.candidates[0], "o", |_| true, None).await;
    assert!(matches!(r, Err(RegistryError::Store(StoreError::State(_)))), "{r:?}");
}

pub fn partner(id: &str) -> dancu_core::sharing::Partner {
    use dancu_core::sharing::{Field, Partner, PartnerKind, PartnerStatus, Service};
    Partner {
        id: id.into(),
        name: format!("Đối tác {id}"),
        kind: PartnerKind::Business,
        legal_basis: "Nghị định 59/2022/NĐ-CP".into(),
        services: vec![Service::Verify, Service::Retrieve],
        fields: vec![Field::FullName, Field::BirthDate],
        consent_required: true,
        rate_limit_per_second: 100,
        valid_from: 0,
        valid_until: 4_102_444_800,
        status: PartnerStatus::Active,
        public_key_pem: "-----BEGIN PUBLIC KEY-----".into(),
        pseudonym_key_sealed: "sealed".into(),
        client_cert_sha256: None,
        status_reason: None,
        created_at: 1_700_000_000,
        updated_at: 1_700_000_000,
        oidc: None,
    }
}

pub async fn webhook_queue_is_ordered_deduplicated_and_marked_once(store: Arc<dyn Store>) {
    use crate::{Attempt, DeliveryState, NewDelivery, Webhook};
    store.partner_insert(&partner("hook-a")).await.unwrap();
    let w = Webhook {
        partner_id: "hook-a".into(),
        url: "http://127.0.0.1:9/a".into(),
        secret_sealed: "sealed-1".into(),
        cursor: 7,
        created_at: 1_700_000_000,
        updated_at: 1_700_000_000,
    };
    assert_eq!(store.webhook_put(&w).await.unwrap(), w);
    // Replacing keeps the cursor and the creation time.
    let again = Webhook { url: "http://127.0.0.1:9/b".into(), cursor: 0, updated_at: 1_700_000_100, ..w.clone() };
    let stored = store.webhook_put(&again).await.unwrap();
    assert_eq!((stored.url.as_str(), stored.cursor, stored.created_at), ("http://127.0.0.1:9/b", 7, 1_700_000_000));
    assert_eq!(store.webhooks().await.unwrap().len(), 1);
    let ev = |id: &str, pos: i64| NewDelivery {
        event_id: id.into(),
        position: pos,
        person_key: format!("person-{pos}"),
        payload: format!("{{\"id\":\"{id}\"}}"),
        created_at: 1_700_000_200,
    };
    // A stale cursor moves nothing and queues nothing.
    assert!(!store.webhook_enqueue("hook-a", 3, 10, &[ev("e1", 8)]).await.unwrap());
    assert_eq!(store.webhook_counts("hook-a").await.unwrap(), (0, 0));
    assert!(store.webhook_enqueue("hook-a", 7, 10, &[ev("e1", 8), ev("e2", 9)]).await.unwrap());
    // A replayed event id is not queued twice.
    assert!(store.webhook_enqueue("hook-a", 10, 12, &[ev("e2", 9), ev("e3", 11)]).await.unwrap());
    assert_eq!(store.webhook_get("hook-a").await.unwrap().unwrap().cursor, 12);
    let pending = store.webhook_pending("hook-a", 10).await.unwrap();
    let ids: Vec<&str> = pending.iter().map(|d| d.event_id.as_str()).collect();
    assert_eq!(ids, ["e1", "e2", "e3"], "queue order");
    assert_eq!(pending[0].next_attempt_ms, 1_700_000_200_000);
    // A failure counts and schedules; a success marks once.
    let failed = Attempt::Failed { status: Some(503), error: "HTTP 503".into(), retry_at_ms: 1_700_000_300_000 };
    assert!(store.webhook_attempt("hook-a", "e1", &failed).await.unwrap());
    let d = &store.webhook_pending("hook-a", 1).await.unwrap()[0];
    assert_eq!((d.attempts, d.last_status, d.next_attempt_ms), (1, Some(503), 1_700_000_300_000));
    let ok = Attempt::Delivered { at: 1_700_000_400, status: 200 };
    assert!(store.webhook_attempt("hook-a", "e1", &ok).await.unwrap());
    assert!(!store.webhook_attempt("hook-a", "e1", &ok).await.unwrap(), "never marked delivered twice");
    assert!(!store.webhook_attempt("hook-a", "e1", &failed).await.unwrap(), "a delivered event stays delivered");
    assert!(!store.webhook_attempt("hook-a", "nope", &ok).await.unwrap());
    assert_eq!(store.webhook_counts("hook-a").await.unwrap(), (2, 1));
    let delivered = store.webhook_deliveries("hook-a", Some(DeliveryState::Delivered), 0, 10).await.unwrap();
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        (delivered[0].attempts, delivered[0].delivered_at, delivered[0].last_error.clone()),
        (2, Some(1_700_000_400), None)
    );
    let all = store.webhook_deliveries("hook-a", None, 0, 10).await.unwrap();
    assert_eq!(all.len(), 3);
    let rest = store.webhook_deliveries("hook-a", None, all[0].seq, 10).await.unwrap();
    assert_eq!(rest.iter().map(|d| d.event_id.as_str()).collect::<Vec<_>>(), ["e2", "e3"]);
    assert_eq!(store.webhook_pending("hook-a", 10).await.unwrap()[0].event_id, "e2");
    assert!(store.webhook_get("nobody").await.unwrap().is_none());
    assert!(store.feed_head().await.unwrap() >= 0);
}

pub async fn partners_are_stored_once_and_updated(store: Arc<dyn Store>) {
    let mut p = partner("bank-b");
    store.partner_insert(&p).await.unwrap();
    store.partner_insert(&partner("agency-a")).await.unwrap();
    assert!(matches!(store.partner_insert(&p).await, Err(StoreError::Duplicate(_))));
    assert_eq!(store.partner_get("bank-b").await.unwrap().unwrap(), p);
    p.status = dancu_core::sharing::PartnerStatus::Suspended;
    p.status_reason = Some("kiểm tra".into());
    store.partner_update(&p).await.unwrap();
    assert_eq!(store.partner_get("bank-b").await.unwrap().unwrap(), p, "every field is kept");
    let ids: Vec<String> = store.partner_list().await.unwrap().into_iter().map(|p| p.id).collect();
    assert_eq!(ids, ["agency-a", "bank-b"]);
    assert!(store.partner_get("nobody").await.unwrap().is_none());
    assert!(matches!(store.partner_update(&partner("nobody")).await, Err(StoreError::NotFound)));
}

pub async fn client_assertions_are_used_once(store: Arc<dyn Store>) {
    store.partner_insert(&partner("bank-b")).await.unwrap();
    assert!(store.assertion_use("bank-b", "j1", 1_000, 900).await.unwrap());
    assert!(!store.assertion_use("bank-b", "j1", 1_000, 901).await.unwrap(), "a replay is refused");
    assert!(store.assertion_use("bank-b", "j2", 1_000, 901).await.unwrap());
    // Once expired it is forgotten (an expired assertion is refused before it gets here).
    assert!(store.assertion_use("bank-b", "j1", 3_000, 2_000).await.unwrap());
}

pub async fn consents_expire_and_revoke(store: Arc<dyn Store>) {
    use dancu_core::sharing::Consent;
    let reg = Registry::new(store.clone());
    let rec = reg.create(sample(1), &meta("thu thập")).await.unwrap();
    store.partner_insert(&partner("bank-b")).await.unwrap();
    store.partner_insert(&partner("bank-c")).await.unwrap();
    let key = rec.key.to_string();
    let c = Consent {
        id: "c1".into(),
        person_key: key.clone(),
        partner_id: "bank-b".into(),
        purpose: "mở tài khoản".into(),
        granted_at: 1_000,
        expires_at: 2_000,
        revoked_at: None,
        recorded_by: "officer-test".into(),
        revoked_by: None,
    };
    store.consent_insert(&c).await.unwrap();
    store.consent_insert(&Consent { id: "c2".into(), granted_at: 1_500, ..c.clone() }).await.unwrap();
    assert_eq!(store.consent_get("c1").await.unwrap().unwrap(), c);
    assert!(store.consent_in_force(&key, "bank-b", 1_200).await.unwrap());
    assert!(!store.consent_in_force(&key, "bank-c", 1_200).await.unwrap(), "only to the partner named");
    assert!(!store.consent_in_force(&key, "bank-b", 2_000).await.unwrap(), "expired");
    assert!(!store.consent_in_force(&key, "bank-b", 999).await.unwrap(), "not yet granted");
    let r = store.consent_revoke("c1", "citizen", 1_300).await.unwrap();
    assert_eq!((r.revoked_at, r.revoked_by.as_deref()), (Some(1_300), Some("citizen")));
    assert!(matches!(store.consent_revoke("c1", "citizen", 1_301).await, Err(StoreError::State(_))));
    assert!(matches!(store.consent_revoke("nope", "citizen", 1_301).await, Err(StoreError::NotFound)));
    assert!(!store.consent_in_force(&key, "bank-b", 1_400).await.unwrap(), "c1 revoked, c2 not yet granted");
    assert!(store.consent_in_force(&key, "bank-b", 1_600).await.unwrap(), "c2 in force");
    let all = store.consents_of(&key).await.unwrap();
    assert_eq!(all.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["c2", "c1"], "newest first");
}

pub async fn change_feed_gives_each_change_once(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    let a = reg.create(sample(1), &meta("thu thập")).await.unwrap();
    let b = reg.create(sample(2), &meta("thu thập")).await.unwrap();
    let a2 = reg.activate(a.key, None, &meta("cấp số")).await.unwrap();
    let b2 = reg.activate(b.key, None, &meta("cấp số")).await.unwrap();
    let mut moved = a2.person.clone();
    moved.record.current_residence = Some(
        serde_json::from_value(serde_json::json!(
        {"scheme": "2025", "commune_code": "26506"}))
        .unwrap(),
    );
    store.update_person(a.key, a2.version, &moved, ChangeKind::Update, &meta("chuyển nơi ở")).await.unwrap();
    // Settled (the PostgreSQL feed gives versions once every earlier transaction has ended).
    tokio::time::sleep(std::time::Duration::from_millis(2_200)).await;
    let all = store.change_feed(0, 100).await.unwrap();
    let seen: Vec<(uuid::Uuid, i64)> = all.iter().map(|i| (i.key, i.version)).collect();
    assert_eq!(seen, [(a.key, 2), (b.key, 2), (a.key, 3)], "changes in the order stored, creations left out");
    assert_eq!(all[2].before, a2.person);
    assert_eq!(all[2].after, moved);
    assert_eq!(all[1].after, b2.person);
    let rest = store.change_feed(all[0].position, 100).await.unwrap();
    assert_eq!(rest.len(), 2, "resumes after a position");
    assert!(store.change_feed(all[2].position, 100).await.unwrap().is_empty());
    assert_eq!(store.change_feed(0, 1).await.unwrap().len(), 1, "limit");
}

pub async fn change_feed_marks_registered_births(store: Arc<dyn Store>) {
    let reg = Registry::new(store.clone());
    store.partner_insert(&partner("ho-tich")).await.unwrap();
    // A record an officer made, and a child whose birth the civil registration system sent.
    let adult = reg.create(sample(1), &meta("thu thập")).await.unwrap();
    let event = |source: &str| crate::CivilEvent {
        partner_id: "ho-tich".into(),
        source_id: source.into(),
        kind: "birth".into(),
        body_hash: format!("hash-{source}"),
        person_key: uuid::Uuid::nil(),
        change_request: None,
        received_at: 1_700_000_000,
    };
    let (born, created) = reg.civil_birth(event("KS-1"), sample(7), &meta("đăng ký khai sinh")).await.unwrap();
    assert!(created);
    let (again, created) = reg.civil_birth(event("KS-1"), sample(7), &meta("đăng ký khai sinh")).await.unwrap();
    assert!(!created && again.person_key == born.person_key, "one record per source id");
    reg.activate(adult.key, None, &meta("cấp số")).await.unwrap();
    let child = reg.activate(born.person_key, None, &meta("cấp số")).await.unwrap();
    let mut renamed = child.person.clone();
    renamed.record.name.given = "Khôi".into();
    store.update_person(child.key, child.version, &renamed, ChangeKind::Update, &meta("cải chính")).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2_200)).await;
    let feed = store.change_feed(0, 100).await.unwrap();
    let seen: Vec<(uuid::Uuid, i64, bool)> = feed.iter().map(|i| (i.key, i.version, i.registered_birth)).collect();
    assert_eq!(
        seen,
        [(adult.key, 2, false), (child.key, 2, true), (child.key, 3, true)],
        "the child's versions are marked; the officer's record is not"
    );
    let kinds = |i: &crate::FeedItem| dancu_core::sharing::events(&i.before, &i.after, i.registered_birth);
    assert!(kinds(&feed[0]).is_empty(), "an officer's activation is no birth");
    assert_eq!(kinds(&feed[1]), [dancu_core::sharing::EventKind::Birth]);
    assert_eq!(kinds(&feed[2]), [dancu_core::sharing::EventKind::NameChange]);
}

pub async fn citizen_codes_are_limited_and_single_use(store: Arc<dyn Store>) {
    use crate::{ChallengeLimits, ChallengeOutcome, CitizenChallenge, CitizenSession};
    let reg = Registry::new(store.clone());
    let rec = reg.create(sample(1), &meta("thu thập")).await.unwrap();
    let key = rec.key.to_string();
    let limits = ChallengeLimits { challenges_since: 1_000, max_challenges: 3, failures_since: 1_000, max_failures: 4 };
    let ch = |id: &str, person: Option<&str>, at: i64| CitizenChallenge {
        id: id.into(),
        login_key: "k1".into(),
        person_key: person.map(str::to_string),
        code_hash: format!("hash-{id}"),
        created_at: at,
        expires_at: at + 300,
    };
    assert!(store.citizen_challenge_start(&ch("a", Some(&key), 1_000), &limits).await.unwrap());
    // Wrong, then right: accepted once.
    assert_eq!(store.citizen_challenge_attempt("a", "nope", 1_010, 5).await.unwrap(), ChallengeOutcome::Wrong(4));
    assert_eq!(
        store.citizen_challenge_attempt("a", "hash-a", 1_011, 5).await.unwrap(),
        ChallengeOutcome::Accepted(key.clone())
    );
    assert_eq!(store.citizen_challenge_attempt("a", "hash-a", 1_012, 5).await.unwrap(), ChallengeOutcome::Spent);
    assert_eq!(store.citizen_challenge_attempt("zz", "hash-a", 1_012, 5).await.unwrap(), ChallengeOutcome::Spent);
    // An unknown ID's challenge never accepts, even its own hash; attempts run out.
    assert!(store.citizen_challenge_start(&ch("b", None, 1_020), &limits).await.unwrap());
    for left in [1, 0] {
        assert_eq!(
            store.citizen_challenge_attempt("b", "hash-b", 1_021, 2).await.unwrap(),
            ChallengeOutcome::Wrong(left)
        );
    }
    assert_eq!(store.citizen_challenge_attempt("b", "hash-b", 1_022, 2).await.unwrap(), ChallengeOutcome::Spent);
    // Expired.
    assert!(store.citizen_challenge_start(&ch("c", Some(&key), 1_030), &limits).await.unwrap());
    assert_eq!(store.citizen_challenge_attempt("c", "hash-c", 1_330, 5).await.unwrap(), ChallengeOutcome::Spent);
    // Three challenges in the window: the fourth is refused and nothing is stored.
    assert!(!store.citizen_challenge_start(&ch("d", Some(&key), 1_040), &limits).await.unwrap());
    assert_eq!(store.citizen_challenge_attempt("d", "hash-d", 1_041, 5).await.unwrap(), ChallengeOutcome::Spent);
    // Failures count too (b's two wrong tries and a's one, unused challenges only: b's two).
    let later = ChallengeLimits { challenges_since: 2_000, max_challenges: 3, failures_since: 1_000, max_failures: 2 };
    assert!(!store.citizen_challenge_start(&ch("e", Some(&key), 2_000), &later).await.unwrap());
    let later = ChallengeLimits { max_failures: 3, ..later };
    assert!(store.citizen_challenge_start(&ch("e", Some(&key), 2_000), &later).await.unwrap());
    // Much later: the old challenges are forgotten (a spent one can no longer be tried).
    let much_later =
        ChallengeLimits { challenges_since: 9_000, max_challenges: 3, failures_since: 9_000, max_failures: 2 };
    assert!(store.citizen_challenge_start(&ch("f", None, 9_000), &much_later).await.unwrap());
    assert_eq!(store.citizen_challenge_attempt("e", "hash-e", 2_001, 5).await.unwrap(), ChallengeOutcome::Spent);
    // Sessions.
    let s = CitizenSession {
        token_hash: "t1".into(),
        person_key: key.clone(),
        created_at: 1_000,
        expires_at: 2_800,
        revoked_at: None,
    };
    store.citizen_session_insert(&s).await.unwrap();
    assert_eq!(store.citizen_session_get("t1").await.unwrap().unwrap(), s);
    assert!(store.citizen_session_get("t2").await.unwrap().is_none());
    assert!(store.citizen_session_revoke("t1", 1_100).await.unwrap());
    assert!(!store.citizen_session_revoke("t1", 1_101).await.unwrap());
    assert_eq!(store.citizen_session_get("t1").await.unwrap().unwrap().revoked_at, Some(1_100));
}

pub async fn oidc_codes_redeem_once(store: Arc<dyn Store>) {
    use crate::{OidcGrant, OidcTokens, RefreshOutcome};
    let reg = Registry::new(store.clone());
    let rec = reg.create(sample(1), &meta("thu thập")).await.unwrap();
    store.partner_insert(&partner("portal-a")).await.unwrap();
    store.partner_insert(&partner("portal-b")).await.unwrap();
    let g = OidcGrant {
        code_hash: "c1".into(),
        client_id: "portal-a".into(),
        person_key: rec.key.to_string(),
        redirect_uri: "https://portal.example/cb".into(),
        code_challenge: "x".repeat(43),
        scope: "openid profile".into(),
        nonce: Some("n".into()),
        auth_time: 1_000,
        expires_at: 1_060,
        used_at: None,
        access_expires_at: None,
        session_id: None,
        refresh_expires_at: None,
        revoked_at: None,
    };
    let tokens = |a: &str, r: &str, exp: i64| OidcTokens {
        access_hash: a.into(),
        access_expires_at: exp,
        refresh_hash: r.into(),
    };
    store.oidc_grant_insert(&g).await.unwrap();
    assert_eq!(
        store.oidc_grant_redeem("c1", &tokens("a1", "r1", 1_310), "s1", 9_000, 1_010).await.unwrap().unwrap(),
        g
    );
    let bound = store.oidc_grant_by_access("a1").await.unwrap().unwrap();
    assert_eq!((bound.used_at, bound.access_expires_at), (Some(1_010), Some(1_310)));
    assert_eq!((bound.session_id.as_deref(), bound.refresh_expires_at), (Some("s1"), Some(9_000)));
    // A replay: reported as used, and the tokens issued for the code stop working.
    let again = store.oidc_grant_redeem("c1", &tokens("a2", "r2", 1_320), "s1b", 9_000, 1_020).await.unwrap().unwrap();
    assert_eq!(again.used_at, Some(1_010));
    assert!(store.oidc_grant_by_access("a1").await.unwrap().is_none());
    assert!(store.oidc_grant_by_access("a2").await.unwrap().is_none());
    let refused = store.oidc_refresh("portal-a", "s1", "r1", &tokens("a3", "r3", 1_400), 1_100).await.unwrap();
    assert_eq!(refused, RefreshOutcome::Refused, "a replayed code ends its session");
    assert!(store.oidc_grant_redeem("nope", &tokens("a3", "r3", 1_320), "s0", 9_000, 1_020).await.unwrap().is_none());

    // Refresh tokens rotate on use; one used twice revokes the session.
    let g2 = OidcGrant { code_hash: "c2".into(), ..g.clone() };
    store.oidc_grant_insert(&g2).await.unwrap();
    store.oidc_grant_redeem("c2", &tokens("b1", "q1", 1_310), "s2", 9_000, 1_010).await.unwrap().unwrap();
    let other = store.oidc_refresh("portal-b", "s2", "q1", &tokens("x", "y", 1_400), 1_100).await.unwrap();
    assert_eq!(other, RefreshOutcome::Refused, "another client's session");
    assert!(store.oidc_grant_by_access("b1").await.unwrap().is_some(), "and nothing changed");
    let RefreshOutcome::Rotated(r) =
        store.oidc_refresh("portal-a", "s2", "q1", &tokens("b2", "q2", 1_400), 1_100).await.unwrap()
    else {
        panic!("the current refresh token rotates")
    };
    assert_eq!((r.person_key.as_str(), r.scope.as_str()), (g.person_key.as_str(), "openid profile"));
    assert!(store.oidc_grant_by_access("b1").await.unwrap().is_none(), "the earlier access token is replaced");
    assert_eq!(store.oidc_grant_by_access("b2").await.unwrap().unwrap().access_expires_at, Some(1_400));
    let reuse = store.oidc_refresh("portal-a", "s2", "q1", &tokens("b3", "q3", 1_500), 1_200).await.unwrap();
    assert_eq!(reuse, RefreshOutcome::Reused);
    assert!(store.oidc_grant_by_access("b2").await.unwrap().is_none(), "every token of the session stops");
    let after = store.oidc_refresh("portal-a", "s2", "q2", &tokens("b4", "q4", 1_500), 1_200).await.unwrap();
    assert_eq!(after, RefreshOutcome::Refused, "the current one too");
    // Expired refresh tokens are refused.
    let g3 = OidcGrant { code_hash: "c3".into(), ..g.clone() };
    store.oidc_grant_insert(&g3).await.unwrap();
    store.oidc_grant_redeem("c3", &tokens("d1", "p1", 1_310), "s3", 1_500, 1_010).await.unwrap().unwrap();
    let late = store.oidc_refresh("portal-a", "s3", "p1", &tokens("d2", "p2", 1_700), 1_500).await.unwrap();
    assert_eq!(late, RefreshOutcome::Refused);
    // The portal's logout ends a session once, only its own.
    let g4 = OidcGrant { code_hash: "c4".into(), ..g.clone() };
    store.oidc_grant_insert(&g4).await.unwrap();
    store.oidc_grant_redeem("c4", &tokens("e1", "o1", 1_310), "s4", 9_000, 1_010).await.unwrap().unwrap();
    assert!(store.oidc_session_end("portal-b", "s4", 1_100).await.unwrap().is_none());
    let ended = store.oidc_session_end("portal-a", "s4", 1_100).await.unwrap().unwrap();
    assert_eq!(ended.person_key, g.person_key);
    assert!(store.oidc_session_end("portal-a", "s4", 1_101).await.unwrap().is_none(), "once");
    assert!(store.oidc_grant_by_access("e1").await.unwrap().is_none());
    let gone = store.oidc_refresh("portal-a", "s4", "o1", &tokens("e2", "o2", 1_400), 1_110).await.unwrap();
    assert_eq!(gone, RefreshOutcome::Refused);

    // Grants ended long ago are forgotten when new ones are stored.
    let later = OidcGrant { code_hash: "c9".into(), auth_time: 20_000, expires_at: 20_060, ..g.clone() };
    store.oidc_grant_insert(&later).await.unwrap();
    assert!(store.oidc_grant_redeem("c1", &tokens("a4", "r4", 20_400), "s5", 29_000, 20_010).await.unwrap().is_none());
    let fresh = store.oidc_grant_redeem("c9", &tokens("a5", "r5", 20_400), "s9", 29_000, 20_010).await.unwrap();
    assert!(fresh.unwrap().used_at.is_none());
}

// ---- identity cards ---------------------------------------------------------------------------

/// The synthetic portrait the card tests use (a drawn face, 6 KB JPEG).
pub const FACE_JPEG: &[u8] = include_bytes!("../../dancu-card/testdata/face.jpg");

/// A throwaway card PKI with software keys, made at `made` (a DS made more than a year ago is
/// past its key usage period): the Document Signer, the CSCA certificate and its CRL.
pub fn test_card_pki(
    made: time::OffsetDateTime,
) -> (dancu_card::DocumentSigner, dancu_card::Certificate, dancu_card::CertificateList) {
    use dancu_card::pki::{self, Periods};
    use dancu_keys::{Signer, SoftwareKey};
    let made = made.replace_nanosecond(0).expect("0 ns");
    let periods = Periods::default();
    let csca_key = SoftwareKey::generate().expect("random source");
    let csca = pki::csca_certificate(&csca_key, 1, made, &periods).expect("CSCA certificate");
    let ds_key = SoftwareKey::generate().expect("random source");
    let ds =
        pki::ds_certificate(&csca, &csca_key, ds_key.public_key_der(), 1, 2, made, &periods).expect("DS certificate");
    let crl = pki::crl(&csca, &csca_key, 1, &[], time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(), 30)
        .expect("CRL");
    (dancu_card::DocumentSigner::new(Box::new(ds_key), ds).expect("DS key matches"), csca, crl)
}

async fn card_person(reg: &Registry, i: u32, birth: Option<PartialDate>) -> crate::PersonRecord {
    let mut input = sample(i);
    if let Some(b) = birth {
        input.birth_date = b;
    }
    let rec = reg.create(input, &meta("thu thập")).await.unwrap();
    reg.activate(rec.key, None, &meta("cấp số")).await.unwrap()
}

fn new_app(
    key: uuid::Uuid,
    kind: dancu_card::application::ApplicationKind,
    photo: &[u8],
) -> crate::cards::NewCardApplication {
    crate::cards::NewCardApplication {
        person: PersonRef::Key(key),
        kind,
        requested_under_14: false,
        photo: photo.to_vec(),
        fingerprints: vec![FACE_JPEG.to_vec()],
    }
}

/// Takes an application through received → verified → approved → queued at `centre`.
async fn card_to_queue(reg: &Registry, id: uuid::Uuid, centre: &str) {
    use dancu_card::application::Stage;
    use dancu_core::auth::Role;
    reg.card_step(id, Stage::Verified, "lan", &[Role::Verifier], None, None, None).await.unwrap();
    reg.card_step(id, Stage::Approved, "minh", &[Role::Approver], None, None, None).await.unwrap();
    reg.card_step(id, Stage::Queued, "hoa", &[Role::CardOperator], None, Some(centre.into()), None).await.unwrap();
}

pub async fn cards_intake_rules_and_workflow(store: Arc<dyn Store>) {
    use crate::cards::{CardApplicationQuery, CardServiceError};
    use dancu_card::application::{ApplicationKind, Stage, WorkflowError};
    use dancu_core::auth::Role;
    let reg = Registry::new(store.clone());
    let adult = card_person(&reg, 1, None).await; // commune 00004
    let first = ApplicationKind::FirstIssue;
    // Intake images: not a JPEG, too large, a bad fingerprint — each names its field.
    let e = reg.card_apply(new_app(adult.key, first, b"GIF89a not a jpeg"), "hoa", |_| true, None).await.unwrap_err();
    assert!(matches!(&e, CardServiceError::Invalid(f) if f.field == "photo" && f.reason.contains("not a JPEG")), "{e}");
    let mut big = FACE_JPEG[..FACE_JPEG.len() - 2].to_vec();
    big.resize(70 * 1024, 0);
    big.extend_from_slice(&[0xFF, 0xD9]);
    let e = reg.card_apply(new_app(adult.key, first, &big), "hoa", |_| true, None).await.unwrap_err();
    assert!(matches!(&e, CardServiceError::Invalid(f) if f.field == "photo" && f.reason.contains("too large")), "{e}");
    let mut bad_print = new_app(adult.key, first, FACE_JPEG);
    bad_print.fingerprints.push(b"WSQ".to_vec());
    let e = reg.card_apply(bad_print, "hoa", |_| true, None).await.unwrap_err();
    assert!(matches!(&e, CardServiceError::Invalid(f) if f.field == "fingerprints[1]"), "{e}");
    // Outside the officer's area: as missing.
    let e = reg.card_apply(new_app(adult.key, first, FACE_JPEG), "hoa", |_| false, None).await.unwrap_err();
    assert!(matches!(e, CardServiceError::NotFound));
    // A renewal needs a current card.
    let e = reg.card_apply(new_app(adult.key, ApplicationKind::Renewal, FACE_JPEG), "hoa", |_| true, None).await;
    assert!(matches!(e, Err(CardServiceError::Workflow(WorkflowError::Invalid(_)))));
    let app = reg.card_apply(new_app(adult.key, first, FACE_JPEG), "hoa", |_| true, None).await.unwrap();
    assert_eq!(app.stage, Stage::Received);
    assert_eq!(app.number.len(), 12);
    assert_eq!(app.due_on, reg.calendar().deadline(crate::registry::today(), 7));
    assert_eq!(store.card_application_by_number(&app.number).await.unwrap().unwrap(), app);
    assert_eq!(store.card_images(app.id).await.unwrap().unwrap().photo, FACE_JPEG);
    // A second open application of the same person names the first.
    let e = reg.card_apply(new_app(adult.key, first, FACE_JPEG), "hoa", |_| true, None).await.unwrap_err();
    assert!(e.to_string().contains(&app.number), "{e}");
    // Under 14: only on request.
    let child = card_person(&reg, 2, Some(PartialDate::Year(crate::registry::today().year() - 9))).await;
    let e = reg.card_apply(new_app(child.key, first, FACE_JPEG), "hoa", |_| true, None).await.unwrap_err();
    assert!(matches!(e, CardServiceError::Workflow(WorkflowError::UnderMinimumAge { .. })), "{e}");
    let mut requested = new_app(child.key, first, FACE_JPEG);
    requested.requested_under_14 = true;
    let child_app = reg.card_apply(requested, "hoa", |_| true, None).await.unwrap();
    // Steps: roles, order, and the verifier may not approve.
    let e = reg.card_step(app.id, Stage::Approved, "minh", &[Role::Approver], None, None, None).await.unwrap_err();
    assert!(matches!(e, CardServiceError::Workflow(WorkflowError::Transition { .. })));
    let e = reg.card_step(app.id, Stage::Verified, "hoa", &[Role::CardOperator], None, None, None).await.unwrap_err();
    assert!(matches!(e, CardServiceError::Workflow(WorkflowError::Role { .. })));
    let roles = [Role::Verifier, Role::Approver];
    reg.card_step(app.id, Stage::Verified, "lan", &roles, None, None, None).await.unwrap();
    let e = reg.card_step(app.id, Stage::Approved, "lan", &roles, None, None, None).await.unwrap_err();
    assert!(matches!(e, CardServiceError::Workflow(WorkflowError::SameOfficer(_))), "{e}");
    let app2 = reg.card_step(app.id, Stage::Approved, "minh", &roles, None, None, None).await.unwrap();
    assert_eq!(app2.verified_by.as_deref(), Some("lan"));
    assert_eq!(app2.steps.len(), 3);
    // Queueing needs a known centre.
    let e = reg.card_step(app.id, Stage::Queued, "hoa", &[Role::CardOperator], None, None, None).await.unwrap_err();
    assert!(matches!(&e, CardServiceError::Invalid(f) if f.field == "centre"));
    let e = reg
        .card_step(app.id, Stage::Queued, "hoa", &[Role::CardOperator], None, Some("nowhere".into()), None)
        .await
        .unwrap_err();
    assert!(matches!(&e, CardServiceError::Invalid(f) if f.code == "unknown_centre"));
    // A stale step (read at an earlier stage) changes nothing.
    let mut stale = app2.clone();
    stale.stage = Stage::Cancelled;
    let e = store.card_application_step(&stale, Stage::Verified, None).await.unwrap_err();
    assert!(matches!(e, StoreError::State(_)));
    // Cancelling needs a reason; a cancelled application frees the person for a new one.
    let e = reg.card_step(child_app.id, Stage::Cancelled, "hoa", &[Role::CardOperator], None, None, None).await;
    assert!(matches!(e, Err(CardServiceError::Invalid(_))));
    reg.card_step(child_app.id, Stage::Cancelled, "hoa", &[Role::CardOperator], Some("rút hồ sơ".into()), None, None)
        .await
        .unwrap();
    let mut again = new_app(child.key, first, FACE_JPEG);
    again.requested_under_14 = true;
    reg.card_apply(again, "hoa", |_| true, None).await.unwrap();
    // Lists: by area (the person's commune), overdue after the deadline.
    let q = |area: &str| CardApplicationQuery { area: Some(area.into()), limit: 50, ..Default::default() };
    assert_eq!(store.card_applications(&q("c:2025:00004")).await.unwrap().len(), 3);
    assert!(store.card_applications(&q("c:2025:26506")).await.unwrap().is_empty());
    // By person (the citizen's own list): every application of theirs, closed ones too, no other's.
    let of = |k: uuid::Uuid| CardApplicationQuery { person_key: Some(k), limit: 50, ..Default::default() };
    let mine = store.card_applications(&of(child.key)).await.unwrap();
    assert_eq!(mine.len(), 2, "the cancelled application and the new one");
    assert!(mine.iter().all(|a| a.person_key == child.key));
    assert!(mine.iter().any(|a| a.id == child_app.id && a.stage == Stage::Cancelled));
    assert_eq!(
        store.card_applications(&of(adult.key)).await.unwrap().iter().map(|a| a.id).collect::<Vec<_>>(),
        [app.id]
    );
    assert!(store.card_applications(&of(uuid::Uuid::new_v4())).await.unwrap().is_empty());
    let overdue = |d: time::Date| CardApplicationQuery { overdue_on: Some(d), limit: 50, ..Default::default() };
    assert!(store.card_applications(&overdue(app.due_on)).await.unwrap().is_empty());
    let late = store.card_applications(&overdue(app.due_on.next_day().unwrap())).await.unwrap();
    assert_eq!(late.len(), 2, "the two open applications, not the cancelled one");
    // Counts by stage (the dashboard): the same area and overdue rules in one grouped scan.
    let counts = store.card_application_counts(Some("c:2025:00004"), app.due_on.next_day().unwrap()).await.unwrap();
    assert_eq!(
        (counts.count(Stage::Received), counts.count(Stage::Approved), counts.count(Stage::Cancelled)),
        (1, 1, 1),
        "{counts:?}"
    );
    assert_eq!(counts.by_stage.iter().map(|(_, n)| n).sum::<u64>(), 3);
    assert_eq!(counts.overdue, 2);
    assert_eq!(store.card_application_counts(Some("c:2025:00004"), app.due_on).await.unwrap().overdue, 0);
    assert_eq!(store.card_application_counts(Some("c:2025:26506"), app.due_on).await.unwrap(), Default::default());
    let all = store.card_application_counts(None, app.due_on.next_day().unwrap()).await.unwrap();
    assert!(all.by_stage.iter().map(|(_, n)| n).sum::<u64>() >= 3);
}

pub async fn cards_production_stock_and_states(store: Arc<dyn Store>) {
    use crate::cards::{CardServiceError, Centre};
    use dancu_card::application::{ApplicationKind, CardState, ReissueReason, ReplacementReason, Stage};
    let reg = Registry::new(store.clone());
    let (signer, csca, crl) = test_card_pki(time::OffsetDateTime::now_utc() - time::Duration::days(1));
    reg.centre_add(&Centre { id: "TT-HN".into(), name: "Trung tâm Hà Nội".into(), stock: 1 }, None).await.unwrap();
    let e = reg.centre_add(&Centre { id: "TT-HN".into(), name: "x".into(), stock: 0 }, None).await;
    assert!(matches!(e, Err(CardServiceError::Store(StoreError::Duplicate(_)))));
    let e = reg.centre_add(&Centre { id: "bad id".into(), name: "x".into(), stock: 0 }, None).await;
    assert!(matches!(e, Err(CardServiceError::Invalid(_))));
    let a = card_person(&reg, 1, Some(PartialDate::from_ymd(1990, 2, 28).unwrap())).await;
    let b = card_person(&reg, 2, None).await;
    let first = ApplicationKind::FirstIssue;
    let app_a = reg.card_apply(new_app(a.key, first, FACE_JPEG), "hoa", |_| true, None).await.unwrap();
    let app_b = reg.card_apply(new_app(b.key, first, FACE_JPEG), "hoa", |_| true, None).await.unwrap();
    card_to_queue(&reg, app_a.id, "TT-HN").await;
    card_to_queue(&reg, app_b.id, "TT-HN").await;
    // A DS key past its usage period signs nothing; the queue stays as it was.
    let (old, _, _) = test_card_pki(time::OffsetDateTime::now_utc() - time::Duration::days(400));
    let e = reg.card_produce("TT-HN", 10, &old, "sx", None).await.unwrap_err();
    assert!(matches!(&e, CardServiceError::Signer(m) if m.contains("usage period")), "{e}");
    assert_eq!(store.centres(crate::now()).await.unwrap()[0].backlog, 2);
    // One blank card: one card made, then the queue stops with an alert; nothing lost.
    let (made, stopped) = reg.card_produce("TT-HN", 10, &signer, "sx", None).await.unwrap();
    assert_eq!((made.len(), stopped), (1, true));
    let status = &store.centres(crate::now()).await.unwrap()[0];
    assert_eq!((status.stock, status.backlog, status.personalized_last_hour, status.personalized_total), (0, 1, 1, 1));
    assert!(status.alert.as_ref().is_some_and(|al| al.message.contains("TT-HN")), "{status:?}");
    let (made2, stopped2) = reg.card_produce("TT-HN", 10, &signer, "sx", None).await.unwrap();
    assert!(made2.is_empty() && stopped2);
    let waiting = reg.card_application(if made[0].person_key == a.key { app_b.id } else { app_a.id }).await.unwrap();
    assert_eq!(waiting.stage, Stage::Queued);
    // Restock: the alert is resolved and the queue runs again.
    assert!(matches!(reg.centre_restock("TT-XX", 5, None).await, Err(CardServiceError::Store(StoreError::NotFound))));
    assert!(matches!(reg.centre_restock("TT-HN", 0, None).await, Err(CardServiceError::Invalid(_))));
    reg.centre_restock("TT-HN", 5, None).await.unwrap();
    assert!(store.centres(crate::now()).await.unwrap()[0].alert.is_none());
    let (made3, stopped3) = reg.card_produce("TT-HN", 10, &signer, "sx", None).await.unwrap();
    assert_eq!((made3.len(), stopped3), (1, false));
    let status = &store.centres(crate::now()).await.unwrap()[0];
    assert_eq!((status.stock, status.backlog, status.personalized_total), (4, 0, 2));
    // The card: expiry by the law, MRZ, chip files that pass passive authentication.
    let card_a = store.cards_of(a.key).await.unwrap().remove(0);
    assert_eq!(card_a.state, CardState::Active);
    assert_eq!(card_a.expiry, dancu_card::application::card_expiry(&a.person.record.birth_date, card_a.issue_date));
    assert_eq!(card_a.mrz.len(), 3);
    let chip = store.card_chip(&card_a.serial).await.unwrap().unwrap();
    let files = chip.files().unwrap();
    let sod = &files.iter().find(|f| f.0 == "ef_sod.bin").unwrap().1;
    let groups: Vec<(u8, &[u8])> = [(1u8, "dg1.bin"), (2, "dg2.bin"), (13, "dg13.bin")]
        .map(|(n, name)| (n, files.iter().find(|f| f.0 == name).unwrap().1.as_slice()))
        .to_vec();
    let report = dancu_card::verify::passive_authentication(sod, &groups, &[csca], &[crl], crate::now());
    assert!(report.passed(), "{report:?}");
    let app_a = reg.card_application(app_a.id).await.unwrap();
    assert_eq!((app_a.stage, app_a.card_serial.as_deref()), (Stage::Personalized, Some(card_a.serial.as_str())));
    // States: lost is final; a re-issue leaves it lost, a replacement replaces the active card.
    for id in [app_a.id, app_b.id] {
        for (to, by) in [(Stage::QualityChecked, "sx"), (Stage::Dispatched, "sx"), (Stage::Delivered, "hoa")] {
            let role = dancu_card::application::role_for(to);
            reg.card_step(id, to, by, &[role], None, None, None).await.unwrap();
        }
    }
    let e = reg.card_set_state(&card_a.serial, CardState::Lost, None, "hoa", None).await;
    assert!(matches!(e, Err(CardServiceError::Invalid(_))), "a reason is required");
    reg.card_set_state(&card_a.serial, CardState::Lost, Some("công dân báo mất".into()), "hoa", None).await.unwrap();
    let e = reg.card_set_state(&card_a.serial, CardState::Active, Some("tìm thấy".into()), "hoa", None).await;
    assert!(matches!(e, Err(CardServiceError::Workflow(_))));
    let lost = ApplicationKind::Reissue(ReissueReason::Lost);
    let re = reg.card_apply(new_app(a.key, lost, FACE_JPEG), "hoa", |_| true, None).await.unwrap();
    card_to_queue(&reg, re.id, "TT-HN").await;
    reg.card_produce("TT-HN", 10, &signer, "sx", None).await.unwrap();
    let cards_a = store.cards_of(a.key).await.unwrap();
    assert_eq!(cards_a.len(), 2);
    assert_eq!(cards_a.iter().filter(|c| c.state == CardState::Active).count(), 1);
    assert_eq!(store.card_get(&card_a.serial).await.unwrap().unwrap().state, CardState::Lost);
    let card_b = store.cards_of(b.key).await.unwrap().remove(0);
    let rep = ApplicationKind::Replacement(ReplacementReason::HolderRequest);
    let rb = reg.card_apply(new_app(b.key, rep, FACE_JPEG), "hoa", |_| true, None).await.unwrap();
    card_to_queue(&reg, rb.id, "TT-HN").await;
    let (made4, _) = reg.card_produce("TT-HN", 10, &signer, "sx", None).await.unwrap();
    let old_b = store.card_get(&card_b.serial).await.unwrap().unwrap();
    assert_eq!(old_b.state, CardState::Replaced);
    assert_eq!(old_b.replaced_by.as_deref(), Some(made4[0].serial.as_str()));
    assert_eq!(store.centres(crate::now()).await.unwrap()[0].stock, 2);
    // Expired is computed: an active card past its expiry reads as expired.
    let mut aged = made4[0].clone();
    aged.expiry = Some(aged.issue_date);
    assert_eq!(aged.state_on(aged.issue_date.next_day().unwrap()), CardState::Expired);
}
