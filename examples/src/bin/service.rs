//! An actix-web service that embeds one gridpipe runtime: it fits iris
//! (scaler -> PCA -> logistic regression) at start, then answers
//! `POST /predict` by running the posted samples through the fitted pipeline on
//! the runtime, many requests at once.
//!
//! ```text
//! POST /predict   {"samples": [{"key": "a", "data": [5.1, 3.5, 1.4, 0.2]}, ...]}
//!              -> {"predictions": [{"key": "a", "class": 0}, ...], "tasks": 2}
//! GET  /health -> ok
//! ```

use actix_web::{web, App, HttpResponse, HttpServer};
use clap::Parser;
use gridpipe_estimators::{LogisticRegression, Pca, Pipeline, StandardScaler};
use gridpipe_examples::cli::{init_tracing, Mode, ViewArgs};
use gridpipe_examples::failure::Failure;
use gridpipe_runtime::{Bag, Partitioning, Runtime, Sample, Step};
use ndarray::{Array1, Axis};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A prediction service embedding a gridpipe runtime.
#[derive(Parser, Debug)]
struct Args {
    /// Where the service listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: String,
    /// Number of workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Where the workers run: threads of the service, or worker processes of
    /// its own binary.
    #[arg(long, value_enum, default_value_t = Mode::Inprocess)]
    mode: Mode,
    #[command(flatten)]
    view: ViewArgs,
}

/// One sample to classify.
#[derive(Deserialize)]
struct InSample {
    key: String,
    data: Vec<f64>,
}

#[derive(Deserialize)]
struct PredictRequest {
    samples: Vec<InSample>,
}

#[derive(Serialize)]
struct Prediction {
    key: String,
    class: f64,
}

#[derive(Serialize)]
struct PredictResponse {
    predictions: Vec<Prediction>,
    tasks: usize,
}

struct Service {
    runtime: Runtime,
    pipeline: Pipeline,
}

async fn predict(
    service: web::Data<Arc<Service>>,
    body: web::Json<PredictRequest>,
) -> HttpResponse {
    let samples: Vec<Sample> = body
        .into_inner()
        .samples
        .into_iter()
        .map(|s| Sample::new(s.key, Array1::from(s.data).into_dyn()))
        .collect();
    if samples.is_empty() {
        return HttpResponse::BadRequest().body("no samples");
    }
    let bag = match Bag::from_samples(samples, Partitioning::PartitionSize(16)) {
        Ok(bag) => bag,
        Err(e) => return HttpResponse::BadRequest().body(e.to_string()),
    };
    match service.pipeline.predict_async(&service.runtime, bag).await {
        Ok(out) => {
            let failed = out.report.failed.len();
            if failed > 0 {
                let first = &out.report.failed[0];
                return HttpResponse::BadRequest()
                    .body(format!("sample {}: {}", first.key, first.reason));
            }
            let predictions = out
                .bag
                .samples()
                .into_iter()
                .map(|s| Prediction {
                    class: s.data.iter().copied().next().unwrap_or(f64::NAN),
                    key: s.key,
                })
                .collect();
            HttpResponse::Ok().json(PredictResponse {
                predictions,
                tasks: out.report.tasks.len(),
            })
        }
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

/// The usual shape of a service: an async `main` (actix's, as `#[actix_web::main]`). `run_if_worker` comes first even
/// here (a worker process of this binary never returns from it).
#[actix_rt::main]
async fn main() -> Result<(), Failure> {
    gridpipe_runtime::run_if_worker();
    init_tracing();
    let args = Args::parse();
    let mut config = args
        .mode
        .config(args.workers, args.view.dashboard_setting(true));
    // A service logs; a progress bar flashing for every request would not help.
    config.progress = false;
    let runtime = gridpipe_examples::cli::start(config)?;
    let iris = linfa_datasets::iris();
    let samples: Vec<Sample> = iris
        .records()
        .axis_iter(Axis(0))
        .zip(iris.targets().iter())
        .enumerate()
        .map(|(i, (x, y))| {
            Sample::new(format!("iris-{i}"), x.to_owned().into_dyn()).with("label", *y)
        })
        .collect();
    let mut pipeline = Pipeline::new()
        .add("scaler", StandardScaler::new())
        .add("pca", Pca::new(3))
        .step(Step::new("classifier", LogisticRegression::new()).fit_extra("y", "label"));
    let fit = pipeline
        .fit_async(
            &runtime,
            Bag::from_samples(samples, Partitioning::NPartitions(4))?,
        )
        .await?;
    println!("fitted ({}): {}", args.mode.as_str(), fit.report.summary());
    let service = Arc::new(Service { runtime, pipeline });
    let server = HttpServer::new({
        let service = service.clone();
        move || {
            App::new()
                .app_data(web::Data::new(service.clone()))
                .app_data(web::JsonConfig::default().limit(16 << 20))
                .route("/predict", web::post().to(predict))
                .route("/health", web::get().to(health))
        }
    })
    .workers(args.workers)
    .bind(&args.bind)
    .map_err(|e| format!("cannot listen on {}: {e}", args.bind))?;
    for addr in server.addrs() {
        println!("listening on http://{addr}/");
    }
    server.run().await?;
    Ok(())
}
