//! The audit export (`GET /audit/export`, `grantd audit export`): the log,
//! optionally narrowed to a user, a client and a time window, as JSON lines
//! or CSV, produced page by page so that memory stays flat however large the
//! log is.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::db::Db;
use crate::eventstore::{EventStore, RecordedEvent, StoreError};
use crate::projections::queries::{AuditFilter, audit_positions};
use crate::projections::readmodels::time_text;

const PAGE: i64 = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jsonl => "application/jsonl",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ExportQuery {
    pub format: Format,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
}

impl ExportQuery {
    pub fn parse(
        format: &str,
        from: Option<&str>,
        to: Option<&str>,
        user_id: Option<String>,
        client_id: Option<String>,
    ) -> Result<Self, String> {
        let format = match format {
            "jsonl" => Format::Jsonl,
            "csv" => Format::Csv,
            other => return Err(format!("unknown format {other:?} (jsonl or csv)")),
        };
        let time = |name: &str, v: Option<&str>| {
            v.map(|v| {
                DateTime::parse_from_rfc3339(v).map(|t| t.with_timezone(&Utc)).map_err(|_| format!("{name} must be an RFC 3339 time"))
            })
            .transpose()
        };
        Ok(ExportQuery { format, from: time("from", from)?, to: time("to", to)?, user_id, client_id })
    }

    fn filtered(&self) -> bool {
        self.user_id.is_some() || self.client_id.is_some()
    }

    fn admits(&self, e: &RecordedEvent) -> bool {
        self.from.is_none_or(|t| e.recorded_at >= t) && self.to.is_none_or(|t| e.recorded_at <= t)
    }
}

#[derive(Serialize)]
struct ActorLine<'a> {
    kind: &'a str,
    id: &'a str,
}

/// One exported event; the field order is the line's order.
#[derive(Serialize)]
struct EventLine<'a> {
    position: i64,
    recorded_at: String,
    stream_id: &'a str,
    stream_version: i64,
    event_type: &'a str,
    schema_version: i32,
    actor: ActorLine<'a>,
    request_id: Option<&'a str>,
    source_address: Option<&'a str>,
    authentication: Option<&'a str>,
    payload: &'a serde_json::Value,
    prev_hash: String,
    hash: String,
}

fn csv_field(out: &mut Vec<u8>, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(value.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(value.as_bytes());
    }
}

pub const CSV_HEADER: &str = "position,recorded_at,stream_id,stream_version,event_type,schema_version,actor_kind,actor_id,request_id,source_address,authentication,payload,prev_hash,hash\n";

fn render(format: Format, e: &RecordedEvent, out: &mut Vec<u8>) {
    let ctx = &e.metadata.context;
    match format {
        Format::Jsonl => {
            let line = EventLine {
                position: e.position,
                recorded_at: time_text(e.recorded_at),
                stream_id: &e.stream_id,
                stream_version: e.stream_version,
                event_type: &e.event_type,
                schema_version: e.schema_version,
                actor: ActorLine { kind: ctx.actor.kind.as_str(), id: &ctx.actor.id },
                request_id: ctx.request_id.as_deref(),
                source_address: ctx.source_address.as_deref(),
                authentication: ctx.authentication.as_deref(),
                payload: &e.payload,
                prev_hash: hex::encode(e.prev_hash),
                hash: hex::encode(e.hash),
            };
            // Serializing to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &line);
            out.push(b'\n');
        }
        Format::Csv => {
            let fields = [
                e.position.to_string(),
                time_text(e.recorded_at),
                e.stream_id.clone(),
                e.stream_version.to_string(),
                e.event_type.clone(),
                e.schema_version.to_string(),
                ctx.actor.kind.as_str().to_string(),
                ctx.actor.id.clone(),
                ctx.request_id.clone().unwrap_or_default(),
                ctx.source_address.clone().unwrap_or_default(),
                ctx.authentication.clone().unwrap_or_default(),
                e.payload.to_string(),
                hex::encode(e.prev_hash),
                hex::encode(e.hash),
            ];
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                csv_field(out, f);
            }
            out.push(b'\n');
        }
    }
}

/// Produces the export one page at a time.
pub struct Exporter {
    db: Db,
    store: EventStore,
    query: ExportQuery,
    after: i64,
    started: bool,
    done: bool,
}

impl Exporter {
    pub fn new(db: Db, store: EventStore, query: ExportQuery) -> Self {
        Exporter { db, store, query, after: 0, started: false, done: false }
    }

    /// The next chunk of output, or `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(256 * 1024);
        if !self.started {
            self.started = true;
            if self.query.format == Format::Csv {
                out.extend_from_slice(CSV_HEADER.as_bytes());
            }
        }
        let events = if self.query.filtered() {
            let filter = AuditFilter {
                user_id: self.query.user_id.clone(),
                client_id: self.query.client_id.clone(),
                from: self.query.from,
                to: self.query.to,
                ..Default::default()
            };
            let positions = audit_positions(&self.db, &filter, self.after, PAGE).await?;
            self.store.read_positions(&positions).await?
        } else {
            self.store.read_all(self.after, PAGE).await?
        };
        match events.last() {
            Some(last) => self.after = last.position,
            None => self.done = true,
        }
        for e in events.iter().filter(|e| self.query.admits(e)) {
            render(self.query.format, e, &mut out);
        }
        Ok(Some(out))
    }
}

/// Writes the whole export to `out` (the command line).
pub async fn write_all(db: &Db, store: &EventStore, query: &ExportQuery, out: &mut impl Write) -> Result<u64, Box<dyn std::error::Error>> {
    let mut exporter = Exporter::new(db.clone(), store.clone(), query.clone());
    let mut bytes = 0u64;
    while let Some(chunk) = exporter.next_chunk().await? {
        out.write_all(&chunk)?;
        bytes += chunk.len() as u64;
    }
    out.flush()?;
    Ok(bytes)
}

/// `GET /audit/export?format=jsonl|csv&from=&to=&userId=&clientId=`, for
/// tokens with the `audit` or `admin` scope; streamed.
pub async fn http_export(req: actix_web::HttpRequest, state: actix_web::web::Data<crate::app::AppState>) -> actix_web::HttpResponse {
    use actix_web::HttpResponse;
    let authorization = req.headers().get("authorization").and_then(|v| v.to_str().ok());
    if let Err(refused) = crate::graphql::authenticate(&state, authorization) {
        return *refused;
    }
    let params = match crate::oauth::params::parse_query(req.query_string()) {
        Ok(p) => p,
        Err(e) => return HttpResponse::BadRequest().json(serde_json::json!({"error": e.description})),
    };
    let query = match ExportQuery::parse(
        params.get("format").unwrap_or("jsonl"),
        params.get("from"),
        params.get("to"),
        params.get("userId").map(str::to_string),
        params.get("clientId").map(str::to_string),
    ) {
        Ok(q) => q,
        Err(e) => return HttpResponse::BadRequest().json(serde_json::json!({"error": e})),
    };
    // The filtered export reads the audit trail's index: let it include
    // every event committed before this request.
    match state.store.head().await {
        Ok(head) => {
            state.runner.wait_for(head, std::time::Duration::from_secs(5)).await;
        }
        Err(e) => return HttpResponse::ServiceUnavailable().json(serde_json::json!({"error": e.to_string()})),
    }
    let content_type = query.format.content_type();
    let exporter = Exporter::new(state.db.clone(), state.store.clone(), query);
    let body = futures::stream::unfold(Some(exporter), |exporter| async move {
        let mut exporter = exporter?;
        match exporter.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok::<_, actix_web::Error>(actix_web::web::Bytes::from(chunk)), Some(exporter))),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "audit export failed midway");
                Some((Err(actix_web::error::ErrorServiceUnavailable("the event store became unavailable")), None))
            }
        }
    });
    HttpResponse::Ok().content_type(content_type).insert_header(("Cache-Control", "no-store")).streaming(body)
}
