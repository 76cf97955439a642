//! Metadata sidecars (`NAME.meta.toml`, `NAME.meta.json`): who may see a document, where it
//! must stay, what it holds. The input up to its first 0xFF byte (a byte no UTF-8 text
//! has) is read as the TOML sidecar, the rest as the JSON one; without a 0xFF both read the
//! whole input. What is accepted must be normalised (values valid, lowercase, sorted,
//! unique), and merging the two keeps every value of one side or is refused as a conflict.
#![no_main]

use std::path::Path;

use ingest::{DocumentMeta, MetaError};
use libfuzzer_sys::fuzz_target;
use sanctum_fuzz::guarded;

fn check_normalized(m: &DocumentMeta) {
    let token = |v: &String| {
        !v.is_empty()
            && v.len() <= 64
            && v.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.' | ':'))
    };
    for list in [&m.groups, &m.labels] {
        assert!(list.iter().all(token), "an invalid value kept: {m:?}");
        assert!(list.windows(2).all(|w| w[0] < w[1]), "values not sorted and unique: {m:?}");
    }
    assert!(m.region.iter().all(token), "an invalid region kept: {m:?}");
    if let Some(t) = &m.title {
        assert!(!t.is_empty() && t.trim() == t && !t.chars().any(char::is_control), "title not normalised: {m:?}");
    }
    assert_eq!(m.clone().normalized().as_ref(), Ok(m), "normalising twice changed the metadata");
}

fn check_merge(a: &DocumentMeta, b: &DocumentMeta) {
    match a.clone().merge("the flags", b.clone(), "x.pdf.meta.toml") {
        Ok(m) => {
            assert!(m.title == a.title || m.title == b.title, "merge invented a title: {m:?}");
            assert!(m.groups == a.groups || m.groups == b.groups, "merge invented groups: {m:?}");
            assert!(m.region == a.region || m.region == b.region, "merge invented a region: {m:?}");
            assert!(m.labels == a.labels || m.labels == b.labels, "merge invented labels: {m:?}");
            // a value given on one side is never dropped
            assert!(a.region.is_none() || m.region == a.region, "merge dropped a region: {m:?}");
            assert!(b.region.is_none() || m.region == b.region, "merge dropped a region: {m:?}");
            assert!(a.groups.is_empty() || m.groups == a.groups, "merge dropped groups: {m:?}");
            assert!(b.groups.is_empty() || m.groups == b.groups, "merge dropped groups: {m:?}");
            assert!(a.labels.is_empty() || m.labels == a.labels, "merge dropped labels: {m:?}");
            assert!(b.labels.is_empty() || m.labels == b.labels, "merge dropped labels: {m:?}");
            check_normalized(&m);
        }
        Err(e) => assert!(matches!(e, MetaError::Conflict { .. }), "merge failed without a conflict: {e}"),
    }
}

fuzz_target!(init: sanctum_fuzz::init(), |data: &[u8]| {
    guarded(|| {
        let (toml, json) = match data.iter().position(|&b| b == 0xFF) {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => (data, data),
        };
        let from_toml = DocumentMeta::from_sidecar_bytes(Path::new("x.pdf.meta.toml"), toml);
        let from_json = DocumentMeta::from_sidecar_bytes(Path::new("x.pdf.meta.json"), json);
        for m in [&from_toml, &from_json].into_iter().flatten() {
            check_normalized(m);
            check_merge(m, m);
            check_merge(m, &DocumentMeta::default());
        }
        if let (Ok(a), Ok(b)) = (&from_toml, &from_json) {
            check_merge(a, b);
            check_merge(b, a);
        }
    });
});
