//! The healthCheckNodePort servers of `externalTrafficPolicy: Local` Services, as kube-proxy
//! serves them: load balancers probe every node on that port and send traffic only to nodes
//! that answer 200, which are those with a local endpoint (and a healthy proxy).
//!
//! The sync starts and stops the servers from the desired state after each successful sync,
//! so a port answers for exactly what is programmed. A port that cannot be bound is logged
//! and tried again at the next sync.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::health::Health;
use crate::model::{HealthCheck, ServiceName};

/// The running servers, by node port.
pub struct HealthCheckServers {
    bind: IpAddr,
    health: Arc<Health>,
    servers: BTreeMap<u16, Server>,
}

struct Server {
    service: ServiceName,
    local_endpoints: Arc<AtomicUsize>,
    /// Dropping the server stops its task.
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The task may already have ended (its listener failed): nothing to stop then.
            let _ = stop.send(());
        }
    }
}

impl HealthCheckServers {
    /// Servers listen on `bind` (all addresses: `0.0.0.0`), and report the proxy's `health`.
    pub fn new(bind: IpAddr, health: Arc<Health>) -> Self {
        Self {
            bind,
            health,
            servers: BTreeMap::new(),
        }
    }

    /// Serves exactly `checks`: starts, updates and stops servers.
    pub async fn update<'a>(&mut self, checks: impl IntoIterator<Item = &'a HealthCheck>) {
        let wanted: BTreeMap<u16, &HealthCheck> =
            checks.into_iter().map(|c| (c.node_port, c)).collect();
        self.servers.retain(|port, server| {
            let keep = wanted
                .get(port)
                .is_some_and(|c| c.service == server.service);
            if !keep {
                info!(port, service = %server.service, "stopping a health check server");
            }
            keep
        });
        for (port, check) in wanted {
            if let Some(server) = self.servers.get(&port) {
                server
                    .local_endpoints
                    .store(check.local_endpoints, Ordering::Relaxed);
                continue;
            }
            match self.start(check).await {
                Ok(server) => {
                    self.servers.insert(port, server);
                }
                Err(error) => {
                    warn!(port, service = %check.service, %error, "cannot serve a health check")
                }
            }
        }
    }

    async fn start(&self, check: &HealthCheck) -> std::io::Result<Server> {
        let address = SocketAddr::new(self.bind, check.node_port);
        let listener = tokio::net::TcpListener::bind(address).await?;
        let local_endpoints = Arc::new(AtomicUsize::new(check.local_endpoints));
        let state = Probe {
            service: check.service.clone(),
            local_endpoints: local_endpoints.clone(),
            health: self.health.clone(),
        };
        let router = Router::new().fallback(answer).with_state(state);
        let (stop, stopped) = oneshot::channel::<()>();
        let port = check.node_port;
        tokio::spawn(async move {
            let stopped = async {
                let _ = stopped.await;
            };
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
            {
                warn!(port, %error, "health check server failed");
            }
        });
        info!(port, service = %check.service, "serving a health check");
        Ok(Server {
            service: check.service.clone(),
            local_endpoints,
            stop: Some(stop),
        })
    }
}

#[derive(Clone)]
struct Probe {
    service: ServiceName,
    local_endpoints: Arc<AtomicUsize>,
    health: Arc<Health>,
}

/// kube-proxy's body, field for field.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    service: ServiceRef<'a>,
    local_endpoints: usize,
    service_proxy_healthy: bool,
}

#[derive(Serialize)]
struct ServiceRef<'a> {
    namespace: &'a str,
    name: &'a str,
}

async fn answer(State(probe): State<Probe>) -> Response {
    let local_endpoints = probe.local_endpoints.load(Ordering::Relaxed);
    let service_proxy_healthy = probe.health.status().healthy;
    let body = Body {
        service: ServiceRef {
            namespace: &probe.service.namespace,
            name: &probe.service.name,
        },
        local_endpoints,
        service_proxy_healthy,
    };
    let code = if local_endpoints > 0 && service_proxy_healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let Ok(body) = serde_json::to_string(&body) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut response = (code, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn free_port() -> u16 {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.local_addr().unwrap().port()
    }

    async fn get(port: u16) -> String {
        let mut stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    fn check(port: u16, local_endpoints: usize) -> HealthCheck {
        HealthCheck {
            service: ServiceName::new("default", "web"),
            node_port: port,
            local_endpoints,
        }
    }

    #[tokio::test]
    async fn answers_like_kube_proxy_and_follows_the_syncs() {
        let health = Arc::new(Health::new(Duration::from_secs(30)));
        health.record_success();
        let mut servers = HealthCheckServers::new(Ipv4Addr::LOCALHOST.into(), health);
        let port = free_port();

        servers.update([&check(port, 2)]).await;
        let response = get(port).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            response.contains("content-type: application/json"),
            "{response}"
        );
        assert!(
            response.ends_with(
                r#"{"service":{"namespace":"default","name":"web"},"localEndpoints":2,"serviceProxyHealthy":true}"#
            ),
            "{response}"
        );

        servers.update([&check(port, 0)]).await;
        let response = get(port).await;
        assert!(response.starts_with("HTTP/1.1 503"), "{response}");
        assert!(response.contains(r#""localEndpoints":0"#), "{response}");

        servers.update([]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let refused = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await;
        assert!(
            refused.is_err(),
            "the port is closed once the check is gone"
        );
    }
}
