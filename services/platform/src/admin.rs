//! AdminService over gRPC: a thin adapter over [`Principals`]. The auth layer admits only
//! operators to everything but WhoAmI.

use aap_proto::v1 as pb;
use aap_proto::v1::admin_service_server::AdminService;
use chrono::{DateTime, Utc};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::auth::{self, Role};
use crate::principals::{NewToken, PrincipalError, Principals, TokenInfo};

/// The tonic service; serve it with `AdminServiceServer::new(AdminGrpc::new(principals))`.
#[derive(Debug, Clone)]
pub struct AdminGrpc {
    principals: Principals,
}

impl AdminGrpc {
    pub fn new(principals: Principals) -> AdminGrpc {
        AdminGrpc { principals }
    }
}

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: at.timestamp(), nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0) }
}

fn role_message(role: Role) -> pb::Role {
    match role {
        Role::Customer => pb::Role::Customer,
        Role::Bot => pb::Role::Bot,
        Role::Operator => pb::Role::Operator,
    }
}

fn role_from_text(role: &str) -> pb::Role {
    match role {
        "customer" => pb::Role::Customer,
        "bot" => pb::Role::Bot,
        "operator" => pb::Role::Operator,
        _ => pb::Role::Unspecified,
    }
}

fn info_message(info: TokenInfo) -> pb::TokenInfo {
    pb::TokenInfo {
        id: info.id,
        principal: info.principal,
        role: role_from_text(&info.role).into(),
        assistants: info.assistants,
        label: info.label,
        source: info.source,
        created_at: Some(timestamp(info.created_at)),
        created_by: info.created_by,
        revoked_at: info.revoked_at.map(timestamp),
        revoked_by: info.revoked_by,
        expires_at: info.expires_at.map(timestamp),
    }
}

impl From<PrincipalError> for Status {
    fn from(error: PrincipalError) -> Status {
        let message = error.to_string();
        match error {
            PrincipalError::InvalidArgument { field, reason } => Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request_violation(field, reason),
            ),
            PrincipalError::NotFound(_) => Status::not_found(message),
            PrincipalError::FailedPrecondition(_) => Status::failed_precondition(message),
            PrincipalError::Database(cause) => {
                tracing::error!(error = %cause, "token store failed");
                Status::unavailable("token store unavailable, retry shortly")
            }
        }
    }
}

#[tonic::async_trait]
impl AdminService for AdminGrpc {
    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let caller = auth::caller(&request)?;
        let req = request.into_inner();
        let role = match pb::Role::try_from(req.role) {
            Ok(pb::Role::Customer) => Role::Customer,
            Ok(pb::Role::Bot) => Role::Bot,
            Ok(pb::Role::Operator) => Role::Operator,
            Ok(pb::Role::Unspecified) | Err(_) => {
                return Err(PrincipalError::InvalidArgument {
                    field: "role",
                    reason: "one of ROLE_CUSTOMER, ROLE_BOT, ROLE_OPERATOR".to_owned(),
                }
                .into());
            }
        };
        let new = NewToken { principal: &req.principal, role, assistants: &req.assistants, label: &req.label };
        let (token, info) = self.principals.create_token(&caller, new).await?;
        Ok(Response::new(pb::CreateTokenResponse { token, info: Some(info_message(info)) }))
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let req = request.into_inner();
        let tokens = self.principals.list_tokens(&req.principal, req.include_revoked).await?;
        Ok(Response::new(pb::ListTokensResponse { tokens: tokens.into_iter().map(info_message).collect() }))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let caller = auth::caller(&request)?;
        let info = self.principals.revoke(&caller, &request.into_inner().id).await?;
        Ok(Response::new(pb::RevokeTokenResponse { info: Some(info_message(info)) }))
    }

    async fn who_am_i(&self, request: Request<pb::WhoAmIRequest>) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let caller = auth::caller(&request)?;
        Ok(Response::new(pb::WhoAmIResponse {
            principal: caller.principal.to_string(),
            role: role_message(caller.role).into(),
            assistants: caller.assistants.to_vec(),
            token_id: caller.token_id.to_string(),
        }))
    }
}
