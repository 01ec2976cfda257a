//! Route selection: the first `[[route]]` whose hosts and path prefix match, in file order.
//! Prefixes match whole segments: `/api` matches `/api` and `/api/x`, not `/apix`.

use crate::host;
use crate::runtime::Route;

/// Picks the route for a (normalized) path and Host (port already stripped, any case).
pub(crate) fn select<'r>(routes: &'r [Route], host: Option<&str>, path: &str) -> Option<&'r Route> {
    routes.iter().find(|r| {
        let r = &r.config;
        (r.hosts.is_empty() || host.is_some_and(|h| host::any_matches(&r.hosts, h)))
            && prefix_matches(&r.path_prefix, path)
    })
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{RouteConfig, Upstream};
    use crate::host::HostPattern;

    fn route(hosts: &[&str], prefix: &str) -> Route {
        let config = RouteConfig {
            name: std::sync::Arc::new(prefix.into()),
            hosts: hosts
                .iter()
                .map(|h| HostPattern::parse(h).unwrap())
                .collect(),
            path_prefix: prefix.into(),
            upstream: Upstream::Tcp {
                authority: "127.0.0.1:1".into(),
            },
            timeout: Duration::from_secs(1),
            protocol: Default::default(),
        };
        Route {
            config,
            pool: Default::default(),
            series: Default::default(),
        }
    }

    fn index(routes: &[Route], r: &Route) -> usize {
        routes.iter().position(|x| std::ptr::eq(x, r)).unwrap()
    }

    #[test]
    fn first_match_wins_by_host_and_whole_segment_prefix() {
        let routes = vec![
            route(&["api.example.com"], "/v1"),
            route(&["*.example.com"], "/"),
            route(&[], "/api"),
            route(&[], "/"),
        ];
        let pick =
            |host: Option<&str>, path: &str| select(&routes, host, path).map(|r| index(&routes, r));
        assert_eq!(pick(Some("api.example.com"), "/v1/x"), Some(0));
        assert_eq!(pick(Some("API.EXAMPLE.COM"), "/v1"), Some(0));
        assert_eq!(pick(Some("api.example.com"), "/v10"), Some(1));
        assert_eq!(pick(Some("www.example.com"), "/v1"), Some(1));
        assert_eq!(pick(Some("other.com"), "/api"), Some(2));
        assert_eq!(pick(Some("other.com"), "/api/x"), Some(2));
        assert_eq!(pick(Some("other.com"), "/apix"), Some(3));
        assert_eq!(pick(None, "/x"), Some(3));
        let only_api = vec![route(&[], "/api")];
        assert_eq!(
            select(&only_api, None, "/other").map(|r| index(&only_api, r)),
            None
        );
        assert_eq!(
            select(&only_api, None, "/").map(|r| index(&only_api, r)),
            None
        );
    }
}
