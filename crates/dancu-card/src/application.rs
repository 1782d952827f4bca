//! Card applications and their workflow, production stock and card states: the rules, pure.
//! (The store and the API carry them out; nothing here reads a clock or a database.)
//!
//! Workflow: received → verified → approved → queued → personalized → quality-checked →
//! dispatched → delivered, or returned / cancelled. Each step needs an officer of a given role;
//! the approver must not be the officer who verified. An application is due 7 working days
//! after it is received (Law on Identification 2023, Art. 26). [`due_date`] here counts weekends
//! only; the card service (`dancu_store::cards`) counts on the registry's calendar, which also
//! skips public holidays and Tết.

use dancu_core::PartialDate;
use dancu_core::auth::Role;
use serde::{Deserialize, Serialize};
use time::{Date, Weekday};

use crate::validity::{self, CardLaw};

/// Why a card is replaced (cấp đổi), Law on Identification 2023 Art. 24(1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplacementReason {
    /// Change of name, date of birth or other identity information.
    IdentityChange,
    GenderTransition,
    /// The card carries wrong information.
    WrongInformation,
    /// The administrative units were rearranged (on the holder's request).
    AdministrativeRearrangement,
    /// The personal ID was re-established.
    IdReestablished,
    /// At the holder's request.
    HolderRequest,
}

/// Why a card is re-issued (cấp lại), Art. 24(2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReissueReason {
    Lost,
    Damaged,
}

/// What is applied for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "reason", rename_all = "snake_case")]
pub enum ApplicationKind {
    /// Cấp lần đầu.
    FirstIssue,
    /// Cấp đổi at an age milestone (14, 25, 40, 60).
    Renewal,
    Replacement(ReplacementReason),
    Reissue(ReissueReason),
}

/// Where an application stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Received,
    Verified,
    Approved,
    Queued,
    Personalized,
    QualityChecked,
    Dispatched,
    Delivered,
    Returned,
    Cancelled,
}

impl Stage {
    pub fn code(self) -> &'static str {
        match self {
            Stage::Received => "received",
            Stage::Verified => "verified",
            Stage::Approved => "approved",
            Stage::Queued => "queued",
            Stage::Personalized => "personalized",
            Stage::QualityChecked => "quality_checked",
            Stage::Dispatched => "dispatched",
            Stage::Delivered => "delivered",
            Stage::Returned => "returned",
            Stage::Cancelled => "cancelled",
        }
    }
    /// Vietnamese, for the citizen's status page.
    pub fn vietnamese(self) -> &'static str {
        match self {
            Stage::Received => "Đã tiếp nhận",
            Stage::Verified => "Đã xác minh",
            Stage::Approved => "Đã phê duyệt",
            Stage::Queued => "Chờ sản xuất",
            Stage::Personalized => "Đã in thẻ",
            Stage::QualityChecked => "Đã kiểm tra chất lượng",
            Stage::Dispatched => "Đã chuyển phát",
            Stage::Delivered => "Đã trả thẻ",
            Stage::Returned => "Thẻ bị trả lại",
            Stage::Cancelled => "Đã hủy",
        }
    }
    pub const ALL: [Stage; 10] = [
        Stage::Received,
        Stage::Verified,
        Stage::Approved,
        Stage::Queued,
        Stage::Personalized,
        Stage::QualityChecked,
        Stage::Dispatched,
        Stage::Delivered,
        Stage::Returned,
        Stage::Cancelled,
    ];
    pub fn from_code(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|x| x.code() == s)
    }
    /// Counted against the deadline: received up to quality-checked (a dispatched card is ready).
    pub fn is_pending_work(self) -> bool {
        matches!(
            self,
            Stage::Received
                | Stage::Verified
                | Stage::Approved
                | Stage::Queued
                | Stage::Personalized
                | Stage::QualityChecked
        )
    }
    pub fn is_open(self) -> bool {
        !matches!(self, Stage::Delivered | Stage::Returned | Stage::Cancelled)
    }
}

/// Why a step or an application was refused. Each names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    #[error("an application cannot go from {from} to {to}")]
    Transition { from: &'static str, to: &'static str },
    #[error("moving an application to {to} needs the role {role}")]
    Role { to: &'static str, role: &'static str },
    #[error("the officer who verified the application ({0}) cannot also approve it: a second officer must")]
    SameOfficer(String),
    #[error("the person is {age} years old: under 14 a card is issued only on request (set requested_under_14)")]
    UnderMinimumAge { age: i32 },
    #[error("the person already has an open application ({0}): finish or cancel it first")]
    OpenApplication(String),
    #[error("no renewal is due: the current card is valid until {expiry} and the next milestone is not within reach")]
    RenewalNotDue { expiry: String },
    #[error("production centre {centre} has no blank cards left: the queue is stopped until it is restocked")]
    OutOfStock { centre: String },
    #[error("{0}")]
    Invalid(String),
}

/// The role each stage needs of the officer who moves an application into it.
pub fn role_for(to: Stage) -> Role {
    match to {
        Stage::Verified => Role::Verifier,
        Stage::Approved => Role::Approver,
        Stage::Queued | Stage::Delivered | Stage::Returned | Stage::Cancelled => Role::CardOperator,
        Stage::Personalized | Stage::QualityChecked | Stage::Dispatched => Role::ProductionOperator,
        Stage::Received => Role::CardOperator,
    }
}

/// Whether `from → to` is a step of the workflow.
pub fn allowed(from: Stage, to: Stage) -> bool {
    use Stage::*;
    matches!(
        (from, to),
        (Received, Verified)
            | (Verified, Approved)
            | (Approved, Queued)
            | (Queued, Personalized)
            | (Personalized, QualityChecked)
            | (QualityChecked, Dispatched)
            | (Dispatched, Delivered)
            | (Dispatched, Returned)
            | (Received | Verified | Approved | Queued, Cancelled)
    )
}

/// Checks one step: the transition exists, the officer holds the role, and an approval is by
/// someone other than the verifier.
pub fn check_step(
    from: Stage,
    to: Stage,
    officer: &str,
    roles: &[Role],
    verified_by: Option<&str>,
) -> Result<(), WorkflowError> {
    if !allowed(from, to) {
        return Err(WorkflowError::Transition { from: from.code(), to: to.code() });
    }
    let role = role_for(to);
    if !roles.contains(&role) {
        return Err(WorkflowError::Role { to: to.code(), role: role.code() });
    }
    if to == Stage::Approved && verified_by == Some(officer) {
        return Err(WorkflowError::SameOfficer(officer.to_string()));
    }
    Ok(())
}

/// The minimum age for a card without a request: 14 (under 14 on request only).
pub const MINIMUM_AGE: i32 = 14;

/// Checks a new application: age, no other open application, a renewal that is due.
pub fn check_new(
    kind: ApplicationKind,
    birth: &PartialDate,
    today: Date,
    requested_under_14: bool,
    open_application: Option<&str>,
    current_card_expiry: Option<Option<Date>>,
) -> Result<(), WorkflowError> {
    if let Some(open) = open_application {
        return Err(WorkflowError::OpenApplication(open.to_string()));
    }
    let age = validity::age_on(birth, today);
    if age < 0 {
        return Err(WorkflowError::Invalid("the birth date lies in the future".into()));
    }
    if age < MINIMUM_AGE && !requested_under_14 {
        return Err(WorkflowError::UnderMinimumAge { age });
    }
    if kind == ApplicationKind::Renewal {
        // Due from 2 years before the milestone at which the current card expires (or once expired).
        match current_card_expiry {
            Some(None) => {
                return Err(WorkflowError::RenewalNotDue { expiry: "không thời hạn / no expiry".into() });
            }
            Some(Some(expiry)) => {
                let opens = expiry.replace_year(expiry.year() - 2).unwrap_or(expiry);
                if today < opens {
                    return Err(WorkflowError::RenewalNotDue { expiry: expiry.to_string() });
                }
            }
            None => {
                return Err(WorkflowError::Invalid("a renewal needs a current card: apply for a first issue".into()));
            }
        }
    }
    Ok(())
}

/// `days` working days (Monday–Friday) after `from`.
pub fn add_working_days(from: Date, days: u32) -> Date {
    let mut d = from;
    let mut left = days;
    while left > 0 {
        d = d.next_day().expect("dates stay in range");
        if !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday) {
            left -= 1;
        }
    }
    d
}

/// Working days allowed from receipt to a card ready for delivery.
pub const DEADLINE_WORKING_DAYS: u32 = 7;

/// The day an application received on `received` is due.
pub fn due_date(received: Date) -> Date {
    add_working_days(received, DEADLINE_WORKING_DAYS)
}

/// Overdue: still open (before dispatch) after its due date.
pub fn is_overdue(stage: Stage, received: Date, today: Date) -> bool {
    matches!(
        stage,
        Stage::Received
            | Stage::Verified
            | Stage::Approved
            | Stage::Queued
            | Stage::Personalized
            | Stage::QualityChecked
    ) && today > due_date(received)
}

/// Takes one blank card from a centre's stock for personalization.
pub fn take_blank(centre: &str, stock: i64) -> Result<i64, WorkflowError> {
    if stock <= 0 {
        return Err(WorkflowError::OutOfStock { centre: centre.to_string() });
    }
    Ok(stock - 1)
}

/// A card's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardState {
    Active,
    /// Tạm giữ: held by the authorities.
    Retained,
    /// Thu hồi.
    Revoked,
    /// Reported lost.
    Lost,
    Expired,
    /// A newer card replaced it.
    Replaced,
}

impl CardState {
    pub fn code(self) -> &'static str {
        match self {
            CardState::Active => "active",
            CardState::Retained => "retained",
            CardState::Revoked => "revoked",
            CardState::Lost => "lost",
            CardState::Expired => "expired",
            CardState::Replaced => "replaced",
        }
    }
}

impl CardState {
    pub fn from_code(s: &str) -> Option<CardState> {
        [
            CardState::Active,
            CardState::Retained,
            CardState::Revoked,
            CardState::Lost,
            CardState::Expired,
            CardState::Replaced,
        ]
        .into_iter()
        .find(|c| c.code() == s)
    }

    /// Vietnamese, for officers and partners.
    pub fn vietnamese(self) -> &'static str {
        match self {
            CardState::Active => "Đang sử dụng",
            CardState::Retained => "Bị tạm giữ",
            CardState::Revoked => "Bị thu hồi",
            CardState::Lost => "Đã báo mất",
            CardState::Expired => "Hết hạn",
            CardState::Replaced => "Đã được thay bằng thẻ mới",
        }
    }
}

/// Whether an officer may move a card from `from` to `to`: an active card may be retained,
/// revoked or reported lost; a retained card given back or revoked. Lost, revoked and replaced
/// cards stay so (a lost card found again is not valid again: a new card was applied for);
/// `expired` and `replaced` are never set by hand (expiry is computed, replacement is done by
/// the new card's personalization).
pub fn card_state_allowed(from: CardState, to: CardState) -> bool {
    use CardState::*;
    matches!((from, to), (Active, Retained | Revoked | Lost) | (Retained, Active | Revoked))
}

/// Is this card valid today? The answer for partners, with the reason when it is not.
pub fn validity_now(state: CardState, expiry: Option<Date>, today: Date) -> (bool, CardState) {
    match state {
        CardState::Active if expiry.is_some_and(|e| today > e) => (false, CardState::Expired),
        CardState::Active => (true, CardState::Active),
        other => (false, other),
    }
}

/// The expiry of a card issued today, by the law in force.
pub fn card_expiry(birth: &PartialDate, issue: Date) -> Option<Date> {
    validity::expiry(birth, issue, CardLaw::on(issue))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Month;

    fn d(y: i32, m: u8, day: u8) -> Date {
        Date::from_calendar_date(y, Month::try_from(m).unwrap(), day).unwrap()
    }

    #[test]
    fn the_happy_path_and_its_roles() {
        use Stage::*;
        let path = [Received, Verified, Approved, Queued, Personalized, QualityChecked, Dispatched, Delivered];
        for w in path.windows(2) {
            let role = role_for(w[1]);
            let verified_by = (w[1] == Approved).then_some("verifier1");
            check_step(w[0], w[1], "officer2", &[role], verified_by).unwrap();
            // Any other role alone is refused.
            for other in Role::ALL.into_iter().filter(|r| *r != role) {
                assert!(matches!(
                    check_step(w[0], w[1], "officer2", &[other], verified_by),
                    Err(WorkflowError::Role { .. })
                ));
            }
        }
        assert!(matches!(check_step(Received, Approved, "a", &Role::ALL, None), Err(WorkflowError::Transition { .. })));
        assert!(matches!(
            check_step(Personalized, Cancelled, "a", &Role::ALL, None),
            Err(WorkflowError::Transition { .. })
        ));
        assert!(matches!(
            check_step(Delivered, Returned, "a", &Role::ALL, None),
            Err(WorkflowError::Transition { .. })
        ));
    }

    #[test]
    fn the_verifier_cannot_approve() {
        let e = check_step(Stage::Verified, Stage::Approved, "lan", &[Role::Verifier, Role::Approver], Some("lan"))
            .unwrap_err();
        assert!(e.to_string().contains("lan"), "{e}");
        assert!(check_step(Stage::Verified, Stage::Approved, "minh", &[Role::Approver], Some("lan")).is_ok());
    }

    #[test]
    fn new_applications() {
        let today = d(2025, 6, 1);
        let child = PartialDate::from_ymd(2015, 6, 2).unwrap(); // 9
        let e = check_new(ApplicationKind::FirstIssue, &child, today, false, None, None).unwrap_err();
        assert_eq!(e, WorkflowError::UnderMinimumAge { age: 9 });
        assert!(check_new(ApplicationKind::FirstIssue, &child, today, true, None, None).is_ok());
        let adult = PartialDate::Year(1990);
        let e = check_new(ApplicationKind::FirstIssue, &adult, today, false, Some("HS-2025-000001"), None).unwrap_err();
        assert!(e.to_string().contains("HS-2025-000001"));
        // Renewal: due from 2 years before the card's expiry.
        let e = check_new(ApplicationKind::Renewal, &adult, today, false, None, Some(Some(d(2030, 1, 1)))).unwrap_err();
        assert!(matches!(e, WorkflowError::RenewalNotDue { .. }));
        assert!(check_new(ApplicationKind::Renewal, &adult, today, false, None, Some(Some(d(2027, 6, 1)))).is_ok());
        assert!(check_new(ApplicationKind::Renewal, &adult, today, false, None, Some(None)).is_err());
        assert!(check_new(ApplicationKind::Reissue(ReissueReason::Lost), &adult, today, false, None, None).is_ok());
    }

    #[test]
    fn seven_working_days() {
        // Friday 2025-06-06 + 7 working days = Tuesday 2025-06-17.
        assert_eq!(due_date(d(2025, 6, 6)), d(2025, 6, 17));
        // Monday + 7 = Wednesday of the next week.
        assert_eq!(due_date(d(2025, 6, 2)), d(2025, 6, 11));
        // Received on a Saturday: counting starts Monday.
        assert_eq!(due_date(d(2025, 6, 7)), d(2025, 6, 17));
        assert!(!is_overdue(Stage::Queued, d(2025, 6, 2), d(2025, 6, 11)));
        assert!(is_overdue(Stage::Queued, d(2025, 6, 2), d(2025, 6, 12)));
        assert!(!is_overdue(Stage::Dispatched, d(2025, 6, 2), d(2025, 7, 1)));
    }

    #[test]
    fn stock_and_card_states() {
        assert_eq!(take_blank("TT-01", 2), Ok(1));
        assert_eq!(take_blank("TT-01", 0), Err(WorkflowError::OutOfStock { centre: "TT-01".into() }));
        assert_eq!(validity_now(CardState::Active, Some(d(2030, 1, 1)), d(2029, 12, 31)), (true, CardState::Active));
        assert_eq!(validity_now(CardState::Active, Some(d(2030, 1, 1)), d(2030, 1, 1)), (true, CardState::Active));
        assert_eq!(validity_now(CardState::Active, Some(d(2030, 1, 1)), d(2030, 1, 2)), (false, CardState::Expired));
        assert_eq!(validity_now(CardState::Active, None, d(2090, 1, 1)), (true, CardState::Active));
        assert_eq!(validity_now(CardState::Lost, None, d(2020, 1, 1)), (false, CardState::Lost));
    }
}
