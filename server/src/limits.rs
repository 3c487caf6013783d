//! What bounds the work clients can cause: per-address rate limits on
//! `start` and `refresh` (`tower_governor`), the whole-request deadline, and
//! the resolved limit settings (the Identity Cloud call cap lives with the
//! calls, in [`crate::capture`]; the header-read timeout with the listener,
//! in [`crate::serve`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use capture_session_core::wire::ErrorCode;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};

use crate::cli::LimitArgs;
use crate::error::ApiError;
use crate::metrics::{while_alive, Metrics};
use crate::settings::ConfigError;

/// The limits, resolved from [`LimitArgs`].
#[derive(Clone, Debug)]
pub struct Limits {
    /// Per-address rate of `start` and of `refresh`; `None`: no limit.
    pub rate: Option<Rate>,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<AddressRange>,
    /// Identity Cloud calls in flight at once.
    pub upstream_concurrency: usize,
    /// How long a call waits for a slot.
    pub upstream_queue_timeout: Duration,
    /// Time a connection has to send a request's headers.
    pub header_read_timeout: Duration,
    /// Time a request has to be answered once its headers arrived.
    pub request_timeout: Duration,
}

/// A sustained rate with a burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Requests per second, once the burst is spent.
    pub per_second: u32,
    /// Requests allowed at once.
    pub burst: u32,
}

impl Limits {
    /// Checks the flags.
    pub fn from_args(args: &LimitArgs) -> Result<Limits, ConfigError> {
        let invalid = |flag: &'static str, reason: &str| ConfigError::Invalid {
            flag,
            reason: reason.to_owned(),
        };
        let rate = match args.rate_limit_per_second {
            0 => None,
            per_second => {
                if args.rate_limit_burst == 0 {
                    return Err(invalid("--rate-limit-burst", "must be at least 1"));
                }
                Some(Rate {
                    per_second,
                    burst: args.rate_limit_burst,
                })
            }
        };
        let trusted_proxies = args
            .trusted_proxies
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| {
                AddressRange::parse(p).ok_or_else(|| {
                    invalid(
                        "--trusted-proxy",
                        &format!("{p:?} is not an address or a CIDR range like 10.0.0.0/8"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let at_least_one = |flag: &'static str, v: u64| {
            if v == 0 {
                Err(invalid(flag, "must be at least 1"))
            } else {
                Ok(v)
            }
        };
        Ok(Limits {
            rate,
            trusted_proxies,
            upstream_concurrency: usize::try_from(at_least_one(
                "--upstream-concurrency",
                args.upstream_concurrency as u64,
            )?)
            .unwrap_or(usize::MAX)
            // tokio's semaphore has a maximum number of permits.
            .min(tokio::sync::Semaphore::MAX_PERMITS),
            upstream_queue_timeout: Duration::from_millis(args.upstream_queue_timeout_ms),
            header_read_timeout: Duration::from_secs(at_least_one(
                "--header-read-timeout",
                args.header_read_timeout,
            )?),
            request_timeout: Duration::from_secs(at_least_one(
                "--request-timeout",
                args.request_timeout,
            )?),
        })
    }
}

/// An address, or a CIDR range of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressRange {
    base: IpAddr,
    prefix: u8,
}

impl AddressRange {
    /// `ADDR` or `ADDR/PREFIX`.
    pub fn parse(s: &str) -> Option<AddressRange> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let base: IpAddr = addr.parse().ok()?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(AddressRange {
            base: base.to_canonical(),
            prefix,
        })
    }

    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.base, ip.to_canonical()) {
            (IpAddr::V4(b), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(b), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

/// The client a request's rate is counted against: the connection's peer
/// address, or, when the peer is a trusted proxy, the right-most address of
/// `X-Forwarded-For` that is not a trusted proxy itself (what the outermost
/// trusted proxy saw). IPv6 clients count by their /64, which one host
/// usually holds whole.
#[derive(Clone, Debug, Default)]
pub struct ClientAddress {
    trusted: Arc<[AddressRange]>,
}

impl ClientAddress {
    /// Trusting `X-Forwarded-For` from these proxies.
    pub fn new(trusted: &[AddressRange]) -> Self {
        ClientAddress {
            trusted: trusted.into(),
        }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|r| r.contains(ip))
    }

    /// The client of a request from `peer` with these headers.
    pub fn of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if self.trusts(client) {
            let hops = headers
                .get_all("x-forwarded-for")
                .iter()
                .rev()
                .flat_map(|v| v.to_str().unwrap_or("").rsplit(','));
            for hop in hops {
                let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                    // Garbage: the last address a trusted proxy vouched for.
                    break;
                };
                client = ip.to_canonical();
                if !self.trusts(client) {
                    break;
                }
            }
        }
        match client {
            IpAddr::V6(v6) => {
                let net = u128::from(v6) & (u128::MAX << 64);
                IpAddr::V6(Ipv6Addr::from(net))
            }
            v4 => v4,
        }
    }
}

impl KeyExtractor for ClientAddress {
    type Key = IpAddr;

    fn extract<T>(&self, request: &axum::http::Request<T>) -> Result<IpAddr, GovernorError> {
        // The listener always records the peer; without it (a router driven
        // by hand) every request counts as one client.
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        Ok(self.of(peer, request.headers()))
    }
}

/// A per-client-address rate limit layer for one endpoint.
pub type RateLimitLayer = GovernorLayer<ClientAddress, governor::middleware::NoOpMiddleware, Body>;

/// A layer limiting each client address to `rate` (its own bucket: two
/// endpoints limited with two layers do not share one), answering `429
/// rate_limited` with `Retry-After`; and a task that forgets addresses idle
/// long enough to have their burst back, until the layer is dropped.
pub fn rate_limit(
    rate: Rate,
    clients: ClientAddress,
    endpoint: &'static str,
    metrics: Metrics,
) -> Option<RateLimitLayer> {
    let config = GovernorConfigBuilder::default()
        .key_extractor(clients)
        .period(Duration::from_secs(1) / rate.per_second)
        .burst_size(rate.burst)
        .finish()?;
    let limiter = Arc::downgrade(config.limiter());
    tokio::spawn(while_alive(
        limiter,
        Duration::from_secs(60),
        |l: &ClientLimiter| {
            l.retain_recent();
        },
    ));
    Some(
        GovernorLayer::new(Arc::new(config)).error_handler(move |e| {
            metrics.rate_limited(endpoint);
            refusal(e)
        }),
    )
}

type ClientLimiter = governor::RateLimiter<
    IpAddr,
    governor::state::keyed::DefaultKeyedStateStore<IpAddr>,
    governor::clock::DefaultClock,
    governor::middleware::NoOpMiddleware<governor::clock::QuantaInstant>,
>;

fn refusal(e: GovernorError) -> Response {
    let retry_after = match e {
        // Whole seconds, rounded down by the limiter: one more is enough.
        GovernorError::TooManyRequests { wait_time, .. } => wait_time.saturating_add(1),
        GovernorError::UnableToExtractKey | GovernorError::Other { .. } => 1,
    };
    ApiError {
        code: ErrorCode::RateLimited,
        message: "too many requests from this address".into(),
        retry_after: Some(retry_after),
    }
    .into_response()
}

/// Middleware: a request not answered within `limit` of its headers gets
/// `503 unavailable` (a rotation it started still finishes: it runs in a task
/// of its own).
pub async fn request_deadline(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                limit_secs = limit.as_secs(),
                "a request was not answered within --request-timeout"
            );
            ApiError::unavailable("the request took too long", 1).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn ranges() {
        let r = AddressRange::parse("10.1.0.0/16").expect("range");
        assert!(r.contains(ip("10.1.200.3")));
        assert!(!r.contains(ip("10.2.0.1")));
        assert!(r.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped");
        let one = AddressRange::parse("192.0.2.7").expect("address");
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let all = AddressRange::parse("0.0.0.0/0").expect("everything");
        assert!(all.contains(ip("203.0.113.1")) && !all.contains(ip("::1")));
        let v6 = AddressRange::parse("fd00::/8").expect("v6 range");
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "proxy.local",
            "10.0.0.0/x",
        ] {
            assert!(AddressRange::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.9, 203.0.113.5, 10.0.0.2"),
        );
        let nobody = ClientAddress::default();
        assert_eq!(nobody.of(ip("10.0.0.1"), &headers), ip("10.0.0.1"));
        let proxies = ClientAddress::new(&[AddressRange::parse("10.0.0.0/8").expect("range")]);
        // The right-most address no trusted proxy added: a client cannot
        // choose its address by sending the header itself.
        assert_eq!(proxies.of(ip("10.0.0.1"), &headers), ip("203.0.113.5"));
        assert_eq!(proxies.of(ip("192.0.2.1"), &headers), ip("192.0.2.1"));
        // No header: the proxy itself.
        assert_eq!(
            proxies.of(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("junk, 10.0.0.3"),
        );
        assert_eq!(proxies.of(ip("10.0.0.1"), &headers), ip("10.0.0.3"));
        // IPv6 clients count by their /64.
        assert_eq!(
            nobody.of(ip("2001:db8:1:2:aaaa::1"), &HeaderMap::new()),
            ip("2001:db8:1:2::")
        );
    }
}
