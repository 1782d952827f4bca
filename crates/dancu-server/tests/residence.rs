//! Residence procedures over real HTTP, on SQLite and on PostgreSQL: an application filed,
//! received and approved by commune police; the person's record, household and history follow;
//! bad input is refused naming the field; a residence confirmation verifies and a tampered or
//! forged one does not.

mod support;

use std::sync::Arc;

use dancu_core::auth::Role;
use dancu_store::Store;
use serde_json::{Value, json};
use support::{Client, add_officer, call, client, start_on};

async fn officer(s: &support::Server, name: &str, unit: &str, roles: &[Role]) -> Client {
    let c = add_officer(s, name, unit, roles, &[], false).await;
    client(s.addr, &c).await
}

async fn active_person(o: &Client, permanent: bool) -> (String, String) {
    person_born(o, permanent, "Tám", "1988-08-08").await
}

async fn person_born(o: &Client, permanent: bool, given: &str, birth: &str) -> (String, String) {
    let mut p = json!({
        "name": {"surname": "Lê", "middle": "Văn", "given": given},
        "birth_date": birth,
        "sex": "male",
        "birth_registration_place": {"province_code": "01"},
        "ethnicity": "01",
        "religion": "00",
        "nationalities": ["VNM"],
        "current_residence": {"scheme": "2025", "commune_code": "00004", "detail": "Nhà trọ số 3"}
    });
    if permanent {
        p["permanent_residence"] = json!({"scheme": "2025", "commune_code": "00004", "detail": "Số 8 Phố Đội Cấn"});
    }
    let r = o.send("POST", "/api/v1/persons", &json!({"person": p, "reason": "thu thập"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let key = r.json()["key"].as_str().unwrap().to_string();
    let r = o.send("POST", &format!("/api/v1/persons/{key}/activate"), &json!({"reason": "cấp số"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    (key, r.json()["person"]["personal_id"].as_str().unwrap().to_string())
}

fn addr(code: &str, detail: &str) -> Value {
    json!({"scheme": "2025", "commune_code": code, "detail": detail})
}

async fn file(o: &Client, procedure: Value) -> support::Resp {
    o.send("POST", "/api/v1/residence/applications", &json!({"procedure": procedure})).await
}

async fn procedures_over_http(store: Arc<dyn Store>) {
    let s = start_on(store, Default::default()).await;
    let commune = officer(&s, "cand.ba-dinh", "commune:00004", &[Role::Collector, Role::Verifier]).await;
    let elsewhere = officer(&s, "cand.khac", "commune:26506", &[Role::Collector, Role::Verifier]).await;
    let (key, pid) = active_person(&commune, false).await;
    let home = addr("00004", "15 Phố Đội Cấn");
    let reg = json!({"kind": "permanent_registration", "person": pid, "address": home,
                     "household": {"mode": "new", "own_home": true}});

    // outside the area: as if there were no such application
    let r = file(&elsewhere, reg.clone()).await;
    r.problem(404, "not-found");
    let r = file(&commune, reg.clone()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let app = r.json();
    let id = app["id"].as_str().unwrap().to_string();
    assert_eq!(app["state"], "submitted");
    assert!(app["deadline"].as_str().unwrap() > app["submitted_at"].as_str().unwrap().split('T').next().unwrap());
    let r = elsewhere.get(&format!("/api/v1/residence/applications/{id}")).await;
    r.problem(404, "not-found");

    // deciding before receiving: refused
    let decide = |d: Value| {
        let id = id.clone();
        let c = &commune;
        async move { c.send("POST", &format!("/api/v1/residence/applications/{id}/decision"), &d).await }
    };
    decide(json!({"decision": "approve"})).await.problem(409, "state");
    let r = commune.send("POST", &format!("/api/v1/residence/applications/{id}/receive"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // open and not yet overdue
    let r = commune.get("/api/v1/residence/applications?overdue=true").await;
    assert_eq!(r.json().as_array().unwrap().len(), 0);
    let r = commune.get("/api/v1/residence/applications?state=received").await;
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let r = decide(json!({"decision": "approve"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let household = r.json()["created_household"].as_str().unwrap().to_string();
    decide(json!({"decision": "approve"})).await.problem(409, "state");

    // the record follows the procedure (and with it the area)
    let p = commune.get(&format!("/api/v1/persons/{pid}")).await.json();
    assert_eq!(p["person"]["permanent_residence"], home);
    assert_eq!(p["person"]["household"]["relationship_to_head"], "head");
    let h = commune.get(&format!("/api/v1/households/{household}")).await;
    assert_eq!(h.status, 200, "{}", h.body);
    assert_eq!(h.json()["head"], key.as_str());
    assert_eq!(p["person"]["residence_file_number"], h.json()["number"]);
    let today = dancu_core::date::iso_date::format(dancu_store::registry::today());
    let r = commune.get(&format!("/api/v1/persons/{pid}/residences?on={today}")).await;
    assert_eq!(r.json()["on"]["residences"][0]["address"], home);
    let r = commune
        .get(&format!("/api/v1/residence/at-address?commune_code=00004&detail=15%20Ph%E1%BB%91%20%C4%90%E1%BB%99i%20C%E1%BA%A5n&on={today}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()[0]["person_key"], key.as_str());
    elsewhere
        .get(&format!("/api/v1/residence/at-address?commune_code=00004&on={today}"))
        .await
        .problem(404, "not-found");

    // bad input: each named
    let r = file(&commune, reg.clone()).await;
    assert_eq!(r.problem(422, "validation")["errors"][0]["code"], "already_registered");
    let mut second = reg.clone();
    second["address"] = addr("00004", "99 Phố Kim Mã");
    let r = file(&commune, second).await;
    assert_eq!(r.problem(422, "validation")["errors"][0]["field"], "procedure.moving");
    let r = file(
        &commune,
        json!({"kind": "permanent_registration", "person": pid, "moving": true, "address": addr("00004", "99 Phố Kim Mã"),
               "household": {"mode": "join", "household": "00000000-0000-0000-0000-000000000000", "relationship_to_head": "child"},
               "consent": {"given_by": "X", "given_on": "2025-01-01", "document": "VB"}}),
    )
    .await;
    let errs = r.problem(422, "validation");
    assert_eq!(errs["errors"][0]["code"], "unknown_household");
    let r = file(&commune, json!({"kind": "temporary_registration", "person": pid, "address": addr("26506", "Nhà trọ"), "until": "2020-01-01"})).await;
    assert_eq!(r.problem(422, "validation")["errors"][0]["field"], "procedure.until");
    let r = file(
        &commune,
        json!({"kind": "household_separation", "household": household, "members": [pid], "new_head": pid}),
    )
    .await;
    assert_eq!(r.problem(422, "validation")["errors"][0]["code"], "consent_required");
    let r = file(&commune, json!({"kind": "no_such_procedure", "person": pid})).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = commune
        .send("POST", &format!("/api/v1/residence/applications/{id}/decision"), &json!({"decision": "maybe"}))
        .await;
    assert!(r.status == 400 || r.status == 422, "{}", r.body);

    // a stay, notified late
    let r = file(
        &commune,
        json!({"kind": "stay_notification", "person": pid, "address": addr("00004", "Khách sạn Ba Đình"),
               "arrived_at": "2020-01-01T23:30:00+07:00", "until": "2020-01-03"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!((r.json()["state"].clone(), r.json()["late"].clone()), (json!("approved"), json!(true)));
}

async fn confirmations_over_http(store: Arc<dyn Store>) {
    let s = start_on(store, Default::default()).await;
    let o = officer(&s, "cand.xac-nhan", "commune:00004", &[Role::Collector, Role::Verifier]).await;
    let (_, pid) = active_person(&o, true).await;
    let r = o.get(&format!("/api/v1/persons/{pid}/residence-confirmation")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.body.contains("XÁC NHẬN THÔNG TIN VỀ CƯ TRÚ") && r.body.contains("<svg"), "{}", r.body);
    assert!(r.body.contains(&pid));
    let code = r.body.split("<code>").nth(1).unwrap().split("</code>").next().unwrap().to_string();
    let a = s.addr;
    let verify = |c: String| async move {
        let none: &[(&str, &str)] = &[];
        call(a, "GET", &format!("/api/v1/residence-confirmations/verify?code={c}"), none, None).await
    };
    // anyone (no login) can check a genuine one
    let r = verify(code.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["valid"], true);
    assert_eq!(r.json()["statement"]["personal_id"], pid.as_str());
    assert_eq!(r.json()["statement"]["permanent_residence"]["commune_code"], "00004");
    // tampered: the statement re-encoded with another address keeps the old signature
    let (m, sig) = code.split_once('.').unwrap();
    let mut st: Value = serde_json::from_slice(&dancu_core::auth::base32_decode(m).unwrap()).unwrap();
    st["permanent_residence"]["commune_code"] = json!("26506");
    let st: dancu_core::residence::ConfirmationStatement = serde_json::from_value(st).unwrap();
    let altered = format!("{}.{sig}", dancu_core::auth::base32_encode(&st.to_message()));
    let r = verify(altered).await;
    assert_eq!(r.problem(422, "invalid-confirmation")["errors"][0]["field"], "code");
    // forged: signed with another key
    let other = dancu_keys::SoftwareKey::generate().unwrap();
    let forged = st.code(&dancu_keys::Signer::sign(&other, &st.to_message()).unwrap());
    verify(forged).await.problem(422, "invalid-confirmation");
    // garbage
    verify("NOT-A-CODE".into()).await.problem(422, "invalid-confirmation");

    // the same document as a PDF file: its Vietnamese text extracts (poppler's pdftotext reads
    // it), and the code printed in it verifies, with the short reference printed beside the QR
    let r = o.get(&format!("/api/v1/persons/{pid}/residence-confirmation.pdf")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/pdf"));
    assert!(r.bytes.starts_with(b"%PDF-1.7") && r.bytes.ends_with(b"%%EOF\n"));
    if let Some(text) = pdf_text(&r.bytes) {
        for needle in
            ["CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "XÁC NHẬN THÔNG TIN VỀ CƯ TRÚ", "Lê Văn Tám", &pid, "Đội Cấn"]
        {
            assert!(text.contains(needle), "{needle:?} not in the PDF text:\n{text}");
        }
        let code: String = text.split("(full code):").nth(1).unwrap().split_whitespace().collect();
        let r = verify(code).await;
        assert_eq!(r.status, 200, "the PDF's code must verify: {}", r.body);
        let reference = r.json()["reference"].as_str().unwrap().to_string();
        assert!(text.contains(&reference), "short reference {reference} not printed:\n{text}");
    }
    o.get("/api/v1/persons/00000000-0000-0000-0000-000000000000/residence-confirmation.pdf")
        .await
        .problem(404, "not-found");
    // one flipped character of the signature
    let mut chars: Vec<char> = code.chars().collect();
    let last = chars.len() - 2;
    chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
    verify(chars.into_iter().collect()).await.problem(422, "invalid-confirmation");
}

/// The text of a PDF file by poppler's `pdftotext` (an independent reader). Without the tool:
/// skipped, except under CI (`CI=true`), where it must be installed.
fn pdf_text(pdf: &[u8]) -> Option<String> {
    use std::io::Write;
    let child = std::process::Command::new("pdftotext")
        .args(["-enc", "UTF-8", "-", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("pdftotext not available ({e}): PDF text check skipped");
            return None;
        }
        Err(e) => panic!("pdftotext (poppler-utils) is required under CI: {e}"),
    };
    child.stdin.take().unwrap().write_all(pdf).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "pdftotext: {err}");
    Some(String::from_utf8(out.stdout).unwrap())
}

/// Files, receives and approves an application; returns it.
async fn approved(o: &Client, procedure: Value) -> Value {
    let r = file(o, procedure.clone()).await;
    assert_eq!(r.status, 201, "{procedure}: {}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let r = o.send("POST", &format!("/api/v1/residence/applications/{id}/receive"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r =
        o.send("POST", &format!("/api/v1/residence/applications/{id}/decision"), &json!({"decision": "approve"})).await;
    assert_eq!(r.status, 200, "{procedure}: {}", r.body);
    assert_eq!(r.json()["state"], "approved");
    r.json()
}

fn refused(r: &support::Resp, code: &str) {
    let p = r.problem(422, "validation");
    assert!(p["errors"].as_array().unwrap().iter().any(|e| e["code"] == code), "expected {code}: {p}");
}

fn day_after(days: i64) -> String {
    dancu_core::date::iso_date::format(dancu_store::registry::today() + time::Duration::days(days))
}

/// Every procedure of the Residence Law, end to end over HTTP: permanent registration (new
/// household; joining with the head's consent), temporary residence (registration outside the
/// permanent commune, renewal, deletion, automatic expiry), stay notification (on time and
/// late), temporary absence (the four cases), separation, change of head, civil-status update,
/// deletion of permanent residence (every cause, with death refused until recorded) and moving.
async fn every_procedure_over_http(store: Arc<dyn Store>) {
    let s = start_on(store.clone(), Default::default()).await;
    let o = officer(&s, "cand.thu-tuc", "commune:00004", &[Role::Collector, Role::Verifier]).await;
    // temporary residence elsewhere is handled there: a national officer files those here
    let nat = officer(&s, "c06.thu-tuc", "ministry", &[Role::Collector, Role::Verifier]).await;
    let (a_key, a) = person_born(&o, false, "An", "1980-01-01").await;
    let (b_key, b) = person_born(&o, false, "Bình", "1982-02-02").await;
    let (c_key, c) = person_born(&o, false, "Cường", "2005-05-05").await;
    let home = addr("00004", "15 Phố Đội Cấn");
    let person = |pid: &str| {
        let o = &o;
        let path = format!("/api/v1/persons/{pid}");
        async move { o.get(&path).await.json()["person"].clone() }
    };

    // permanent residence: a new household, then joining it (the head's consent required)
    let app = approved(
        &o,
        json!({"kind": "permanent_registration", "person": a, "address": home,
        "household": {"mode": "new", "own_home": true}}),
    )
    .await;
    let h = app["created_household"].as_str().unwrap().to_string();
    let join = |pid: &str, rel: &str| {
        json!({"kind": "permanent_registration", "person": pid, "address": home,
               "household": {"mode": "join", "household": h, "relationship_to_head": rel},
               "consent": {"given_by": "Lê Văn An", "personal_id": a, "given_on": day_after(0), "document": "Văn bản đồng ý số 1"}})
    };
    let mut no_consent = join(&b, "spouse");
    no_consent.as_object_mut().unwrap().remove("consent");
    refused(&file(&o, no_consent).await, "consent_required");
    approved(&o, join(&b, "spouse")).await;
    approved(&o, join(&c, "child")).await;
    let hh = o.get(&format!("/api/v1/households/{h}")).await.json();
    assert_eq!(hh["members"].as_array().unwrap().iter().filter(|m| m["left_on"].is_null()).count(), 3);
    assert_eq!(person(&b).await["household"]["relationship_to_head"], "spouse");
    assert_eq!(person(&c).await["household"]["head_name"], "Lê Văn An");

    // temporary residence: not in the permanent commune; at most 2 years; renewal; deletion
    let temp = |pid: &str, until: String| json!({"kind": "temporary_registration", "person": pid, "address": addr("26506", "Nhà trọ Hòa Bình"), "until": until});
    let mut here = temp(&b, day_after(100));
    here["address"] = addr("00004", "Nhà trọ số 9");
    refused(&file(&nat, here).await, "in_permanent_commune");
    refused(&file(&nat, temp(&b, day_after(800))).await, "too_long");
    approved(&nat, temp(&b, day_after(100))).await;
    assert_eq!(person(&b).await["temporary_residence"]["commune_code"], "26506");
    approved(&nat, json!({"kind": "temporary_renewal", "person": b, "until": day_after(300)})).await;
    let rows = o.get(&format!("/api/v1/persons/{b}/residences")).await.json()["residences"].clone();
    let open_temp: Vec<&Value> =
        rows.as_array().unwrap().iter().filter(|r| r["kind"] == "temporary" && r["valid_to"].is_null()).collect();
    assert_eq!(open_temp.len(), 1, "{rows}");
    assert_eq!(open_temp[0]["expires_on"], day_after(300).as_str());
    let del =
        json!({"kind": "temporary_deletion", "person": b, "cause": "absent_six_months", "effective": day_after(0)});
    approved(&nat, del).await;
    assert!(person(&b).await["temporary_residence"].is_null());
    // automatic expiry (the server's hourly job): a registration until tomorrow ends after it
    approved(&nat, temp(&b, day_after(1))).await;
    let reg = dancu_store::registry::Registry::new(store.clone());
    let today = dancu_store::registry::today();
    assert_eq!(reg.expire_temporary(today + time::Duration::days(1), "system").await.unwrap(), 0);
    assert_eq!(reg.expire_temporary(today + time::Duration::days(2), "system").await.unwrap(), 1);
    assert!(person(&b).await["temporary_residence"].is_null());
    let rows = o.get(&format!("/api/v1/persons/{b}/residences")).await.json()["residences"].clone();
    assert!(rows.as_array().unwrap().iter().any(|r| r["end_cause"] == "expired"), "{rows}");

    // stay notification: on time, and after the 23:00 rule (late)
    let now = time::OffsetDateTime::now_utc().to_offset(time::UtcOffset::from_hms(7, 0, 0).unwrap());
    let stay = |arrived: String| {
        json!({"kind": "stay_notification", "person": c, "address": addr("00004", "Nhà nghỉ Hoa Sen"),
               "arrived_at": arrived, "until": dancu_core::date::iso_date::format(now.date() + time::Duration::days(3))})
    };
    let r = file(&o, stay(now.format(&time::format_description::well_known::Rfc3339).unwrap())).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!((r.json()["state"].clone(), r.json()["late"].clone()), (json!("approved"), json!(false)));
    let two_days_ago = (now - time::Duration::days(2)).date();
    let r = file(&o, stay(format!("{}T22:00:00+07:00", dancu_core::date::iso_date::format(two_days_ago)))).await;
    assert_eq!(r.json()["late"], true, "{}", r.body);

    // temporary absence: the four cases, each with its own condition
    let absence = |pid: &str, case: &str, until: String, decision: Option<&str>| {
        let mut v = json!({"kind": "temporary_absence", "person": pid, "case": case, "from": day_after(1),
                           "until": until, "destination": "Thành phố Hồ Chí Minh"});
        if let Some(d) = decision {
            v["decision"] = json!(d);
        }
        v
    };
    refused(&file(&o, absence(&a, "bail_or_probation", day_after(60), None)).await, "required");
    approved(&o, absence(&a, "bail_or_probation", day_after(60), Some("Quyết định 12/2026/QĐ-TA"))).await;
    approved(&o, absence(&a, "administrative_measure", day_after(60), Some("Quyết định 3/QĐ-UBND"))).await;
    refused(&file(&o, absence(&c, "military_age", day_after(30), None)).await, "too_short");
    refused(&file(&o, absence(&a, "military_age", day_after(120), None)).await, "not_military_age");
    approved(&o, absence(&c, "military_age", day_after(120), None)).await;
    refused(&file(&o, absence(&b, "long_absence", day_after(200), None)).await, "too_short");
    approved(&o, absence(&b, "long_absence", day_after(400), None)).await;
    assert_eq!(person(&b).await["temporary_absence"]["destination"], "Thành phố Hồ Chí Minh");

    // separation: C leaves with the head's consent and heads a new household
    let sep = json!({"kind": "household_separation", "household": h, "members": [c], "new_head": c,
        "consent": {"given_by": "Lê Văn An", "personal_id": a, "given_on": day_after(0), "document": "Văn bản đồng ý số 2"}});
    let h2 = approved(&o, sep).await["created_household"].as_str().unwrap().to_string();
    assert_eq!(o.get(&format!("/api/v1/households/{h2}")).await.json()["head"], c_key.as_str());
    assert_eq!(person(&c).await["household"]["relationship_to_head"], "head");

    // change of head: B heads the household; A's link names B
    let change = json!({"kind": "head_change", "household": h, "new_head": b,
        "relationships": [{"person": a, "relationship": "spouse"}]});
    approved(&o, change).await;
    assert_eq!(o.get(&format!("/api/v1/households/{h}")).await.json()["head"], b_key.as_str());
    assert_eq!(person(&a).await["household"]["head_name"], "Lê Văn Bình");

    // civil-status update: B's name as registered in civil status reaches A's household link
    let update = |changes: Value, registered: String| {
        json!({"kind": "civil_status_update", "person": b, "document": "Trích lục thay đổi hộ tịch số 45",
               "registered_on": registered, "changes": changes})
    };
    refused(&file(&o, update(json!({}), day_after(-1))).await, "required");
    refused(&file(&o, update(json!({"birth_date": "1990-02-02"}), day_after(-1))).await, "birth_year_change");
    refused(&file(&o, update(json!({"ethnicity": "01"}), day_after(-1))).await, "no_change");
    refused(&file(&o, update(json!({"ethnicity": "99"}), day_after(-1))).await, "unknown_code");
    let new_name = json!({"surname": "Lê", "middle": "Thị", "given": "Bình"});
    let app = approved(&o, update(json!({"name": new_name, "marital_status": "married"}), day_after(-40))).await;
    assert_eq!(app["late"], true, "filed more than 30 days after the civil-status change");
    assert_eq!(person(&b).await["name"], new_name);
    assert_eq!(person(&a).await["household"]["head_name"], "Lê Thị Bình");

    // deletion of permanent residence: every cause is accepted, death only once recorded
    for cause in
        ["absent_undeclared", "accommodation_ended", "registration_cancelled", "settled_abroad", "lost_nationality"]
    {
        let r = file(&o, json!({"kind": "permanent_deletion", "person": a, "cause": cause, "effective": day_after(0)}))
            .await;
        assert_eq!(r.status, 201, "{cause}: {}", r.body);
        let id = r.json()["id"].as_str().unwrap().to_string();
        o.send("POST", &format!("/api/v1/residence/applications/{id}/receive"), &json!({})).await;
        let r = o
            .send(
                "POST",
                &format!("/api/v1/residence/applications/{id}/decision"),
                &json!({"decision": "reject", "reason": "hồ sơ thử"}),
            )
            .await;
        assert_eq!(r.json()["state"], "rejected", "{}", r.body);
    }
    for cause in ["death", "declared_missing"] {
        let r = file(&o, json!({"kind": "permanent_deletion", "person": a, "cause": cause, "effective": day_after(0)}))
            .await;
        refused(&r, "death_not_recorded");
    }
    // settling abroad ends every residence and the membership
    approved(&nat, temp(&a, day_after(100))).await;
    let del = json!({"kind": "permanent_deletion", "person": a, "cause": "settled_abroad", "effective": day_after(0)});
    approved(&o, del).await;
    let pa = person(&a).await;
    assert!(pa["permanent_residence"].is_null() && pa["temporary_residence"].is_null() && pa["household"].is_null());
    let hh = o.get(&format!("/api/v1/households/{h}")).await.json();
    assert!(
        hh["members"].as_array().unwrap().iter().any(|m| m["person_key"] == a_key.as_str() && !m["left_on"].is_null())
    );

    // moving: C's new permanent residence ends the old one in the same approval
    let new_home = addr("00004", "99 Phố Kim Mã");
    let mut mv = json!({"kind": "permanent_registration", "person": c, "address": new_home,
        "household": {"mode": "new", "own_home": true}});
    let r = file(&o, mv.clone()).await;
    assert_eq!(r.problem(422, "validation")["errors"][0]["field"], "procedure.moving", "a second permanent residence");
    mv["moving"] = json!(true);
    approved(&o, mv).await;
    let rows = o.get(&format!("/api/v1/persons/{c}/residences")).await.json()["residences"].clone();
    let perm: Vec<&Value> = rows.as_array().unwrap().iter().filter(|r| r["kind"] == "permanent").collect();
    assert_eq!(perm.len(), 2, "{rows}");
    assert!(perm.iter().any(|r| r["end_cause"] == "moved" && r["address"] == home));
    assert!(perm.iter().any(|r| r["valid_to"].is_null() && r["address"] == new_home));
    assert_eq!(person(&c).await["permanent_residence"], new_home);
}

/// The 2025 reform's review queue: a legacy address of a partially merged commune is queued by
/// the migration; officers list it in their area and resolve it by choosing one of the 2025
/// communes (audited; the record's history keeps the legacy code).
async fn address_reviews_over_http(store: Arc<dyn Store>) {
    use dancu_core::reference;
    let s = start_on(store.clone(), Default::default()).await;
    // an old commune split between at least two 2025 communes
    let (old, candidates) = reference::conversions()
        .iter()
        .find_map(|c| {
            let mut t: Vec<String> =
                reference::conversions_from(&c.old_commune_code).iter().map(|r| r.new_commune_code.clone()).collect();
            t.sort();
            t.dedup();
            (t.len() >= 2).then(|| (c.old_commune_code.clone(), t))
        })
        .unwrap();
    let nat = officer(&s, "c06.dia-chi", "ministry", &[Role::Collector, Role::Verifier]).await;
    let local =
        officer(&s, "cand.dia-chi", &format!("commune:{}", candidates[0]), &[Role::Collector, Role::Verifier]).await;
    let reader = officer(&s, "cand.doc", &format!("commune:{}", candidates[0]), &[Role::CardOperator]).await;
    let elsewhere = officer(&s, "cand.xa-khac", "commune:26506", &[Role::Verifier]).await;
    let p = json!({
        "name": {"surname": "Trịnh", "middle": "Thị", "given": "Hoa"},
        "birth_date": "1975-03-03", "sex": "female",
        "birth_registration_place": {"province_code": "01"},
        "ethnicity": "01", "religion": "00", "nationalities": ["VNM"],
        "permanent_residence": {"scheme": "legacy", "commune_code": old, "detail": "Thôn Đông"}
    });
    let r = nat.send("POST", "/api/v1/persons", &json!({"person": p, "reason": "thu thập"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let key = r.json()["key"].as_str().unwrap().to_string();
    let report = dancu_store::registry::Registry::new(store.clone())
        .migrate_addresses(500, "dancu addresses migrate", |_| {})
        .await
        .unwrap();
    assert_eq!((report.queued_for_review, report.moved_automatically), (1, 0));

    // listed in the area of the candidate communes, not elsewhere
    let r = local.get("/api/v1/address-reviews").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let list = r.json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["person_key"], key.as_str());
    assert_eq!(list[0]["field"], "permanent_residence");
    assert_eq!(list[0]["address"]["commune_code"], old.as_str());
    assert_eq!(list[0]["candidates"], json!(candidates));
    assert!(list[0]["queued_at"].is_string() && list[0]["resolved_at"].is_null());
    assert_eq!(reader.get("/api/v1/address-reviews").await.json().as_array().unwrap().len(), 1);
    assert_eq!(elsewhere.get("/api/v1/address-reviews").await.json().as_array().unwrap().len(), 0);
    local.get("/api/v1/address-reviews?state=maybe").await.problem(400, "validation");

    let resolve = |c: &Client, field: &str, code: &str| {
        let path = format!("/api/v1/persons/{key}/address-reviews/{field}");
        let body = json!({"commune_code": code});
        let c = Client { addr: c.addr, token: c.token.clone() };
        async move { c.send("POST", &path, &body).await }
    };
    // refused: outside the area, not a candidate, no such field, no review, the other
    // commune (the person would leave the officer's area), a reader's role
    resolve(&elsewhere, "permanent_residence", &candidates[0]).await.problem(404, "not-found");
    refused(&resolve(&local, "permanent_residence", "26506").await, "not_a_candidate");
    refused(&resolve(&local, "birth_place", &candidates[0]).await, "unknown_field");
    resolve(&local, "temporary_residence", &candidates[0]).await.problem(404, "not-found");
    refused(&resolve(&local, "permanent_residence", &candidates[1]).await, "outside_area");
    resolve(&reader, "permanent_residence", &candidates[0]).await.problem(403, "forbidden");

    // the officer of the first candidate commune decides
    let r = resolve(&local, "permanent_residence", &candidates[0]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["resolved_commune_code"], candidates[0].as_str());
    assert_eq!(r.json()["resolved_by"], "cand.dia-chi");
    assert!(r.json()["resolved_at"].is_string());
    let rec = local.get(&format!("/api/v1/persons/{key}")).await.json();
    assert_eq!(
        rec["person"]["permanent_residence"],
        json!({"scheme": "2025", "commune_code": candidates[0], "detail": "Thôn Đông"})
    );
    // history keeps the legacy code
    let h = local.get(&format!("/api/v1/persons/{key}/history")).await.json();
    let versions = h.as_array().unwrap();
    assert!(versions.iter().any(|v| v["person"]["permanent_residence"]["scheme"] == "legacy"), "{h}");
    // decided once; the queue is empty, the resolved list holds it
    resolve(&nat, "permanent_residence", &candidates[1]).await.problem(409, "state");
    assert_eq!(local.get("/api/v1/address-reviews").await.json().as_array().unwrap().len(), 0);
    let done = local.get("/api/v1/address-reviews?state=resolved").await.json();
    assert_eq!(done.as_array().unwrap().len(), 1);
    // audited, naming the officer and the person
    let entries = store.audit_read(0, 100_000).await.unwrap();
    let resolved: Vec<_> = entries.iter().map(|e| &e.entry).filter(|e| e.action == "address_review.resolve").collect();
    assert!(
        resolved.iter().any(|e| e.officer == "cand.dia-chi" && e.outcome == "200" && e.target.as_deref() == Some(&key)),
        "{resolved:?}"
    );
    assert!(resolved.iter().any(|e| e.outcome == "422"), "refusals are audited too: {resolved:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_reviews_on_sqlite() {
    address_reviews_over_http(support::sqlite_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_reviews_on_postgres() {
    if let Some(store) = support::pg_store().await {
        address_reviews_over_http(store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_procedure_on_sqlite() {
    every_procedure_over_http(support::sqlite_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_procedure_on_postgres() {
    if let Some(store) = support::pg_store().await {
        every_procedure_over_http(store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn residence_procedures_on_sqlite() {
    procedures_over_http(support::sqlite_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn residence_procedures_on_postgres() {
    if let Some(store) = support::pg_store().await {
        procedures_over_http(store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn residence_confirmations_verify_and_forgeries_fail() {
    confirmations_over_http(support::sqlite_store().await).await;
}
