//! The GraphQL admin and compliance API at `/graphql`: POST for queries and
//! mutations, GET for GraphiQL, WebSocket (`graphql-transport-ws`) for
//! subscriptions. Callers present a bearer access token issued by grantd:
//! scope `admin` reads and writes, scope `audit` reads the consent history
//! and the audit trail, anything else is refused.

mod mutation;
mod query;
mod subscription;
pub mod types;

use actix_web::{HttpRequest, HttpResponse, web};
use async_graphql::http::GraphiQLSource;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Context, ErrorExtensions, Schema, ServerError, ServerResult, ValidationResult, Variables};
use async_graphql_actix_web::{GraphQLRequest, GraphQLSubscription};
use chrono::Utc;
use serde_json::json;

use crate::app::AppState;
use crate::eventstore::StoreError;

pub use mutation::Mutation;
pub use query::Query;
pub use subscription::Subscription;

pub type AdminSchema = Schema<Query, Mutation, Subscription>;

/// Most items one page may return.
pub const MAX_PAGE: i64 = 200;

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub client_id: String,
    pub admin: bool,
    pub audit: bool,
}

pub fn schema(state: web::Data<AppState>) -> AdminSchema {
    Schema::build(Query, Mutation, Subscription).data(state).limit_depth(12).limit_complexity(2_000).extension(ErrorCodes).finish()
}

/// Gives the errors async-graphql raises itself (syntax, validation, depth
/// and complexity limits) a stable `code` extension like every other error.
struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodes)
    }
}

fn with_code(mut error: ServerError, code: &'static str) -> ServerError {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code);
    }
    error
}

#[async_trait::async_trait]
impl Extension for ErrorCodes {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables).await.map_err(|e| with_code(e, "GRAPHQL_PARSE_FAILED"))
    }

    async fn validation(&self, ctx: &ExtensionContext<'_>, next: NextValidation<'_>) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|e| {
                    let code = match e.message.as_str() {
                        "Query is nested too deep." => "QUERY_TOO_DEEP",
                        "Query is too complex." => "QUERY_TOO_COMPLEX",
                        _ => "GRAPHQL_VALIDATION_FAILED",
                    };
                    with_code(e, code)
                })
                .collect()
        })
    }
}

/// The schema's SDL, as checked in at `graphql/schema.graphql`.
pub fn sdl() -> String {
    Schema::build(Query, Mutation, Subscription).finish().sdl()
}

pub(crate) fn state<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a web::Data<AppState>> {
    ctx.data::<web::Data<AppState>>()
}

/// How long a query waits for the read models to include every event
/// committed before it.
const READ_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits (briefly) until the read models include the log as it is now, so a
/// query sees every event committed before it: a token issued a moment ago,
/// a revocation made on another node.
pub(crate) async fn caught_up(state: &AppState) -> async_graphql::Result<()> {
    let head = state.store.head().await.map_err(store_error)?;
    state.runner.wait_for(head, READ_WAIT).await;
    state.live.caught_up(head, READ_WAIT).await;
    Ok(())
}

pub(crate) fn error(code: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code))
}

pub(crate) fn store_error(e: StoreError) -> async_graphql::Error {
    error("UNAVAILABLE", format!("the event store is unavailable: {e}"))
}

pub(crate) fn admin_error(e: crate::admin::AdminError) -> async_graphql::Error {
    error(e.code(), e.to_string())
}

/// Read access: `admin`, or `audit` where `audit_may` says so.
pub(crate) fn require_read(ctx: &Context<'_>, audit_may: bool) -> async_graphql::Result<Caller> {
    let caller = ctx.data::<Caller>().map_err(|_| error("UNAUTHENTICATED", "a bearer token is required"))?;
    if caller.admin || (audit_may && caller.audit) {
        Ok(caller.clone())
    } else {
        Err(error("FORBIDDEN", "this operation needs the admin scope"))
    }
}

pub(crate) fn require_admin(ctx: &Context<'_>) -> async_graphql::Result<Caller> {
    require_read(ctx, false)
}

/// The caller behind a bearer token, or the HTTP response refusing it.
pub(crate) fn authenticate(state: &AppState, authorization: Option<&str>) -> Result<Caller, Box<HttpResponse>> {
    let unauthenticated = |message: &str| {
        Box::new(
            HttpResponse::Unauthorized()
                .insert_header(("WWW-Authenticate", "Bearer realm=\"grantd\""))
                .json(json!({"errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}]})),
        )
    };
    let token = authorization
        .and_then(|a| a.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or_else(|| unauthenticated("a bearer access token issued by grantd is required"))?;
    let claims =
        state.access_token_claims(token).ok_or_else(|| unauthenticated("the access token is not valid, expired or was revoked"))?;
    let scopes: Vec<&str> = claims.get("scope").and_then(|v| v.as_str()).unwrap_or("").split(' ').collect();
    let caller = Caller {
        client_id: claims.get("client_id").and_then(|v| v.as_str()).unwrap_or("").to_string(),
        admin: scopes.contains(&"admin"),
        audit: scopes.contains(&"audit"),
    };
    if !caller.admin && !caller.audit {
        return Err(Box::new(HttpResponse::Forbidden().json(
            json!({"errors": [{"message": "the token has neither the admin nor the audit scope", "extensions": {"code": "FORBIDDEN"}}]}),
        )));
    }
    Ok(caller)
}

pub async fn graphql_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    schema: web::Data<AdminSchema>,
    request: GraphQLRequest,
) -> HttpResponse {
    let authorization = req.headers().get("authorization").and_then(|v| v.to_str().ok());
    let caller = match authenticate(&state, authorization) {
        Ok(c) => c,
        Err(refused) => return *refused,
    };
    let info = mutation::RequestInfo {
        request_id: crate::http::token::request_id(&req),
        source_address: req.peer_addr().map(|a| a.ip().to_string()),
    };
    let request = request.into_inner().data(caller).data(info);
    let response = schema.execute(request).await;
    HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(response)
}

pub async fn graphiql() -> HttpResponse {
    let page = GraphiQLSource::build().endpoint("/graphql").subscription_endpoint("/graphql").finish();
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(page)
}

/// WebSocket subscriptions; the bearer token comes in the `Authorization`
/// header or in the `connection_init` payload (`{"Authorization": "Bearer …"}`).
pub async fn graphql_ws(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    schema: web::Data<AdminSchema>,
) -> actix_web::Result<HttpResponse> {
    let header = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    let state_for_init = state.clone();
    GraphQLSubscription::new(Schema::clone(&schema))
        .on_connection_init(move |value| async move {
            let from_payload =
                value.get("Authorization").or_else(|| value.get("authorization")).and_then(|v| v.as_str()).map(str::to_string);
            let authorization = header.or(from_payload);
            match authenticate(&state_for_init, authorization.as_deref()) {
                Ok(caller) => {
                    let mut data = async_graphql::Data::default();
                    data.insert(caller);
                    Ok(data)
                }
                Err(_) => Err(async_graphql::Error::new("a valid bearer token with the admin or audit scope is required")),
            }
        })
        .start(&req, payload)
}

/// Parses an RFC 3339 argument.
pub(crate) fn parse_time(name: &str, value: Option<&str>) -> async_graphql::Result<Option<chrono::DateTime<Utc>>> {
    value
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| error("INVALID_INPUT", format!("{name} must be an RFC 3339 time with a zone")))
        })
        .transpose()
}

/// Cursors are opaque: base64url of `pos:N`.
pub(crate) fn encode_cursor(position: i64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("pos:{position}"))
}

pub(crate) fn decode_cursor(cursor: &str) -> async_graphql::Result<i64> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("pos:").and_then(|n| n.parse::<i64>().ok()))
        .filter(|n| *n >= 0)
        .ok_or_else(|| error("INVALID_CURSOR", "the cursor is not one this API returned"))
}
