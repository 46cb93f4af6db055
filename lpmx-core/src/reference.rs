//! Image references as users type them: `debian`, `debian:bookworm`,
//! `ghcr.io/org/img:tag`, `localhost:5000/a/b@sha256:...`.
//!
//! The rules follow Docker's: the first path component names a registry
//! only if it contains a `.` or a `:` or is `localhost`; otherwise the image
//! lives on Docker Hub, where single names belong to `library/`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";
const DEFAULT_TAG: &str = "latest";

/// A parsed image reference, normalised (`debian` is
/// `docker.io/library/debian:latest`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry name as users write it, with port: `docker.io`, `localhost:5000`.
    pub registry: String,
    /// Repository path: `library/debian`, `org/img`.
    pub repository: String,
    /// Tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RefError {
    #[error("empty image reference")]
    Empty,
    #[error("invalid image reference {reference:?}: {why}")]
    Invalid { reference: String, why: String },
    #[error("invalid digest in image reference: {0}")]
    Digest(#[from] DigestError),
}

impl ImageRef {
    /// The host (and port) to talk to: Docker Hub's API lives elsewhere.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }

    /// True for registries on this machine (`localhost`, 127.0.0.0/8, `::1`),
    /// which are spoken to over plain HTTP.
    pub fn is_loopback(&self) -> bool {
        let host = host_without_port(&self.registry);
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<IpAddr>()
                .is_ok_and(|address| address.is_loopback())
    }
}

fn host_without_port(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        // [::1]:5000
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.rsplit_once(':').map_or(registry, |(host, _)| host)
}

impl FromStr for ImageRef {
    type Err = RefError;

    fn from_str(input: &str) -> Result<ImageRef, RefError> {
        let invalid = |why: &str| RefError::Invalid {
            reference: input.to_owned(),
            why: why.to_owned(),
        };
        if input.is_empty() {
            return Err(RefError::Empty);
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("it contains whitespace"));
        }
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((name, digest)) => (name, Some(digest.parse::<Digest>()?)),
            None => (input, None),
        };
        // A tag is a ':' after the last '/', so a registry port is not one.
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(i) => {
                let split = last_slash + i;
                (
                    &name_and_tag[..split],
                    Some(name_and_tag[split + 1..].to_owned()),
                )
            }
            None => (name_and_tag, None),
        };
        if let Some(tag) = &tag {
            let valid = !tag.is_empty()
                && tag.len() <= 128
                && !tag.starts_with(['.', '-'])
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if !valid {
                return Err(invalid(&format!("bad tag {tag:?}")));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        if registry.is_empty() {
            return Err(invalid("empty registry name"));
        }
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_owned()
        } else {
            registry
        };
        if path.is_empty() {
            return Err(invalid("empty repository name"));
        }
        for component in path.split('/') {
            if !valid_path_component(component) {
                return Err(invalid(&format!(
                    "bad repository component {component:?} (lowercase letters, digits and . _ - only)"
                )));
            }
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (tag, _) => tag,
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(&bytes[0]) || !alnum(&bytes[bytes.len() - 1]) {
        return false;
    }
    bytes
        .iter()
        .all(|b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
        && !component.contains("..")
        && !component.contains("___")
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ImageRef {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn docker_hub_names() {
        let r = parse("debian");
        assert_eq!(r.to_string(), "docker.io/library/debian:latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.manifest_reference(), "latest");
        assert!(!r.is_loopback());
        assert_eq!(
            parse("debian:bookworm").to_string(),
            "docker.io/library/debian:bookworm"
        );
        assert_eq!(
            parse("index.docker.io/user/app").to_string(),
            "docker.io/user/app:latest"
        );
        assert_eq!(parse("user/app:1.0").repository, "user/app");
    }

    #[test]
    fn digests_pin_the_manifest() {
        let r = parse(&format!("library/debian@sha256:{HEX}"));
        assert_eq!(r.repository, "library/debian");
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_reference(), format!("sha256:{HEX}"));
        let r = parse(&format!("debian:12@sha256:{HEX}"));
        assert_eq!(r.tag.as_deref(), Some("12"));
        assert_eq!(r.manifest_reference(), format!("sha256:{HEX}"));
    }

    #[test]
    fn other_registries_and_ports() {
        let r = parse("ghcr.io/org/img:tag");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("ghcr.io", "org/img")
        );
        assert_eq!(r.api_host(), "ghcr.io");
        let r = parse("localhost:5000/a/b:c");
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag.as_deref(), Some("c"));
        assert!(r.is_loopback());
        let r = parse("127.0.0.1:5000/x");
        assert_eq!(r.to_string(), "127.0.0.1:5000/x:latest");
        assert!(r.is_loopback());
        assert!(parse("[::1]:5000/x").is_loopback());
        assert!(parse("localhost/x").is_loopback());
        assert!(!parse("registry.example.org:5000/x").is_loopback());
        // Without a dot, colon or "localhost" the first component is a namespace.
        assert_eq!(parse("myhost/x").registry, "docker.io");
    }

    #[test]
    fn invalid_references_are_refused() {
        for bad in [
            "",
            "Debian",
            "debian:",
            "debian:-x",
            "a//b",
            "debian@sha256:123",
            "debian@md5:abc",
            "deb ian",
            "ghcr.io/",
            "/debian",
        ] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad:?} was accepted");
        }
    }
}
