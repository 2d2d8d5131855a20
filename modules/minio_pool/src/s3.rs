//! Buckets through the S3 API: HeadBucket, then CreateBucket for the missing ones.
//!
//! Requests are signed with AWS SigV4 by rusty-s3 (query-string signing, valid 60 s) and sent
//! with ureq, a small blocking HTTP/1.1 client.

use std::time::Duration;

use rusty_s3::actions::{CreateBucket, HeadBucket};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use thiserror::Error;
use url::Url;

const SIGNED_FOR: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
pub enum S3Error {
    #[error("option 's3_endpoint': value {0:?} is not an http:// URL (https needs a TLS client this module does not carry; put the intranet endpoint, e.g. http://10.20.0.41:9000)")]
    Endpoint(String),
    #[error(
        "option 'buckets[{index}]': value {name:?} cannot be addressed at the endpoint: {reason}"
    )]
    Address {
        index: usize,
        name: String,
        reason: String,
    },
    #[error("option 's3_endpoint': {endpoint} did not answer for bucket {name:?}: {reason}")]
    Transport {
        endpoint: String,
        name: String,
        reason: String,
    },
    #[error("option 'root_user': the S3 endpoint refused the credentials for bucket {name:?} (HTTP {status})")]
    Denied { name: String, status: u16 },
    #[error(
        "option 'buckets[{index}]': creating bucket {name:?} failed with HTTP {status}: {body}"
    )]
    Create {
        index: usize,
        name: String,
        status: u16,
        body: String,
    },
    #[error("option 'buckets[{index}]': checking bucket {name:?} failed with HTTP {status}")]
    Head {
        index: usize,
        name: String,
        status: u16,
    },
}

/// Which of `buckets` were missing; created unless `check_only`.
pub fn ensure(
    endpoint: &str,
    region: &str,
    key: &str,
    secret: &str,
    buckets: &[String],
    check_only: bool,
) -> Result<Vec<String>, S3Error> {
    let base = Url::parse(endpoint)
        .ok()
        .filter(|u| u.scheme() == "http" && u.host_str().is_some())
        .ok_or_else(|| S3Error::Endpoint(endpoint.to_string()))?;
    let credentials = Credentials::new(key, secret);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let transport = |name: &str, e: ureq::Error| S3Error::Transport {
        endpoint: endpoint.to_string(),
        name: name.to_string(),
        reason: e.to_string(),
    };

    let mut missing = Vec::new();
    for (index, name) in buckets.iter().enumerate() {
        let bucket = Bucket::new(
            base.clone(),
            UrlStyle::Path,
            name.clone(),
            region.to_string(),
        )
        .map_err(|e| S3Error::Address {
            index,
            name: name.clone(),
            reason: e.to_string(),
        })?;
        let url = HeadBucket::new(&bucket, Some(&credentials)).sign(SIGNED_FOR);
        let status = agent
            .head(url.as_str())
            .call()
            .map_err(|e| transport(name, e))?
            .status()
            .as_u16();
        match status {
            200 => continue,
            404 => missing.push(name.clone()),
            401 | 403 => {
                return Err(S3Error::Denied {
                    name: name.clone(),
                    status,
                })
            }
            _ => {
                return Err(S3Error::Head {
                    index,
                    name: name.clone(),
                    status,
                })
            }
        }
        if check_only {
            continue;
        }
        let action = CreateBucket::new(&bucket, &credentials);
        // The location constraint is required everywhere but us-east-1, where it must be left
        // out. The region was checked to be letters, digits and '-'.
        let body = if region == "us-east-1" {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
            )
        };
        let url = action.sign(SIGNED_FOR);
        let mut response = agent
            .put(url.as_str())
            .send(body.as_bytes())
            .map_err(|e| transport(name, e))?;
        let status = response.status().as_u16();
        if status != 200 {
            let text = response
                .body_mut()
                .read_to_string()
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            return Err(match status {
                401 | 403 => S3Error::Denied {
                    name: name.clone(),
                    status,
                },
                _ => S3Error::Create {
                    index,
                    name: name.clone(),
                    status,
                    body: text,
                },
            });
        }
    }
    Ok(missing)
}

/// S3 bucket naming rules (3-63 characters of a-z, 0-9, '.', '-'; letter or digit at both
/// ends; no '..'; not an IPv4 address).
pub fn bucket_name_problem(name: &str) -> Option<&'static str> {
    if name.len() < 3 || name.len() > 63 {
        return Some("must be 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Some("may hold only lowercase letters, digits, '.' and '-'");
    }
    let ends_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !ends_ok(name.bytes().next()) || !ends_ok(name.bytes().last()) {
        return Some("must begin and end with a letter or digit");
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Some("must not hold '..', '.-' or '-.'");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some("must not be formatted as an IP address");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        assert_eq!(bucket_name_problem("synapse-media"), None);
        assert_eq!(bucket_name_problem("media.chat.z3r0d3v.com"), None);
        assert!(bucket_name_problem("ab").is_some());
        assert!(bucket_name_problem("Media").is_some());
        assert!(bucket_name_problem("-media").is_some());
        assert!(bucket_name_problem("a..b").is_some());
        assert!(bucket_name_problem("10.20.0.1").is_some());
        assert!(bucket_name_problem(&"a".repeat(64)).is_some());
    }
}
