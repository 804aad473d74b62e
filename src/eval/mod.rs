//! Offline evaluation (native only): LLMRank's protocol on MovieLens or any shop export, every
//! ranker on the same lists, metrics with bootstrap intervals. The localrank rankers call the
//! same `Recommender::rerank_for` the browser runs.

pub mod baselines;
pub mod metrics;
pub mod protocol;
pub mod report;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::catalog::{Dataset, ItemIx};
use crate::error::{Error, Result};
use crate::model::Embedder;
use crate::ranking::sequence::{SequenceEncoder, Step};
use crate::recommender::Recommender;
use crate::records::{Candidate, Event, EventKind, Options};
use crate::train::{TrainConfig, TrainingData};
use baselines::{Bm25, ItemKnn};
use protocol::{build_tasks, training_part, ProtocolConfig, Setting, Task};
pub use report::Report;

/// Width of the store's collaborative vectors in the hybrid ranker.
pub const COLLABORATIVE_DIM: usize = 64;

pub struct EvalConfig {
    pub candidates_file: Option<PathBuf>,
    pub protocol: ProtocolConfig,
    pub models: Vec<PathBuf>,
    /// Options for the `localrank` and `localrank-hybrid` rankers (default: the shipped ones).
    pub options: Options,
    /// Extra `localrank-store[label]` rankers, each the store blend with its own options, for
    /// tuning the blend on one trained model (empty: none; the default report is unchanged).
    pub store_variants: Vec<(String, Options)>,
    /// Share of the catalog held out of every training part (0 = none): the cold-product split.
    /// Metrics then also cover the users whose target is one of these products.
    pub cold_items: f64,
    /// How the store's sequence encoder is trained (on the training part) for `sequential` and
    /// `localrank-store`. The protocol's seed is used.
    pub train: TrainConfig,
    /// Which settings to run (both by default; one alone halves the time of a tuning run).
    pub settings: Vec<Setting>,
    /// Tune, don't test: every user's last event is dropped before anything reads the data,
    /// so the targets are the events before them and the real test targets are never seen.
    pub validation: bool,
}

/// What a localrank ranker is given besides the text.
#[derive(Clone, Copy, PartialEq)]
enum Variant {
    /// Embedding similarity alone: no server prior, no diversity.
    Similarity,
    /// The shipped defaults, text only, popularity as the server score.
    Default,
    /// The shipped defaults plus the store's collaborative vectors.
    Hybrid,
    /// The shipped defaults with the store's trained sequence encoder and its product vectors.
    Store,
}

enum Ranker {
    Random,
    Popularity,
    Bm25,
    ItemKnn,
    /// The store's sequence model run on the history as a server would (encoder score only).
    Sequential,
    Localrank {
        model: usize,
        variant: Variant,
        /// The target's category is passed as the page's context (`+context` rankers): what a
        /// category or product page knows about what the shopper is looking at.
        in_context: bool,
    },
    /// `localrank-store` with the options of `EvalConfig::store_variants[i]`.
    StoreVariant(usize),
}

impl Ranker {
    /// The localrank model a ranker runs on and how, or None for the baselines.
    fn localrank_model(&self) -> Option<(usize, Variant)> {
        match self {
            Ranker::Localrank { model, variant, .. } => Some((*model, *variant)),
            Ranker::StoreVariant(_) => Some((0, Variant::Store)),
            _ => None,
        }
    }
}

/// Everything a setting's rankers may learn from its training part.
struct Trained {
    popularity: Vec<f64>,
    knn: ItemKnn,
    vectors: Vec<Vec<f32>>,
    /// The store's sequence model, where a language model was given to embed the catalog.
    store: Option<StoreModel>,
}

/// The store's sequence model, trained like every other learned ranker on its setting's
/// training part.
struct StoreModel {
    encoder: SequenceEncoder,
    encoder_bytes: Vec<u8>,
    item_vectors: Vec<Vec<f32>>,
}

pub fn evaluate(
    dataset: &Dataset,
    config: &EvalConfig,
    progress: &dyn Fn(&str, usize, usize),
) -> Result<Report> {
    let validation_part;
    let dataset = if config.validation {
        if config.candidates_file.is_some() {
            return Err(Error::invalid(
                "--validation",
                "a candidates file lists the test targets: validate on sampled lists instead",
            ));
        }
        validation_part = protocol::validation_part(dataset);
        &validation_part
    } else {
        dataset
    };
    let candidate_lists = match &config.candidates_file {
        Some(path) => Some(protocol::read_candidates_file(path, dataset)?),
        None => None,
    };
    let mut recommenders = Vec::new();
    let mut dtypes = Vec::new();
    for path in &config.models {
        let embedder = Embedder::from_path(path)?;
        dtypes.push(embedder.weight_dtype().to_string());
        let label = format!(
            "embedding {} items ({})",
            dataset.items.len(),
            embedder.weight_dtype()
        );
        let mut recommender = Recommender::new(embedder, None)?;
        recommender.prime_cache(&dataset.items, &mut |done, total| {
            progress(&label, done, total)
        })?;
        recommenders.push(recommender);
    }
    let cold = cold_items(dataset, config.cold_items, config.protocol.seed)?;
    let mut rankers = ranker_list(recommenders.len());
    if !recommenders.is_empty() {
        rankers.extend((0..config.store_variants.len()).map(Ranker::StoreVariant));
    }
    let names = ranker_names(&rankers, &dtypes, &config.store_variants);
    let bm25 = Bm25::new(&dataset.items);
    let mut report = Report::new(&dataset.name, &names);
    report.data_quality = dataset.report.clone();
    if !cold.is_empty() {
        report.hold_out_cold(config.cold_items, cold.clone());
    }
    // The store model of the stricter (5 targets) training part, which the single-target
    // setting's model continues from.
    let mut base_model = None;
    for &setting in &config.settings {
        let lists = if setting == Setting::Single {
            candidate_lists.as_ref()
        } else {
            None
        };
        let tasks = build_tasks(dataset, setting, &config.protocol, lists)?;
        let mut trained = train(dataset, setting, config.protocol.seed, &cold);
        trained.store = match recommenders.first_mut() {
            Some(recommender) => {
                let mut store = StoreTraining {
                    dataset,
                    recommender,
                    config,
                    cold: &cold,
                    progress,
                };
                Some(store.model_for(setting, &mut base_model)?)
            }
            None => None,
        };
        report.set_users(setting, tasks.len());
        for (ranker, name) in rankers.iter().zip(&names) {
            let label = format!("{name} ({} users, {})", tasks.len(), setting.label());
            if let Some((model, variant)) = ranker.localrank_model() {
                match (variant, &trained.store) {
                    (Variant::Store, Some(store)) => {
                        recommenders[model].set_encoder(&store.encoder_bytes)?
                    }
                    _ => recommenders[model].clear_encoder(),
                }
            }
            for (done, task) in tasks.iter().enumerate() {
                let ranking = rank(
                    ranker,
                    task,
                    dataset,
                    &trained,
                    &bm25,
                    &mut recommenders,
                    config,
                )?;
                report.add(name, setting, task, &ranking, &dataset.items);
                if done % 64 == 63 || done + 1 == tasks.len() {
                    progress(&label, done + 1, tasks.len());
                }
            }
        }
    }
    report.finish(dataset.active_items().len(), config.protocol.seed);
    Ok(report)
}

fn ranker_list(models: usize) -> Vec<Ranker> {
    let mut rankers = vec![
        Ranker::Random,
        Ranker::Popularity,
        Ranker::Bm25,
        Ranker::ItemKnn,
    ];
    if models > 0 {
        rankers.push(Ranker::Sequential);
    }
    for model in 0..models {
        for variant in [Variant::Similarity, Variant::Default, Variant::Hybrid] {
            rankers.push(Ranker::Localrank {
                model,
                variant,
                in_context: false,
            });
        }
    }
    // The store's encoder is trained on the first model's text vectors. The context variants
    // run on the first model only: they measure the option, not the quantisation.
    if models > 0 {
        for (variant, in_context) in [
            (Variant::Store, false),
            (Variant::Default, true),
            (Variant::Store, true),
        ] {
            rankers.push(Ranker::Localrank {
                model: 0,
                variant,
                in_context,
            });
        }
    }
    rankers
}

/// The names outside checks read: plain for the first model, `@dtype` after it for others.
fn ranker_names(
    rankers: &[Ranker],
    dtypes: &[String],
    store_variants: &[(String, Options)],
) -> Vec<String> {
    rankers
        .iter()
        .map(|ranker| match ranker {
            Ranker::Random => "random".into(),
            Ranker::Popularity => "popularity".into(),
            Ranker::Bm25 => "bm25".into(),
            Ranker::ItemKnn => "item-knn".into(),
            Ranker::Sequential => "sequential".into(),
            Ranker::StoreVariant(i) => format!("localrank-store[{}]", store_variants[*i].0),
            Ranker::Localrank {
                model,
                variant,
                in_context,
            } => {
                let base = match variant {
                    Variant::Similarity => "localrank-similarity",
                    Variant::Default => "localrank",
                    Variant::Hybrid => "localrank-hybrid",
                    Variant::Store => "localrank-store",
                };
                let context = if *in_context { "+context" } else { "" };
                if *model == 0 {
                    format!("{base}{context}")
                } else {
                    format!("{base}{context}@{}", dtypes[*model])
                }
            }
        })
        .collect()
}

fn train(dataset: &Dataset, setting: Setting, seed: u64, cold: &HashSet<ItemIx>) -> Trained {
    let mut training = training_part(dataset, setting.training_cut());
    for events in &mut training {
        events.retain(|item| !cold.contains(item));
    }
    let items = dataset.items.len();
    Trained {
        popularity: baselines::popularity(&training, items),
        knn: ItemKnn::new(&training, items),
        vectors: baselines::collaborative_vectors(&training, items, COLLABORATIVE_DIM, seed),
        store: None,
    }
}

fn by_score(candidates: &[ItemIx], score: impl Fn(ItemIx) -> f64) -> Vec<ItemIx> {
    let mut scored: Vec<(ItemIx, f64)> = candidates.iter().map(|&c| (c, score(c))).collect();
    // Stable: ties keep the (shuffled) candidate order.
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.into_iter().map(|(c, _)| c).collect()
}

fn rank(
    ranker: &Ranker,
    task: &Task,
    dataset: &Dataset,
    trained: &Trained,
    bm25: &Bm25,
    recommenders: &mut [Recommender],
    config: &EvalConfig,
) -> Result<Vec<ItemIx>> {
    let history: Vec<ItemIx> = task.history.iter().map(|&(i, _)| i).collect();
    Ok(match ranker {
        Ranker::Random => {
            let mut order = task.candidates.clone();
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(
                config.protocol.seed ^ task.user as u64,
            ));
            order
        }
        Ranker::Popularity => by_score(&task.candidates, |c| trained.popularity[c]),
        Ranker::Bm25 => by_score(&task.candidates, |c| bm25.score(&history, c)),
        Ranker::ItemKnn => by_score(&task.candidates, |c| trained.knn.score(&history, c)),
        Ranker::Sequential => {
            let store = trained
                .store
                .as_ref()
                .ok_or_else(|| Error::Inference("no store model".into()))?;
            sequential(store, task)?
        }
        Ranker::Localrank {
            model,
            variant,
            in_context,
        } => {
            let context = in_context.then(|| target_category(dataset, task));
            localrank(
                &mut recommenders[*model],
                *variant,
                task,
                dataset,
                trained,
                &Options {
                    context,
                    ..config.options.clone()
                },
            )?
        }
        Ranker::StoreVariant(i) => localrank(
            &mut recommenders[0],
            Variant::Store,
            task,
            dataset,
            trained,
            &config.store_variants[*i].1,
        )?,
    })
}

/// The page a store would show the target on: its category (the first target's, in the
/// multi-target setting). The category names only, never the target itself.
fn target_category(dataset: &Dataset, task: &Task) -> crate::records::Context {
    let categories = task
        .targets
        .first()
        .map(|&target| dataset.items[target].categories.join(", "))
        .filter(|c| !c.trim().is_empty());
    crate::records::Context {
        category: categories,
        ..Default::default()
    }
}

fn localrank(
    recommender: &mut Recommender,
    variant: Variant,
    task: &Task,
    dataset: &Dataset,
    trained: &Trained,
    options: &Options,
) -> Result<Vec<ItemIx>> {
    let with_vector = |item: ItemIx| {
        let mut candidate = dataset.items[item].clone();
        match (variant, &trained.store) {
            (Variant::Hybrid, _) => candidate.vector = Some(trained.vectors[item].clone()),
            (Variant::Store, Some(store)) => {
                candidate.vector = Some(store.item_vectors[item].clone())
            }
            _ => {}
        }
        candidate
    };
    let candidates: Vec<Candidate> = task
        .candidates
        .iter()
        .map(|&item| Candidate {
            score: (variant != Variant::Similarity).then(|| trained.popularity[item]),
            ..with_vector(item)
        })
        .collect();
    // MovieLens interactions are ratings of watched films: views, timestamped in seconds.
    let history: Vec<Event> = task
        .history
        .iter()
        .map(|&(item, time)| Event {
            rating: None,
            text: None,
            kind: EventKind::View,
            at: time as f64 * 1000.0,
            item: Some(with_vector(item)),
            query: None,
        })
        .collect();
    let options = match variant {
        Variant::Similarity => Options {
            diversity: 0.0,
            server_weight: 0.0,
            ..options.clone()
        },
        _ => options.clone(),
    };
    let ranked = recommender.rerank_for(
        &history,
        &candidates,
        Some(&options),
        task.now as f64 * 1000.0,
    )?;
    Ok(ranked.iter().map(|r| dataset.index_of[&r.id]).collect())
}

/// The encoder's order: the query after the history against each candidate's store vector.
fn sequential(store: &StoreModel, task: &Task) -> Result<Vec<ItemIx>> {
    let vectors: Vec<&[f32]> = task
        .history
        .iter()
        .map(|&(item, _)| store.item_vectors[item].as_slice())
        .collect();
    let steps: Vec<Step> = task
        .history
        .iter()
        .map(|&(_, at)| Step {
            kind: 0,
            at_seconds: at as f64,
        })
        .collect();
    let query = store
        .encoder
        .user_query(&vectors, &steps, task.now as f64)?
        .unwrap_or_default();
    Ok(by_score(&task.candidates, |c| {
        crate::ranking::vector::dot(&query, &store.item_vectors[c]) as f64
    }))
}

/// The cold-product split: `fraction` of the items that occur in events, chosen by the seed.
fn cold_items(dataset: &Dataset, fraction: f64, seed: u64) -> Result<HashSet<ItemIx>> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(Error::invalid(
            "--cold-items",
            format!("{fraction} is not a share in [0, 1)"),
        ));
    }
    let mut items: Vec<ItemIx> = dataset.active_items();
    items.sort_unstable();
    items.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0xc01d));
    let count = (items.len() as f64 * fraction).round() as usize;
    Ok(items.into_iter().take(count).collect())
}

/// What the store's encoder is trained on in a setting: every user's events (with their times)
/// before the setting's targets, the same training part the other learned rankers read.
pub fn store_training_sequences(dataset: &Dataset, setting: Setting) -> Vec<Vec<(ItemIx, i64)>> {
    let cut = setting.training_cut();
    dataset
        .users
        .iter()
        .map(|u| u.events[..u.events.len().saturating_sub(cut)].to_vec())
        .collect()
}

/// Epochs the single-target setting's store model trains past the base model, on its larger
/// training part: a quarter of a full training, at least one.
fn continued_epochs(epochs: usize) -> usize {
    epochs.div_ceil(4).max(1)
}

/// Trains the store's encoder on the first model's text vectors, as a store retrains on what
/// it has: each setting's model sees that setting's training part only, as popularity and
/// item-kNN do (and as LLMRank's SASRec did). The 5-target part is a prefix of the
/// single-target one, so the single-target model is the 5-target model trained on further
/// (`continued_epochs`) on its own part, as a store updates yesterday's model with today's
/// logs, instead of a second training from scratch: the evaluation's time budget pays for one.
struct StoreTraining<'a> {
    dataset: &'a Dataset,
    recommender: &'a mut Recommender,
    config: &'a EvalConfig,
    cold: &'a HashSet<ItemIx>,
    progress: &'a dyn Fn(&str, usize, usize),
}

impl StoreTraining<'_> {
    fn model_for(
        &mut self,
        setting: Setting,
        base: &mut Option<crate::train::TrainedStore>,
    ) -> Result<StoreModel> {
        let base = match base {
            Some(base) => &*base,
            None => &*base.insert(self.train(Setting::Multi, None, self.config.train.epochs)?),
        };
        let trained;
        let model = match setting {
            Setting::Multi => base,
            Setting::Single => {
                let epochs = continued_epochs(self.config.train.epochs);
                trained = self.train(Setting::Single, Some(base), epochs)?;
                &trained
            }
        };
        // The rankers read the encoder back from the bytes a page would download.
        let encoder_bytes = model.encoder.to_bytes()?;
        Ok(StoreModel {
            encoder: SequenceEncoder::from_bytes(&encoder_bytes)?,
            encoder_bytes,
            item_vectors: model.item_vectors.clone(),
        })
    }

    fn train(
        &mut self,
        setting: Setting,
        start: Option<&crate::train::TrainedStore>,
        epochs: usize,
    ) -> Result<crate::train::TrainedStore> {
        let text_vectors: Vec<Vec<f32>> = self
            .recommender
            .text_vectors(&self.dataset.items)?
            .iter()
            .map(|v| v.to_vec())
            .collect();
        let mut sequences = store_training_sequences(self.dataset, setting);
        for events in &mut sequences {
            events.retain(|(item, _)| !self.cold.contains(item));
        }
        let embedder = self.recommender.embedder()?;
        let probe = embedder.probe_vector()?;
        let data = TrainingData {
            text_vectors: &text_vectors,
            sequences: &sequences,
            text_model_id: embedder.model_id(),
            text_probe: &probe,
            start,
        };
        let train_config = TrainConfig {
            seed: self.config.protocol.seed,
            epochs,
            ..self.config.train.clone()
        };
        let label = match start {
            Some(_) => format!("continuing the store model ({})", setting.label()),
            None => format!("training the store model ({})", setting.label()),
        };
        crate::train::train(&data, &train_config, &mut |p| {
            (self.progress)(
                &format!("{label} epoch {}/{} loss {:.3}", p.epoch, p.epochs, p.loss),
                p.batch,
                p.batches,
            )
        })
    }
}

/// The mean of each metric per ranker, as `metrics.json` holds it.
pub type MetricTable = BTreeMap<String, BTreeMap<String, f64>>;

/// Items in any top-10, for catalog coverage.
pub type Coverage = HashSet<ItemIx>;
