//! The residence screens: the application list (deadlines, overdue marked), one form per
//! procedure the residence API accepts (validation messages next to each field, in the officer's
//! language), an application's page with the workflow steps the officer's roles allow (receive,
//! approve, reject with a reason) and the printed confirmation, and the 2025 address review
//! queue. Every form builds the API's own `Procedure` and files it through the API handler: the
//! rules are the registry's, the page only reads the form and words the refusals.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use dancu_core::PersonalId;
use dancu_core::date::iso_date;
use dancu_core::person::{Address, HeadRelationship, Name};
use dancu_core::reference::{self, Scheme};
use dancu_core::residence::{
    AbsenceCase, ApplicationState, CivilStatusChanges, Consent, HouseholdChoice, MemberRelationship,
    PermanentDeletionCause, Procedure, ProcedureKind, TemporaryDeletionCause,
};
use dancu_store::residence::Verdict;
use dancu_store::{AddressReviewQuery, Application, ApplicationQuery};
use maud::{Markup, html};
use serde_json::Value;

use super::pages::{Q, carry, q};
use super::{Ctx, FormData, Lang, created_id, has_role, redirect};
use crate::AppState;
use crate::audit::RequestContext;
use crate::auth::Caller;
use crate::extract::ApiJson;
use crate::problem::ApiError;

pub(crate) fn kind_label(l: Lang, k: ProcedureKind) -> String {
    match l {
        Lang::Vi => k.vietnamese().to_string(),
        Lang::En => match k {
            ProcedureKind::PermanentRegistration => "Permanent residence registration",
            ProcedureKind::TemporaryRegistration => "Temporary residence registration",
            ProcedureKind::TemporaryRenewal => "Temporary residence renewal",
            ProcedureKind::StayNotification => "Stay notification",
            ProcedureKind::TemporaryAbsence => "Temporary absence declaration",
            ProcedureKind::HouseholdSeparation => "Household separation",
            ProcedureKind::HeadChange => "Change of household head",
            ProcedureKind::CivilStatusUpdate => "Residence update after a civil-status change",
            ProcedureKind::PermanentDeletion => "Deletion of a permanent residence",
            ProcedureKind::TemporaryDeletion => "Deletion of a temporary residence",
        }
        .to_string(),
    }
}

pub(crate) fn app_state_label(l: Lang, s: ApplicationState) -> &'static str {
    match s {
        ApplicationState::Submitted => l.t("chờ tiếp nhận", "submitted"),
        ApplicationState::Received => l.t("đã tiếp nhận", "received"),
        ApplicationState::Approved => l.t("đã duyệt", "approved"),
        ApplicationState::Rejected => l.t("từ chối", "rejected"),
    }
}

// ---------------------------------------------------------------- the forms

/// A choice of a select: the API's code, Vietnamese, English.
type Choice = (&'static str, &'static str, &'static str);

#[derive(Clone, Copy)]
enum Input {
    Text(&'static str),
    Date,
    DateTime,
    Select(&'static [Choice]),
    Check,
    Lines(&'static str),
}

/// One field of a procedure's form: its name (also the API field it fills), its label, the
/// short name the messages use, the kind of input, and the group (fieldset) it belongs to.
#[derive(Clone, Copy)]
struct FieldDef {
    name: &'static str,
    label: (&'static str, &'static str),
    short: (&'static str, &'static str),
    input: Input,
    group: Option<(&'static str, &'static str)>,
}

const fn fd(
    name: &'static str,
    label: (&'static str, &'static str),
    short: (&'static str, &'static str),
    input: Input,
) -> FieldDef {
    FieldDef { name, label, short, input, group: None }
}

const PERSON: FieldDef = fd(
    "person",
    ("Số định danh cá nhân", "Personal ID"),
    ("Số định danh cá nhân", "Personal ID"),
    Input::Text("001090012345"),
);
const DETAIL: FieldDef = fd(
    "detail",
    ("Địa chỉ chi tiết (số nhà, đường, thôn)", "Street address"),
    ("Địa chỉ chi tiết", "Street address"),
    Input::Text(""),
);
const HOUSEHOLD: FieldDef = fd(
    "household",
    ("Mã hộ gia đình (khóa hồ sơ hộ)", "Household key"),
    ("Mã hộ gia đình", "Household key"),
    Input::Text(""),
);
const NEW_HEAD: FieldDef = fd(
    "new_head",
    ("Số định danh của chủ hộ mới", "Personal ID of the new head"),
    ("Chủ hộ mới", "New head"),
    Input::Text("001090012345"),
);
const RELATIONSHIPS: FieldDef = fd(
    "relationships",
    (
        "Quan hệ với chủ hộ mới — mỗi dòng: số định danh, quan hệ (vợ/chồng, con, cha/mẹ, cháu, ông/bà, anh/chị/em, con dâu/con rể, họ hàng khác, không có quan hệ họ hàng)",
        "Relationship to the new head — one line each: personal ID, relationship (spouse, child, parent, grandchild, grandparent, sibling, child_in_law, other_relative, not_related)",
    ),
    ("Quan hệ với chủ hộ mới", "Relationships to the new head"),
    Input::Lines("001090012345, con"),
);
const EFFECTIVE: FieldDef =
    fd("effective", ("Ngày chấm dứt cư trú", "Residence ended on"), ("Ngày chấm dứt", "End date"), Input::Date);

const CONSENT_GROUP: (&str, &str) = (
    "Ý kiến đồng ý bằng văn bản của chủ hộ/chủ sở hữu chỗ ở (khi cần)",
    "Written consent of the household head / owner of the dwelling (when needed)",
);

const fn consent(name: &'static str, label: (&'static str, &'static str), input: Input) -> FieldDef {
    FieldDef { name, label, short: label, input, group: Some(CONSENT_GROUP) }
}

const CONSENT: [FieldDef; 4] = [
    consent("consent_by", ("Người đồng ý", "Given by"), Input::Text("")),
    consent(
        "consent_id",
        ("Số định danh của người đồng ý (chủ hộ)", "Their personal ID (household head)"),
        Input::Text(""),
    ),
    consent("consent_on", ("Ngày đồng ý", "Given on"), Input::Date),
    consent("consent_doc", ("Số văn bản đồng ý", "Consent document reference"), Input::Text("")),
];

const RELATIONS: &[Choice] = &[
    ("spouse", "Vợ/chồng", "Spouse"),
    ("child", "Con", "Child"),
    ("parent", "Cha/mẹ", "Parent"),
    ("grandchild", "Cháu", "Grandchild"),
    ("grandparent", "Ông/bà", "Grandparent"),
    ("sibling", "Anh/chị/em", "Sibling"),
    ("child_in_law", "Con dâu/con rể", "Child-in-law"),
    ("other_relative", "Họ hàng khác", "Other relative"),
    ("not_related", "Không có quan hệ họ hàng", "Not related"),
];

const HOUSEHOLD_MODES: &[Choice] = &[
    ("new", "Lập hộ mới (người đăng ký là chủ hộ)", "A new household (the person is its head)"),
    ("join", "Nhập vào hộ gia đình đã có", "Join an existing household"),
];

const ABSENCE_CASES: &[Choice] = &[
    (
        "bail_or_probation",
        "a) Bị can, bị cáo tại ngoại; người bị kết án phạt tù được hoãn, tạm đình chỉ, hưởng án treo; cải tạo không giam giữ…",
        "a) On bail, suspended or probationary sentence, non-custodial reform…",
    ),
    (
        "administrative_measure",
        "b) Đang chấp hành biện pháp xử lý hành chính (giáo dục tại xã, cai nghiện…)",
        "b) Under an administrative measure",
    ),
    (
        "military_age",
        "c) Trong độ tuổi thực hiện nghĩa vụ quân sự, đi khỏi xã từ 3 tháng liên tục trở lên",
        "c) Of military-service age, leaving the commune for 3 months or more",
    ),
    (
        "long_absence",
        "d) Đi khỏi xã nơi thường trú từ 12 tháng liên tục trở lên",
        "d) Leaving the commune of permanent residence for 12 months or more",
    ),
];

const PERMANENT_CAUSES: &[Choice] = &[
    ("death", "Chết", "Death"),
    ("declared_missing", "Bị Tòa án tuyên bố mất tích hoặc đã chết", "Declared missing or dead by a court"),
    ("settled_abroad", "Ra nước ngoài để định cư", "Settled abroad"),
    ("lost_nationality", "Đã thôi quốc tịch Việt Nam", "Lost Vietnamese nationality"),
    (
        "absent_undeclared",
        "Vắng mặt liên tục từ 12 tháng không khai báo tạm vắng",
        "Absent 12 months or more without declaring it",
    ),
    (
        "accommodation_ended",
        "Không còn quyền sử dụng chỗ ở (đã bán, hết hạn thuê, mượn)",
        "No longer entitled to the dwelling",
    ),
    ("registration_cancelled", "Đăng ký thường trú trái pháp luật bị hủy bỏ", "The registration was unlawful"),
];

const TEMPORARY_CAUSES: &[Choice] = &[
    ("death", "Chết", "Death"),
    ("declared_missing", "Bị Tòa án tuyên bố mất tích hoặc đã chết", "Declared missing or dead by a court"),
    ("settled_abroad", "Ra nước ngoài để định cư", "Settled abroad"),
    ("lost_nationality", "Đã thôi quốc tịch Việt Nam", "Lost Vietnamese nationality"),
    (
        "absent_six_months",
        "Vắng mặt liên tục 6 tháng không đăng ký tạm trú nơi khác",
        "Absent 6 months without registering elsewhere",
    ),
    ("permanent_registered", "Đã đăng ký thường trú tại chính nơi tạm trú", "Registered permanently at the same place"),
    ("registration_cancelled", "Đăng ký tạm trú trái pháp luật bị hủy bỏ", "The registration was unlawful"),
];

const MARITAL: &[Choice] = &[
    ("single", "Chưa kết hôn", "Single"),
    ("married", "Đã kết hôn", "Married"),
    ("divorced", "Ly hôn", "Divorced"),
    ("widowed", "Góa", "Widowed"),
];

fn commune_field(label: (&'static str, &'static str)) -> FieldDef {
    fd("commune", label, ("Mã xã/phường", "Commune code"), Input::Text("00004"))
}

/// The fields of a procedure's form, in order.
fn fields(kind: ProcedureKind) -> Vec<FieldDef> {
    use ProcedureKind as K;
    let mut v = match kind {
        K::PermanentRegistration => vec![
            PERSON,
            commune_field((
                "Mã xã/phường nơi thường trú (danh mục 2025)",
                "Commune code of the permanent residence (2025 list)",
            )),
            DETAIL,
            fd(
                "household_mode",
                ("Hộ gia đình", "Household"),
                ("Hộ gia đình", "Household"),
                Input::Select(HOUSEHOLD_MODES),
            ),
            fd(
                "own_home",
                ("Chỗ ở hợp pháp thuộc sở hữu của người đăng ký", "The dwelling is the person's own"),
                ("Chỗ ở", "Dwelling"),
                Input::Check,
            ),
            fd(
                "household",
                ("Mã hộ gia đình nhập vào (khi nhập hộ)", "Key of the household joined (when joining)"),
                ("Mã hộ gia đình", "Household key"),
                Input::Text(""),
            ),
            fd(
                "relationship_to_head",
                ("Quan hệ với chủ hộ (khi nhập hộ)", "Relationship to the head (when joining)"),
                ("Quan hệ với chủ hộ", "Relationship to the head"),
                Input::Select(RELATIONS),
            ),
            fd(
                "moving",
                ("Chuyển nơi thường trú (xóa nơi thường trú cũ)", "Moving: ends the current permanent residence"),
                ("Chuyển nơi thường trú", "Moving"),
                Input::Check,
            ),
        ],
        K::TemporaryRegistration => vec![
            PERSON,
            commune_field((
                "Mã xã/phường nơi tạm trú (danh mục 2025)",
                "Commune code of the temporary residence (2025 list)",
            )),
            DETAIL,
            fd(
                "until",
                ("Tạm trú đến ngày (tối đa 2 năm)", "Registered until (at most 2 years)"),
                ("Ngày hết hạn tạm trú", "End date"),
                Input::Date,
            ),
        ],
        K::TemporaryRenewal => vec![
            PERSON,
            fd(
                "until",
                ("Gia hạn tạm trú đến ngày (tối đa 2 năm)", "Renewed until (at most 2 years)"),
                ("Ngày hết hạn tạm trú", "End date"),
                Input::Date,
            ),
        ],
        K::StayNotification => vec![
            PERSON,
            commune_field(("Mã xã/phường nơi lưu trú (danh mục 2025)", "Commune code of the stay (2025 list)")),
            fd(
                "detail",
                ("Địa chỉ nơi lưu trú (số nhà, đường; cơ sở lưu trú)", "Address of the stay"),
                ("Địa chỉ nơi lưu trú", "Address of the stay"),
                Input::Text(""),
            ),
            fd(
                "arrived_at",
                ("Thời điểm đến (giờ Việt Nam)", "Arrival (Việt Nam time)"),
                ("Thời điểm đến", "Arrival"),
                Input::DateTime,
            ),
            fd(
                "until",
                ("Lưu trú đến ngày", "Staying until"),
                ("Ngày kết thúc lưu trú", "End of the stay"),
                Input::Date,
            ),
        ],
        K::TemporaryAbsence => vec![
            PERSON,
            fd("case", ("Trường hợp khai báo tạm vắng", "Case"), ("Trường hợp", "Case"), Input::Select(ABSENCE_CASES)),
            fd("from", ("Vắng mặt từ ngày", "Absent from"), ("Ngày bắt đầu vắng mặt", "Start"), Input::Date),
            fd("until", ("Đến ngày (nếu biết)", "Until (when known)"), ("Ngày kết thúc vắng mặt", "End"), Input::Date),
            fd("destination", ("Nơi đến", "Destination"), ("Nơi đến", "Destination"), Input::Text("")),
            fd(
                "decision",
                ("Quyết định/bản án làm căn cứ (trường hợp a, b)", "Decision or judgment (cases a, b)"),
                ("Quyết định/bản án", "Decision"),
                Input::Text(""),
            ),
        ],
        K::HouseholdSeparation => vec![
            fd(
                "household",
                ("Mã hộ gia đình đang ở (khóa hồ sơ hộ)", "Key of the current household"),
                ("Mã hộ gia đình", "Household key"),
                Input::Text(""),
            ),
            fd(
                "members",
                (
                    "Số định danh của những người tách hộ (mỗi dòng một người)",
                    "Personal IDs of those leaving (one per line)",
                ),
                ("Người tách hộ", "Members leaving"),
                Input::Lines("001090012345"),
            ),
            NEW_HEAD,
            RELATIONSHIPS,
            fd(
                "divorced_spouse",
                (
                    "Chủ hộ mới là vợ/chồng đã ly hôn của chủ hộ (không cần ý kiến chủ hộ)",
                    "The new head is the head's divorced spouse",
                ),
                ("Vợ/chồng đã ly hôn", "Divorced spouse"),
                Input::Check,
            ),
        ],
        K::HeadChange => vec![HOUSEHOLD, NEW_HEAD, RELATIONSHIPS],
        K::CivilStatusUpdate => vec![
            PERSON,
            fd(
                "document",
                ("Trích lục / quyết định hộ tịch", "Civil-status extract or decision"),
                ("Trích lục hộ tịch", "Civil-status document"),
                Input::Text(""),
            ),
            fd(
                "registered_on",
                ("Ngày đăng ký hộ tịch", "Registered in civil status on"),
                ("Ngày đăng ký hộ tịch", "Registration date"),
                Input::Date,
            ),
            fd("surname", ("Họ mới (nếu thay đổi)", "New surname (if changed)"), ("Họ", "Surname"), Input::Text("")),
            fd("middle", ("Chữ đệm mới", "New middle name"), ("Chữ đệm", "Middle name"), Input::Text("")),
            fd("given", ("Tên mới", "New given name"), ("Tên", "Given name"), Input::Text("")),
            fd(
                "birth_date",
                ("Ngày sinh đã cải chính (cùng năm sinh)", "Corrected date of birth (same year)"),
                ("Ngày sinh", "Date of birth"),
                Input::Date,
            ),
            fd("ethnicity", ("Mã dân tộc mới", "New ethnicity code"), ("Dân tộc", "Ethnicity"), Input::Text("01")),
            fd(
                "nationalities",
                ("Quốc tịch (mã, cách nhau bởi dấu phẩy)", "Nationalities (codes, comma-separated)"),
                ("Quốc tịch", "Nationalities"),
                Input::Text("VNM"),
            ),
            fd(
                "marital_status",
                ("Tình trạng hôn nhân mới", "New marital status"),
                ("Tình trạng hôn nhân", "Marital status"),
                Input::Select(MARITAL),
            ),
        ],
        K::PermanentDeletion => vec![
            PERSON,
            fd("cause", ("Lý do xóa đăng ký thường trú", "Cause"), ("Lý do", "Cause"), Input::Select(PERMANENT_CAUSES)),
            EFFECTIVE,
        ],
        K::TemporaryDeletion => vec![
            PERSON,
            fd("cause", ("Lý do xóa đăng ký tạm trú", "Cause"), ("Lý do", "Cause"), Input::Select(TEMPORARY_CAUSES)),
            EFFECTIVE,
        ],
    };
    if matches!(kind, K::PermanentRegistration | K::TemporaryRegistration | K::HouseholdSeparation) {
        v.extend(CONSENT);
    }
    v
}

/// Where a form is posted (temporary registration keeps its own address).
fn action(kind: ProcedureKind) -> String {
    match kind {
        ProcedureKind::TemporaryRegistration => "/ui/residence/temporary".into(),
        k => format!("/ui/residence/new/{}", k.code()),
    }
}

type Errors = Vec<(String, String)>;

/// Consecutive fields of a form and the fieldset (legend) they share, if any.
type Group = (Option<(&'static str, &'static str)>, Vec<FieldDef>);

fn form_view(ctx: &Ctx, kind: ProcedureKind, values: &dyn Fn(&str) -> String, errors: &Errors) -> Markup {
    let l = ctx.lang;
    let defs = fields(kind);
    let err = |name: &str| errors.iter().find(|(k, _)| k == name).map(|(_, m)| m.clone());
    let mut groups: Vec<Group> = Vec::new();
    for d in defs {
        match groups.last_mut() {
            Some((g, v)) if *g == d.group && d.group.is_some() => v.push(d),
            _ => groups.push((d.group, vec![d])),
        }
    }
    let field = |d: &FieldDef| {
        let e = err(d.name);
        let id = d.name;
        let label = l.t(d.label.0, d.label.1);
        let value = values(id);
        let invalid = e.as_ref().map(|_| "true");
        let described = e.as_ref().map(|_| format!("{id}-error"));
        html! {
            @match d.input {
                Input::Check => {
                    div.check {
                        input type="checkbox" id=(id) name=(id) value="true" checked[value == "true"] aria-invalid=[invalid]
                            aria-describedby=[described.clone()];
                        " " label for=(id) { (label) }
                        @if let Some(m) = &e { " " span.error id={ (id) "-error" } { (m) } }
                    }
                }
                _ => {
                    label for=(id) { (label) }
                    @if let Some(m) = &e { span.error id={ (id) "-error" } { (m) } }
                    @match d.input {
                        Input::Text(ph) => { input id=(id) name=(id) value=(value) placeholder=(ph) aria-invalid=[invalid]
                            aria-describedby=[described.clone()]; }
                        Input::Date => { input id=(id) name=(id) type="date" value=(value) aria-invalid=[invalid]
                            aria-describedby=[described.clone()]; }
                        Input::DateTime => { input id=(id) name=(id) type="datetime-local" value=(value) aria-invalid=[invalid]
                            aria-describedby=[described.clone()]; }
                        Input::Lines(ph) => { textarea id=(id) name=(id) rows="3" placeholder=(ph) aria-invalid=[invalid]
                            aria-describedby=[described.clone()] { (value) } }
                        Input::Select(choices) => { select id=(id) name=(id) aria-invalid=[invalid] aria-describedby=[described.clone()] {
                            option value="" { "—" }
                            @for (code, vi, en) in choices { option value=(code) selected[value == *code] { (l.t(vi, en)) } }
                        } }
                        Input::Check => {}
                    }
                }
            }
        }
    };
    html! {
        h1 { (kind_label(l, kind)) }
        p.muted { (l.t("Thời hạn giải quyết:", "Time limit:")) " "
            @if kind.working_days() == 0 { (l.t("ghi nhận ngay", "recorded at once")) }
            @else { (kind.working_days()) " " (l.t("ngày làm việc", "working days")) } }
        @if !errors.is_empty() { div.errors role="alert" { p { (l.t("Hồ sơ chưa hợp lệ:", "The application is not valid:")) }
            ul { @for (_, m) in errors { li { (m) } } } } }
        form.procedure method="post" action=(action(kind)) novalidate {
            (ctx.csrf_field())
            @for (group, defs) in &groups {
                @if let Some(g) = group {
                    fieldset { legend { (l.t(g.0, g.1)) } @for d in defs { (field(d)) } }
                } @else {
                    @for d in defs { (field(d)) }
                }
            }
            p { button type="submit" { (l.t("Nộp hồ sơ", "File the application")) } }
        }
    }
}

/// Reads a form into the API's `Procedure`: what cannot be read (a malformed personal ID or
/// date, a missing required item) is an error on its field; everything else is left to the
/// registry's rules.
struct Reader<'a> {
    form: &'a FormData,
    defs: Vec<FieldDef>,
    l: Lang,
    errors: Errors,
}

impl Reader<'_> {
    fn short(&self, name: &str) -> &'static str {
        self.defs.iter().find(|d| d.name == name).map(|d| self.l.t(d.short.0, d.short.1)).unwrap_or("")
    }

    fn push(&mut self, name: &str, vi: String, en: String) {
        if !self.errors.iter().any(|(k, _)| k == name) {
            self.errors.push((name.to_string(), if self.l == Lang::Vi { vi } else { en }));
        }
    }

    fn required(&mut self, name: &str) {
        let s = self.short(name);
        self.push(name, format!("{s}: bắt buộc nhập."), format!("{s}: required."));
    }

    fn text(&mut self, name: &str) -> Option<String> {
        match self.form.get(name) {
            "" => {
                self.required(name);
                None
            }
            v => Some(v.to_string()),
        }
    }

    fn text_opt(&self, name: &str) -> Option<String> {
        Some(self.form.get(name).to_string()).filter(|s| !s.is_empty())
    }

    fn check(&self, name: &str) -> bool {
        self.form.get(name) == "true"
    }

    fn parse_pid(&mut self, name: &str, s: &str) -> Option<PersonalId> {
        match PersonalId::parse(s) {
            Ok(id) => Some(id),
            Err(_) => {
                let f = self.short(name);
                self.push(
                    name,
                    format!("{f} phải gồm 12 chữ số hợp lệ ({s})."),
                    format!("{f} must be 12 valid digits ({s})."),
                );
                None
            }
        }
    }

    fn pid(&mut self, name: &str) -> Option<PersonalId> {
        let s = self.text(name)?;
        self.parse_pid(name, &s)
    }

    fn pid_opt(&mut self, name: &str) -> Option<PersonalId> {
        let s = self.text_opt(name)?;
        self.parse_pid(name, &s)
    }

    fn date_opt(&mut self, name: &str) -> Option<time::Date> {
        let s = self.text_opt(name)?;
        let d = iso_date::parse(&s);
        if d.is_none() {
            let f = self.short(name);
            self.push(
                name,
                format!("{f}: ngày không hợp lệ (năm-tháng-ngày)."),
                format!("{f}: not a valid date (year-month-day)."),
            );
        }
        d
    }

    fn date(&mut self, name: &str) -> Option<time::Date> {
        if self.form.get(name).is_empty() {
            self.required(name);
            return None;
        }
        self.date_opt(name)
    }

    /// A `datetime-local` value, Việt Nam time.
    fn datetime(&mut self, name: &str) -> Option<time::OffsetDateTime> {
        let s = self.text(name)?;
        let local = s.split_once(['T', ' ']).and_then(|(d, t)| {
            let date = iso_date::parse(d)?;
            let mut hms = t.split(':').map(|x| x.parse::<u8>().ok());
            let (h, m) = (hms.next()??, hms.next()??);
            let sec = hms.next().flatten().unwrap_or(0);
            Some(time::PrimitiveDateTime::new(date, time::Time::from_hms(h, m, sec).ok()?))
        });
        match local {
            Some(t) => Some(t.assume_offset(dancu_core::residence::vietnam_offset())),
            None => {
                let f = self.short(name);
                self.push(
                    name,
                    format!("{f}: thời điểm không hợp lệ (ngày và giờ)."),
                    format!("{f}: not a valid date and time."),
                );
                None
            }
        }
    }

    /// A choice by its API code, read as the API reads it.
    fn choice<T: serde::de::DeserializeOwned>(&mut self, name: &str) -> Option<T> {
        let s = self.text(name)?;
        match serde_json::from_value(Value::String(s.clone())) {
            Ok(v) => Some(v),
            Err(_) => {
                let f = self.short(name);
                self.push(name, format!("{f}: lựa chọn không hợp lệ ({s})."), format!("{f}: not a choice ({s})."));
                None
            }
        }
    }

    fn address(&mut self) -> Option<Address> {
        let commune = self.text("commune");
        let detail = self.text("detail");
        let commune = commune?;
        if reference::commune(Scheme::Y2025, &commune).is_none() {
            self.push(
                "commune",
                format!("Mã xã/phường không có trong danh mục năm 2025 ({commune})."),
                format!("No such commune on the 2025 list ({commune})."),
            );
            return None;
        }
        Some(Address { scheme: Scheme::Y2025, commune_code: commune, detail: Some(detail?) })
    }

    fn consent(&mut self, today: time::Date) -> Option<Consent> {
        let given_by = self.text_opt("consent_by");
        let document = self.text_opt("consent_doc");
        let personal_id = self.pid_opt("consent_id");
        let given_on = self.date_opt("consent_on");
        if given_by.is_none() && document.is_none() && personal_id.is_none() && given_on.is_none() {
            return None;
        }
        if given_by.is_none() || document.is_none() {
            self.push(
                "consent_by",
                "Ý kiến đồng ý cần cả tên người đồng ý và số văn bản.".into(),
                "A consent needs both who gave it and its document reference.".into(),
            );
        }
        Some(Consent {
            given_by: given_by.unwrap_or_default(),
            personal_id,
            given_on: given_on.unwrap_or(today),
            document: document.unwrap_or_default(),
        })
    }

    fn pids(&mut self, name: &str) -> Vec<PersonalId> {
        let raw = self.form.get(name).to_string();
        let items: Vec<&str> = raw.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).collect();
        if items.is_empty() {
            self.required(name);
        }
        items.into_iter().filter_map(|s| self.parse_pid(name, s)).collect()
    }

    fn relationships(&mut self, name: &str) -> Vec<MemberRelationship> {
        let raw = self.form.get(name).to_string();
        let mut out = Vec::new();
        for line in raw.lines().map(str::trim).filter(|s| !s.is_empty()) {
            let (id, rel) = match line.split_once([',', ';', ':', '\t', ' ']) {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (line, ""),
            };
            let rel_folded = dancu_core::text::fold(rel);
            let found = RELATIONS.iter().find(|(code, vi, en)| {
                *code == rel || dancu_core::text::fold(vi) == rel_folded || dancu_core::text::fold(en) == rel_folded
            });
            let Some(person) = self.parse_pid(name, id) else { continue };
            match found.and_then(|(code, _, _)| serde_json::from_value::<HeadRelationship>(Value::from(*code)).ok()) {
                Some(relationship) => out.push(MemberRelationship { person, relationship }),
                None => {
                    let f = self.short(name);
                    self.push(
                        name,
                        format!("{f}: không hiểu quan hệ «{rel}» của {id}."),
                        format!("{f}: unknown relationship “{rel}” of {id}."),
                    );
                }
            }
        }
        out
    }

    fn changes(&mut self) -> CivilStatusChanges {
        let (surname, middle, given) = (self.text_opt("surname"), self.text_opt("middle"), self.text_opt("given"));
        let name = if surname.is_some() || given.is_some() || middle.is_some() {
            if surname.is_none() {
                self.required("surname");
            }
            if given.is_none() {
                self.required("given");
            }
            Some(Name {
                surname: surname.unwrap_or_default(),
                middle: middle.unwrap_or_default(),
                given: given.unwrap_or_default(),
            })
        } else {
            None
        };
        let birth_date = match self.text_opt("birth_date") {
            None => None,
            Some(s) => match dancu_core::date::PartialDate::parse(&s) {
                Ok(d) => Some(d),
                Err(_) => {
                    let f = self.short("birth_date");
                    self.push(
                        "birth_date",
                        format!("{f}: ngày không hợp lệ (năm-tháng-ngày)."),
                        format!("{f}: not a valid date."),
                    );
                    None
                }
            },
        };
        let nationalities = self.text_opt("nationalities").map(|s| {
            s.split(|c: char| c == ',' || c.is_whitespace()).filter(|x| !x.is_empty()).map(str::to_string).collect()
        });
        let marital_status = match self.text_opt("marital_status") {
            None => None,
            Some(_) => self.choice("marital_status"),
        };
        CivilStatusChanges { name, birth_date, ethnicity: self.text_opt("ethnicity"), nationalities, marital_status }
    }

    /// The procedure the form asks for (`None` when something could not be read).
    fn procedure(&mut self, kind: ProcedureKind, today: time::Date) -> Option<Procedure> {
        use ProcedureKind as K;
        let p = match kind {
            K::PermanentRegistration => {
                let person = self.pid("person");
                let address = self.address();
                let household = match self.form.get("household_mode") {
                    "join" => {
                        let household = self.text("household");
                        let rel = self.choice::<HeadRelationship>("relationship_to_head");
                        household.zip(rel).map(|(household, relationship_to_head)| HouseholdChoice::Join {
                            household,
                            relationship_to_head,
                        })
                    }
                    "new" => Some(HouseholdChoice::New { own_home: self.check("own_home") }),
                    _ => {
                        self.required("household_mode");
                        None
                    }
                };
                let consent = self.consent(today);
                Procedure::PermanentRegistration {
                    person: person?,
                    address: address?,
                    household: household?,
                    moving: self.check("moving"),
                    consent,
                }
            }
            K::TemporaryRegistration => {
                let person = self.pid("person");
                let address = self.address();
                let until = self.date("until");
                let consent = self.consent(today);
                // The expiry rule of the registry, asked now so that its message comes with the
                // others when another item could not be read.
                if let Some(u) = until
                    && let Err(e) = dancu_core::residence::check_temporary_expiry("until", u, today)
                {
                    self.push_rule(&e.field, e.code, &e.reason);
                }
                Procedure::TemporaryRegistration { person: person?, address: address?, until: until?, consent }
            }
            K::TemporaryRenewal => {
                let person = self.pid("person");
                let until = self.date("until");
                Procedure::TemporaryRenewal { person: person?, until: until? }
            }
            K::StayNotification => {
                let person = self.pid("person");
                let address = self.address();
                let arrived_at = self.datetime("arrived_at");
                let until = self.date("until");
                Procedure::StayNotification {
                    person: person?,
                    address: address?,
                    arrived_at: arrived_at?,
                    until: until?,
                }
            }
            K::TemporaryAbsence => {
                let person = self.pid("person");
                let case = self.choice::<AbsenceCase>("case");
                let from = self.date("from");
                let until = self.date_opt("until");
                let destination = self.text("destination");
                Procedure::TemporaryAbsence {
                    person: person?,
                    case: case?,
                    from: from?,
                    until,
                    destination: destination?,
                    decision: self.text_opt("decision"),
                }
            }
            K::HouseholdSeparation => {
                let household = self.text("household");
                let members = self.pids("members");
                let new_head = self.pid("new_head");
                let relationships = self.relationships("relationships");
                let consent = self.consent(today);
                Procedure::HouseholdSeparation {
                    household: household?,
                    members,
                    new_head: new_head?,
                    consent,
                    divorced_spouse: self.check("divorced_spouse"),
                    relationships,
                }
            }
            K::HeadChange => {
                let household = self.text("household");
                let new_head = self.pid("new_head");
                let relationships = self.relationships("relationships");
                Procedure::HeadChange { household: household?, new_head: new_head?, relationships }
            }
            K::CivilStatusUpdate => {
                let person = self.pid("person");
                let document = self.text("document");
                let registered_on = self.date("registered_on");
                let changes = self.changes();
                Procedure::CivilStatusUpdate {
                    person: person?,
                    document: document?,
                    registered_on: registered_on?,
                    changes,
                }
            }
            K::PermanentDeletion => {
                let person = self.pid("person");
                let cause = self.choice::<PermanentDeletionCause>("cause");
                let effective = self.date("effective");
                Procedure::PermanentDeletion { person: person?, cause: cause?, effective: effective? }
            }
            K::TemporaryDeletion => {
                let person = self.pid("person");
                let cause = self.choice::<TemporaryDeletionCause>("cause");
                let effective = self.date("effective");
                Procedure::TemporaryDeletion { person: person?, cause: cause?, effective: effective? }
            }
        };
        self.errors.is_empty().then_some(p)
    }

    /// A refusal of a rule (the API's field name) as a message on the form's field.
    fn push_rule(&mut self, api_field: &str, code: &str, reason: &str) {
        let name = form_field(&self.defs, api_field);
        let (vi, en) = match (api_field, code) {
            ("procedure.changes", "required") => (
                "Nội dung thay đổi: ghi ít nhất một thông tin (họ tên, ngày sinh, dân tộc, quốc tịch, tình trạng hôn nhân)."
                    .to_string(),
                format!("Changes: {reason}"),
            ),
            _ => rule_message(self.short(name), code, reason),
        };
        self.push(name, vi, en);
    }
}

/// The form field an API field name (`procedure.address.commune_code`…) belongs to.
fn form_field(defs: &[FieldDef], api_field: &str) -> &'static str {
    let f = api_field.strip_prefix("procedure.").unwrap_or(api_field);
    let head = f.split(['.', '[']).next().unwrap_or("");
    let rest = f.split_once('.').map(|(_, r)| r).unwrap_or("");
    let name = match head {
        "address" if rest == "detail" => "detail",
        "address" => "commune",
        "consent" if rest == "personal_id" => "consent_id",
        "consent" if rest == "given_on" => "consent_on",
        "consent" if rest == "document" => "consent_doc",
        "consent" => "consent_by",
        "household" if rest == "relationship_to_head" => "relationship_to_head",
        "household" if rest == "mode" => "household_mode",
        "changes" if rest.starts_with("name") || rest.is_empty() => "surname",
        "changes" => rest.split(['.', '[']).next().unwrap_or(""),
        other => other,
    };
    defs.iter().find(|d| d.name == name).or(defs.first()).map(|d| d.name).unwrap_or("person")
}

/// The residence rules' refusals, worded for the officer (Vietnamese; English: the rule's own
/// reason). `f` is the field's short name.
fn rule_message(f: &str, code: &str, reason: &str) -> (String, String) {
    let vi = match code {
        "required" => format!("{f}: bắt buộc nhập."),
        "unknown_code" | "unknown_commune" => "Mã xã/phường không có trong danh mục năm 2025.".to_string(),
        "future_date" => format!("{f} không được sau hôm nay."),
        "past_date" => format!("{f} phải sau hôm nay."),
        "too_long" => format!("{f}: thời hạn tạm trú tối đa là 2 năm."),
        "before_start" => format!("{f} phải sau ngày bắt đầu."),
        "stay_too_long" => "Lưu trú từ 30 ngày trở lên phải đăng ký tạm trú.".to_string(),
        "too_short" => {
            format!(
                "{f}: thời gian vắng mặt chưa đủ cho trường hợp này (nghĩa vụ quân sự: từ 3 tháng; trường hợp d: từ 12 tháng)."
            )
        }
        "invalid_relationship" => format!("{f}: quan hệ với chủ hộ không hợp lệ."),
        "consent_required" => "Cần ý kiến đồng ý bằng văn bản của chủ hộ hoặc chủ sở hữu chỗ ở.".to_string(),
        "not_a_member" => format!("{f}: người này không thuộc hộ (hoặc không nằm trong danh sách tách hộ)."),
        "duplicate" => format!("{f}: một người được ghi hai lần."),
        "unknown_person" => "Không có công dân nào mang số định danh này.".to_string(),
        "no_personal_id" => "Công dân chưa được cấp số định danh cá nhân.".to_string(),
        "not_living" => "Công dân đã chết hoặc mất tích: chỉ có thể xóa đăng ký cư trú.".to_string(),
        "in_permanent_commune" => "Không đăng ký tạm trú tại xã/phường nơi đang thường trú.".to_string(),
        "unknown_household" => "Không tìm thấy hộ gia đình với mã này.".to_string(),
        "already_head" => "Người này đã là chủ hộ.".to_string(),
        "already_registered" => "Công dân đã đăng ký thường trú tại địa chỉ này.".to_string(),
        "application_pending" => "Công dân đang có hồ sơ cùng loại chờ giải quyết.".to_string(),
        "birth_year_change" => "Không điều chỉnh năm sinh qua thủ tục này (năm sinh gắn với số định danh).".to_string(),
        "death_not_recorded" => "Hồ sơ công dân chưa ghi nhận đã chết hoặc mất tích.".to_string(),
        "in_another_household" => "Công dân đang là thành viên của hộ gia đình khác.".to_string(),
        "is_head" => "Công dân là chủ hộ: cần thay đổi chủ hộ trước.".to_string(),
        "missing_member" => format!("{f}: thiếu quan hệ với chủ hộ mới của một thành viên."),
        "no_change" => "Không có thông tin nào thay đổi.".to_string(),
        "no_head" => "Hộ gia đình chưa có chủ hộ.".to_string(),
        "no_permanent_residence" => "Công dân không có nơi thường trú.".to_string(),
        "no_temporary_residence" => "Công dân không có nơi tạm trú.".to_string(),
        "not_adult" => "Chủ hộ mới phải đủ 18 tuổi.".to_string(),
        "not_divorced_spouse" => "Người này không phải vợ/chồng đã ly hôn của chủ hộ.".to_string(),
        "not_household_address" => "Địa chỉ không phải chỗ ở của hộ gia đình.".to_string(),
        "not_later" => format!("{f} phải sau thời hạn tạm trú hiện tại."),
        "not_military_age" => "Công dân không trong độ tuổi thực hiện nghĩa vụ quân sự.".to_string(),
        "not_the_head" => "Người đồng ý không phải chủ hộ.".to_string(),
        "outside_area" => "Ngoài địa bàn quản lý của đơn vị.".to_string(),
        "permanent_residence_exists" => {
            "Công dân đang có nơi thường trú khác (đánh dấu «Chuyển nơi thường trú» nếu chuyển đi).".to_string()
        }
        _ => format!("{f}: {reason}"),
    };
    (vi, format!("{f}: {reason}"))
}

fn prefill<'a>(query: &'a Q) -> impl Fn(&str) -> String + 'a {
    move |k: &str| q(query, k).to_string()
}

/// `GET /ui/residence/new`: the procedures an officer can file.
pub async fn new_index(ctx: Ctx) -> Response {
    let l = ctx.lang;
    let body = html! {
        h1 { (l.t("Nộp hồ sơ cư trú", "File a residence application")) }
        table #procedures {
            thead { tr { th scope="col" { (l.t("Thủ tục", "Procedure")) } th scope="col" { (l.t("Thời hạn giải quyết", "Time limit")) } } }
            tbody { @for k in ProcedureKind::ALL { tr {
                td { a href=(action(k)) { (kind_label(l, k)) } }
                td { @if k.working_days() == 0 { (l.t("ghi nhận ngay", "at once")) }
                     @else { (k.working_days()) " " (l.t("ngày làm việc", "working days")) } }
            } } }
        }
    };
    ctx.page(l.t("Nộp hồ sơ cư trú", "File a residence application"), body)
}

fn no_such_procedure(ctx: &Ctx) -> Response {
    ctx.error_page(
        StatusCode::NOT_FOUND,
        ctx.t("Không có thủ tục này", "No such procedure"),
        ctx.t("Hãy chọn thủ tục trong danh sách.", "Choose a procedure from the list."),
    )
}

/// `GET /ui/residence/new/{kind}`: the form of one procedure (fields may be filled from the query).
pub async fn new_page(ctx: Ctx, Path(kind): Path<String>, query: Q) -> Response {
    let Some(kind) = ProcedureKind::from_code(&kind) else { return no_such_procedure(&ctx) };
    ctx.page(&kind_label(ctx.lang, kind), form_view(&ctx, kind, &prefill(&query), &Vec::new()))
}

/// `POST /ui/residence/new/{kind}`: reads the form, then files it through the API's handler;
/// refusals come back next to their fields (422).
pub async fn new_submit(
    State(st): State<AppState>,
    ctx: Ctx,
    Extension(rc): Extension<RequestContext>,
    headers: HeaderMap,
    Path(kind): Path<String>,
    body: Bytes,
) -> Response {
    let Some(kind) = ProcedureKind::from_code(&kind) else { return no_such_procedure(&ctx) };
    submit_form(st, ctx, rc, headers, kind, body).await
}

/// `GET /ui/residence/temporary`.
pub async fn temporary_page(ctx: Ctx, query: Q) -> Response {
    let kind = ProcedureKind::TemporaryRegistration;
    ctx.page(&kind_label(ctx.lang, kind), form_view(&ctx, kind, &prefill(&query), &Vec::new()))
}

/// `POST /ui/residence/temporary`.
pub async fn temporary(
    State(st): State<AppState>,
    ctx: Ctx,
    Extension(rc): Extension<RequestContext>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    submit_form(st, ctx, rc, headers, ProcedureKind::TemporaryRegistration, body).await
}

async fn submit_form(
    st: AppState,
    ctx: Ctx,
    rc: RequestContext,
    headers: HeaderMap,
    kind: ProcedureKind,
    body: Bytes,
) -> Response {
    let (form, caller) = match ctx.posted(&body) {
        Ok(x) => x,
        Err(res) => return res,
    };
    let l = ctx.lang;
    let today = dancu_store::registry::today();
    let mut reader = Reader { form: &form, defs: fields(kind), l, errors: Vec::new() };
    let procedure = reader.procedure(kind, today);
    let values = |k: &str| form.get(k).to_string();
    let fail = |errors: &Errors, status: StatusCode| {
        let mut res = ctx.page(&kind_label(l, kind), form_view(&ctx, kind, &values, errors));
        *res.status_mut() = status;
        res
    };
    let Some(procedure) = procedure else {
        return fail(&reader.errors, StatusCode::UNPROCESSABLE_ENTITY);
    };
    let submit = crate::residence::SubmitApplication { procedure };
    match crate::residence::submit(State(st), caller, Extension(rc), headers, ApiJson(submit)).await {
        Ok(res) => {
            let id = created_id(&res);
            carry(&res, redirect(&format!("/ui/residence?created={id}")))
        }
        Err(e) => {
            let mut reader = Reader { form: &form, defs: fields(kind), l, errors: Vec::new() };
            let first = reader.defs[0].name;
            if e.status == StatusCode::NOT_FOUND {
                reader.push(
                    first,
                    "Hồ sơ này nằm ngoài địa bàn quản lý của đơn vị.".into(),
                    "This application lies outside your unit's area.".into(),
                );
            } else if e.errors.is_empty() {
                let m = format!("{}: {}", l.pick(e.title), e.detail);
                reader.push(first, m.clone(), m);
            } else {
                for x in &e.errors {
                    reader.push_rule(&x.field, x.code, &x.reason);
                }
            }
            let status = if e.status == StatusCode::NOT_FOUND { StatusCode::UNPROCESSABLE_ENTITY } else { e.status };
            fail(&reader.errors, status)
        }
    }
}

// ---------------------------------------------------------------- lists and one application

/// `GET /ui/residence`: applications of the area, earliest deadline first, overdue marked.
pub async fn residence(State(st): State<AppState>, ctx: Ctx, query: Q) -> Response {
    let l = ctx.lang;
    let Some(caller) = ctx.caller.as_ref() else { return redirect("/ui/login") };
    let today = dancu_store::registry::today();
    let overdue = q(&query, "overdue") == "true";
    let state = ApplicationState::from_code(q(&query, "state"));
    let qy = ApplicationQuery {
        state,
        overdue_on: overdue.then_some(today),
        area: caller.area(),
        offset: 0,
        limit: 200,
        ..Default::default()
    };
    let apps = match st.registry.applications(&qy).await {
        Ok(a) => a,
        Err(e) => return ctx.api_error(e.into()),
    };
    let editor = has_role(caller, crate::policy::EDITORS);
    let created = q(&query, "created");
    let body = html! {
        h1 { (l.t("Hồ sơ cư trú", "Residence applications")) }
        @if !created.is_empty() { p.notice role="status" #created { (l.t("Đã tiếp nhận hồ sơ", "Application filed")) " "
            a href={ "/ui/residence/applications/" (created) } { code { (created) } } } }
        p.noprint {
            @if editor {
                a.button href=(action(ProcedureKind::PermanentRegistration)) { (kind_label(l, ProcedureKind::PermanentRegistration)) } " "
                a.button href="/ui/residence/temporary" { (kind_label(l, ProcedureKind::TemporaryRegistration)) } " "
                a.button href=(action(ProcedureKind::TemporaryAbsence)) { (kind_label(l, ProcedureKind::TemporaryAbsence)) } " "
                a.button href="/ui/residence/new" { (l.t("Thủ tục khác…", "Other procedures…")) } " "
            }
            a href="/ui/address-reviews" { (l.t("Rà soát địa chỉ 2025", "2025 address reviews")) }
        }
        p.noprint {
            a href="/ui/residence" { (l.t("Tất cả", "All")) } " · "
            a href="/ui/residence?overdue=true" { (l.t("Quá hạn", "Overdue")) } " · "
            a href="/ui/residence?state=submitted" { (l.t("Chờ tiếp nhận", "Submitted")) } " · "
            a href="/ui/residence?state=received" { (l.t("Đã tiếp nhận", "Received")) } " · "
            a href="/ui/residence?state=approved" { (l.t("Đã duyệt", "Approved")) }
        }
        @if apps.is_empty() { p { (l.t("Không có hồ sơ.", "No applications.")) } }
        @else {
            table #applications {
                thead { tr { th scope="col" { (l.t("Thủ tục", "Procedure")) } th scope="col" { (l.t("Công dân", "Person")) }
                    th scope="col" { (l.t("Ngày nộp", "Filed")) } th scope="col" { (l.t("Hạn giải quyết", "Deadline")) }
                    th scope="col" { (l.t("Trạng thái", "State")) } } }
                tbody { @for a in &apps {
                    tr id={ "app-" (a.id) } {
                        td { a href={ "/ui/residence/applications/" (a.id) } { (kind_label(l, a.kind)) } }
                        td { a href={ "/ui/persons/" (a.person_key) } { (a.procedure.subject().to_string()) } }
                        td { (a.submitted_at.date().to_string()) }
                        td { (deadline(l, a, today)) }
                        td { (app_state_label(l, a.state)) }
                    }
                } }
            }
        }
    };
    ctx.page(l.t("Hồ sơ cư trú", "Residence applications"), body)
}

fn deadline(l: Lang, a: &Application, today: time::Date) -> Markup {
    let open = a.state.is_open();
    html! {
        (iso_date::format(a.deadline))
        @if open && a.deadline < today { " " span.overdue { (l.t("QUÁ HẠN", "OVERDUE")) } }
        @else if open && a.deadline == today { " " span.due { (l.t("đến hạn hôm nay", "due today")) } }
        @if a.late { " " span.overdue { (l.t("(khai báo muộn)", "(late)")) } }
    }
}

/// What an application asks for, item by item (the API's names, the form's labels).
fn procedure_rows(l: Lang, app: &Application) -> Vec<(String, String)> {
    let defs = fields(app.kind);
    let label = |k: &str| {
        defs.iter()
            .find(|d| d.name == k)
            .map(|d| l.t(d.short.0, d.short.1).to_string())
            .unwrap_or_else(|| k.replace('_', " "))
    };
    fn flat(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            Value::Array(a) => a.iter().map(flat).collect::<Vec<_>>().join("; "),
            Value::Object(o) => o.iter().map(|(k, v)| format!("{k}: {}", flat(v))).collect::<Vec<_>>().join(", "),
            other => other.to_string(),
        }
    }
    let v = serde_json::to_value(&app.procedure).unwrap_or_default();
    let mut rows = Vec::new();
    if let Value::Object(o) = v {
        for (k, v) in o.iter().filter(|(k, _)| *k != "kind") {
            let text = match k.as_str() {
                "address" => serde_json::from_value::<Address>(v.clone())
                    .map(|a| crate::residence::address_text(&a))
                    .unwrap_or_else(|_| flat(v)),
                _ => flat(v),
            };
            let key = match k.as_str() {
                "address" => "detail".to_string(),
                "consent" => "consent_by".to_string(),
                _ => k.clone(),
            };
            let name = match k.as_str() {
                "address" => l.t("Địa chỉ", "Address").to_string(),
                "consent" => l.t("Ý kiến đồng ý", "Consent").to_string(),
                "household" if app.kind == ProcedureKind::PermanentRegistration => {
                    l.t("Hộ gia đình", "Household").to_string()
                }
                "changes" => l.t("Nội dung thay đổi", "Changes").to_string(),
                _ => label(&key),
            };
            rows.push((name, text));
        }
    }
    rows
}

async fn application_view(
    st: &AppState,
    ctx: &Ctx,
    caller: &Caller,
    app: &Application,
    errors: &Errors,
    notice: &str,
) -> Markup {
    let l = ctx.lang;
    let today = dancu_store::registry::today();
    let editor = has_role(caller, crate::policy::EDITORS);
    let issuer = has_role(caller, crate::policy::ISSUERS);
    let subject = st.registry.get(&dancu_store::PersonRef::Key(app.person_key)).await.ok();
    let err = |name: &str| errors.iter().find(|(k, _)| k == name).map(|(_, m)| m.clone());
    let id = app.id;
    html! {
        h1 { (kind_label(l, app.kind)) }
        @match notice {
            "received" => p.notice role="status" #step { (l.t("Đã tiếp nhận hồ sơ.", "The application was received.")) },
            "approved" => p.notice role="status" #step { (l.t("Đã phê duyệt hồ sơ; thông tin cư trú đã được cập nhật.", "Approved; the residence information was updated.")) },
            "rejected" => p.notice role="status" #step { (l.t("Đã từ chối hồ sơ.", "The application was rejected.")) },
            _ => {}
        }
        @if !errors.is_empty() { div.errors role="alert" { ul { @for (_, m) in errors { li { (m) } } } } }
        dl.fields {
            dt { (l.t("Mã hồ sơ", "Application")) } dd { code { (id) } }
            dt { (l.t("Trạng thái", "State")) } dd #state { (app_state_label(l, app.state)) }
            dt { (l.t("Công dân", "Person")) } dd { a href={ "/ui/persons/" (app.person_key) } {
                @if let Some(p) = &subject { (p.person.record.name.full()) " · " }
                (app.procedure.subject().to_string()) } }
            dt { (l.t("Ngày nộp", "Filed")) } dd { (app.submitted_at.date().to_string()) " · " (app.submitted_by) }
            dt { (l.t("Hạn giải quyết", "Deadline")) } dd { (deadline(l, app, today)) }
            @if let Some(by) = &app.received_by { dt { (l.t("Người tiếp nhận", "Received by")) } dd { (by) } }
            @if let Some(by) = &app.decided_by { dt { (l.t("Người quyết định", "Decided by")) } dd { (by) } }
            @if let Some(r) = &app.decision_reason { dt { (l.t("Lý do", "Reason")) } dd #reason { (r) } }
            @for (k, v) in procedure_rows(l, app) { dt { (k) } dd { (v) } }
        }
        div.noprint {
            @if app.state == ApplicationState::Submitted && editor {
                form method="post" action={ "/ui/residence/applications/" (id) "/receive" } {
                    (ctx.csrf_field())
                    button type="submit" { (l.t("Tiếp nhận hồ sơ", "Receive the application")) }
                }
            }
            @if app.state == ApplicationState::Received && issuer {
                form.decision method="post" action={ "/ui/residence/applications/" (id) "/decision" } {
                    (ctx.csrf_field())
                    label for="reason" { (l.t("Lý do (bắt buộc khi từ chối)", "Reason (required to reject)")) }
                    @if let Some(m) = err("reason") { span.error id="reason-error" { (m) } }
                    textarea #reason name="reason" rows="2" aria-invalid=[err("reason").map(|_| "true")] {}
                    p {
                        button type="submit" name="decision" value="approve" { (l.t("Phê duyệt", "Approve")) } " "
                        button.secondary type="submit" name="decision" value="reject" { (l.t("Từ chối", "Reject")) }
                    }
                }
            }
            @if app.state == ApplicationState::Approved && editor && subject.as_ref().is_some_and(|p| p.person.personal_id.is_some()) {
                p { (print_links(l, app.person_key)) }
            }
        }
    }
}

/// The residence confirmation: the HTML print view and the PDF file the API produces.
pub(crate) fn print_links(l: Lang, person_key: uuid::Uuid) -> Markup {
    html! {
        a.button #print-confirmation href={ "/api/v1/persons/" (person_key) "/residence-confirmation" } {
            (l.t("In xác nhận cư trú", "Print the residence confirmation")) }
        " "
        a.button #confirmation-pdf href={ "/api/v1/persons/" (person_key) "/residence-confirmation.pdf" } {
            (l.t("Tải xác nhận cư trú (PDF)", "Residence confirmation (PDF)")) }
    }
}

async fn visible_application(st: &AppState, caller: &Caller, id: &str) -> Result<Application, ApiError> {
    let id = uuid::Uuid::parse_str(id).map_err(|_| ApiError::not_found())?;
    let app = st.registry.application(id).await?;
    caller.see(&app.areas)?;
    Ok(app)
}

/// `GET /ui/residence/applications/{id}`: one application and the steps the officer may take.
pub async fn application(State(st): State<AppState>, ctx: Ctx, Path(id): Path<String>, query: Q) -> Response {
    let Some(caller) = ctx.caller.as_ref() else { return redirect("/ui/login") };
    match visible_application(&st, caller, &id).await {
        Ok(app) => {
            let body = application_view(&st, &ctx, caller, &app, &Vec::new(), q(&query, "done")).await;
            let mut res = ctx.page(&kind_label(ctx.lang, app.kind), body);
            res.extensions_mut().insert(crate::audit::AuditTarget(app.person_key.to_string()));
            res
        }
        Err(e) => ctx.api_error(e),
    }
}

/// `POST /ui/residence/applications/{id}/receive`: through the API's handler.
pub async fn receive(
    State(st): State<AppState>,
    ctx: Ctx,
    Extension(rc): Extension<RequestContext>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (_, caller) = match ctx.posted(&body) {
        Ok(x) => x,
        Err(res) => return res,
    };
    match crate::residence::receive(State(st), caller, Extension(rc), headers, Path(id.clone())).await {
        Ok(res) => carry(&res, redirect(&format!("/ui/residence/applications/{id}?done=received"))),
        Err(e) => ctx.api_error(e),
    }
}

/// `POST /ui/residence/applications/{id}/decision`: approve, or reject with a reason, through
/// the API's handler; a refusal shows the application again with the message by the reason.
pub async fn decide(
    State(st): State<AppState>,
    ctx: Ctx,
    Extension(rc): Extension<RequestContext>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (form, caller) = match ctx.posted(&body) {
        Ok(x) => x,
        Err(res) => return res,
    };
    let l = ctx.lang;
    let decision = match form.get("decision") {
        "approve" => Verdict::Approve,
        "reject" => Verdict::Reject,
        other => {
            return ctx.error_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                l.t("Quyết định không hợp lệ", "Invalid decision"),
                &format!("{}: {other}", l.t("Chọn phê duyệt hoặc từ chối", "Choose approve or reject")),
            );
        }
    };
    let reason = Some(form.get("reason").to_string()).filter(|s| !s.is_empty());
    let req = crate::residence::DecideApplication { decision, reason };
    let answer = crate::residence::decide(
        State(st.clone()),
        caller.clone(),
        Extension(rc),
        headers,
        Path(id.clone()),
        ApiJson(req),
    )
    .await;
    match answer {
        Ok(res) => {
            let done = if decision == Verdict::Approve { "approved" } else { "rejected" };
            carry(&res, redirect(&format!("/ui/residence/applications/{id}?done={done}")))
        }
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY || e.status == StatusCode::CONFLICT => {
            let Ok(app) = visible_application(&st, &caller, &id).await else { return ctx.api_error(e) };
            let errors: Errors = if e.errors.is_empty() {
                vec![("reason".into(), format!("{}: {}", l.pick(e.title), e.detail))]
            } else {
                e.errors
                    .iter()
                    .map(|x| {
                        let field = if x.field == "reason" { "reason" } else { "decision" };
                        let (vi, en) = match x.code {
                            "required" if x.field == "reason" => (
                                "Lý do: bắt buộc nhập khi từ chối hồ sơ.".to_string(),
                                "Reason: required to reject.".to_string(),
                            ),
                            code => rule_message(l.t("Hồ sơ", "Application"), code, &x.reason),
                        };
                        (field.to_string(), if l == Lang::Vi { vi } else { en })
                    })
                    .collect()
            };
            let body = application_view(&st, &ctx, &caller, &app, &errors, "").await;
            let mut res = ctx.page(&kind_label(l, app.kind), body);
            *res.status_mut() = e.status;
            res
        }
        Err(e) => ctx.api_error(e),
    }
}

// ---------------------------------------------------------------- 2025 address reviews

fn review_field_label(l: Lang, field: &str) -> &'static str {
    match field {
        "permanent_residence" => l.t("Nơi thường trú", "Permanent residence"),
        "temporary_residence" => l.t("Nơi tạm trú", "Temporary residence"),
        "current_residence" => l.t("Nơi ở hiện tại", "Current residence"),
        _ => l.t("Địa chỉ", "Address"),
    }
}

async fn reviews_view(
    st: &AppState,
    ctx: &Ctx,
    caller: &Caller,
    error: Option<(&str, &str, String)>,
    done: &str,
) -> Response {
    let l = ctx.lang;
    let query =
        AddressReviewQuery { pending: Some(true), area: caller.area(), person_key: None, offset: 0, limit: 100 };
    let reviews = match st.registry.address_reviews(&query).await {
        Ok(r) => r,
        Err(e) => return ctx.api_error(e.into()),
    };
    let decider = has_role(caller, crate::policy::ISSUERS);
    let mut names = BTreeMap::new();
    for r in &reviews {
        if let Ok(p) = st.registry.get(&dancu_store::PersonRef::Key(r.person_key)).await {
            names.insert(r.person_key, p.person.record.name.full());
        }
    }
    let province = |code: &str| {
        reference::province(Scheme::Y2025, code).map(|p| p.name.clone()).unwrap_or_else(|| code.to_string())
    };
    let body = html! {
        h1 { (l.t("Rà soát địa chỉ theo danh mục 2025", "2025 address reviews")) }
        p.muted { (l.t(
            "Xã/phường cũ được chia cho nhiều xã/phường mới: chọn xã/phường mới nơi công dân đang ở.",
            "The old commune went into several 2025 communes: choose the one where the person lives.")) }
        @if !done.is_empty() { p.notice role="status" #resolved { (l.t("Đã cập nhật địa chỉ theo danh mục 2025.", "The address now follows the 2025 list.")) } }
        @if reviews.is_empty() { p { (l.t("Không có địa chỉ chờ rà soát.", "No address awaits review.")) } }
        @for r in &reviews {
            @let id = format!("review-{}-{}", r.person_key, r.field);
            @let err_here = error.as_ref().filter(|(k, f, _)| *k == r.person_key.to_string() && *f == r.field).map(|(_, _, m)| m);
            section.review id=(id) {
                h2 { a href={ "/ui/persons/" (r.person_key) } { (names.get(&r.person_key).cloned().unwrap_or_else(|| r.person_key.to_string())) } }
                p { (review_field_label(l, &r.field)) ": " strong { (crate::residence::address_text(&r.address)) }
                    " " span.muted { "(" (l.t("danh mục cũ", "legacy list")) " " (r.address.commune_code) ")" } }
                @if let Some(m) = err_here {
                    p.errors role="alert" { span.error { (m) } }
                }
                @if decider {
                    form method="post" action={ "/ui/address-reviews/" (r.person_key) "/" (r.field) } {
                        (ctx.csrf_field())
                        fieldset {
                            legend { (l.t("Xã/phường mới (danh mục 2025)", "2025 commune")) }
                            @for c in &r.candidates {
                                @let cid = format!("{id}-{c}");
                                div.check {
                                    input type="radio" name="commune_code" value=(c) id=(cid);
                                    " " label for=(cid) { (c) " — " (reference::commune(Scheme::Y2025, c).map(|x| format!("{}, {}", x.name, province(&x.province_code))).unwrap_or_default()) }
                                }
                            }
                        }
                        button type="submit" { (l.t("Xác nhận xã/phường", "Confirm the commune")) }
                    }
                } @else {
                    p.muted { (l.t("Xã/phường đề xuất:", "Candidates:")) " " (r.candidates.join(", ")) }
                }
            }
        }
    };
    ctx.page(l.t("Rà soát địa chỉ 2025", "2025 address reviews"), body)
}

/// `GET /ui/address-reviews`: the pending address reviews of the officer's area.
pub async fn address_reviews(State(st): State<AppState>, ctx: Ctx, query: Q) -> Response {
    let Some(caller) = ctx.caller.as_ref() else { return redirect("/ui/login") };
    reviews_view(&st, &ctx, caller, None, q(&query, "resolved")).await
}

/// `POST /ui/address-reviews/{ref}/{field}`: the chosen 2025 commune, through the API's handler.
pub async fn resolve_address_review(
    State(st): State<AppState>,
    ctx: Ctx,
    Extension(rc): Extension<RequestContext>,
    headers: HeaderMap,
    Path((r, field)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (form, caller) = match ctx.posted(&body) {
        Ok(x) => x,
        Err(res) => return res,
    };
    let l = ctx.lang;
    let commune_code = form.get("commune_code").to_string();
    let req = crate::residence::ResolveAddressReview { commune_code: commune_code.clone() };
    let path = Path((r.clone(), field.clone()));
    match crate::residence::resolve_address_review(
        State(st.clone()),
        caller.clone(),
        Extension(rc),
        headers,
        path,
        ApiJson(req),
    )
    .await
    {
        Ok(res) => carry(&res, redirect(&format!("/ui/address-reviews?resolved={r}"))),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY || e.status == StatusCode::CONFLICT => {
            let m = match e.errors.first().map(|x| x.code) {
                _ if commune_code.is_empty() => {
                    l.t("Hãy chọn một xã/phường mới.", "Choose one of the 2025 communes.").to_string()
                }
                Some("not_a_candidate") => l
                    .t(
                        "Xã/phường này không nằm trong các xã/phường được đề xuất.",
                        "That commune is not one of the candidates.",
                    )
                    .to_string(),
                Some(code) => {
                    let x = &e.errors[0];
                    let (vi, en) = rule_message(l.t("Địa chỉ", "Address"), code, &x.reason);
                    if l == Lang::Vi { vi } else { en }
                }
                None => format!("{}: {}", l.pick(e.title), e.detail),
            };
            let mut res = reviews_view(&st, &ctx, &caller, Some((&r, &field, m)), "").await;
            *res.status_mut() = e.status;
            res
        }
        Err(e) => ctx.api_error(e),
    }
}
