//! The admin console: the static files of `web/console/dist`, served over plain HTTP (`GET` and
//! `HEAD`) on tenant-admin's port, next to gRPC and grpc-web.
//!
//! Variables: `TENANTRY_CONSOLE_DIR` (the built console; unset: no console, every `GET` is 404),
//! `TENANTRY_CONSOLE_SETTINGS_URL` and `TENANTRY_CONSOLE_PROVISIONING_URL` (where the browser
//! reaches tenant-settings and provisioning; default `TENANT_SETTINGS_URL` and
//! `PROVISIONING_URL`). The console calls tenant-admin on its own origin.
//!
//! Every answer carries the security headers (Content-Security-Policy without inline script,
//! `frame-ancestors 'none'`, nosniff, no referrer, `X-Frame-Options: DENY`). The services have no
//! TLS option (TLS ends at the load balancer or ingress), so no `Strict-Transport-Security` is
//! sent: HSTS belongs to whatever serves HTTPS.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use tenantry_runtime::config;
use tenantry_runtime::{HttpFuture, HttpHandler};
use tonic::body::Body;
use tonic::codegen::http::{self, HeaderValue, Method, Response, StatusCode, header};

/// Where the console is and where the browser reaches the other services.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// The built console (`index.html`, `app.js`...); `None` serves no console.
    pub dir: Option<PathBuf>,
    /// tenant-settings' URL as the browser reaches it.
    pub settings_url: String,
    /// provisioning's URL as the browser reaches it.
    pub provisioning_url: String,
}

impl ConsoleConfig {
    /// Reads `TENANTRY_CONSOLE_DIR`, `TENANTRY_CONSOLE_SETTINGS_URL` and
    /// `TENANTRY_CONSOLE_PROVISIONING_URL`; the URLs default to the ones tenant-admin uses.
    ///
    /// # Errors
    ///
    /// A URL that is not an `http(s)://host[:port]` origin, or a directory without `index.html`.
    pub fn from_env(
        settings_url: &str,
        provisioning_url: &str,
    ) -> Result<Self, config::ConfigError> {
        let settings_url =
            config::var("TENANTRY_CONSOLE_SETTINGS_URL").unwrap_or_else(|| settings_url.to_owned());
        let provisioning_url = config::var("TENANTRY_CONSOLE_PROVISIONING_URL")
            .unwrap_or_else(|| provisioning_url.to_owned());
        let check = |name: &'static str, url: &str| {
            origin(url).map(|_| ()).ok_or(config::ConfigError::Invalid {
                name,
                detail: format!("{url:?} is not an http(s)://host[:port] URL"),
            })
        };
        check("TENANTRY_CONSOLE_SETTINGS_URL", &settings_url)?;
        check("TENANTRY_CONSOLE_PROVISIONING_URL", &provisioning_url)?;
        let dir = config::var("TENANTRY_CONSOLE_DIR").map(PathBuf::from);
        if let Some(d) = &dir
            && !d.join("index.html").is_file()
        {
            return Err(config::ConfigError::Invalid {
                name: "TENANTRY_CONSOLE_DIR",
                detail: format!(
                    "{} has no index.html (build it: cd web/console && npm ci && npm run build)",
                    d.display()
                ),
            });
        }
        Ok(Self {
            dir,
            settings_url,
            provisioning_url,
        })
    }
}

/// The origin (`scheme://host[:port]`) of an http(s) URL, without path.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next()?;
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    valid.then(|| format!("{scheme}://{host}"))
}

/// The console's state: its files and its headers, computed once.
#[derive(Debug)]
struct Console {
    dir: Option<PathBuf>,
    csp: HeaderValue,
    config_json: String,
}

/// Builds the [`HttpHandler`] tenant-admin answers `GET` and `HEAD` with.
///
/// # Errors
///
/// The console directory cannot be resolved, or an origin does not make a valid header.
pub fn handler(config: &ConsoleConfig) -> anyhow::Result<HttpHandler> {
    let settings = origin(&config.settings_url).unwrap_or_default();
    let provisioning = origin(&config.provisioning_url).unwrap_or_default();
    let csp = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self' {settings} {provisioning}; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    );
    let config_json = serde_json::json!({
        "settingsUrl": settings,
        "provisioningUrl": provisioning,
    })
    .to_string();
    let console = Arc::new(Console {
        dir: match &config.dir {
            Some(d) => Some(d.canonicalize()?),
            None => None,
        },
        csp: HeaderValue::from_str(&csp)?,
        config_json,
    });
    Ok(Arc::new(move |parts: http::request::Parts| -> HttpFuture {
        let console = Arc::clone(&console);
        Box::pin(async move { console.answer(&parts.method, parts.uri.path()).await })
    }))
}

impl Console {
    async fn answer(&self, method: &Method, path: &str) -> Response<Body> {
        let head = method == Method::HEAD;
        let Some(dir) = &self.dir else {
            return self.respond(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                b"no console here (TENANTRY_CONSOLE_DIR is unset)\n".to_vec(),
                head,
            );
        };
        if path == "/config.json" {
            return self.respond(
                StatusCode::OK,
                "application/json",
                self.config_json.clone().into_bytes(),
                head,
            );
        }
        let Some(file) = resolve(dir, path).await else {
            return self.not_found(head);
        };
        match tokio::fs::read(&file).await {
            Ok(bytes) => self.respond(StatusCode::OK, content_type(&file), bytes, head),
            Err(_) => self.not_found(head),
        }
    }

    fn not_found(&self, head: bool) -> Response<Body> {
        self.respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            b"not found\n".to_vec(),
            head,
        )
    }

    fn respond(
        &self,
        status: StatusCode,
        content_type: &'static str,
        bytes: Vec<u8>,
        head: bool,
    ) -> Response<Body> {
        let length = bytes.len();
        let body = if head {
            Body::empty()
        } else {
            Body::new(http_body_full(bytes))
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            "cross-origin-opener-policy",
            HeaderValue::from_static("same-origin"),
        );
        response
    }
}

/// A whole body in one frame.
fn http_body_full(bytes: Vec<u8>) -> Full<Bytes> {
    Full::new(Bytes::from(bytes))
}

/// The file a request path names inside `dir`: `/` is `index.html`; anything that could leave
/// the directory (`..`, backslashes, percent-escapes, hidden files) or is not a regular file
/// inside it is `None`.
async fn resolve(dir: &Path, path: &str) -> Option<PathBuf> {
    let relative = path.strip_prefix('/')?;
    let relative = if relative.is_empty() {
        "index.html"
    } else {
        relative
    };
    if relative.contains(['\\', '%', '\0']) || relative.split('/').any(|s| s.starts_with('.')) {
        return None;
    }
    let candidate = Path::new(relative);
    if !candidate
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let full = tokio::fs::canonicalize(dir.join(candidate)).await.ok()?;
    let meta = tokio::fs::metadata(&full).await.ok()?;
    (full.starts_with(dir) && meta.is_file()).then_some(full)
}

fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::{ConsoleConfig, handler, origin, resolve};
    use tonic::codegen::http::{self, Method, StatusCode};

    fn console_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("console-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("assets")).unwrap();
        std::fs::write(dir.join("index.html"), "<!doctype html>").unwrap();
        std::fs::write(dir.join("assets/app.js"), "export {}").unwrap();
        std::fs::write(dir.join(".secret"), "no").unwrap();
        std::fs::write(dir.parent().unwrap().join("outside.txt"), "no").unwrap();
        dir.canonicalize().unwrap()
    }

    #[tokio::test]
    async fn only_regular_files_inside_the_folder_resolve() {
        let dir = console_dir();
        assert_eq!(resolve(&dir, "/").await, Some(dir.join("index.html")));
        assert_eq!(
            resolve(&dir, "/assets/app.js").await,
            Some(dir.join("assets/app.js"))
        );
        for bad in [
            "/../outside.txt",
            "/assets/../../outside.txt",
            "/%2e%2e/outside.txt",
            "/.secret",
            "/assets",
            "/assets/",
            "//etc/passwd",
            "/missing.js",
            "/assets\\app.js",
        ] {
            assert_eq!(resolve(&dir, bad).await, None, "{bad}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn every_answer_carries_the_security_headers() {
        let dir = console_dir();
        let config = ConsoleConfig {
            dir: Some(dir.clone()),
            settings_url: "http://127.0.0.1:50052".into(),
            provisioning_url: "https://prov.example.com/x".into(),
        };
        let h = handler(&config).unwrap();
        for (method, path, status) in [
            (Method::GET, "/", StatusCode::OK),
            (Method::HEAD, "/assets/app.js", StatusCode::OK),
            (Method::GET, "/config.json", StatusCode::OK),
            (Method::GET, "/nope", StatusCode::NOT_FOUND),
        ] {
            let (parts, ()) = http::Request::builder()
                .method(method.clone())
                .uri(path)
                .body(())
                .unwrap()
                .into_parts();
            let r = h(parts).await;
            assert_eq!(r.status(), status, "{method} {path}");
            let header = |n: &str| r.headers().get(n).unwrap().to_str().unwrap().to_owned();
            let csp = header("content-security-policy");
            assert!(
                csp.contains("connect-src 'self' http://127.0.0.1:50052 https://prov.example.com;"),
                "{csp}"
            );
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert_eq!(header("x-content-type-options"), "nosniff");
            assert_eq!(header("x-frame-options"), "DENY");
            assert_eq!(header("referrer-policy"), "no-referrer");
            assert!(r.headers().get("strict-transport-security").is_none());
        }
        let none = handler(&ConsoleConfig::default()).unwrap();
        let (parts, ()) = http::Request::builder()
            .uri("/")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(none(parts).await.status(), StatusCode::NOT_FOUND);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn origins_drop_paths_and_refuse_other_schemes() {
        assert_eq!(
            origin("http://127.0.0.1:50052").as_deref(),
            Some("http://127.0.0.1:50052")
        );
        assert_eq!(
            origin("https://settings.example.com/x?y").as_deref(),
            Some("https://settings.example.com")
        );
        assert_eq!(origin("ftp://x"), None);
        assert_eq!(origin("http://a b"), None);
        assert_eq!(origin("http:///"), None);
    }
}
