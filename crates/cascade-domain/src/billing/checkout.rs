//! One-step checkout rules, pure: the name servers a domain item may carry.
//!
//! A domain item of "place order and authorize" may name the name servers the domain is
//! to be delegated to. They are stored with the subscription's parameters and handed to
//! the provisioning connector as they are; here we only make sure they are host names a
//! registry would accept: letters, digits and hyphens in labels of 1–63 characters (no
//! leading or trailing hyphen), at least two labels, at most 253 characters, compared
//! case-insensitively (stored lower-case, one trailing dot dropped), no repeats, and
//! either none or between [`MIN_NAME_SERVERS`] and [`MAX_NAME_SERVERS`] of them (what
//! registries ask for).

use crate::validation::{FieldError, ValidationErrors};

pub const MIN_NAME_SERVERS: usize = 2;
pub const MAX_NAME_SERVERS: usize = 13;

/// A host name, checked and lower-cased.
fn host_name(s: &str) -> Result<String, &'static str> {
    let s = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    if s.is_empty() || s.len() > 253 {
        return Err("a host name of 1 to 253 characters");
    }
    let labels: Vec<&str> = s.split('.').collect();
    if labels.len() < 2 {
        return Err("a fully qualified host name, e.g. ns1.example.com");
    }
    for l in &labels {
        if l.is_empty() || l.len() > 63 {
            return Err("each label 1 to 63 characters");
        }
        if !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err("letters, digits and hyphens only");
        }
        if l.starts_with('-') || l.ends_with('-') {
            return Err("a label neither starts nor ends with a hyphen");
        }
    }
    Ok(s)
}

/// Check the name servers given for `field` (e.g. `items[0].name_servers`): each bad
/// entry is named (`field[i]`), as are a repeat and a wrong count.
pub fn name_servers(field: &str, given: &[String]) -> Result<Vec<String>, ValidationErrors> {
    let mut e = ValidationErrors::new();
    let mut out: Vec<String> = Vec::with_capacity(given.len());
    for (i, g) in given.iter().enumerate() {
        match host_name(g.trim()) {
            Ok(h) if out.contains(&h) => e.push(FieldError::new(
                format!("{field}[{i}]"),
                "duplicate",
                "this name server is listed twice",
            )),
            Ok(h) => out.push(h),
            Err(m) => e.push(FieldError::new(
                format!("{field}[{i}]"),
                "invalid_host_name",
                m,
            )),
        }
    }
    if !given.is_empty() && !(MIN_NAME_SERVERS..=MAX_NAME_SERVERS).contains(&given.len()) {
        e.push(FieldError::new(
            field,
            "out_of_range",
            format!("none, or between {MIN_NAME_SERVERS} and {MAX_NAME_SERVERS} name servers"),
        ));
    }
    e.into_result().map(|()| out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(v: &[&str]) -> Result<Vec<String>, Vec<(String, String)>> {
        let v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        name_servers("name_servers", &v).map_err(|e| {
            e.0.into_iter()
                .map(|f| (f.field, f.code.to_string()))
                .collect()
        })
    }

    #[test]
    fn good_name_servers_are_normalised() {
        assert_eq!(ns(&[]), Ok(vec![]));
        assert_eq!(
            ns(&["NS1.Example.com.", "ns2.example-dns.net"]),
            Ok(vec!["ns1.example.com".into(), "ns2.example-dns.net".into()])
        );
    }

    #[test]
    fn bad_name_servers_are_named_one_by_one() {
        let err = |f: &str, c: &str| (f.to_string(), c.to_string());
        assert_eq!(
            ns(&["ns1.example.com", "localhost"]),
            Err(vec![err("name_servers[1]", "invalid_host_name")])
        );
        assert_eq!(
            ns(&["-a.example.com", "b_.example.com"]),
            Err(vec![
                err("name_servers[0]", "invalid_host_name"),
                err("name_servers[1]", "invalid_host_name")
            ])
        );
        assert_eq!(
            ns(&["ns1.example.com", "NS1.example.com"]),
            Err(vec![err("name_servers[1]", "duplicate")])
        );
        assert_eq!(
            ns(&["ns1.example.com"]),
            Err(vec![err("name_servers", "out_of_range")])
        );
        let long = format!("{}.com", "a".repeat(64));
        assert_eq!(
            ns(&[&long, "ns.example.com"]),
            Err(vec![err("name_servers[0]", "invalid_host_name")])
        );
        let many: Vec<String> = (0..14).map(|i| format!("ns{i}.example.com")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(ns(&many), Err(vec![err("name_servers", "out_of_range")]));
    }
}
