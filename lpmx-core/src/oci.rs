//! The Docker and OCI image formats: manifests, indexes, configs.
//!
//! Only the fields lpmx uses are parsed; unknown fields are ignored so newer
//! producers stay readable.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub mod media {
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const DOCKER_MANIFEST_V1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_LAYER_FOREIGN_GZIP: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const OCI_LAYER_NONDIST_GZIP: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";

    /// What a registry is asked for, best first.
    pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, \
        application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.v2+json";
}

/// A reference to a blob: what it is, its digest and its size.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image manifest (Docker schema 2 or OCI): one config and its layers.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// A Docker manifest list or OCI index: one manifest per platform.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

impl Index {
    /// The entry for `wanted`; entries without a platform (attestations)
    /// never match.
    pub fn select(&self, wanted: &Platform) -> Option<&Descriptor> {
        self.manifests
            .iter()
            .find(|entry| entry.platform.as_ref().is_some_and(|p| wanted.matches(p)))
    }

    /// The platforms on offer, for an error that lists them.
    pub fn platforms(&self) -> Vec<Platform> {
        self.manifests
            .iter()
            .filter_map(|m| m.platform.clone())
            .filter(|p| p.os != "unknown")
            .collect()
    }
}

/// What a manifest document turned out to be.
#[derive(Debug)]
pub enum ManifestKind {
    Image(Manifest),
    Index(Index),
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "Docker schema 1 manifests ({0}) are not supported; push the image again with a current tool"
    )]
    SchemaOne(String),
    #[error("unsupported manifest media type {0:?}")]
    MediaType(String),
    #[error("malformed {what}: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl ManifestKind {
    /// Parses a manifest, trusting the server's content type first and the
    /// document's own `mediaType` second (registries differ on both).
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<ManifestKind, FormatError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Probe {
            media_type: Option<String>,
            manifests: Option<serde_json::Value>,
            schema_version: Option<u32>,
        }
        let probe: Probe = serde_json::from_slice(body).map_err(|source| FormatError::Json {
            what: "manifest",
            source,
        })?;
        let content_type = content_type
            .map(|ct| ct.split(';').next().unwrap_or(ct).trim())
            .filter(|ct| !ct.is_empty() && *ct != "application/json" && *ct != "text/plain");
        let media_type = content_type
            .map(str::to_owned)
            .or(probe.media_type)
            .unwrap_or_else(|| {
                // An OCI document may omit mediaType: its shape tells.
                if probe.manifests.is_some() {
                    media::OCI_INDEX.to_owned()
                } else {
                    media::OCI_MANIFEST.to_owned()
                }
            });
        let json = |what| move |source| FormatError::Json { what, source };
        match media_type.as_str() {
            media::DOCKER_MANIFEST | media::OCI_MANIFEST => Ok(ManifestKind::Image(
                serde_json::from_slice(body).map_err(json("image manifest"))?,
            )),
            media::DOCKER_MANIFEST_LIST | media::OCI_INDEX => Ok(ManifestKind::Index(
                serde_json::from_slice(body).map_err(json("image index"))?,
            )),
            media::DOCKER_MANIFEST_V1 | media::DOCKER_MANIFEST_V1_SIGNED => {
                Err(FormatError::SchemaOne(media_type))
            }
            _ if probe.schema_version == Some(1) => Err(FormatError::SchemaOne(media_type)),
            _ => Err(FormatError::MediaType(media_type)),
        }
    }
}

/// An operating system and architecture, as in `linux/arm64/v8`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid platform {0:?} (expected os/arch or os/arch/variant, e.g. linux/arm64)")]
pub struct PlatformError(String);

impl Platform {
    /// The platform of this machine, in Go's names as registries use them.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            other => (other, None),
        };
        Platform {
            os: std::env::consts::OS.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// Whether an index entry for `candidate` serves a request for `self`.
    /// A request without a variant takes any; `arm64` and `arm64/v8` are one.
    pub fn matches(&self, candidate: &Platform) -> bool {
        fn normal(p: &Platform) -> Option<&str> {
            match (p.architecture.as_str(), p.variant.as_deref()) {
                ("arm64", None) => Some("v8"),
                (_, variant) => variant,
            }
        }
        self.os == candidate.os
            && self.architecture == candidate.architecture
            && (self.variant.is_none() || normal(self) == normal(candidate))
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(PlatformError(s.to_owned()));
        }
        Ok(Platform {
            os: parts[0].to_owned(),
            architecture: parts[1].to_owned(),
            variant: parts.get(2).map(|v| (*v).to_owned()),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// An image configuration blob (`application/vnd.oci.image.config.v1+json`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

/// How the image wants its programs run. Field names are the image
/// config's own (`Env`, `Cmd`, ...) when parsed, and lowercase in lpmx's
/// documents.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct RunConfig {
    #[serde(default, alias = "Env", deserialize_with = "null_as_default")]
    pub env: Vec<String>,
    #[serde(default, alias = "Cmd")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, alias = "Entrypoint")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, alias = "WorkingDir", deserialize_with = "empty_as_none")]
    pub workdir: Option<String>,
    #[serde(default, alias = "User", deserialize_with = "empty_as_none")]
    pub user: Option<String>,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn empty_as_none<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::<String>::deserialize(deserializer)?.filter(|s| !s.is_empty()))
}

impl ImageConfig {
    pub fn parse(body: &[u8]) -> Result<ImageConfig, FormatError> {
        serde_json::from_slice(body).map_err(|source| FormatError::Json {
            what: "image config",
            source,
        })
    }

    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_matching() {
        let arm64: Platform = "linux/arm64".parse().unwrap();
        let arm64_v8: Platform = "linux/arm64/v8".parse().unwrap();
        assert!(arm64.matches(&arm64_v8));
        assert!(arm64_v8.matches(&arm64));
        let arm_v7: Platform = "linux/arm/v7".parse().unwrap();
        let arm_v6: Platform = "linux/arm/v6".parse().unwrap();
        assert!(!arm_v7.matches(&arm_v6));
        assert!("linux/arm".parse::<Platform>().unwrap().matches(&arm_v6));
        assert!(!"linux/amd64".parse::<Platform>().unwrap().matches(&arm64));
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//v7".parse::<Platform>().is_err());
        assert_eq!(arm64_v8.to_string(), "linux/arm64/v8");
    }

    #[test]
    fn manifests_are_told_apart_by_content_type_or_shape() {
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            ManifestKind::parse(None, index),
            Ok(ManifestKind::Index(_))
        ));
        let v1 = br#"{"schemaVersion":1,"name":"x"}"#;
        assert!(matches!(
            ManifestKind::parse(Some(media::DOCKER_MANIFEST_V1_SIGNED), v1),
            Err(FormatError::SchemaOne(_))
        ));
        assert!(matches!(
            ManifestKind::parse(Some("application/x-weird"), index),
            Err(FormatError::MediaType(_))
        ));
    }

    #[test]
    fn config_fields_with_docker_names() {
        let config = ImageConfig::parse(
            br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["bash"],"WorkingDir":"","User":"1000"},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        let run = config.config.unwrap();
        assert_eq!(run.env, ["PATH=/bin"]);
        assert_eq!(run.cmd.unwrap(), ["bash"]);
        assert_eq!(run.workdir, None);
        assert_eq!(run.user.as_deref(), Some("1000"));
    }
}
