//! The client side of a local mesh: what `curl` does in the guide's loop. Parses the URL,
//! resolves the host as kube-dns would for the client pod, and makes one HTTP/1.1 exchange
//! over a new TCP connection made by the socket factory, classifying failures as curl would.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use meshcert_mesh::{MeshError, RequestFailure, replica_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::netns::SocketFactory;

/// The parts of an `http://` URL a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

/// Parses `http://host[:port][/path]`; only plain HTTP (ztunnel carries TCP; TLS is the app's).
pub fn parse_url(url: &str) -> Result<HttpUrl, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("URL {url:?} must start with http://"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.contains('@') {
        return Err(format!("URL {url:?}: user info is not supported"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("URL {url:?}: unclosed '[' in host"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("URL {url:?} has no host"));
    }
    let port = match port {
        None => 80,
        Some(p) => p
            .parse()
            .map_err(|_| format!("URL {url:?}: invalid port {p:?}"))?,
    };
    Ok(HttpUrl {
        host: host.to_ascii_lowercase(),
        port,
        path,
    })
}

/// A Service as DNS knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsService {
    pub name: String,
    pub namespace: String,
    pub cluster_ip: IpAddr,
}

/// Resolves a host as kube-dns does for a pod in `client_namespace`, with the search path
/// `<ns>.svc.cluster.local svc.cluster.local cluster.local`: `svc`, `svc.ns` and
/// `svc.ns.svc.cluster.local` all name the Service's cluster IP; an IP literal is itself.
pub fn resolve(host: &str, client_namespace: &str, services: &[DnsService]) -> Option<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip);
    }
    let lookup = |fqdn: &str| {
        let (svc, ns) = fqdn.strip_suffix(".svc.cluster.local")?.split_once('.')?;
        services
            .iter()
            .find(|s| s.name == svc && s.namespace == ns)
            .map(|s| s.cluster_ip)
    };
    if let Some(absolute) = host.strip_suffix('.') {
        return lookup(absolute);
    }
    // resolv.conf's ndots:5: names with fewer than 5 dots try the search path first.
    let search = [
        format!("{client_namespace}.svc.cluster.local"),
        "svc.cluster.local".to_string(),
        "cluster.local".to_string(),
    ];
    let candidates = search.iter().map(|domain| format!("{host}.{domain}"));
    let as_is = std::iter::once(host.to_string());
    if host.matches('.').count() >= 5 {
        as_is.chain(candidates).find_map(|c| lookup(&c))
    } else {
        candidates.chain(as_is).find_map(|c| lookup(&c))
    }
}

/// A complete HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The replica that answered: the trimmed body of `/hostname`, or its `hostname` field when
    /// the app answers JSON (httpbin does).
    pub fn replica(&self) -> String {
        replica_of(&self.text())
    }
}

/// Largest response the client accepts: `/hostname`, `/metrics` and `/config_dump` are small.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;
const MAX_HEAD: usize = 64 * 1024;

/// Parses what has been read so far. `Ok(Some)` once the response is complete; `Ok(None)` if
/// more bytes are needed (never when `closed`); `Err` for a malformed or truncated response.
pub fn parse_response(buf: &[u8], closed: bool) -> Result<Option<HttpResponse>, String> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err("response header larger than 64 KiB".into());
        }
        return if closed {
            Err("connection closed inside the response header".into())
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| "response header is not UTF-8".to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 status line: {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..=999).contains(s))
        .ok_or_else(|| format!("invalid status in {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("malformed header line {line:?}"))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let find = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let body = &buf[head_end + 4..];
    let done = |body: Vec<u8>| {
        Ok(Some(HttpResponse {
            status,
            headers: headers.clone(),
            body,
        }))
    };

    if find("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
        return match dechunk(body)? {
            Some(body) => done(body),
            None if closed => Err("connection closed inside a chunked body".into()),
            None => Ok(None),
        };
    }
    if let Some(len) = find("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("invalid Content-Length {len:?}"))?;
        if body.len() >= len {
            return done(body[..len].to_vec());
        }
        return if closed {
            Err(format!(
                "connection closed after {} of {len} body bytes",
                body.len()
            ))
        } else {
            Ok(None)
        };
    }
    // No length: the body ends when the server closes (we sent `Connection: close`).
    if closed {
        done(body.to_vec())
    } else {
        Ok(None)
    }
}

/// Decodes a chunked body; `Ok(None)` while the last chunk has not arrived.
fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text =
            std::str::from_utf8(&data[..eol]).map_err(|_| "chunk size is not text".to_string())?;
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("invalid chunk size {size_hex:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            // Trailers, if any, end with an empty line; we need not read them.
            return Ok(Some(body));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// How curl would name an I/O failure.
pub fn classify(err: &io::Error) -> RequestFailure {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => RequestFailure::ConnectionRefused,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => RequestFailure::ConnectionReset,
        io::ErrorKind::TimedOut => RequestFailure::Timeout,
        _ => RequestFailure::Other(err.to_string()),
    }
}

/// One request: the outer error is the harness refusing (network safety), the inner one is
/// what the mesh did to the request.
pub type Exchange = Result<Result<HttpResponse, RequestFailure>, MeshError>;

/// `GET path` over a new connection from `from` (a harness namespace, or `None` for loopback
/// in the machine's own namespace) to `dst`, with `Connection: close`, all within `timeout`
/// (connect included).
pub async fn get(
    sockets: &SocketFactory,
    from: Option<&str>,
    dst: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Exchange {
    Ok(get_with_source(sockets, from, dst, host, path, timeout)
        .await?
        .1)
}

/// `get`, also returning the client's source port, which ztunnel logs in `src.addr`; it is how an
/// access line is paired with its request.
pub async fn get_with_source(
    sockets: &SocketFactory,
    from: Option<&str>,
    dst: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<(Option<u16>, Result<HttpResponse, RequestFailure>), MeshError> {
    let socket = sockets.connector(from, dst)?;
    Ok(get_on(socket, dst, host, path, timeout).await)
}

/// `get_with_source` on a socket made already (e.g. off the runtime's threads), allowed to
/// connect to `dst`.
pub async fn get_on(
    socket: tokio::net::TcpSocket,
    dst: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> (Option<u16>, Result<HttpResponse, RequestFailure>) {
    // Read once connected: the kernel's connect-time port choice does not hand a just-closed
    // port straight back, so ports stay unique within a batch (a bind(0) first would not).
    let source = std::sync::OnceLock::new();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: meshcert\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    let exchange = async {
        let mut stream = socket.connect(dst).await.map_err(|e| classify(&e))?;
        if let Ok(local) = stream.local_addr() {
            let _ = source.set(local.port());
        }
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| classify(&e))?;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 8192];
        loop {
            let n = match stream.read(&mut chunk).await {
                Ok(n) => n,
                // A reset before any byte is what curl reports as "connection reset" too.
                Err(e) => return Err(classify(&e)),
            };
            if n == 0 && buf.is_empty() {
                return Err(RequestFailure::EmptyReply);
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_RESPONSE {
                return Err(RequestFailure::Other("response larger than 16 MiB".into()));
            }
            match parse_response(&buf, n == 0) {
                Ok(Some(response)) => return Ok(response),
                Ok(None) => continue,
                Err(e) => return Err(RequestFailure::Other(e)),
            }
        }
    };
    let outcome = tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(RequestFailure::Timeout));
    (source.get().copied(), outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("http://in-ambient:8000/hostname", "in-ambient", 8000, "/hostname")]
    #[case(
        "http://in-ambient.httpbin/hostname",
        "in-ambient.httpbin",
        80,
        "/hostname"
    )]
    #[case("http://In-Ambient:8000", "in-ambient", 8000, "/")]
    #[case(
        "http://10.96.0.10:8000/status/503?x=1",
        "10.96.0.10",
        8000,
        "/status/503?x=1"
    )]
    #[case("http://127.0.0.1:15021?ready", "127.0.0.1", 15021, "/?ready")]
    #[case("http://[::1]:15000/config_dump", "::1", 15000, "/config_dump")]
    fn urls(#[case] url: &str, #[case] host: &str, #[case] port: u16, #[case] path: &str) {
        assert_eq!(
            parse_url(url),
            Ok(HttpUrl {
                host: host.into(),
                port,
                path: path.into()
            })
        );
    }

    #[rstest]
    #[case("https://in-ambient:8000/")]
    #[case("in-ambient:8000/")]
    #[case("http://:8000/")]
    #[case("http://in-ambient:x/")]
    #[case("http://user@in-ambient/")]
    fn bad_urls(#[case] url: &str) {
        assert!(parse_url(url).is_err(), "{url}");
    }

    fn services() -> Vec<DnsService> {
        vec![
            DnsService {
                name: "in-ambient".into(),
                namespace: "httpbin".into(),
                cluster_ip: "10.96.0.10".parse().unwrap(),
            },
            DnsService {
                name: "in-ambient".into(),
                namespace: "other".into(),
                cluster_ip: "10.96.0.11".parse().unwrap(),
            },
            DnsService {
                name: "echo".into(),
                namespace: "other".into(),
                cluster_ip: "10.96.0.12".parse().unwrap(),
            },
        ]
    }

    #[rstest]
    #[case("in-ambient", "httpbin", Some("10.96.0.10"))]
    #[case("in-ambient", "other", Some("10.96.0.11"))]
    #[case("in-ambient.httpbin", "other", Some("10.96.0.10"))]
    #[case("in-ambient.httpbin.svc", "other", Some("10.96.0.10"))]
    #[case("in-ambient.httpbin.svc.cluster.local", "other", Some("10.96.0.10"))]
    #[case("in-ambient.httpbin.svc.cluster.local.", "other", Some("10.96.0.10"))]
    #[case("echo", "httpbin", None)]
    #[case("echo.other", "httpbin", Some("10.96.0.12"))]
    #[case("in-ambient.nowhere", "httpbin", None)]
    #[case("in-ambient.", "httpbin", None)]
    #[case("10.96.0.99", "httpbin", Some("10.96.0.99"))]
    fn resolves_like_kube_dns(#[case] host: &str, #[case] ns: &str, #[case] ip: Option<&str>) {
        assert_eq!(
            resolve(host, ns, &services()),
            ip.map(|i| i.parse().unwrap())
        );
    }

    fn ok(status: u16, body: &str) -> Result<Option<(u16, String)>, String> {
        Ok(Some((status, body.to_string())))
    }

    #[rstest]
    #[case(
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
        false,
        ok(200, "hello")
    )]
    #[case("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhel", false, Ok(None))]
    #[case("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhel", true, Err("connection closed after 3 of 5 body bytes".into()))]
    #[case(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
        false,
        ok(503, "")
    )]
    #[case("HTTP/1.0 200 OK\r\n\r\nuntil close", false, Ok(None))]
    #[case("HTTP/1.0 200 OK\r\n\r\nuntil close", true, ok(200, "until close"))]
    #[case(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
        false,
        ok(200, "hello world")
    )]
    #[case(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        false,
        Ok(None)
    )]
    #[case("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", true, Err("connection closed inside a chunked body".into()))]
    #[case("HTTP/1.1 200 OK\r\ncontent-le", false, Ok(None))]
    #[case("HTTP/1.1 200 OK\r\ncontent-le", true, Err("connection closed inside the response header".into()))]
    #[case("SSH-2.0-OpenSSH\r\n\r\n", true, Err("not an HTTP/1 status line: \"SSH-2.0-OpenSSH\"".into()))]
    #[case("HTTP/1.1 abc OK\r\n\r\n", true, Err("invalid status in \"HTTP/1.1 abc OK\"".into()))]
    fn responses(
        #[case] raw: &str,
        #[case] closed: bool,
        #[case] expected: Result<Option<(u16, String)>, String>,
    ) {
        let parsed =
            parse_response(raw.as_bytes(), closed).map(|r| r.map(|r| (r.status, r.text())));
        assert_eq!(parsed, expected);
    }

    #[rstest]
    #[case("in-ambient-7d8f9b6c54-abc12\n", "in-ambient-7d8f9b6c54-abc12")]
    #[case(
        "{\n  \"hostname\": \"in-ambient-7d8f9b6c54-abc12\"\n}\n",
        "in-ambient-7d8f9b6c54-abc12"
    )]
    #[case("{\"other\": 1}", "{\"other\": 1}")]
    fn replica_is_the_body_or_its_hostname(#[case] body: &str, #[case] replica: &str) {
        let response = HttpResponse {
            status: 200,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        };
        assert_eq!(response.replica(), replica);
    }

    #[rstest]
    #[case(io::ErrorKind::ConnectionRefused, RequestFailure::ConnectionRefused)]
    #[case(io::ErrorKind::ConnectionReset, RequestFailure::ConnectionReset)]
    #[case(io::ErrorKind::BrokenPipe, RequestFailure::ConnectionReset)]
    #[case(io::ErrorKind::TimedOut, RequestFailure::Timeout)]
    fn failures_are_named_as_curl_names_them(
        #[case] kind: io::ErrorKind,
        #[case] failure: RequestFailure,
    ) {
        assert_eq!(classify(&io::Error::from(kind)), failure);
    }
}
