//! SessionService over gRPC: a thin adapter over [`SessionDirectory`]. Authentication and roles
//! are the server's auth layer's (`aap_platform::auth`), not this adapter's.

use aap_proto::v1 as pb;
use aap_proto::v1::session_service_server::SessionService;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use sqlx::PgPool;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::{
    Account, AccountFilter, AccountStatus, AccountUpdate, LeaseOutcome, LeaseRecord, NewAccount, SessionDirectory,
    SessionError, SessionsConfig,
};

/// The tonic service; serve it with `SessionServiceServer::new(SessionGrpc::new(pool, config))`.
#[derive(Debug, Clone)]
pub struct SessionGrpc {
    directory: SessionDirectory,
    evidence: crate::evidence::EvidenceLocker,
}

impl SessionGrpc {
    /// The account as clients see it, with its assistant's hourly budget.
    fn account_message(&self, account: Account) -> pb::Account {
        let budget = self.directory.hourly_budget(&account.assistant);
        account_message(account, budget)
    }

    /// Serves a [`SessionDirectory`] and the evidence of failed attempts over `pool` (migrated
    /// by `aap_platform::db`).
    pub fn new(pool: PgPool, config: SessionsConfig) -> SessionGrpc {
        let evidence = crate::evidence::EvidenceLocker::new(pool.clone(), config.evidence);
        SessionGrpc { directory: SessionDirectory::new(pool, config), evidence }
    }

    /// Serves a directory the caller made (and prepared, e.g. sealed its plain-text rows) and an
    /// evidence locker.
    pub fn with_evidence(directory: SessionDirectory, evidence: crate::evidence::EvidenceLocker) -> SessionGrpc {
        SessionGrpc { directory, evidence }
    }
}

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    // Sub-second nanos of a chrono time are below 2e9 (leap seconds), inside i32.
    prost_types::Timestamp { seconds: at.timestamp(), nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0) }
}

fn status_message(status: AccountStatus) -> pb::AccountStatus {
    match status {
        AccountStatus::Active => pb::AccountStatus::Active,
        AccountStatus::Cooling => pb::AccountStatus::Cooling,
        AccountStatus::Expired => pb::AccountStatus::Expired,
        AccountStatus::Challenged => pb::AccountStatus::Challenged,
        AccountStatus::Disabled => pb::AccountStatus::Disabled,
    }
}

fn lease_message(lease: LeaseRecord) -> pb::Lease {
    pb::Lease {
        id: lease.id.to_string(),
        account_id: lease.account_id.to_string(),
        bot_id: lease.bot_id,
        principal: lease.principal,
        leased_at: Some(timestamp(lease.leased_at)),
        expires_at: Some(timestamp(lease.expires_at)),
        returned_at: lease.returned_at.map(timestamp),
        outcome: lease.outcome,
        runs: lease.runs,
        detail: lease.detail,
    }
}

/// The account as clients see it; `budget` is the hourly budget of prompts for its assistant.
fn account_message(account: Account, budget: Option<u32>) -> pb::Account {
    let budget_frees_at = account.budget_frees_at(budget).map(timestamp);
    pb::Account {
        id: account.id.to_string(),
        assistant: account.assistant,
        plan: account.plan,
        label: account.label,
        status: status_message(account.status).into(),
        runs: account.runs,
        last_leased_at: account.last_leased_at.map(timestamp),
        cooldown_until: account.cooldown_until.map(timestamp),
        leased: account.leased,
        proxy: account.proxy,
        user_agent: account.user_agent,
        challenges: account.challenges,
        last_challenged_at: account.last_challenged_at.map(timestamp),
        proxy_challenges: account.proxy_challenges,
        cooldown_reason: account.cooldown_reason,
        rate_limits: account.rate_limits,
        rotation_runs: account.rotation_runs,
        last_lease: account.last_lease.map(lease_message),
        state_refreshed_at: Some(timestamp(account.state_refreshed_at)),
        created_at: Some(timestamp(account.created_at)),
        failures: account.failures,
        underlying_status: status_message(account.underlying_status).into(),
        prompts_this_hour: account.prompts_this_hour,
        hourly_budget: budget.unwrap_or_default(),
        budget_frees_at,
    }
}

/// A list's or a watch's filter; an unknown status number is refused.
fn account_filter(assistant: String, plan: String, statuses: &[i32]) -> Result<AccountFilter, SessionError> {
    let statuses = statuses
        .iter()
        .map(|&value| match pb::AccountStatus::try_from(value) {
            Ok(pb::AccountStatus::Active) => Ok(AccountStatus::Active),
            Ok(pb::AccountStatus::Cooling) => Ok(AccountStatus::Cooling),
            Ok(pb::AccountStatus::Expired) => Ok(AccountStatus::Expired),
            Ok(pb::AccountStatus::Challenged) => Ok(AccountStatus::Challenged),
            Ok(pb::AccountStatus::Disabled) => Ok(AccountStatus::Disabled),
            Ok(pb::AccountStatus::Unspecified) | Err(_) => Err(SessionError::InvalidArgument {
                field: "statuses",
                reason: format!("unknown account status {value}"),
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AccountFilter { assistant, plan, statuses })
}

/// A request's time; one no calendar has (`nanos` outside [0, 999,999,999], seconds past the
/// years `chrono` has) is refused naming `field`.
fn time(field: &'static str, at: prost_types::Timestamp) -> Result<DateTime<Utc>, SessionError> {
    aap_platform::input::check_time(&at).map_err(|reason| SessionError::InvalidArgument { field, reason })
}

fn lease_outcome(value: i32) -> Result<LeaseOutcome, SessionError> {
    match pb::LeaseOutcome::try_from(value) {
        Ok(pb::LeaseOutcome::Unspecified | pb::LeaseOutcome::Ok) => Ok(LeaseOutcome::Ok),
        Ok(pb::LeaseOutcome::Expired) => Ok(LeaseOutcome::Expired),
        Ok(pb::LeaseOutcome::RateLimited) => Ok(LeaseOutcome::RateLimited),
        Ok(pb::LeaseOutcome::Challenged) => Ok(LeaseOutcome::Challenged),
        Err(_) => Err(SessionError::InvalidArgument { field: "outcome", reason: format!("unknown outcome {value}") }),
    }
}

#[tonic::async_trait]
impl SessionService for SessionGrpc {
    async fn create_account(
        &self,
        request: Request<pb::CreateAccountRequest>,
    ) -> Result<Response<pb::CreateAccountResponse>, Status> {
        let req = request.into_inner();
        let new = NewAccount {
            assistant: &req.assistant,
            plan: &req.plan,
            label: &req.label,
            storage_state_json: &req.storage_state_json,
            proxy: &req.proxy,
            user_agent: &req.user_agent,
        };
        let account = self.directory.create_account(new).await?;
        Ok(Response::new(pb::CreateAccountResponse { account: Some(self.account_message(account)) }))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        let req = request.into_inner();
        let filter = account_filter(req.assistant, req.plan, &req.statuses)?;
        let accounts = self.directory.find_accounts(&filter).await?;
        Ok(Response::new(pb::ListAccountsResponse {
            accounts: accounts.into_iter().map(|account| self.account_message(account)).collect(),
        }))
    }

    async fn update_session_state(
        &self,
        request: Request<pb::UpdateSessionStateRequest>,
    ) -> Result<Response<pb::UpdateSessionStateResponse>, Status> {
        let req = request.into_inner();
        let account = self.directory.update_session_state(&req.account_id, &req.storage_state_json).await?;
        Ok(Response::new(pb::UpdateSessionStateResponse { account: Some(self.account_message(account)) }))
    }

    async fn update_account(
        &self,
        request: Request<pb::UpdateAccountRequest>,
    ) -> Result<Response<pb::UpdateAccountResponse>, Status> {
        let req = request.into_inner();
        let update = AccountUpdate {
            proxy: req.proxy.as_deref(),
            user_agent: req.user_agent.as_deref(),
            label: req.label.as_deref(),
            end_cooldown: req.end_cooldown,
        };
        let account = self.directory.update_account(&req.account_id, update).await?;
        Ok(Response::new(pb::UpdateAccountResponse { account: Some(self.account_message(account)) }))
    }

    async fn lease_session(
        &self,
        request: Request<pb::LeaseSessionRequest>,
    ) -> Result<Response<pb::LeaseSessionResponse>, Status> {
        let caller = aap_platform::auth::caller(&request)?;
        let req = request.into_inner();
        let assistant = req.assistant.trim().to_lowercase();
        if !caller.may_serve(&assistant) {
            return Err(SessionError::PermissionDenied(format!(
                "principal {} may not serve {assistant}, so it may not lease its sessions",
                caller.principal
            ))
            .into());
        }
        let lease = self.directory.lease(&req.assistant, &req.plan, &req.bot_id, &caller.principal).await?;
        Ok(Response::new(pb::LeaseSessionResponse {
            lease_id: lease.id.to_string(),
            account_id: lease.account_id.to_string(),
            plan: lease.plan,
            storage_state_json: lease.storage_state_json,
            max_runs: lease.max_runs,
            expires_at: Some(timestamp(lease.expires_at)),
            proxy: lease.proxy.unwrap_or_default(),
            user_agent: lease.user_agent,
        }))
    }

    async fn return_session(
        &self,
        request: Request<pb::ReturnSessionRequest>,
    ) -> Result<Response<pb::ReturnSessionResponse>, Status> {
        let caller = aap_platform::auth::caller(&request)?;
        let req = request.into_inner();
        let outcome = lease_outcome(req.outcome)?;
        let lifts_at = req.limit_lifts_at.map(|at| time("limit_lifts_at", at)).transpose()?;
        let account = self
            .directory
            .return_lease(&req.lease_id, outcome, req.runs, &req.detail, lifts_at, &caller.principal)
            .await?;
        Ok(Response::new(pb::ReturnSessionResponse { account: Some(self.account_message(account)) }))
    }

    type WatchAccountsStream = futures::stream::BoxStream<'static, Result<pb::WatchAccountsResponse, Status>>;

    async fn watch_accounts(
        &self,
        request: Request<pb::WatchAccountsRequest>,
    ) -> Result<Response<Self::WatchAccountsStream>, Status> {
        let req = request.into_inner();
        let filter = account_filter(req.assistant, req.plan, &req.statuses)?;
        // A bad filter fails the call itself, not the stream's first message.
        let first = self.directory.find_accounts(&filter).await?;
        let directory = self.directory.clone();
        let stream = crate::watch::accounts(self.directory.clone(), filter, first).map(move |update| {
            update
                .map(|accounts| pb::WatchAccountsResponse {
                    accounts: accounts
                        .into_iter()
                        .map(|account| {
                            let budget = directory.hourly_budget(&account.assistant);
                            account_message(account, budget)
                        })
                        .collect(),
                })
                .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        let account = self.directory.get_account(&request.into_inner().account_id).await?;
        Ok(Response::new(pb::GetAccountResponse { account: Some(self.account_message(account)) }))
    }

    async fn disable_account(
        &self,
        request: Request<pb::DisableAccountRequest>,
    ) -> Result<Response<pb::DisableAccountResponse>, Status> {
        let account = self.directory.set_disabled(&request.into_inner().account_id, true).await?;
        Ok(Response::new(pb::DisableAccountResponse { account: Some(self.account_message(account)) }))
    }

    async fn enable_account(
        &self,
        request: Request<pb::EnableAccountRequest>,
    ) -> Result<Response<pb::EnableAccountResponse>, Status> {
        let account = self.directory.set_disabled(&request.into_inner().account_id, false).await?;
        Ok(Response::new(pb::EnableAccountResponse { account: Some(self.account_message(account)) }))
    }

    async fn delete_account(
        &self,
        request: Request<pb::DeleteAccountRequest>,
    ) -> Result<Response<pb::DeleteAccountResponse>, Status> {
        self.directory.delete_account(&request.into_inner().account_id).await?;
        Ok(Response::new(pb::DeleteAccountResponse {}))
    }

    async fn list_leases(
        &self,
        request: Request<pb::ListLeasesRequest>,
    ) -> Result<Response<pb::ListLeasesResponse>, Status> {
        let req = request.into_inner();
        let leases = self.directory.leases(&req.account_id, req.limit).await?;
        Ok(Response::new(pb::ListLeasesResponse { leases: leases.into_iter().map(lease_message).collect() }))
    }

    async fn list_evidence(
        &self,
        request: Request<pb::ListEvidenceRequest>,
    ) -> Result<Response<pb::ListEvidenceResponse>, Status> {
        let req = request.into_inner();
        let cases = self.evidence.list(&req.account_id, req.limit).await?;
        Ok(Response::new(pb::ListEvidenceResponse { cases: cases.into_iter().map(evidence_message).collect() }))
    }

    async fn get_evidence(
        &self,
        request: Request<pb::GetEvidenceRequest>,
    ) -> Result<Response<pb::GetEvidenceResponse>, Status> {
        let req = request.into_inner();
        let detail = self.evidence.get(&req.evidence_id, req.include_html).await?;
        Ok(Response::new(pb::GetEvidenceResponse {
            case: Some(evidence_message(detail.case)),
            screenshot_png: detail.screenshot_png,
            html: detail.html.unwrap_or_default(),
        }))
    }

    async fn report_evidence(
        &self,
        request: Request<pb::ReportEvidenceRequest>,
    ) -> Result<Response<pb::ReportEvidenceResponse>, Status> {
        let caller = aap_platform::auth::caller(&request)?;
        let req = request.into_inner();
        let assistant = req.assistant.trim().to_lowercase();
        if !caller.may_serve(&assistant) {
            return Err(crate::evidence::EvidenceError::PermissionDenied(format!(
                "principal {} may not serve {assistant}, so it may not report evidence of it",
                caller.principal
            ))
            .into());
        }
        let captured_at = req.captured_at.map(evidence_time).transpose()?;
        let new = crate::evidence::NewEvidence {
            bot_id: &req.bot_id,
            lease_id: &req.lease_id,
            assistant: &req.assistant,
            evaluation_id: req.evaluation_id,
            attempt: req.attempt,
            class: &req.class,
            error: &req.error,
            url: &req.url,
            title: &req.title,
            captured_at,
            screenshot_png: &req.screenshot_png,
            html: &req.html,
            manifest_version: &req.manifest_version,
        };
        let id = self.evidence.report(new, &caller.principal).await?;
        Ok(Response::new(pb::ReportEvidenceResponse { evidence_id: id.to_string() }))
    }
}

impl From<SessionError> for Status {
    fn from(error: SessionError) -> Status {
        let message = error.to_string();
        match error {
            SessionError::InvalidArgument { field, reason } => Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request_violation(field, reason),
            ),
            SessionError::NoAccount { .. }
            | SessionError::Leased(_)
            | SessionError::LeaseAlreadyReturned(_)
            | SessionError::LeaseLapsed { .. }
            | SessionError::NoKey
            | SessionError::Undecryptable { .. } => Status::failed_precondition(message),
            SessionError::TooLarge(field) => Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request_violation(field, "too large to store"),
            ),
            SessionError::Exhausted { next_free_at, .. } => {
                // The database's clock set next_free_at; a skew only shifts the hint.
                let retry_after = next_free_at.and_then(|at| (at - Utc::now()).to_std().ok());
                match retry_after {
                    Some(delay) => Status::with_error_details(
                        Code::ResourceExhausted,
                        message,
                        ErrorDetails::with_retry_info(Some(delay)),
                    ),
                    None => Status::resource_exhausted(message),
                }
            }
            SessionError::AccountNotFound(_) | SessionError::LeaseNotFound(_) => Status::not_found(message),
            SessionError::PermissionDenied(_) => Status::permission_denied(message),
            SessionError::Database(cause) => {
                tracing::error!(error = %cause, "session store failed");
                match cause {
                    // Worth a retry: the database is out of reach, not the request at fault.
                    sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                        Status::unavailable("session store unavailable")
                    }
                    _ => Status::internal("internal error"),
                }
            }
        }
    }
}

fn evidence_message(case: crate::evidence::EvidenceCase) -> pb::EvidenceCase {
    pb::EvidenceCase {
        id: case.id.to_string(),
        account_id: case.account_id.map(|id| id.to_string()).unwrap_or_default(),
        assistant: case.assistant,
        bot_id: case.bot_id,
        evaluation_id: case.evaluation_id,
        // Stored from a u32 checked to fit; never negative.
        attempt: u32::try_from(case.attempt).unwrap_or_default(),
        class: case.class,
        error: case.error,
        url: case.url,
        title: case.title,
        captured_at: Some(timestamp(case.captured_at)),
        has_screenshot: case.has_screenshot,
        html_bytes: u64::try_from(case.html_bytes).unwrap_or_default(),
        manifest_version: case.manifest_version,
    }
}

/// A report's capture time; one no calendar has is refused.
fn evidence_time(at: prost_types::Timestamp) -> Result<DateTime<Utc>, crate::evidence::EvidenceError> {
    aap_platform::input::check_time(&at).map_err(|_| crate::evidence::EvidenceError::InvalidArgument {
        field: "captured_at",
        reason: "is not a time".to_owned(),
    })
}

impl From<crate::evidence::EvidenceError> for Status {
    fn from(error: crate::evidence::EvidenceError) -> Status {
        use crate::evidence::EvidenceError;
        let message = error.to_string();
        match error {
            EvidenceError::InvalidArgument { field, reason } => Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request_violation(field, reason),
            ),
            EvidenceError::PermissionDenied(_) => Status::permission_denied(message),
            EvidenceError::LeaseNotFound(_) | EvidenceError::AccountNotFound(_) | EvidenceError::NotFound(_) => {
                Status::not_found(message)
            }
            EvidenceError::Database(cause) => {
                tracing::error!(error = %cause, "evidence store failed");
                match cause {
                    // Worth a retry: the database is out of reach, not the request at fault.
                    sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                        Status::unavailable("evidence store unavailable")
                    }
                    _ => Status::internal("internal error"),
                }
            }
        }
    }
}
