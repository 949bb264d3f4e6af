//! Which URLs results may be sent to: the form of a destination URL (checked at deploy
//! and at enqueue) and the addresses a delivery may connect to (checked for literal
//! addresses then, and for every resolved address at delivery time).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use reqwest::Url;

/// Longest destination URL.
pub const MAX_URL_LEN: usize = 2048;

/// Why a destination URL is refused; the message names what is wrong, the caller the
/// field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Too long.
    #[error("is {0} characters long, at most {MAX_URL_LEN}")]
    TooLong(usize),
    /// Not a URL.
    #[error("is not a valid URL: {0}")]
    Invalid(String),
    /// Not http or https.
    #[error("has scheme {0:?}: only http and https are allowed")]
    Scheme(String),
    /// Carries a user name or password.
    #[error(
        "carries credentials (user:password@): sign deliveries with the destination key instead"
    )]
    Credentials,
    /// Has no host.
    #[error("has no host")]
    NoHost,
    /// Names an address of the refused ranges.
    #[error("{0}")]
    Address(#[from] AddressError),
}

/// An address a delivery may not connect to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("points at {address}, a {range} address; such destinations are refused unless the server runs with --allow-private-destinations")]
pub struct AddressError {
    /// The refused address.
    pub address: IpAddr,
    /// Which range it is in.
    pub range: &'static str,
}

/// The server's address policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Whether loopback, private, link-local and the like are allowed
    /// (`--allow-private-destinations`).
    pub allow_private: bool,
}

impl AddressPolicy {
    /// Checks `address` against the policy.
    pub fn check(self, address: IpAddr) -> Result<(), AddressError> {
        if self.allow_private {
            return Ok(());
        }
        match refused_range(address) {
            Some(range) => Err(AddressError { address, range }),
            None => Ok(()),
        }
    }

    /// Parses `text` and checks its form, and its host when it is a literal address.
    pub fn check_url(self, text: &str) -> Result<Url, UrlError> {
        if text.len() > MAX_URL_LEN {
            return Err(UrlError::TooLong(text.len()));
        }
        let url = Url::parse(text).map_err(|err| UrlError::Invalid(err.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlError::Scheme(url.scheme().to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Credentials);
        }
        let host = url.host_str().filter(|host| !host.is_empty());
        let host = host.ok_or(UrlError::NoHost)?;
        if let Some(address) = literal_address(host) {
            self.check(address)?;
        }
        Ok(url)
    }
}

/// The address a URL's host names literally (`[::1]` or `10.0.0.1`), if it does.
pub fn literal_address(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// The refused range `address` is in, if any.
fn refused_range(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => refused_v4(v4),
            None => refused_v6(v6),
        },
    }
}

fn refused_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = v4.octets();
    if v4.is_loopback() {
        Some("loopback")
    } else if v4.is_link_local() {
        Some("link-local (cloud metadata)")
    } else if v4.is_private() {
        Some("private")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if v4.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if v4.is_multicast() {
        Some("multicast")
    } else if v4.is_broadcast() || a >= 240 {
        Some("reserved")
    } else {
        None
    }
}

fn refused_v6(v6: Ipv6Addr) -> Option<&'static str> {
    let first = v6.segments()[0];
    if v6.is_loopback() {
        Some("loopback")
    } else if v6.is_unspecified() {
        Some("unspecified")
    } else if v6.is_multicast() {
        Some("multicast")
    } else if first & 0xfe00 == 0xfc00 {
        Some("unique local (private)")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: AddressPolicy = AddressPolicy {
        allow_private: false,
    };

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        for text in [
            "127.0.0.1",
            "169.254.169.254",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "0.0.0.0",
            "224.0.0.1",
            "100.64.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
        ] {
            let address: IpAddr = text.parse().unwrap();
            assert!(STRICT.check(address).is_err(), "{text} must be refused");
            let open = AddressPolicy {
                allow_private: true,
            };
            assert!(open.check(address).is_ok());
        }
        for text in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(STRICT.check(text.parse().unwrap()).is_ok(), "{text}");
        }
    }

    #[test]
    fn url_form_is_checked() {
        assert!(STRICT.check_url("https://example.com/hook").is_ok());
        assert!(matches!(
            STRICT.check_url("ftp://example.com/"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            STRICT.check_url("http://user:pass@example.com/"),
            Err(UrlError::Credentials)
        ));
        assert!(matches!(
            STRICT.check_url("http://169.254.169.254/latest"),
            Err(UrlError::Address(_))
        ));
        assert!(matches!(
            STRICT.check_url("http://[::1]:8080/"),
            Err(UrlError::Address(_))
        ));
        assert!(matches!(
            STRICT.check_url("not a url"),
            Err(UrlError::Invalid(_))
        ));
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(matches!(STRICT.check_url(&long), Err(UrlError::TooLong(_))));
    }
}
