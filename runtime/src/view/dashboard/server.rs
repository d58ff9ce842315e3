//! The dashboard's HTTP server (actix-web, one worker thread).

use super::access::Access;
use super::view::{ClusterView, Status};
use super::DashboardSetting;
use crate::actors::scheduler::{DashboardView, Scheduler};
use actix::Addr;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use std::time::Duration;

pub use super::SharedPanel;

const PAGE: &str = include_str!("page.html");

/// The default address, and how many following ports are tried when it is taken.
const DEFAULT_ADDR: (&str, u16) = ("127.0.0.1", 8787);
const PORTS_TRIED: u16 = 50;

#[derive(Clone)]
struct State {
    scheduler: Addr<Scheduler>,
    panel: SharedPanel,
    access: Access,
}

/// The answer to a request without the token (or with a wrong one).
fn forbidden() -> HttpResponse {
    HttpResponse::Forbidden()
        .content_type("text/plain; charset=utf-8")
        .body("403: this dashboard needs the token of the URL its program printed (?token=...)\n")
}

/// Whether `req` carries the dashboard's token.
fn allowed(req: &HttpRequest, state: &State) -> bool {
    let port = req.app_config().local_addr().port();
    let name = Access::cookie_name(port);
    let cookie = req
        .headers()
        .get_all(actix_web::http::header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        });
    state.access.allows(req.query_string(), cookie)
}

async fn status(state: &State) -> Status {
    let runtime = state
        .scheduler
        .send(DashboardView)
        .await
        .unwrap_or_default();
    let panel = state.panel.lock().ok().and_then(|p| p.clone());
    let cluster = match panel {
        Some(p) => p.view().await,
        None => ClusterView::default(),
    };
    Status::new(runtime, cluster)
}

async fn page(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if !allowed(&req, &state) {
        return forbidden();
    }
    let mut ok = HttpResponse::Ok();
    ok.content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"));
    if let Access::Token(token) = &state.access {
        // Later visits (and the page's own requests) need no token in the URL.
        let port = req.app_config().local_addr().port();
        let cookie = format!(
            "{}={token}; Path=/; HttpOnly; SameSite=Strict",
            Access::cookie_name(port)
        );
        ok.insert_header((actix_web::http::header::SET_COOKIE, cookie));
    }
    ok.body(PAGE)
}

async fn api_status(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if !allowed(&req, &state) {
        return forbidden();
    }
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(status(&state).await)
}

async fn api_events(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if !allowed(&req, &state) {
        return forbidden();
    }
    let state = state.get_ref().clone();
    let stream = futures::stream::unfold(state, |state| async move {
        let body = serde_json::to_string(&status(&state).await).unwrap_or_default();
        actix_rt::time::sleep(Duration::from_millis(500)).await;
        let event = web::Bytes::from(format!("data: {body}\n\n"));
        Some((Ok::<_, actix_web::Error>(event), state))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-store"))
        .streaming(stream)
}

/// Binds the dashboard's listener as `setting` says: `Ok(None)` when off.
pub fn bind(setting: &DashboardSetting) -> Result<Option<std::net::TcpListener>, String> {
    match setting {
        DashboardSetting::Off => Ok(None),
        DashboardSetting::At(addr) => {
            let listener = std::net::TcpListener::bind(addr)
                .map_err(|e| format!("the dashboard cannot listen on {addr}: {e}"))?;
            if let Ok(local) = listener.local_addr() {
                if !local.ip().is_loopback() {
                    tracing::warn!(
                        "the dashboard listens on {local}, beyond this machine: anyone who \
                         reaches it with the URL's token sees the runs, workers, sample keys \
                         and failure reasons, and the token crosses the network in clear"
                    );
                }
            }
            Ok(Some(listener))
        }
        DashboardSetting::Default => {
            let (host, first) = DEFAULT_ADDR;
            for port in first..first + PORTS_TRIED {
                match std::net::TcpListener::bind((host, port)) {
                    Ok(l) => {
                        if port != first {
                            tracing::warn!(
                                "dashboard port {first} is taken; serving on {host}:{port} instead"
                            );
                        }
                        return Ok(Some(l));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                    Err(e) => {
                        return Err(format!("the dashboard cannot listen on {host}:{port}: {e}"))
                    }
                }
            }
            Err(format!(
                "the dashboard found no free port in {host}:{first}..{}",
                first + PORTS_TRIED
            ))
        }
    }
}

/// Serves the dashboard on `listener` from the current actix system, to the
/// requests `access` allows.
pub fn serve(
    listener: std::net::TcpListener,
    scheduler: Addr<Scheduler>,
    panel: SharedPanel,
    access: Access,
) -> std::io::Result<actix_web::dev::Server> {
    let state = State {
        scheduler,
        panel,
        access,
    };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .route("/", web::get().to(page))
            .route("/api/status", web::get().to(api_status))
            .route("/api/events", web::get().to(api_events))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    Ok(server)
}
