//! The TypeScript the browser package ships (hand-written in `src/wasm.rs`) against the Rust
//! records that cross the boundary: every field on both sides, and each side's idea of which
//! fields may be left out. A field added, renamed or made optional in Rust without its type
//! (or the other way round) fails here, before a page meets it.
//!
//! Inputs (what a page sends) are checked by deserialising: a field TypeScript marks optional
//! must be omittable, a required one must not be. Outputs (what a page receives) by
//! serialising: the fields a fully filled record writes are TypeScript's fields, and the ones a
//! minimal record still writes are the required ones.

use std::collections::{BTreeMap, BTreeSet};

use localrank::{Candidate, Event, EventKind, Options, Ranked, Reason};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// interface name -> field name -> optional (`?:`)
type Interfaces = BTreeMap<String, BTreeMap<String, bool>>;

fn typescript_interfaces() -> Interfaces {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/wasm.rs"))
        .expect("src/wasm.rs is readable");
    let start = source
        .find("const TYPES: &'static str = r#\"")
        .expect("src/wasm.rs declares the TYPES section");
    let end = start
        + source[start..]
            .find("\"#;")
            .expect("the TYPES section ends");
    let mut interfaces = Interfaces::new();
    let mut current: Option<String> = None;
    for line in source[start..end].lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("export interface ") {
            let name = rest.trim_end_matches('{').trim().to_string();
            interfaces.insert(name.clone(), BTreeMap::new());
            current = Some(name);
        } else if line == "}" {
            current = None;
        } else if let (Some(name), Some((field, _))) = (&current, line.split_once(':')) {
            if line.starts_with("/**") || line.starts_with('*') {
                continue;
            }
            let optional = field.ends_with('?');
            let field = field.trim_end_matches('?').to_string();
            interfaces.get_mut(name).unwrap().insert(field, optional);
        }
    }
    interfaces
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

fn fields(interfaces: &Interfaces, name: &str) -> BTreeMap<String, bool> {
    interfaces
        .get(name)
        .unwrap_or_else(|| panic!("src/wasm.rs has no `export interface {name}`"))
        .clone()
}

/// A page-sent record: `full` sets every field; TypeScript's optional ones must be omittable.
fn check_input<T: DeserializeOwned>(interfaces: &Interfaces, name: &str, full: Value) {
    let typescript = fields(interfaces, name);
    let declared: BTreeSet<String> = typescript.keys().cloned().collect();
    assert_eq!(
        keys(&full),
        declared,
        "{name}: the test's full record and the TypeScript fields"
    );
    serde_json::from_value::<T>(full.clone())
        .unwrap_or_else(|e| panic!("{name}: the full record is refused: {e}"));
    for (field, optional) in &typescript {
        let mut without = full.clone();
        without.as_object_mut().unwrap().remove(field);
        let accepted = serde_json::from_value::<T>(without).is_ok();
        assert_eq!(
            accepted, *optional,
            "{name}.{field}: TypeScript says optional = {optional}, Rust accepts it missing = {accepted}"
        );
    }
}

/// A page-received record: what `full` writes is every field, what `minimal` writes the
/// required ones.
fn check_output<T: serde::Serialize>(interfaces: &Interfaces, name: &str, full: T, minimal: T) {
    let typescript = fields(interfaces, name);
    let declared: BTreeSet<String> = typescript.keys().cloned().collect();
    let required: BTreeSet<String> = typescript
        .iter()
        .filter(|(_, &optional)| !optional)
        .map(|(field, _)| field.clone())
        .collect();
    assert_eq!(
        keys(&serde_json::to_value(full).unwrap()),
        declared,
        "{name}: fields"
    );
    assert_eq!(
        keys(&serde_json::to_value(minimal).unwrap()),
        required,
        "{name}: fields always present"
    );
}

#[test]
fn the_typescript_records_match_the_rust_ones() {
    let interfaces = typescript_interfaces();
    let product = json!({
        "id": "p-1", "title": "Trail shoes", "description": "Light", "categories": ["shoes"],
        "price": 89.0, "score": 0.7, "vector": [0.1, 0.2], "reviews": ["Light and comfy"]
    });
    check_input::<Candidate>(&interfaces, "Candidate", product.clone());
    check_input::<Event>(
        &interfaces,
        "ShopperEvent",
        json!({"kind": "review", "at": 1.7e12, "item": product, "query": "trail shoes",
               "text": "Love how light these are", "rating": 5}),
    );
    check_input::<Options>(
        &interfaces,
        "RankOptions",
        json!({"diversity": 0.2, "serverWeight": 0.3, "halfLifeDays": 14.0,
               "excludePurchased": true, "limit": 5,
               "context": {"item": product, "category": "shoes", "query": "trail"}}),
    );
    check_input::<localrank::Context>(
        &interfaces,
        "RankContext",
        json!({"item": product, "category": "shoes", "query": "trail"}),
    );
    check_output(
        &interfaces,
        "Reason",
        Reason::similar(EventKind::View, Some("p-1".into()), "Trail shoes"),
        Reason::server(),
    );
    let ranked = |reason: Reason| Ranked {
        id: "p-1".into(),
        score: 0.5,
        reason,
    };
    check_output(
        &interfaces,
        "Ranked",
        ranked(Reason::server()),
        ranked(Reason::server()),
    );
}

#[test]
fn the_parser_reads_optional_and_required_fields() {
    let interfaces = typescript_interfaces();
    let candidate = fields(&interfaces, "Candidate");
    assert_eq!(candidate.get("id"), Some(&false));
    assert_eq!(candidate.get("vector"), Some(&true));
    assert!(interfaces.len() >= 5, "{:?}", interfaces.keys());
}
