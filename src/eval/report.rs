//! Collects per-user metrics and writes the results: a table, `metrics.json` (read by outside
//! checks: ranker and metric names are fixed), and an SVG chart of NDCG@10 with intervals.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::metrics::{bootstrap_interval, mean, multi_target, single_target};
use super::protocol::{Setting, Task};
use super::{Coverage, MetricTable};
use crate::catalog::{ItemIx, LoadReport};
use crate::error::{Error, Result};
use crate::records::Candidate;

/// The cold-product split's results (single-target setting).
#[derive(Serialize, Default)]
pub struct ColdReport {
    /// Share of the catalog held out of every training part.
    pub fraction: f64,
    pub items: usize,
    /// Users whose target is a held-out product.
    pub users: usize,
    /// Ranker -> NDCG@10 over those users.
    #[serde(rename = "ndcg@10")]
    pub ndcg10: BTreeMap<String, f64>,
    pub intervals: BTreeMap<String, [f64; 2]>,
}

#[derive(Serialize)]
pub struct Report {
    pub dataset: String,
    /// What loading the data set skipped or repaired (empty when nothing).
    #[serde(skip_serializing_if = "LoadReport::is_empty")]
    pub data_quality: LoadReport,
    /// Users in the single-target setting (the headline table).
    pub users: usize,
    pub users_multi_target: usize,
    pub rankers: MetricTable,
    /// 95% bootstrap intervals of each mean, `[low, high]`.
    pub intervals: BTreeMap<String, BTreeMap<String, [f64; 2]>>,
    /// With a cold-product split: NDCG@10 on the users whose target was held out of training.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cold_items: Option<ColdReport>,
    #[serde(skip)]
    cold_set: std::collections::HashSet<ItemIx>,
    #[serde(skip)]
    cold_per_user: BTreeMap<String, Vec<f64>>,
    #[serde(skip)]
    order: Vec<String>,
    #[serde(skip)]
    per_user: BTreeMap<String, BTreeMap<&'static str, Vec<f64>>>,
    #[serde(skip)]
    top10: BTreeMap<String, Coverage>,
}

impl Report {
    pub fn new(dataset: &str, rankers: &[String]) -> Self {
        Report {
            dataset: dataset.to_string(),
            data_quality: LoadReport::default(),
            users: 0,
            users_multi_target: 0,
            rankers: BTreeMap::new(),
            intervals: BTreeMap::new(),
            cold_items: None,
            cold_set: Default::default(),
            cold_per_user: BTreeMap::new(),
            order: rankers.to_vec(),
            per_user: BTreeMap::new(),
            top10: BTreeMap::new(),
        }
    }

    /// Also reports the users whose target is in `cold` (held out of training).
    pub fn hold_out_cold(&mut self, fraction: f64, cold: std::collections::HashSet<ItemIx>) {
        self.cold_items = Some(ColdReport {
            fraction,
            items: cold.len(),
            ..Default::default()
        });
        self.cold_set = cold;
    }

    pub fn set_users(&mut self, setting: Setting, users: usize) {
        match setting {
            Setting::Single => self.users = users,
            Setting::Multi => self.users_multi_target = users,
        }
    }

    pub fn add(
        &mut self,
        ranker: &str,
        setting: Setting,
        task: &Task,
        ranking: &[ItemIx],
        items: &[Candidate],
    ) {
        let values = match setting {
            Setting::Single => {
                self.top10
                    .entry(ranker.to_string())
                    .or_default()
                    .extend(ranking.iter().take(10));
                let values = single_target(ranking, task.targets[0], items);
                if self.cold_set.contains(&task.targets[0]) {
                    let ndcg10 = values.iter().find(|(m, _)| *m == "ndcg@10").map(|v| v.1);
                    self.cold_per_user
                        .entry(ranker.to_string())
                        .or_default()
                        .extend(ndcg10);
                }
                values
            }
            Setting::Multi => multi_target(ranking, &task.targets),
        };
        let table = self.per_user.entry(ranker.to_string()).or_default();
        for (metric, value) in values {
            table.entry(metric).or_default().push(value);
        }
    }

    /// Means, intervals and coverage (`catalog` = items that occur in any event).
    pub fn finish(&mut self, catalog: usize, seed: u64) {
        if let Some(cold) = &mut self.cold_items {
            for (ranker, values) in &self.cold_per_user {
                cold.users = values.len();
                cold.ndcg10.insert(ranker.clone(), mean(values));
                let (low, high) = bootstrap_interval(values, seed);
                cold.intervals.insert(ranker.clone(), [low, high]);
            }
        }
        for (ranker, metrics) in &self.per_user {
            let means = self.rankers.entry(ranker.clone()).or_default();
            let intervals = self.intervals.entry(ranker.clone()).or_default();
            for (position, (metric, values)) in metrics.iter().enumerate() {
                means.insert(metric.to_string(), mean(values));
                let (low, high) = bootstrap_interval(values, seed.wrapping_add(position as u64));
                intervals.insert(metric.to_string(), [low, high]);
            }
            let covered = self.top10.get(ranker).map_or(0, |c| c.len());
            means.insert("coverage@10".into(), covered as f64 / catalog.max(1) as f64);
        }
    }

    pub fn table(&self) -> String {
        let columns = [
            ("ndcg@1", "N@1"),
            ("ndcg@5", "N@5"),
            ("ndcg@10", "N@10"),
            ("ndcg@20", "N@20"),
            ("hr@1", "HR@1"),
            ("hr@5", "HR@5 (CTR proxy)"),
            ("hr@10", "HR@10"),
            ("mrr", "MRR"),
            ("precision@10", "P@10"),
            ("recall@10", "R@10"),
            ("f1@10", "F1@10"),
            ("ild@10", "ILD@10"),
            ("coverage@10", "Cov@10"),
        ];
        let mut out = format!(
            "{}: {} users (single target, 20 candidates), {} users (5 targets, 50 candidates); x100, N@10 with 95% CI\n\n",
            self.dataset, self.users, self.users_multi_target
        );
        out.push_str("| ranker |");
        for (_, title) in columns {
            let _ = write!(out, " {title} |");
        }
        out.push_str("\n|---|");
        out.push_str(&"---:|".repeat(columns.len()));
        out.push('\n');
        for ranker in &self.order {
            let Some(means) = self.rankers.get(ranker) else {
                continue;
            };
            let _ = write!(out, "| {ranker} |");
            for (metric, _) in columns {
                // P/R/F1 come from the multi-target setting, absent when only the single ran.
                let Some(value) = means.get(metric).map(|v| v * 100.0) else {
                    out.push_str(" – |");
                    continue;
                };
                if metric == "ndcg@10" {
                    let [low, high] = self.intervals[ranker][metric];
                    let _ = write!(
                        out,
                        " {value:.2} [{:.1}, {:.1}] |",
                        low * 100.0,
                        high * 100.0
                    );
                } else {
                    let _ = write!(out, " {value:.2} |");
                }
            }
            out.push('\n');
        }
        if let Some(cold) = &self.cold_items {
            let _ = write!(
                out,
                "\nCold products: {} items ({:.0}% of those with events) held out of all training; \
                 {} users whose target is one of them. NDCG@10 x100 with 95% CI:\n\n| ranker | N@10 |\n|---|---:|\n",
                cold.items,
                cold.fraction * 100.0,
                cold.users
            );
            for ranker in self.order.iter().filter(|r| cold.ndcg10.contains_key(*r)) {
                let [low, high] = cold.intervals[ranker];
                let _ = writeln!(
                    out,
                    "| {ranker} | {:.2} [{:.1}, {:.1}] |",
                    cold.ndcg10[ranker] * 100.0,
                    low * 100.0,
                    high * 100.0
                );
            }
        }
        out
    }

    /// Writes metrics.json, table.md and ndcg10.svg into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        let json = serde_json::to_string_pretty(self).map_err(|e| Error::State(e.to_string()))?;
        let write = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text)
                .map_err(|e| Error::io(format!("cannot write {}", dir.join(name).display()), e))
        };
        write("metrics.json", &json)?;
        write("table.md", &self.table())?;
        write("ndcg10.svg", &self.chart())
    }

    /// Horizontal bars of NDCG@10 with their 95% intervals as whiskers.
    pub fn chart(&self) -> String {
        let (left, width, row) = (190.0, 520.0, 28.0);
        let rows: Vec<&String> = self
            .order
            .iter()
            .filter(|r| self.rankers.contains_key(*r))
            .collect();
        let height = 50.0 + row * rows.len() as f64;
        let x = |v: f64| left + width * v.clamp(0.0, 1.0);
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <text x=\"10\" y=\"18\" font-size=\"14\">{}: NDCG@10 with 95% bootstrap intervals ({} users)</text>\n",
            left + width + 60.0, self.dataset, self.users
        );
        for tick in 0..=10 {
            let v = tick as f64 / 10.0;
            let _ = writeln!(svg, "<line x1=\"{0}\" x2=\"{0}\" y1=\"30\" y2=\"{1}\" stroke=\"#ddd\"/><text x=\"{0}\" y=\"{2}\" text-anchor=\"middle\" fill=\"#666\">{v:.1}</text>", x(v), height - 14.0, height - 2.0);
        }
        for (i, ranker) in rows.iter().enumerate() {
            let y = 34.0 + row * i as f64;
            let value = self.rankers[*ranker]["ndcg@10"];
            let [low, high] = self.intervals[*ranker]["ndcg@10"];
            let colour = if ranker.starts_with("localrank") {
                "#2b7bb9"
            } else {
                "#999"
            };
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{ranker}</text><rect x=\"{left}\" y=\"{y}\" width=\"{}\" height=\"18\" fill=\"{colour}\"/>\
                 <line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#000\"/><text x=\"{}\" y=\"{}\">{:.3}</text>",
                left - 8.0, y + 13.0, x(value) - left, x(low), x(high), y + 9.0, y + 9.0, x(high) + 6.0, y + 13.0, value
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}
