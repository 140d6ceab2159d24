//! Domain search results in the order the store shows them (domain.md §7): the exact
//! name searched first; then the same name in the TLDs marked popular, by their plans'
//! listing priority; then, in a second section, every other available name, ordered the
//! same way.
//!
//! Availability is a question for a registrar, and registrars are not connected yet:
//! the caller passes it in (the store uses a deterministic stand-in until then).

/// A TLD offered for sale: its name without the dot, whether it is popular, and the
/// listing priority of its plan (smaller first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tld {
    pub name: String,
    pub popular: bool,
    pub priority: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub domain: String,
    pub available: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchResult {
    /// The exact name searched (if its TLD is on sale).
    pub exact: Option<Candidate>,
    /// The name in the popular TLDs, by priority (available or not).
    pub popular: Vec<Candidate>,
    /// "Other available domains": the name in the other TLDs that are available.
    pub other: Vec<Candidate>,
}

/// The label searched: lower case, letters, digits and inner hyphens, 1–63 characters.
pub fn label(query: &str) -> Option<(String, Option<String>)> {
    let q = query.trim().trim_end_matches('.').to_ascii_lowercase();
    let (name, tld) = match q.split_once('.') {
        Some((n, t)) => (n.to_string(), Some(t.to_string())),
        None => (q.clone(), None),
    };
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    ok.then_some((name, tld))
}

/// Order the candidates for `query` over `tlds`; `available` answers per full domain.
pub fn search(query: &str, tlds: &[Tld], available: &dyn Fn(&str) -> bool) -> SearchResult {
    let Some((name, asked_tld)) = label(query) else {
        return SearchResult::default();
    };
    let mut sorted: Vec<&Tld> = tlds.iter().collect();
    sorted.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
    // Without a TLD, the exact name is the name in the first popular TLD.
    let exact_tld = asked_tld.or_else(|| {
        sorted
            .iter()
            .find(|t| t.popular)
            .or(sorted.first())
            .map(|t| t.name.clone())
    });
    let cand = |t: &str| {
        let d = format!("{name}.{t}");
        Candidate {
            available: available(&d),
            domain: d,
        }
    };
    let exact = exact_tld
        .as_deref()
        .filter(|t| sorted.iter().any(|x| x.name == *t))
        .map(cand);
    let is_exact = |t: &Tld| exact_tld.as_deref() == Some(t.name.as_str());
    let popular = sorted
        .iter()
        .filter(|t| t.popular && !is_exact(t))
        .map(|t| cand(&t.name))
        .collect();
    let other = sorted
        .iter()
        .filter(|t| !t.popular && !is_exact(t))
        .map(|t| cand(&t.name))
        .filter(|c| c.available)
        .collect();
    SearchResult {
        exact,
        popular,
        other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tld(name: &str, popular: bool, priority: i32) -> Tld {
        Tld {
            name: name.into(),
            popular,
            priority,
        }
    }

    #[test]
    fn exact_first_then_popular_by_priority_then_other_available() {
        let tlds = [
            tld("io", false, 5),
            tld("net", true, 2),
            tld("com", true, 1),
            tld("de", false, 3),
            tld("org", true, 3),
            tld("eu", false, 4),
        ];
        let taken = |d: &str| d != "acme.de" && d != "acme.net";
        let r = search("Acme.org", &tlds, &taken);
        assert_eq!(r.exact.as_ref().unwrap().domain, "acme.org");
        let pop: Vec<_> = r.popular.iter().map(|c| c.domain.as_str()).collect();
        assert_eq!(pop, ["acme.com", "acme.net"]);
        assert!(!r.popular[1].available);
        let other: Vec<_> = r.other.iter().map(|c| c.domain.as_str()).collect();
        assert_eq!(other, ["acme.eu", "acme.io"], "taken acme.de is left out");
        // No TLD asked: the first popular TLD is the exact name.
        let r = search("acme", &tlds, &taken);
        assert_eq!(r.exact.unwrap().domain, "acme.com");
        assert_eq!(r.popular.len(), 2);
        // Not a name: nothing.
        assert_eq!(search("a b", &tlds, &taken), SearchResult::default());
        assert_eq!(search("-x", &tlds, &taken), SearchResult::default());
    }
}
