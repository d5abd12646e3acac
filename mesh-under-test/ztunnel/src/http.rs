//! The three small HTTP servers (hyper, HTTP/1): readiness on 15021 (`/healthz/ready`),
//! Prometheus metrics on 15020 (`/metrics`), and the localhost admin API on 15000
//! (`/config_dump`). Handlers are plain functions of the path, so they test without sockets.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;
use crate::state::ProxyState;

pub type HttpResponse = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> HttpResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

fn not_found(path: &str) -> HttpResponse {
    respond(
        StatusCode::NOT_FOUND,
        "text/plain",
        format!("no handler for {path}\n"),
    )
}

pub fn readiness(state: &ProxyState, path: &str) -> HttpResponse {
    match path {
        "/healthz/ready" if state.is_ready() => respond(StatusCode::OK, "text/plain", "ready\n"),
        "/healthz/ready" => respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n"),
        _ => not_found(path),
    }
}

pub fn stats(state: &ProxyState, path: &str) -> HttpResponse {
    match path {
        "/metrics" | "/stats/prometheus" => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            state.metrics.render(),
        ),
        _ => not_found(path),
    }
}

pub fn admin(state: &ProxyState, path: &str) -> HttpResponse {
    match path {
        "/config_dump" => {
            let body = serde_json::to_string_pretty(&state.config_dump())
                .unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()));
            respond(StatusCode::OK, "application/json", body)
        }
        _ => not_found(path),
    }
}

/// Serves `handler` on `listener` until shutdown.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ProxyState>,
    handler: fn(&ProxyState, &str) -> HttpResponse,
    mut shutdown: Shutdown,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            _ = shutdown.wait() => return,
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let response = handler(&state, request.uri().path());
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::test_state;
    use http_body_util::BodyExt;

    async fn body(response: HttpResponse) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn readiness_turns_200_once_ready() {
        let state = test_state();
        assert_eq!(
            readiness(&state, "/healthz/ready").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.set_ready();
        let response = readiness(&state, "/healthz/ready");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body(response).await, "ready\n");
        assert_eq!(readiness(&state, "/other").status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn metrics_and_config_dump() {
        let state = test_state();
        let metrics = body(stats(&state, "/metrics")).await;
        assert!(
            metrics.contains("# TYPE istio_tcp_connections_opened_total counter"),
            "{metrics}"
        );
        let response = admin(&state, "/config_dump");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let dump: serde_json::Value = serde_json::from_str(&body(response).await).unwrap();
        assert_eq!(dump["endpoints"].as_array().unwrap().len(), 2);
        assert_eq!(
            dump["services"][0]["hostname"],
            "in-ambient.httpbin.svc.cluster.local"
        );
        assert_eq!(
            admin(&state, "/quitquitquit").status(),
            StatusCode::NOT_FOUND
        );
    }
}
