//! `POST /v1/preview`: a query's rows while it runs, for a shell connected to the server. The
//! body is an Arrow IPC stream (`application/vnd.apache.arrow.stream`): the schema, then a
//! message per batch as the query produces it. Closing the connection stops the query.

use arrow::ipc::writer::StreamWriter;
use axum::body::{Body, Bytes};
use axum::extract::{Json, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{AppState, SubmitRequest, error, jobs_error};
use crate::jobs::{Preview, start_preview};

pub(super) async fn preview(
    State(state): State<AppState>,
    Json(request): Json<SubmitRequest>,
) -> Response {
    let planned = match state.jobs.plan(&request.script()).await {
        Ok(p) => p,
        Err(e) => return jobs_error(e),
    };
    let Some(job) = planned.job.filter(|j| j.only_queries()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "a preview shows a SELECT: the SQL must end in one, with no INSERT",
        );
    };
    let Some(preview) = start_preview(job, state.jobs.runtime_options()) else {
        return error(StatusCode::BAD_REQUEST, "the query has no result to show");
    };
    let writer = match StreamWriter::try_new(Vec::new(), &preview.schema) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let messages = futures::stream::unfold(Some((preview, writer)), next_message);
    (
        [(header::CONTENT_TYPE, "application/vnd.apache.arrow.stream")],
        Body::from_stream(messages),
    )
        .into_response()
}

type Step = Option<(Preview, StreamWriter<Vec<u8>>)>;

/// The bytes written so far (the schema first), then one message per batch, then the end
/// marker. Dropping the stream (the client went away) drops the preview, which stops it.
async fn next_message(state: Step) -> Option<(Result<Bytes, std::io::Error>, Step)> {
    let (mut preview, mut writer) = state?;
    let pending = std::mem::take(writer.get_mut());
    if !pending.is_empty() {
        return Some((Ok(Bytes::from(pending)), Some((preview, writer))));
    }
    let written = match preview.rows.recv().await {
        Some(batch) => writer.write(&batch),
        None => {
            if let Ok(Err(e)) = (&mut preview.ended).await {
                tracing::warn!("query preview failed: {e}");
            }
            let _ = writer.finish();
            let rest = std::mem::take(writer.get_mut());
            return Some((Ok(Bytes::from(rest)), None));
        }
    };
    match written {
        Ok(()) => {
            let bytes = std::mem::take(writer.get_mut());
            Some((Ok(Bytes::from(bytes)), Some((preview, writer))))
        }
        Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
    }
}
