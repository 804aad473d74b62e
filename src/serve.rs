//! The demo store's server (native only): static files for the page, the wasm package and the
//! model, and the store's own candidate lists. It takes no user data at all: `/api/candidates`
//! answers from the catalog and aggregate popularity, the same for every shopper. With a store
//! model (`--store-model DIR`), every product record carries its vector and the encoder is served
//! at /store/encoder.gguf (checksum in /store/train.json): the same files for every shopper.
//!
//! axum + tower-http do the HTTP (static files with the right MIME types, gzip, headers); this
//! module only decides what to answer and which headers every response carries.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use axum::extract::{Query, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum::Router;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::catalog::Dataset;
use crate::error::{Error, Result};
use crate::records::Candidate;

/// Strict CSP: scripts and connections only to this origin; wasm compilation allowed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
     worker-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'";
pub const MAX_CANDIDATES_PER_REQUEST: usize = 200;
/// Longer search queries are refused: a store's search box takes a few words, and matching
/// costs time in proportion to the query.
pub const MAX_QUERY_BYTES: usize = 256;

/// The store's catalog with aggregate popularity (interaction counts of all shoppers).
pub struct StoreCatalog {
    items: Vec<Candidate>,
    popularity: Vec<f64>,
    /// The store's trained sequence model (`localrank train --out DIR`), served at /store.
    store_model: Option<PathBuf>,
}

impl StoreCatalog {
    /// Items from `items.jsonl`; popularity from `events.csv` beside it when present.
    pub fn load(items_path: &Path) -> Result<Self> {
        let events_path = items_path.with_file_name("events.csv");
        if events_path.exists() {
            let dataset = Dataset::load(items_path, &events_path)?;
            for line in dataset.report.lines() {
                eprintln!("localrank store: catalog: {line}");
            }
            let training: Vec<Vec<usize>> = dataset
                .users
                .iter()
                .map(|u| u.events.iter().map(|&(i, _)| i).collect())
                .collect();
            let popularity = crate::catalog::popularity(&training, dataset.items.len());
            return Ok(StoreCatalog {
                items: dataset.items,
                popularity,
                store_model: None,
            });
        }
        let mut report = crate::catalog::LoadReport::default();
        let items = crate::catalog::load_items(items_path, &mut report)?;
        for line in report.lines() {
            eprintln!("localrank store: catalog: {line}");
        }
        let popularity = (0..items.len()).map(|i| (items.len() - i) as f64).collect();
        Ok(StoreCatalog {
            items,
            popularity,
            store_model: None,
        })
    }

    /// Attaches the store model's product vectors (DIR/item-vectors.jsonl) to the catalog's
    /// products, and serves DIR's encoder at /store. Returns how many products got a vector.
    /// Unreadable lines are skipped and counted, as in the catalog.
    pub fn attach_store_model(&mut self, dir: &Path) -> Result<usize> {
        let encoder = dir.join(crate::train::ENCODER_FILE);
        if !encoder.is_file() {
            return Err(Error::invalid(
                dir.display().to_string(),
                format!(
                    "has no {}: make it with `localrank train --out {}`",
                    crate::train::ENCODER_FILE,
                    dir.display()
                ),
            ));
        }
        let (mut vectors, report) =
            crate::train::read_item_vectors(&dir.join(crate::train::VECTORS_FILE))?;
        for line in report.lines() {
            eprintln!("localrank store: vectors: {line}");
        }
        let mut attached = 0;
        for item in &mut self.items {
            if let Some(vector) = vectors.remove(&item.id) {
                item.vector = Some(vector);
                attached += 1;
            }
        }
        self.store_model = Some(dir.to_path_buf());
        Ok(attached)
    }

    /// The store's list for a page slot: `home` (popular), `category:NAME`, `search:QUERY`.
    pub fn candidates(&self, slot: &str, n: usize) -> Result<Vec<Candidate>> {
        let n = n.clamp(1, MAX_CANDIDATES_PER_REQUEST);
        let matches: Box<dyn Fn(&Candidate) -> bool> = match slot.split_once(':') {
            None if slot == "home" => Box::new(|_| true),
            Some(("category", name)) => {
                let name = name.to_string();
                Box::new(move |c| c.categories.iter().any(|k| k.eq_ignore_ascii_case(&name)))
            }
            Some(("search", query)) if query.len() > MAX_QUERY_BYTES => {
                return Err(Error::invalid(
                    "slot",
                    format!(
                        "the search query is {} bytes, the limit is {MAX_QUERY_BYTES}",
                        query.len()
                    ),
                ))
            }
            Some(("search", query)) => {
                let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
                Box::new(move |c| {
                    let title = c.title.to_lowercase();
                    !words.is_empty() && words.iter().all(|w| title.contains(w.as_str()))
                })
            }
            _ => {
                return Err(Error::invalid(
                    "slot",
                    format!("'{slot}' is not home, category:NAME or search:QUERY"),
                ))
            }
        };
        let mut chosen: Vec<usize> = (0..self.items.len())
            .filter(|&i| matches(&self.items[i]))
            .collect();
        chosen.sort_by(|&a, &b| {
            self.popularity[b]
                .total_cmp(&self.popularity[a])
                .then(a.cmp(&b))
        });
        Ok(chosen
            .into_iter()
            .take(n)
            .map(|i| Candidate {
                score: Some(self.popularity[i]),
                ..self.items[i].clone()
            })
            .collect())
    }

    /// Category names, most common first (for the page's navigation).
    pub fn categories(&self) -> Vec<String> {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for item in &self.items {
            for category in &item.categories {
                *counts.entry(category).or_default() += 1;
            }
        }
        let mut names: Vec<(&str, usize)> = counts.into_iter().collect();
        names.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        names
            .into_iter()
            .map(|(name, _)| name.to_string())
            .collect()
    }
}

#[derive(serde::Deserialize)]
struct CandidatesQuery {
    slot: Option<String>,
    n: Option<usize>,
}

/// Picking a list scans the catalog: it runs on the blocking pool, so a slow request never
/// holds up another (the page's other lists, its scripts, the model download).
async fn candidates(
    State(catalog): State<std::sync::Arc<StoreCatalog>>,
    Query(query): Query<CandidatesQuery>,
) -> Response {
    let slot = query.slot.unwrap_or_else(|| "home".into());
    let n = query.n.unwrap_or(24);
    let picked = tokio::task::spawn_blocking(move || catalog.candidates(&slot, n)).await;
    match picked {
        Ok(Ok(list)) => Json(list).into_response(),
        Ok(Err(e)) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Where the store's sequence encoder is published (the same for every shopper), or nulls.
async fn store_model_urls(State(catalog): State<std::sync::Arc<StoreCatalog>>) -> Response {
    let published = catalog.store_model.is_some();
    let url = |file: &str| published.then(|| format!("/store/{file}"));
    Json(serde_json::json!({
        "encoderUrl": url(crate::train::ENCODER_FILE),
        "encoderManifestUrl": url(crate::train::SUMMARY_FILE),
    }))
    .into_response()
}

async fn categories(State(catalog): State<std::sync::Arc<StoreCatalog>>) -> Json<Vec<String>> {
    Json(catalog.categories())
}

/// An extra folder served under a URL prefix (`--mount /bench/ort=node_modules/...`), for pages
/// such as the browser benchmark that need files from outside www/.
#[derive(Clone, Debug)]
pub struct Mount {
    pub prefix: String,
    pub dir: PathBuf,
}

impl std::str::FromStr for Mount {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let (prefix, dir) = text
            .split_once('=')
            .ok_or_else(|| format!("mount '{text}' is not PREFIX=DIR"))?;
        if !prefix.starts_with('/') || prefix.len() < 2 || prefix.ends_with('/') {
            return Err(format!(
                "mount prefix '{prefix}' must start with '/' and not end with one"
            ));
        }
        Ok(Mount {
            prefix: prefix.to_string(),
            dir: PathBuf::from(dir),
        })
    }
}

/// The whole app: API routes, /pkg, /models, any mounts and the page, with the headers on every
/// response.
pub fn router(root: &Path, catalog: StoreCatalog, mounts: &[Mount]) -> Router {
    let static_dir = |dir: &str| ServeDir::new(root.join(dir));
    let headers: [(HeaderName, &str); 7] = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("cross-origin-embedder-policy"),
            "require-corp",
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    // The model is incompressible and its Content-Length drives the page's progress bar.
    let compress =
        SizeAbove::new(1024).and(NotForContentType::const_new("application/octet-stream"));
    let store_model = catalog.store_model.clone();
    let mut app = Router::new()
        .route("/api/candidates", get(candidates))
        .route("/api/categories", get(categories))
        .route("/api/store-model", get(store_model_urls))
        .with_state(std::sync::Arc::new(catalog))
        .nest_service("/pkg", static_dir("pkg"))
        .nest_service("/models", static_dir("models"));
    if let Some(dir) = &store_model {
        app = app.nest_service("/store", ServeDir::new(dir));
    }
    for mount in mounts {
        app = app.nest_service(&mount.prefix, ServeDir::new(root.join(&mount.dir)));
    }
    app = app
        .fallback_service(static_dir("www"))
        .layer(CompressionLayer::new().compress_when(compress));
    for (name, value) in headers {
        app = app.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    app
}

/// Serves until the process is stopped. A multi-threaded runtime (one worker per core), so
/// requests are answered in parallel and none waits for another to finish.
pub fn serve(root: PathBuf, catalog: StoreCatalog, port: u16, mounts: &[Mount]) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the server runtime", e))?;
    runtime.block_on(async move {
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| Error::io(format!("cannot listen on {address}"), e))?;
        eprintln!("localrank store: http://{address}/");
        axum::serve(listener, router(&root, catalog, mounts))
            .await
            .map_err(|e| Error::io("server stopped", e))
    })
}

#[cfg(test)]
mod tests {
    use super::{Mount, StoreCatalog, MAX_QUERY_BYTES};
    use crate::records::Candidate;

    #[test]
    fn long_search_queries_are_refused_before_any_matching() {
        let item = Candidate {
            reviews: Vec::new(),
            id: "1".into(),
            title: "Alien (1979)".into(),
            description: None,
            categories: vec!["Horror".into()],
            price: None,
            score: None,
            vector: None,
        };
        let catalog = StoreCatalog {
            items: vec![item],
            popularity: vec![1.0],
            store_model: None,
        };
        let long = format!("search:{}", "alien ".repeat(MAX_QUERY_BYTES / 6 + 1));
        let err = catalog.candidates(&long, 10).unwrap_err().to_string();
        assert!(err.contains("the limit is 256"), "{err}");
        assert_eq!(catalog.candidates("search:ALIEN", 10).unwrap().len(), 1);
    }

    #[test]
    fn mounts_parse_prefix_and_folder_and_refuse_bad_prefixes() {
        let mount: Mount = "/bench/ort=bench/node_modules/onnxruntime-web/dist"
            .parse()
            .unwrap();
        assert_eq!(mount.prefix, "/bench/ort");
        assert_eq!(
            mount.dir,
            std::path::PathBuf::from("bench/node_modules/onnxruntime-web/dist")
        );
        for bad in ["bench=dir", "/=dir", "/bench/=dir", "/bench"] {
            let err = bad.parse::<Mount>().unwrap_err();
            assert!(err.contains(bad.split('=').next().unwrap()), "{bad}: {err}");
        }
    }
}
