//! The smallest HTTP/1.1 server a Prometheus scrape needs (RFC 9112): `GET /metrics` answers the
//! exposition text, anything else a short error. One request per connection (`Connection:
//! close`), which Prometheus handles and which keeps state trivial.
//!
//! Request parsing is deliberately narrow: the request line (`METHOD SP target SP HTTP/1.x`,
//! RFC 9112 § 3) is checked, header lines are skipped up to the empty line that ends them, and a
//! body is never read (a GET has none; a request announcing one is refused with 400 rather than
//! having its body taken for the next request). The connection limits of
//! [`crate::stream_server`] bound everything a client can make us hold.

use crate::stream_server::{Handled, Protocol};

use super::exposition::CONTENT_TYPE;

/// The path the exposition is served on.
pub const METRICS_PATH: &str = "/metrics";

/// Renders the exposition text for one scrape.
pub type Render = Box<dyn FnMut() -> String>;

/// The HTTP side of the metrics endpoint.
pub struct MetricsHttp {
    render: Render,
}

impl MetricsHttp {
    pub fn new(render: Render) -> MetricsHttp {
        MetricsHttp { render }
    }
}

/// A request line's verdict.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics { head: bool },
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

fn route(head: &[u8]) -> Route {
    let Ok(head) = std::str::from_utf8(head) else {
        return Route::BadRequest;
    };
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let Some(request_line) = lines.next() else {
        return Route::BadRequest;
    };
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") || target.is_empty() {
        return Route::BadRequest;
    }
    // A request with a body: we never read bodies (see the module docs).
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let announces_body = (name.eq_ignore_ascii_case("content-length") && value.trim() != "0")
            || name.eq_ignore_ascii_case("transfer-encoding");
        if announces_body {
            return Route::BadRequest;
        }
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if path != METRICS_PATH {
        return Route::NotFound;
    }
    match method {
        "GET" => Route::Metrics { head: false },
        "HEAD" => Route::Metrics { head: true },
        _ => Route::MethodNotAllowed,
    }
}

fn respond(
    output: &mut Vec<u8>,
    status: &str,
    extra: &str,
    content_type: &str,
    body: &[u8],
    head: bool,
) {
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    output.extend_from_slice(header.as_bytes());
    if !head {
        output.extend_from_slice(body);
    }
}

/// The end of the header block: the index after the empty line, accepting bare LF (RFC 9112
/// § 2.2 lets a recipient do so).
fn header_end(input: &[u8]) -> Option<usize> {
    let crlf = input
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = input.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Protocol for MetricsHttp {
    fn handle(&mut self, input: &[u8], output: &mut Vec<u8>) -> Handled {
        let Some(end) = header_end(input) else {
            return Handled::NeedMore;
        };
        let text = "text/plain; charset=utf-8";
        match route(input.get(..end).unwrap_or_default()) {
            Route::Metrics { head } => {
                let body = (self.render)();
                respond(output, "200 OK", "", CONTENT_TYPE, body.as_bytes(), head);
            }
            Route::NotFound => respond(
                output,
                "404 Not Found",
                "",
                text,
                b"not found: metrics are at /metrics\n",
                false,
            ),
            Route::MethodNotAllowed => respond(
                output,
                "405 Method Not Allowed",
                "Allow: GET, HEAD\r\n",
                text,
                b"method not allowed\n",
                false,
            ),
            Route::BadRequest => {
                respond(output, "400 Bad Request", "", text, b"bad request\n", false)
            }
        }
        Handled::Request {
            consumed: end,
            close: true,
        }
    }

    fn too_large(&mut self, limit: usize, output: &mut Vec<u8>) {
        let body = format!("request header larger than {limit} bytes\n");
        respond(
            output,
            "431 Request Header Fields Too Large",
            "",
            "text/plain; charset=utf-8",
            body.as_bytes(),
            false,
        );
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn answer(request: &[u8]) -> (Handled, String) {
        let mut http = MetricsHttp::new(Box::new(|| "m 1\n".to_owned()));
        let mut out = Vec::new();
        let handled = http.handle(request, &mut out);
        (handled, String::from_utf8(out).unwrap())
    }

    #[test]
    fn get_metrics() {
        let (handled, out) = answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
        assert_eq!(
            handled,
            Handled::Request {
                consumed: 47,
                close: true
            }
        );
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(out.contains("Content-Length: 4\r\n"));
        assert!(out.ends_with("\r\n\r\nm 1\n"));
        let (_, out) = answer(b"GET /metrics?name[]=x HTTP/1.0\n\n");
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    }

    #[test]
    fn head_has_no_body() {
        let (_, out) = answer(b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(
            out.contains("Content-Length: 4\r\n") && out.ends_with("\r\n\r\n"),
            "{out}"
        );
    }

    #[test]
    fn errors() {
        assert!(answer(b"GET / HTTP/1.1\r\n\r\n")
            .1
            .starts_with("HTTP/1.1 404"));
        assert!(answer(b"GET /metricsx HTTP/1.1\r\n\r\n")
            .1
            .starts_with("HTTP/1.1 404"));
        let (_, out) = answer(b"POST /metrics HTTP/1.1\r\n\r\n");
        assert!(
            out.starts_with("HTTP/1.1 405") && out.contains("Allow: GET, HEAD"),
            "{out}"
        );
        for bad in [
            &b"GET /metrics\r\n\r\n"[..],
            b"GET /metrics HTTP/2\r\n\r\n",
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"\xff\xfe\r\n\r\n",
            b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            let (handled, out) = answer(bad);
            assert!(out.starts_with("HTTP/1.1 400"), "{bad:?}: {out}");
            assert!(matches!(handled, Handled::Request { close: true, .. }));
        }
        assert_eq!(answer(b"GET /metrics HTTP/1.1\r\n").0, Handled::NeedMore);
        let mut http = MetricsHttp::new(Box::new(String::new));
        let mut out = Vec::new();
        http.too_large(8192, &mut out);
        assert!(String::from_utf8(out).unwrap().starts_with("HTTP/1.1 431"));
    }

    proptest! {
        /// Any bytes get either "need more" or exactly one complete response, never a panic.
        #[test]
        fn arbitrary_requests(input in prop::collection::vec(any::<u8>(), 0..300)) {
            let (handled, out) = {
                let mut http = MetricsHttp::new(Box::new(|| "m 1\n".to_owned()));
                let mut out = Vec::new();
                let handled = http.handle(&input, &mut out);
                (handled, out)
            };
            match handled {
                Handled::NeedMore => prop_assert!(out.is_empty()),
                Handled::Request { consumed, close } => {
                    prop_assert!(close && consumed <= input.len());
                    prop_assert!(out.starts_with(b"HTTP/1.1 "));
                }
            }
        }
    }
}
